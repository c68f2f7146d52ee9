"""The notifier's projection of the stream."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert

from helpdesk.notifier.adapters.tables import notifications, projection_tables
from helpdesk.shared.consumer import Projection, UnitOfWork
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.events import Event

projection = Projection(tables=projection_tables)


@projection.on(TicketOpened)
async def ticket_opened(uow: UnitOfWork, event: Event[TicketOpened]) -> None:
    """Queue the message that gives the ticket contact their ticket number (seed 003, 3.2)."""
    opened = event.payload
    await uow.conn.execute(
        pg_insert(notifications)
        .values(
            event_id=event.envelope.event_id,
            account_id=opened.account_id,
            ticket_id=opened.ticket_id,
            partition=event.partition,
            kind="ticket_number",
            recipient_contact_id=opened.contact_id,
            subject=f"[{opened.number}] {opened.subject}",
            status="queued",
            created_at=event.envelope.occurred_at,
        )
        .on_conflict_do_nothing()
    )
