"""Accounts and their agreements."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Body
from pydantic import ValidationError

from helpdesk.intake import commands
from helpdesk.intake.adapters.tables import accounts, agreements
from helpdesk.intake.api.schemas import AccountCreate, AccountPatch
from helpdesk.shared.agreements import agreement_errors, list_presets, resolve_agreement
from helpdesk.shared.context import new_id
from helpdesk.shared.contracts.accounts import AccountOpened, AccountUpdated, AgreementSet
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1", tags=["accounts"])
MANAGERS = ("manager", "admin")


@router.post("/accounts", status_code=201)
async def create_account(body: AccountCreate, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """Create a customer account (unique name and number)."""
    caller.require_role(*MANAGERS)
    at = commands.now()
    ctx = commands.context(caller, None, at)
    async with runtime.transaction() as conn:
        await commands.unique_account(conn, body.name, body.number)
        account_id = new_id()
        number = body.number or await commands.next_account_number(conn)
        opened = AccountOpened(
            account_id=account_id, number=number, name=body.name, timezone=body.timezone
        )
        await commands.record(conn, [ctx.event(opened, account_id=account_id)])
        if not await commands.recorded(conn, accounts, account_id):
            # A concurrent create took the name or number first; this one records nothing.
            await commands.unique_account(conn, body.name, number)
            raise commands.conflict("A concurrent request created an account like this one.")
        row = await commands.account_row(conn, caller, account_id)
    return commands.account_view(row, at)


@router.get("/accounts")
async def list_accounts(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """Every account (staff), or the caller's own (a contact)."""
    query = sa.select(accounts).order_by(accounts.c.number)
    if not caller.is_staff:
        query = query.where(accounts.c.id == caller.account_id)
    at = commands.now()
    async with runtime.engine.connect() as conn:
        return [commands.account_view(row, at) for row in await conn.execute(query)]


@router.get("/accounts/{account_id}")
async def get_account(account_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """One account, with its partner standing (seed 001)."""
    async with runtime.engine.connect() as conn:
        row = await commands.account_row(conn, caller, account_id)
    return commands.account_view(row, commands.now())


@router.patch("/accounts/{account_id}")
async def patch_account(
    account_id: UUID, body: AccountPatch, runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """Rename, move time zone, or change status (on hold / expired close its open tickets)."""
    caller.require_role(*MANAGERS)
    at = commands.now()
    ctx = commands.context(caller, None, at)
    async with runtime.transaction() as conn:
        row = await commands.account_row(conn, caller, account_id)
        name, timezone = body.name or row.name, body.timezone or row.timezone
        if (name, timezone) != (row.name, row.timezone):
            await commands.unique_account(conn, name, None, exclude=account_id)
            updated = AccountUpdated(account_id=account_id, name=name, timezone=timezone)
            try:
                await commands.record(conn, [ctx.event(updated, account_id=account_id)])
            except sa.exc.IntegrityError as exc:
                # A concurrent rename to the same name committed between check and update.
                raise commands.name_taken() from exc
        if body.status is not None:
            await commands.change_account_status(conn, row, body.status, ctx)
        row = await commands.account_row(conn, caller, account_id)
    return commands.account_view(row, at)


@router.get("/agreement-presets")
async def agreement_presets(caller: Caller) -> list[dict[str, Any]]:
    """One preset modelled on each seed policy; an account starts from one and overrides."""
    return [preset.model_dump(mode="json") for preset in list_presets()]


@router.put("/accounts/{account_id}/agreement")
async def put_agreement(
    account_id: UUID,
    runtime: Runtime,
    caller: Caller,
    body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take a free-form body
) -> dict[str, Any]:
    """Set a new agreement version: a preset name and/or explicit parts that override it."""
    caller.require_role(*MANAGERS)
    try:
        agreement = resolve_agreement(body.get("preset"), body)
    except ValidationError as exc:
        raise Problem(
            422,
            "Invalid agreement",
            "The agreement is not valid; nothing was changed.",
            errors=list(agreement_errors(exc)),  # type: ignore[arg-type]
        ) from exc
    ctx = commands.context(caller, None, commands.now())
    async with runtime.transaction() as conn:
        row = await commands.account_row(conn, caller, account_id)
        version = (row.agreement_version or 0) + 1
        document = agreement.model_dump(mode="json")
        event = AgreementSet(account_id=account_id, version=version, agreement=document)
        await commands.record(conn, [ctx.event(event, account_id=account_id)])
    return {**document, "version": version}


@router.get("/accounts/{account_id}/agreement")
async def get_agreement(account_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """The account's current agreement and its version."""
    async with runtime.engine.connect() as conn:
        await commands.account_row(conn, caller, account_id)
        row = (
            await conn.execute(
                sa.select(agreements)
                .where(agreements.c.account_id == account_id)
                .order_by(agreements.c.version.desc())
                .limit(1)
            )
        ).first()
    if row is None:
        raise Problem(404, "Not Found", "The account has no agreement yet.")
    return {**row.agreement, "version": row.version}
