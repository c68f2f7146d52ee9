"""Contacts, staff and API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from helpdesk.intake import queries
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import people as service
from helpdesk.intake.application.commands import ApiKeyCreate, ContactCreate, StaffCreate
from helpdesk.intake.application.context import command_context
from helpdesk.shared.context import utc_now
from helpdesk.shared.deps import Caller, Runtime

router = APIRouter(prefix="/v1", tags=["people"])


@router.post("/accounts/{account_id}/contacts", status_code=201)
async def add_contact(
    account_id: UUID, body: ContactCreate, runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """A person of the account who opens and follows tickets."""
    ctx = command_context(caller, None, utc_now())
    async with runtime.unit_of_work() as uow:
        added = await service.add_contact(PostgresUnitOfWork(uow), caller, account_id, body, ctx)
    return {"id": added.contact_id, **added.model_dump(mode="json", exclude={"contact_id"})}


@router.get("/accounts/{account_id}/contacts")
async def list_contacts(account_id: UUID, runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The account's contacts."""
    async with runtime.engine.connect() as conn:
        return await queries.contact_list(conn, caller, account_id)


@router.post("/staff", status_code=201)
async def add_staff(body: StaffCreate, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """A technician, manager or admin of the provider."""
    ctx = command_context(caller, None, utc_now())
    async with runtime.unit_of_work() as uow:
        added = await service.add_staff(PostgresUnitOfWork(uow), caller, body, ctx)
    return {
        "id": added.staff_id,
        "name": added.name,
        "email": added.email,
        "role": added.role,
        "tier": added.tier,
    }


@router.get("/staff")
async def list_staff(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The provider's staff."""
    async with runtime.engine.connect() as conn:
        return await queries.staff_list(conn, caller)


@router.post("/api-keys", status_code=201)
async def issue_key(
    body: ApiKeyCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Issue a key; its token is in this answer and nowhere else (only its hash is kept).

    A retry with the same Idempotency-Key answers 409 naming the key: the token is never
    stored, so it cannot be replayed.
    """
    response.headers["Cache-Control"] = "no-store"
    ctx = command_context(caller, None, utc_now())
    async with runtime.unit_of_work() as uow:
        key = await service.issue_key(PostgresUnitOfWork(uow), caller, body, ctx)
    issued = key.issued
    return {
        "id": issued.key_id,
        "token": key.token,
        "role": issued.role,
        "account_id": issued.account_id,
        "contact_id": issued.contact_id,
        "staff_id": issued.staff_id,
        "scopes": issued.scopes,
    }


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, runtime: Runtime, caller: Caller) -> Response:
    """Revoke a key in every service."""
    ctx = command_context(caller, None, utc_now())
    async with runtime.unit_of_work() as uow:
        await service.revoke_key(PostgresUnitOfWork(uow), caller, key_id, ctx)
    return Response(status_code=204)


@router.get("/me")
async def whoami(caller: Caller) -> dict[str, Any]:
    """The calling key: its role, account, contact or staff member, and scopes."""
    return {
        "key_id": caller.key_id,
        "role": caller.role,
        "account_id": caller.account_id,
        "contact_id": caller.contact_id,
        "staff_id": caller.staff_id,
        "visibility": caller.visibility,
        "scopes": sorted(caller.scopes),
    }
