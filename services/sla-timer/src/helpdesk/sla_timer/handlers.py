"""The SLA timer's projection of the stream."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert

from helpdesk.shared.consumer import Projection, UnitOfWork
from helpdesk.shared.contracts.tickets import TicketOpened, TicketTriaged
from helpdesk.shared.events import Event
from helpdesk.sla_timer.adapters.tables import projection_tables, sla_tickets

projection = Projection(tables=projection_tables)


@projection.on(TicketOpened)
async def ticket_opened(uow: UnitOfWork, event: Event[TicketOpened]) -> None:
    """Start tracking a ticket."""
    opened = event.payload
    await uow.conn.execute(
        pg_insert(sla_tickets)
        .values(
            ticket_id=opened.ticket_id,
            account_id=opened.account_id,
            contact_id=opened.contact_id,
            partition=event.partition,
            number=opened.number,
            priority=opened.priority,
            reported_at=opened.reported_at,
        )
        .on_conflict_do_nothing()
    )


@projection.on(TicketTriaged)
async def ticket_triaged(uow: UnitOfWork, event: Event[TicketTriaged]) -> None:
    """Follow the ticket's priority (its targets follow the priority)."""
    await uow.conn.execute(
        sla_tickets.update()
        .where(sla_tickets.c.ticket_id == event.envelope.ticket_id)
        .values(priority=event.payload.priority)
    )
