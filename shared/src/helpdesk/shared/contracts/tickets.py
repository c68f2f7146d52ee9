"""`ticket.*` events, written by intake (the ticket's event store is their source).

Each carries what the SLA timer, billing and notifier need, so that they rarely have to know
anything but the stream: the SLA clocks fold opened/triaged/commented/info_requested/
customer_replied/escalated/vendor_returned/resolved/closed/reopened; billing rates
time_logged against the agreement; the notifier tells people about all of them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.contracts.common import (
    Channel,
    CloseReason,
    EscalationTier,
    Payload,
    Priority,
    Resolution,
    Scope,
    TicketKind,
    TicketStatus,
    WorkType,
)
from helpdesk.shared.events import registry

#: More users than any customer has, and within every consumer's column (a PostgreSQL integer
#: holds 2,147,483,647; the SLA timer's is a bigint besides).
MAX_AFFECTED_USERS = 1_000_000_000
#: One time entry covers at most a day.
MAX_ENTRY_MINUTES = 24 * 60


@registry.register("ticket.opened")
class TicketOpened(Payload):
    """A ticket was opened. `priority` is None until triage (e-mail tickets start so)."""

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
    category: str | None = None
    severity: str | None = None
    affected_users: int | None = Field(default=None, ge=0, le=MAX_AFFECTED_USERS)
    service_class: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    reported_at: AwareDatetime
    agreement_version: int | None = None


@registry.register("ticket.triaged")
class TicketTriaged(Payload):
    """Priority, kind, scope and category set or changed (a priority change re-targets SLAs)."""

    priority: Priority
    previous_priority: Priority | None
    kind: TicketKind
    scope: Scope
    category: str | None = None


@registry.register("ticket.assigned")
class TicketAssigned(Payload):
    """The dedicated technician of the ticket."""

    technician: str
    previous: str | None = None


@registry.register("ticket.commented")
class TicketCommented(Payload):
    """A comment; a public one by staff is a response to the customer.

    `tier_response` names the escalation tier whose response this is (seed 001: only the
    tier's own response meets its escalation clock): a public reply by staff of that tier, or
    a comment that says the tier responded (`responds_for` on the command).
    """

    comment_id: UUID
    body: str
    public: bool
    by_staff: bool
    author: str
    tier_response: EscalationTier | None = None


@registry.register("ticket.info_requested")
class TicketInfoRequested(Payload):
    """Staff asked the customer for information: a public response; the ticket now waits.

    `tier_response`: the author's escalation tier, as on `TicketCommented`."""

    comment_id: UUID
    body: str
    author: str
    tier_response: EscalationTier | None = None


@registry.register("ticket.customer_replied")
class TicketCustomerReplied(Payload):
    """The customer answered (over the API or by e-mail); a waiting ticket resumes."""

    comment_id: UUID
    body: str
    author: str
    channel: Channel = "api"
    resumed: bool


@registry.register("ticket.escalated")
class TicketEscalated(Payload):
    """Escalated to engineering, a vendor (the provider's clocks pause) or management.

    `vendor` names the vendor of a `vendor` escalation (seed 001: "subject to that specific
    vendors response times"), or is None.
    """

    tier: EscalationTier
    vendor: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


@registry.register("ticket.vendor_returned")
class TicketVendorReturned(Payload):
    """The vendor handed the ticket back; the provider's clocks resume."""

    note: str = ""


@registry.register("ticket.time_logged")
class TicketTimeLogged(Payload):
    """Work booked on the ticket; billing rates it against the agreement's plan.

    `after_hours` and `solution_design` are the technician's marks; null (or absent) lets
    billing classify the entry: after hours by the agreement's business-hours calendar, and
    solution design when an incident is worked on after its resolution (docs/policies.md).
    """

    entry_id: UUID
    minutes: int = Field(gt=0, le=MAX_ENTRY_MINUTES)
    work_type: WorkType
    scope: Scope
    after_hours: bool | None = None
    worked_at: AwareDatetime
    note: str = ""
    technician: str
    kind: TicketKind
    category: str | None = None
    solution_design: bool | None = None


@registry.register("ticket.resolved")
class TicketResolved(Payload):
    """A fix or a workaround was delivered; the customer is told and may confirm."""

    resolution: Resolution
    summary: str


@registry.register("ticket.confirmed")
class TicketConfirmed(Payload):
    """The customer confirmed the resolution."""


@registry.register("ticket.closed")
class TicketClosed(Payload):
    """Closed, with the reason (standard: confirmed; or one of the non-standard closures)."""

    reason: CloseReason


@registry.register("ticket.reopened")
class TicketReopened(Payload):
    """Reopened: a new resolution cycle starts; earlier cycles stay in the history."""

    reason: str
    cycle: int = Field(ge=2)


@registry.register("ticket.flagged_partner_resolvable")
class TicketFlaggedPartnerResolvable(Payload):
    """A technician marked a closed partner ticket as one the partner should have resolved."""

    note: str = ""


@registry.register("ticket.quoted")
class TicketQuoted(Payload):
    """Staff quoted out-of-scope work (seed 000: "For out-of-scope items we will respond with a
    statement of work"): an estimate the contact approves or declines. A new quote replaces a
    pending one. `amount_cents` is in the currency of the account's plan."""

    quote_id: UUID
    minutes: int = Field(gt=0)
    amount_cents: int = Field(ge=0)
    note: str = ""


@registry.register("ticket.quote_approved")
class TicketQuoteApproved(Payload):
    """The contact approved the pending quote: the quoted work may go ahead."""

    quote_id: UUID


@registry.register("ticket.quote_declined")
class TicketQuoteDeclined(Payload):
    """The contact declined the pending quote."""

    quote_id: UUID
    reason: str = ""


#: Every `ticket.*` payload: what a projection that folds whole tickets registers for.
TICKET_EVENTS: tuple[type[Payload], ...] = (
    TicketOpened,
    TicketTriaged,
    TicketAssigned,
    TicketCommented,
    TicketInfoRequested,
    TicketCustomerReplied,
    TicketEscalated,
    TicketVendorReturned,
    TicketTimeLogged,
    TicketResolved,
    TicketConfirmed,
    TicketClosed,
    TicketReopened,
    TicketFlaggedPartnerResolvable,
    TicketQuoted,
    TicketQuoteApproved,
    TicketQuoteDeclined,
)


def status_after(status: TicketStatus | None, payload: object) -> TicketStatus:
    """A ticket's status after one of its events (`status` None: before its opening).

    The one rule: intake's ticket and the SLA timer's queue both read a ticket's status from
    its events with it, so they cannot disagree. A ticket opened without a priority is new
    until its triage; a customer's
    reply resumes only what waited on the customer (`resumed`, decided by intake when it was
    recorded); events that change no status (comments, time, quotes...) keep it.
    """
    match payload:
        case TicketOpened():
            return "open" if payload.priority else "new"
        case TicketTriaged():
            return "open" if status == "new" else _known(status)
        case TicketInfoRequested():
            return "waiting_on_customer"
        case TicketCustomerReplied(resumed=True) | TicketVendorReturned() | TicketReopened():
            return "open"
        case TicketEscalated(tier="vendor"):
            return "waiting_on_vendor"
        case TicketResolved():
            return "resolved"
        case TicketClosed():
            return "closed"
    return _known(status)


def _known(status: TicketStatus | None) -> TicketStatus:
    if status is None:
        raise ValueError("a ticket event before the ticket's opening")
    return status
