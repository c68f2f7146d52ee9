"""Intake's HTTP routes (thin: parse, call the service layer, answer)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Response

from helpdesk.intake import commands
from helpdesk.intake.adapters.tables import tickets
from helpdesk.intake.api.schemas import AccountCreate, AccountView, TicketCreate
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1")


@router.post("/accounts", status_code=201, response_model=AccountView)
async def create_account(body: AccountCreate, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """Create a customer account."""
    return await commands.open_account(runtime, caller, body)


@router.post("/tickets", status_code=201)
async def create_ticket(
    body: TicketCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Open a ticket."""
    ticket = await commands.open_ticket(runtime, caller, body)
    response.headers["ETag"] = f'"{ticket["seq"]}"'
    return ticket


@router.get("/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: UUID, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """One ticket."""
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id))).first()
    if row is None or not caller.can_see_account(row.account_id):
        raise Problem(404, "Not Found", "No such ticket.")
    response.headers["ETag"] = f'"{row.seq}"'
    return dict(row.state)
