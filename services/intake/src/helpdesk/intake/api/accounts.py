"""Accounts and their agreements."""

from __future__ import annotations

from functools import partial
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from helpdesk.intake import queries
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import accounts as service
from helpdesk.intake.application.commands import AccountCreate, AccountPatch
from helpdesk.intake.application.context import command_context
from helpdesk.shared.agreements import list_presets
from helpdesk.shared.context import utc_now
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import IfMatch, check_if_match

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post("/accounts", status_code=201)
async def create_account(body: AccountCreate, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """Create a customer account (unique name and number)."""
    at = utc_now()
    async with runtime.unit_of_work() as uow:
        account = await service.create_account(
            PostgresUnitOfWork(uow), caller, body, command_context(caller, None, at)
        )
    return queries.account_view(account, at)


@router.get("/accounts")
async def list_accounts(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """Every account (staff), or the caller's own (a contact)."""
    at = utc_now()
    async with runtime.engine.connect() as conn:
        return [queries.account_view(row, at) for row in await queries.account_list(conn, caller)]


@router.get("/accounts/{account_id}")
async def get_account(account_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """One account, with its partner standing (seed 001)."""
    async with runtime.engine.connect() as conn:
        row = await queries.account(conn, caller, account_id)
    return queries.account_view(row, utc_now())


@router.patch("/accounts/{account_id}")
async def patch_account(
    account_id: UUID, body: AccountPatch, runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """Rename, move time zone, or change status (on hold / expired close its open tickets)."""
    at = utc_now()
    async with runtime.unit_of_work() as uow:
        account = await service.change_account(
            PostgresUnitOfWork(uow), caller, account_id, body, command_context(caller, None, at)
        )
    return queries.account_view(account, at)


@router.get("/agreement-presets")
async def agreement_presets(caller: Caller) -> list[dict[str, Any]]:
    """One preset modelled on each seed policy; an account starts from one and overrides."""
    return [preset.model_dump(mode="json") for preset in list_presets()]


@router.put("/accounts/{account_id}/agreement")
async def put_agreement(
    account_id: UUID,
    runtime: Runtime,
    caller: Caller,
    response: Response,
    body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take a free-form body
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Set a new agreement version: a preset name and/or explicit parts that override it.
    The answer is the agreement as GET shows it, resolved holidays included.

    Concurrent PUTs are stored as consecutive versions, each answered with its own. The ETag
    is the version (`"0"` before the first): `If-Match: "3"` stores only over version 3 (412
    otherwise, with the current ETag)."""
    at = utc_now()
    ctx = command_context(caller, None, at)
    precondition = partial(check_if_match, if_match, what="agreement")
    async with runtime.unit_of_work() as uow:
        agreement, version = await service.set_agreement(
            PostgresUnitOfWork(uow), caller, account_id, body, ctx, precondition
        )
    response.headers["ETag"] = f'"{version}"'
    return queries.agreement_view(agreement, version, at)


@router.get("/accounts/{account_id}/agreement")
async def get_agreement(
    account_id: UUID, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """The account's current agreement, its version (also its ETag), and the holidays each
    calendar resolved to this year and next."""
    async with runtime.engine.connect() as conn:
        agreement = await queries.agreement(conn, caller, account_id, utc_now())
    response.headers["ETag"] = f'"{agreement["version"]}"'
    return agreement
