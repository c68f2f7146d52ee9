"""`ticket.*` events, written by intake (the ticket's event store is their source)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.contracts.common import Channel, Payload, Priority, Scope, TicketKind
from helpdesk.shared.events import registry


@registry.register("ticket.opened")
class TicketOpened(Payload):
    """A ticket was opened; it carries what the SLA timer, billing and notifier need."""

    ticket_id: UUID
    number: str
    account_id: UUID
    contact_id: UUID | None = None
    subject: str
    description: str
    channel: Channel
    priority: Priority | None = None
    kind: TicketKind = "incident"
    scope: Scope = "in"
    severity: str | None = None
    affected_users: int | None = Field(default=None, ge=0)
    service_class: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    reported_at: AwareDatetime
