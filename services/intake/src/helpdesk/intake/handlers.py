"""Intake's projection: the read models of accounts and tickets, folded from events.

The same handlers run when intake applies its own events inside a command's transaction and
when a rebuild replays the stream, so both paths reach the same rows.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import accounts, projection_tables, tickets
from helpdesk.shared.consumer import Delivery, Projection
from helpdesk.shared.contracts.accounts import AccountOpened
from helpdesk.shared.contracts.tickets import TicketOpened

projection = Projection(tables=projection_tables)


@projection.on("account.opened")
async def account_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """A new account row."""
    opened = delivery.event.payload
    assert isinstance(opened, AccountOpened)
    await conn.execute(
        pg_insert(accounts)
        .values(
            id=opened.account_id,
            number=opened.number,
            name=opened.name,
            timezone=opened.timezone,
            status=opened.status,
        )
        .on_conflict_do_nothing()
    )


@projection.on("ticket.opened")
async def ticket_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """A new ticket row."""
    opened = delivery.event.payload
    assert isinstance(opened, TicketOpened)
    state = opened.model_dump(mode="json") | {"status": "new", "seq": delivery.event.envelope.seq}
    await conn.execute(
        pg_insert(tickets)
        .values(
            id=opened.ticket_id,
            number=opened.number,
            account_id=opened.account_id,
            seq=delivery.event.envelope.seq,
            state=state,
        )
        .on_conflict_do_nothing()
    )
