"""The notifier's HTTP routes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter

from helpdesk.notifier.adapters.tables import notifications
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1")


@router.get("/tickets/{ticket_id}/notifications")
async def ticket_notifications(
    ticket_id: UUID, runtime: Runtime, caller: Caller
) -> list[dict[str, Any]]:
    """The messages the notifier owes (or sent) about one ticket, oldest first."""
    async with runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(notifications)
                .where(notifications.c.ticket_id == ticket_id)
                .order_by(notifications.c.created_at)
            )
        ).all()
    visible = [
        row for row in rows if caller.can_see_ticket(row.account_id, row.recipient_contact_id)
    ]
    if not visible:
        raise Problem(404, "Not Found", "No notifications for such a ticket.")
    return [
        {
            "id": row.event_id,
            "kind": row.kind,
            "recipient_contact_id": row.recipient_contact_id,
            "subject": row.subject,
            "status": row.status,
            "created_at": row.created_at,
        }
        for row in visible
    ]
