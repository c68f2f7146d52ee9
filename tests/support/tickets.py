"""Ticket event payloads and preset agreements for the SLA timer's pure-domain unit tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from helpdesk.shared.agreements import Agreement, EscalationTier, Priority, get_preset
from helpdesk.shared.contracts.tickets import (
    TicketCommented,
    TicketCustomerReplied,
    TicketInfoRequested,
    TicketOpened,
)


def preset(name: str) -> Agreement:
    """The agreement of a named preset."""
    found = get_preset(name)
    assert found is not None
    return found.agreement


def opened(at: dt.datetime, priority: Priority | None = "P2", **extra: Any) -> TicketOpened:
    """A ticket reported at `at`; untriaged (an e-mail ticket) when `priority` is None."""
    return TicketOpened(
        ticket_id=uuid.uuid4(),
        number="T-1",
        account_id=uuid.uuid4(),
        subject="s",
        description="d",
        channel="email" if priority is None else "phone",
        priority=priority,
        reported_at=at,
        **extra,
    )


def reply(
    public: bool = True, by_staff: bool = True, tier: EscalationTier | None = None
) -> TicketCommented:
    """A comment; by default the public staff reply that answers a response clock. `tier`: the
    escalation tier whose response it is."""
    return TicketCommented(
        comment_id=uuid.uuid4(),
        body="b",
        public=public,
        by_staff=by_staff,
        author="tech",
        tier_response=tier,
    )


def info() -> TicketInfoRequested:
    """Staff asking the customer for information (pauses the clocks)."""
    return TicketInfoRequested(comment_id=uuid.uuid4(), body="which printer?", author="tech")


def customer() -> TicketCustomerReplied:
    """The customer's reply that resumes the clocks."""
    return TicketCustomerReplied(comment_id=uuid.uuid4(), body="b", author="c", resumed=True)
