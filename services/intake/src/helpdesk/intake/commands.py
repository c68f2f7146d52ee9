"""Intake's service layer: each command loads state, asks the domain, and emits events.

A command's events, the read-model rows they imply and the outbox rows that publish them
commit in one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid6 import uuid7

from helpdesk.intake.adapters.tables import (
    account_numbers,
    accounts,
    ticket_events,
    ticket_numbers,
    tickets,
)
from helpdesk.intake.api.schemas import AccountCreate, TicketCreate
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts.accounts import AccountOpened
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.events import Actor, Event, new_envelope
from helpdesk.shared.logs import correlation_id
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.web import Problem


def new_id() -> UUID:
    """A time-ordered id (UUIDv7)."""
    return UUID(str(uuid7()))


def actor_of(principal: Principal) -> Actor:
    """The envelope actor of a caller."""
    kind = (
        "admin"
        if principal.key_id == "admin"
        else ("staff" if principal.is_staff else principal.role)
    )
    return Actor(type=kind, id=principal.key_id)


def _event(
    payload: TicketOpened | AccountOpened,
    principal: Principal,
    now: datetime,
    *,
    account_id: UUID,
    occurred_at: datetime | None = None,
    ticket_id: UUID | None = None,
    seq: int | None = None,
) -> Event:
    envelope = new_envelope(
        payload,
        account_id=account_id,
        actor=actor_of(principal),
        occurred_at=occurred_at or now,
        recorded_at=now,
        correlation_id=correlation_id.get() or str(new_id()),
        ticket_id=ticket_id,
        seq=seq,
    )
    return Event(envelope, payload)


async def open_account(
    runtime: ServiceRuntime, principal: Principal, body: AccountCreate
) -> dict[str, object]:
    """Create an account; its name and number are unique."""
    if not principal.is_staff:
        raise Problem(403, "Forbidden", "Only staff create accounts.")
    now = datetime.now(UTC)
    async with runtime.transaction() as conn:
        clash = await conn.scalar(
            sa.select(accounts.c.id).where(
                sa.or_(accounts.c.name == body.name, accounts.c.number == body.number)
            )
        )
        if clash is not None:
            raise Problem(
                409,
                "Conflict",
                "An account with this name or number exists.",
                errors=[{"field": "name", "reason": "already taken"}],
            )
        account_id = new_id()
        number = body.number or f"AC-{await conn.scalar(account_numbers.next_value())}"
        payload = AccountOpened(
            account_id=account_id, number=number, name=body.name, timezone=body.timezone
        )
        await runtime.emit(conn, [_event(payload, principal, now, account_id=account_id)])
    return {
        "id": account_id,
        "number": number,
        "name": body.name,
        "timezone": body.timezone,
        "status": "active",
    }


async def append_ticket_events(conn: AsyncConnection, events: list[Event]) -> None:
    """Append to the ticket event store; a taken (ticket_id, seq) means a concurrent write."""
    try:
        async with conn.begin_nested():
            await conn.execute(
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
        raise Problem(409, "Conflict", "The ticket changed meanwhile; reload and retry.") from exc


async def open_ticket(
    runtime: ServiceRuntime, principal: Principal, body: TicketCreate
) -> dict[str, object]:
    """Open a ticket for an account."""
    if not principal.can_see_account(body.account_id):
        raise Problem(404, "Not Found", "No such account.")
    now = datetime.now(UTC)
    async with runtime.transaction() as conn:
        exists = await conn.scalar(sa.select(accounts.c.id).where(accounts.c.id == body.account_id))
        if exists is None:
            raise Problem(
                422,
                "Invalid request",
                "The account does not exist.",
                errors=[{"field": "account_id", "reason": "no such account"}],
            )
        ticket_id = new_id()
        number = f"HD-{await conn.scalar(ticket_numbers.next_value())}"
        payload = TicketOpened(
            ticket_id=ticket_id,
            number=number,
            reported_at=body.reported_at or now,
            **body.model_dump(exclude={"reported_at"}),
        )
        event = _event(
            payload, principal, now, account_id=body.account_id, ticket_id=ticket_id, seq=1
        )
        await append_ticket_events(conn, [event])
        await runtime.emit(conn, [event])
        state: dict[str, object] = (
            await conn.execute(sa.select(tickets.c.state).where(tickets.c.id == ticket_id))
        ).scalar_one()
    return state
