"""Contacts, staff and API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Response

from helpdesk.intake import commands
from helpdesk.intake.adapters.tables import contacts, staff
from helpdesk.intake.adapters.tables import runtime as runtime_tables
from helpdesk.intake.api.schemas import ApiKeyCreate, ContactCreate, StaffCreate
from helpdesk.shared.auth import hash_token, new_token
from helpdesk.shared.context import new_id
from helpdesk.shared.contracts.accounts import (
    PROVIDER_ACCOUNT,
    ApiKeyIssued,
    ApiKeyRevoked,
    ContactAdded,
    StaffAdded,
)
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1", tags=["people"])


def _email_taken(field: str = "email") -> Problem:
    return Problem(
        409,
        "Conflict",
        "This e-mail address is taken.",
        errors=[{"field": field, "reason": "already taken"}],
    )


@router.post("/accounts/{account_id}/contacts", status_code=201)
async def add_contact(
    account_id: UUID, body: ContactCreate, runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """A person of the account who opens and follows tickets."""
    caller.require_role("manager", "admin")
    ctx = commands.context(caller, None, commands.now())
    async with runtime.transaction() as conn:
        await commands.account_row(conn, caller, account_id)
        email = body.email.lower()
        if await conn.scalar(sa.select(contacts.c.id).where(contacts.c.email == email)):
            raise _email_taken()
        added = ContactAdded(
            contact_id=new_id(),
            account_id=account_id,
            name=body.name,
            email=email,
            roles=body.roles,
            visibility=body.visibility,
        )
        await commands.record(conn, [ctx.event(added, account_id=account_id)])
        if not await commands.recorded(conn, contacts, added.contact_id):
            raise _email_taken()  # a concurrent request added this address first
    return {"id": added.contact_id, **added.model_dump(mode="json", exclude={"contact_id"})}


@router.get("/accounts/{account_id}/contacts")
async def list_contacts(account_id: UUID, runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The account's contacts."""
    async with runtime.engine.connect() as conn:
        await commands.account_row(conn, caller, account_id)
        rows = await conn.execute(
            sa.select(contacts).where(contacts.c.account_id == account_id).order_by(contacts.c.name)
        )
        return [dict(row._mapping) for row in rows]


@router.post("/staff", status_code=201)
async def add_staff(body: StaffCreate, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """A technician, manager or admin of the provider."""
    caller.require_role("admin")
    ctx = commands.context(caller, None, commands.now())
    async with runtime.transaction() as conn:
        email = body.email.lower()
        if await conn.scalar(sa.select(staff.c.id).where(staff.c.email == email)):
            raise _email_taken()
        added = StaffAdded(staff_id=new_id(), name=body.name, email=email, role=body.role)
        await commands.record(conn, [commands.provider(ctx, added)])
        if not await commands.recorded(conn, staff, added.staff_id):
            raise _email_taken()  # a concurrent request added this address first
    return {"id": added.staff_id, "name": added.name, "email": added.email, "role": added.role}


@router.get("/staff")
async def list_staff(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The provider's staff."""
    if not caller.is_staff:
        raise Problem(403, "Forbidden", "Only staff see the staff list.")
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(staff).order_by(staff.c.name))
        return [dict(row._mapping) for row in rows]


@router.post("/api-keys", status_code=201)
async def issue_key(
    body: ApiKeyCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Issue a key; its token is in this answer and nowhere else (only its hash is kept).

    A retry with the same Idempotency-Key answers 409 naming the key: the token is never
    stored, so it cannot be replayed.
    """
    response.headers["Cache-Control"] = "no-store"
    ctx = commands.context(caller, None, commands.now())
    async with runtime.transaction() as conn:
        account_id, visibility, staff_id = body.account_id, None, body.staff_id
        if body.role == "contact":
            caller.require_role("manager", "admin")
            if body.contact_id is None:
                raise Problem(
                    422,
                    "Invalid request",
                    "A contact key names its contact.",
                    errors=[{"field": "contact_id", "reason": "required for role contact"}],
                )
            contact = await commands.contact_account(conn, body.contact_id)
            if contact is None or (account_id is not None and contact.account_id != account_id):
                raise Problem(
                    422,
                    "Invalid request",
                    "No such contact of that account.",
                    errors=[{"field": "contact_id", "reason": "no such contact"}],
                )
            if body.scopes:
                raise Problem(
                    422,
                    "Invalid request",
                    "Contacts cannot import history.",
                    errors=[{"field": "scopes", "reason": "not for contact keys"}],
                )
            account_id, visibility = contact.account_id, contact.visibility
        else:
            caller.require_role("admin")
            if body.role != "import":
                role = await commands.staff_exists(conn, staff_id) if staff_id else None
                if role != body.role:
                    raise Problem(
                        422,
                        "Invalid request",
                        "A staff key names a staff member of that role.",
                        errors=[{"field": "staff_id", "reason": f"no {body.role} with this id"}],
                    )
            account_id = None
        key_id = new_id().hex
        token = new_token(key_id)
        issued = ApiKeyIssued(
            key_id=key_id,
            role=body.role,
            token_hash=hash_token(token),
            account_id=account_id,
            contact_id=body.contact_id if body.role == "contact" else None,
            staff_id=staff_id if body.role != "contact" else None,
            visibility=visibility,
            scopes=sorted(set(body.scopes)),
        )
        owner = account_id or PROVIDER_ACCOUNT
        await commands.record(conn, [ctx.event(issued, account_id=owner)])
    return {
        "id": key_id,
        "token": token,
        "role": body.role,
        "account_id": account_id,
        "contact_id": issued.contact_id,
        "staff_id": issued.staff_id,
        "scopes": issued.scopes,
    }


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, runtime: Runtime, caller: Caller) -> Response:
    """Revoke a key in every service."""
    caller.require_role("admin")
    keys = runtime_tables.api_keys
    ctx = commands.context(caller, None, commands.now())
    async with runtime.transaction() as conn:
        row = (await conn.execute(sa.select(keys).where(keys.c.key_id == key_id))).first()
        if row is None:
            raise Problem(404, "Not Found", "No such API key.")
        if not row.revoked:
            owner = row.account_id or PROVIDER_ACCOUNT
            event = ctx.event(ApiKeyRevoked(key_id=key_id), account_id=owner)
            await commands.record(conn, [event])
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
