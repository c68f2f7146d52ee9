"""The SLA timer's projection of the stream."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.consumer import Delivery, Projection
from helpdesk.shared.contracts.tickets import TicketOpened, TicketTriaged
from helpdesk.sla_timer.adapters.tables import projection_tables, sla_tickets

projection = Projection(tables=projection_tables)


@projection.on("ticket.opened")
async def ticket_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """Start tracking a ticket."""
    opened = delivery.event.payload
    assert isinstance(opened, TicketOpened)
    await conn.execute(
        pg_insert(sla_tickets)
        .values(
            ticket_id=opened.ticket_id,
            account_id=opened.account_id,
            contact_id=opened.contact_id,
            partition=delivery.partition,
            number=opened.number,
            priority=opened.priority,
            reported_at=opened.reported_at,
        )
        .on_conflict_do_nothing()
    )


@projection.on("ticket.triaged")
async def ticket_triaged(conn: AsyncConnection, delivery: Delivery) -> None:
    """Follow the ticket's priority (its targets follow the priority)."""
    triaged = delivery.event.payload
    assert isinstance(triaged, TicketTriaged)
    await conn.execute(
        sla_tickets.update()
        .where(sla_tickets.c.ticket_id == delivery.event.envelope.ticket_id)
        .values(priority=triaged.priority)
    )
