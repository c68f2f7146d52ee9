"""Who decides an event, when, and because of what: the envelope's context for every service.

A command (intake) or a reaction / live loop (every consumer service) builds its events through
a `Context`, so actor, times, correlation and causation are filled the same way everywhere, and
an event decided because of another one gets a deterministic id (see `derive_event_id`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

from pydantic import BaseModel
from uuid6 import uuid7

from helpdesk.shared.events import Actor, Event, derive_event_id, new_envelope
from helpdesk.shared.logs import correlation_id as current_correlation_id

#: The clock a service reads; injected so tests and live loops can run on a fake one.
Clock = Callable[[], datetime]
P = TypeVar("P", bound=BaseModel)


def utc_now() -> datetime:
    """The real clock (the only place outside tests that reads it for the runtime)."""
    return datetime.now(UTC)


def new_id() -> UUID:
    """A time-ordered id (UUIDv7)."""
    return UUID(str(uuid7()))


def system_actor(service: str) -> Actor:
    """The actor of what a service decides on its own (a breach, an auto-close)."""
    return Actor(type="system", id=service)


@dataclass(frozen=True)
class Context:
    """Who acts, when it is recorded, when it happened (differs for an import or a deadline),
    and which event caused it (None for a command from a person)."""

    actor: Actor
    recorded_at: datetime
    occurred_at: datetime
    causation: Event[BaseModel] | None = None

    @classmethod
    def caused_by(cls, cause: Event[BaseModel], actor: Actor, recorded_at: datetime) -> Context:
        """The context of a reaction to `cause`: it happened when `cause` did."""
        return cls(actor, recorded_at, cause.envelope.occurred_at, cause)

    def at(self, occurred_at: datetime) -> Context:
        """The same context for something that happened at `occurred_at` (e.g. a deadline)."""
        return replace(self, occurred_at=occurred_at)

    def event(
        self,
        payload: P,
        *,
        account_id: UUID,
        ticket_id: UUID | None = None,
        seq: int | None = None,
        purpose: str | None = None,
        event_id: UUID | None = None,
        item: UUID | str | None = None,
    ) -> Event[P]:
        """Wrap a decided payload for the stream.

        The id is `event_id` when given (a live loop derives it from what it fires, e.g. ticket,
        clock, cycle and kind, and names that `item`: it becomes the causation id); else, with a
        cause and a `purpose`, it is derived from both, so deciding the same thing again yields
        the same id; otherwise it is a fresh UUIDv7.
        """
        cause = self.causation
        causation_id = None if item is None else str(item)
        if cause is not None:
            causation_id = str(cause.envelope.event_id)
            if event_id is None and purpose is not None:
                event_id = derive_event_id(cause.envelope.event_id, purpose)
        correlation = (
            cause.envelope.correlation_id
            if cause is not None
            else current_correlation_id.get() or str(new_id())
        )
        envelope = new_envelope(
            payload,
            account_id=account_id,
            actor=self.actor,
            occurred_at=self.occurred_at,
            recorded_at=self.recorded_at,
            correlation_id=correlation,
            causation_id=causation_id,
            ticket_id=ticket_id,
            seq=seq,
            event_id=event_id,
        )
        return Event(envelope, payload)
