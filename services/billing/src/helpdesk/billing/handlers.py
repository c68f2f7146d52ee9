"""Billing's projection of the stream."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.billing.adapters.tables import billing_accounts, billing_tickets, projection_tables
from helpdesk.shared.consumer import Delivery, Projection
from helpdesk.shared.contracts.accounts import AccountOpened
from helpdesk.shared.contracts.tickets import TicketOpened

projection = Projection(tables=projection_tables)


@projection.on("account.opened")
async def account_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """Remember the account's time zone: billing periods are its local months."""
    opened = delivery.event.payload
    assert isinstance(opened, AccountOpened)
    await conn.execute(
        pg_insert(billing_accounts)
        .values(account_id=opened.account_id, timezone=opened.timezone)
        .on_conflict_do_nothing()
    )


@projection.on("ticket.opened")
async def ticket_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """A ticket that time may later be booked on."""
    opened = delivery.event.payload
    assert isinstance(opened, TicketOpened)
    await conn.execute(
        pg_insert(billing_tickets)
        .values(
            ticket_id=opened.ticket_id,
            account_id=opened.account_id,
            number=opened.number,
            kind=opened.kind,
            scope=opened.scope,
            reported_at=opened.reported_at,
        )
        .on_conflict_do_nothing()
    )
