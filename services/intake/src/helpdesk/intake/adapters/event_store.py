"""The ticket event store: every ticket's events in order, the write model of tickets.

A command folds its ticket from here, and the primary key (ticket_id, seq) turns a concurrent
append to the same ticket into a `Conflict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import ticket_events, ticket_numbers, tickets
from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.tickets import Ticket
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.errors import Conflict
from helpdesk.shared.events import Envelope, Event, registry


class PostgresTicketStore:
    """The event store on the command's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def load(self, ticket_id: UUID) -> Ticket | None:
        """Fold a ticket from its events, or None."""
        rows = await self.conn.execute(
            sa.select(ticket_events.c.envelope)
            .where(ticket_events.c.ticket_id == ticket_id)
            .order_by(ticket_events.c.seq)
        )
        ticket: Ticket | None = None
        for (raw,) in rows:
            env = Envelope.model_validate(raw)
            payload = registry.decode_payload(env)
            if ticket is None:
                assert isinstance(payload, TicketOpened)
                ticket = rules.start(payload, env.seq or 1, env.occurred_at)
            else:
                ticket = rules.fold(ticket, payload, env.seq or 0, env.occurred_at)
        return ticket

    async def append(self, events: Sequence[Event[BaseModel]]) -> None:
        """Append; a taken (ticket_id, seq) means a concurrent write: `Conflict`.

        No savepoint: the conflict aborts the command's whole transaction, which is what we want.
        """
        try:
            await self.conn.execute(
                ticket_events.insert(),
                [
                    {
                        "ticket_id": e.envelope.ticket_id,
                        "seq": e.envelope.seq,
                        "event_id": e.envelope.event_id,
                        "account_id": e.envelope.account_id,
                        "type": e.type,
                        "envelope": e.envelope.model_dump(mode="json"),
                    }
                    for e in events
                ],
            )
        except sa.exc.IntegrityError as exc:
            raise Conflict("The ticket changed meanwhile; reload it and retry.") from exc

    async def next_number(self) -> str:
        """A ticket number people can read out on the phone: HD- and six digits."""
        return f"HD-{await self.conn.scalar(ticket_numbers.next_value())}"

    async def not_closed(self, account_id: UUID) -> list[UUID]:
        """The account's tickets that are not closed (from the ticket read model)."""
        rows = await self.conn.scalars(
            sa.select(tickets.c.id).where(
                tickets.c.account_id == account_id, tickets.c.status != "closed"
            )
        )
        return list(rows)
