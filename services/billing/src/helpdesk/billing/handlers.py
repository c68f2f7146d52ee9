"""Billing's projection of the stream."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert as pg_insert

from helpdesk.billing.adapters.tables import billing_accounts, billing_tickets, projection_tables
from helpdesk.shared.consumer import Projection, UnitOfWork
from helpdesk.shared.contracts.accounts import AccountOpened
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.events import Event

projection = Projection(tables=projection_tables)


@projection.on(AccountOpened)
async def account_opened(uow: UnitOfWork, event: Event[AccountOpened]) -> None:
    """Remember the account's time zone: billing periods are its local months."""
    opened = event.payload
    await uow.conn.execute(
        pg_insert(billing_accounts)
        .values(account_id=opened.account_id, timezone=opened.timezone)
        .on_conflict_do_nothing()
    )


@projection.on_batch(TicketOpened)
async def tickets_opened(uow: UnitOfWork, events: Sequence[Event[TicketOpened]]) -> None:
    """Tickets that time may later be booked on (one insert for the run)."""
    await uow.conn.execute(
        pg_insert(billing_tickets)
        .values(
            [
                {
                    "ticket_id": e.payload.ticket_id,
                    "account_id": e.payload.account_id,
                    "number": e.payload.number,
                    "kind": e.payload.kind,
                    "scope": e.payload.scope,
                    "reported_at": e.payload.reported_at,
                }
                for e in events
            ]
        )
        .on_conflict_do_nothing()
    )
