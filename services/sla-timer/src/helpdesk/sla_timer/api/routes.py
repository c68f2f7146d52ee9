"""The SLA timer's HTTP routes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter

from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem
from helpdesk.sla_timer.adapters.tables import sla_tickets

router = APIRouter(prefix="/v1")


@router.get("/tickets/{ticket_id}/sla")
async def ticket_sla(ticket_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """The SLA view of one ticket."""
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(sla_tickets).where(sla_tickets.c.ticket_id == ticket_id))
        ).first()
    if row is None or not caller.can_see_ticket(row.account_id, row.contact_id):
        raise Problem(404, "Not Found", "No such ticket.")
    return {
        "ticket_id": row.ticket_id,
        "number": row.number,
        "priority": row.priority,
        "reported_at": row.reported_at,
        "clocks": [],
    }
