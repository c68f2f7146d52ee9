"""The notifier's projection of the stream."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.tables import notifications, projection_tables
from helpdesk.shared.consumer import Delivery, Projection
from helpdesk.shared.contracts.tickets import TicketOpened

projection = Projection(tables=projection_tables)


@projection.on("ticket.opened")
async def ticket_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """Queue the message that gives the ticket contact their ticket number (seed 003, 3.2)."""
    opened = delivery.event.payload
    assert isinstance(opened, TicketOpened)
    await conn.execute(
        pg_insert(notifications)
        .values(
            event_id=delivery.event.envelope.event_id,
            account_id=opened.account_id,
            ticket_id=opened.ticket_id,
            partition=delivery.partition,
            kind="ticket_number",
            recipient_contact_id=opened.contact_id,
            subject=f"[{opened.number}] {opened.subject}",
            status="queued",
            created_at=delivery.event.envelope.occurred_at,
        )
        .on_conflict_do_nothing()
    )
