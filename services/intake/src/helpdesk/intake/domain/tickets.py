"""The ticket: its state folded from events, and the rules of every command on it.

Pure: a command function takes the current `Ticket` and the command's input and returns the
payloads of the events to record, or raises `TransitionError` with the reason a person can act
on. `fold` applies recorded events; the same fold serves the command path and the read model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from pydantic import BaseModel

from helpdesk.shared.contracts import audience
from helpdesk.shared.contracts.billing import FairUseExceeded
from helpdesk.shared.contracts.common import (
    Channel,
    CloseReason,
    EscalationTier,
    Priority,
    Resolution,
    Scope,
    TicketKind,
    TicketStatus,
    WorkType,
)
from helpdesk.shared.contracts.tickets import (
    TicketAssigned,
    TicketClosed,
    TicketCommented,
    TicketConfirmed,
    TicketCustomerReplied,
    TicketEscalated,
    TicketFlaggedPartnerResolvable,
    TicketInfoRequested,
    TicketOpened,
    TicketQuoteApproved,
    TicketQuoted,
    TicketQuoteDeclined,
    TicketReopened,
    TicketResolved,
    TicketTimeLogged,
    TicketTriaged,
    TicketVendorReturned,
    status_after,
)
from helpdesk.shared.events import registry

ACTIVE: frozenset[TicketStatus] = frozenset(
    {"new", "open", "waiting_on_customer", "waiting_on_vendor"}
)


class TransitionError(Exception):
    """A command that the ticket's state does not allow (answered with 409)."""


class MissingFieldsError(Exception):
    """Fields the agreement requires are missing (answered with 422, naming each)."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


class UnknownCategoryError(ValueError):
    """A triage category outside the agreement's scope catalogue (422 on `category`)."""


class TimelineError(ValueError):
    """An instant the ticket's history cannot take: in the future, or before what is recorded
    (422 naming `field`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


QuoteStatus = Literal["pending", "approved", "declined"]


@dataclass(frozen=True)
class Quote:
    """The ticket's latest quote for out-of-scope work (seed 000's statement of work)."""

    id: UUID
    minutes: int
    amount_cents: int
    note: str
    status: QuoteStatus
    quoted_at: datetime
    decided_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        """JSON-ready, as the ticket's view carries it."""
        return {
            "id": str(self.id),
            "minutes": self.minutes,
            "amount_cents": self.amount_cents,
            "note": self.note,
            "status": self.status,
            "quoted_at": self.quoted_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Quote:
        """The inverse of `view`."""
        decided = view["decided_at"]
        return cls(
            id=UUID(view["id"]),
            minutes=view["minutes"],
            amount_cents=view["amount_cents"],
            note=view["note"],
            status=view["status"],
            quoted_at=datetime.fromisoformat(view["quoted_at"]),
            decided_at=datetime.fromisoformat(decided) if decided else None,
        )


@dataclass(frozen=True)
class Ticket:
    """A ticket's current state."""

    id: UUID
    number: str
    account_id: UUID
    contact_id: UUID | None
    subject: str
    description: str
    channel: str
    status: TicketStatus
    priority: Priority | None
    kind: TicketKind
    scope: Scope
    category: str | None
    severity: str | None
    affected_users: int | None
    service_class: str | None
    fields: dict[str, Any]
    reported_at: datetime
    seq: int
    last_occurred_at: datetime
    #: The contact's version of the ticket: how many of its events are public, and the last
    #: one's instant (helpdesk.shared.contracts.audience).
    public_version: int
    public_updated_at: datetime
    cycle: int = 1
    assignee: str | None = None
    escalations: tuple[EscalationTier, ...] = ()
    resolution: Resolution | None = None
    resolved_at: datetime | None = None
    close_reason: CloseReason | None = None
    closed_at: datetime | None = None
    partner_resolvable: bool = False
    comments: int = 0
    public_comments: int = 0
    minutes_logged: int = 0
    quote: Quote | None = None

    def view(self) -> dict[str, Any]:
        """The ticket's whole state (JSON-ready), as staff see it; see `contact_view`."""
        return {
            "id": str(self.id),
            "number": self.number,
            "account_id": str(self.account_id),
            "contact_id": str(self.contact_id) if self.contact_id else None,
            "subject": self.subject,
            "description": self.description,
            "channel": self.channel,
            "status": self.status,
            "priority": self.priority,
            "kind": self.kind,
            "scope": self.scope,
            "category": self.category,
            "severity": self.severity,
            "affected_users": self.affected_users,
            "service_class": self.service_class,
            "fields": self.fields,
            "assignee": self.assignee,
            "reported_at": self.reported_at.isoformat(),
            "seq": self.seq,
            "cycle": self.cycle,
            "escalations": list(self.escalations),
            "resolution": self.resolution,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "close_reason": self.close_reason,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "partner_resolvable": self.partner_resolvable,
            "comments": self.comments,
            "public_comments": self.public_comments,
            "minutes_logged": self.minutes_logged,
            "quote": self.quote.view() if self.quote else None,
            "updated_at": self.last_occurred_at.isoformat(),
            "public_version": self.public_version,
            "public_updated_at": self.public_updated_at.isoformat(),
        }

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Ticket:
        """The inverse of `view`."""

        def when(key: str) -> datetime | None:
            value = view.get(key)
            return datetime.fromisoformat(value) if value else None

        reported_at = datetime.fromisoformat(view["reported_at"])
        return cls(
            id=UUID(view["id"]),
            number=view["number"],
            account_id=UUID(view["account_id"]),
            contact_id=UUID(view["contact_id"]) if view["contact_id"] else None,
            subject=view["subject"],
            description=view["description"],
            channel=view["channel"],
            status=view["status"],
            priority=view["priority"],
            kind=view["kind"],
            scope=view["scope"],
            category=view["category"],
            severity=view["severity"],
            affected_users=view["affected_users"],
            service_class=view["service_class"],
            fields=view["fields"],
            reported_at=reported_at,
            seq=view["seq"],
            last_occurred_at=when("updated_at") or reported_at,
            cycle=view["cycle"],
            assignee=view["assignee"],
            escalations=tuple(view["escalations"]),
            resolution=view["resolution"],
            resolved_at=when("resolved_at"),
            close_reason=view["close_reason"],
            closed_at=when("closed_at"),
            partner_resolvable=view["partner_resolvable"],
            comments=view["comments"],
            # Rows folded before the count existed have none until `rebuild` recounts them.
            public_comments=view.get("public_comments", 0),
            minutes_logged=view["minutes_logged"],
            quote=Quote.from_view(view["quote"]) if view.get("quote") else None,
            # Rows folded before the public version existed show the internal one until
            # `rebuild` refolds them (it was what everyone saw before).
            public_version=view.get("public_version", view["seq"]),
            public_updated_at=when("public_updated_at") or when("updated_at") or reported_at,
        )


def audience_view(view: dict[str, Any], *, staff: bool) -> dict[str, Any]:
    """A ticket's view (`Ticket.view`) for one audience, by the one rule of
    `helpdesk.shared.contracts.audience`.

    Staff see everything, and `version` is the internal `seq`. A contact sees the fold of the
    public events: `version` counts them, `updated_at` is the last one's instant, `comments`
    counts public comments, `escalations` the public tiers; no `seq`, logged time or partner flag.
    """
    if staff:
        return {**view, "version": view["seq"]}
    shown = {k: v for k, v in view.items() if k not in audience.STAFF_ONLY_TICKET_FIELDS}
    shown["comments"] = view["public_comments"]
    shown["escalations"] = audience.public_escalations(view["escalations"])
    shown["version"] = view.get("public_version", view["seq"])
    shown["updated_at"] = view.get("public_updated_at", view["updated_at"])
    return shown


def version_for(ticket: Ticket, *, staff: bool) -> int:
    """The ticket's version (its ETag) for one audience, as `audience_view` shows it."""
    return ticket.seq if staff else ticket.public_version


def audience_history(history: list[dict[str, Any]], *, staff: bool) -> list[dict[str, Any]]:
    """A ticket's event envelopes (JSON) for one audience, matching `audience_view`: a
    contact's hold the public events only, numbered 1, 2, … (the last `seq` is their version)."""
    if staff:
        return history
    public = [e for e in history if audience.is_public(e["type"], e["payload"])]
    return [{**e, "seq": position} for position, e in enumerate(public, start=1)]


def start(opened: TicketOpened, seq: int, occurred_at: datetime) -> Ticket:
    """The state right after `ticket.opened`: untriaged until it has a priority."""
    return Ticket(
        id=opened.ticket_id,
        number=opened.number,
        account_id=opened.account_id,
        contact_id=opened.contact_id,
        subject=opened.subject,
        description=opened.description,
        channel=opened.channel,
        status=status_after(None, opened),
        priority=opened.priority,
        kind=opened.kind,
        scope=opened.scope,
        category=opened.category,
        severity=opened.severity,
        affected_users=opened.affected_users,
        service_class=opened.service_class,
        fields=dict(opened.fields),
        reported_at=opened.reported_at,
        seq=seq,
        last_occurred_at=occurred_at,
        public_version=1,
        public_updated_at=occurred_at,
    )


def fold(ticket: Ticket, payload: BaseModel, seq: int, occurred_at: datetime) -> Ticket:
    """The state after one more recorded event."""
    last = max(ticket.last_occurred_at, occurred_at)
    changes = _changes(ticket, payload, occurred_at)
    changes["status"] = status_after(ticket.status, payload)
    if audience.is_public(registry.type_of(payload), payload):
        changes["public_version"] = ticket.public_version + 1
        changes["public_updated_at"] = max(ticket.public_updated_at, occurred_at)
    return _evolve(ticket, seq=seq, last_occurred_at=last, **changes)


def _evolve(ticket: Ticket, **changes: Any) -> Ticket:
    """`dataclasses.replace` without re-running `__init__`: a rebuild folds every ticket event,
    and for a dataclass this wide `replace` costs 17 µs a copy where this costs 2 µs. Only
    for changes `_changes` computed, which are the fields' own types."""
    evolved = object.__new__(Ticket)
    evolved.__dict__.update(ticket.__dict__, **changes)
    return evolved


def _changes(t: Ticket, payload: BaseModel, occurred_at: datetime) -> dict[str, Any]:
    """What one event after opening changes in a ticket."""
    match payload:
        case TicketTriaged():
            return {
                "priority": payload.priority,
                "kind": payload.kind,
                "scope": payload.scope,
                "category": payload.category,
            }
        case TicketAssigned():
            return {"assignee": payload.technician}
        case TicketCommented():
            public = t.public_comments + (1 if payload.public else 0)
            return {"comments": t.comments + 1, "public_comments": public}
        case TicketInfoRequested() | TicketCustomerReplied():
            return {"comments": t.comments + 1, "public_comments": t.public_comments + 1}
        case TicketEscalated():
            return {"escalations": (*t.escalations, payload.tier)}
        case TicketVendorReturned():
            return {}
        case TicketTimeLogged():
            return {"minutes_logged": t.minutes_logged + payload.minutes}
        case TicketResolved():
            return {
                "resolution": payload.resolution,
                "resolved_at": occurred_at,
            }
        case TicketConfirmed():
            return {}
        case TicketClosed():
            return {"close_reason": payload.reason, "closed_at": occurred_at}
        case TicketReopened():
            return {
                "cycle": payload.cycle,
                "resolution": None,
                "resolved_at": None,
                "close_reason": None,
                "closed_at": None,
            }
        case TicketFlaggedPartnerResolvable():
            return {"partner_resolvable": True}
        case TicketQuoted():
            quote = Quote(
                payload.quote_id,
                payload.minutes,
                payload.amount_cents,
                payload.note,
                "pending",
                occurred_at,
            )
            return {"quote": quote}
        case TicketQuoteApproved() if t.quote is not None:
            return {"quote": replace(t.quote, status="approved", decided_at=occurred_at)}
        case TicketQuoteDeclined() if t.quote is not None:
            return {"quote": replace(t.quote, status="declined", decided_at=occurred_at)}
        case TicketQuoteApproved() | TicketQuoteDeclined():
            return {}
    raise TypeError(f"not a ticket event after opening: {type(payload).__name__}")


# -- commands -------------------------------------------------------------------------------


def _require_active(ticket: Ticket, action: str) -> None:
    if ticket.status not in ACTIVE:
        raise TransitionError(f"cannot {action} a {ticket.status} ticket")


def check_required(required: list[str], values: dict[str, Any]) -> None:
    """Raise `MissingFieldsError` naming every required field that is absent or blank."""
    missing = [
        name for name in required if values.get(name) is None or str(values.get(name)).strip() == ""
    ]
    if missing:
        raise MissingFieldsError(missing)


def check_required_on_open(required: list[str], channel: Channel, values: dict[str, Any]) -> None:
    """The agreement's required fields on opening, named in `MissingFieldsError` if missing.

    E-mail tickets are exempt: a technician reviews them before anything else happens (seed
    003, 7.2), and the sender of a message cannot be asked to fill in a form.
    """
    if channel != "email":
        check_required(required, values)


def not_in_future(field: str, instant: datetime, now: datetime) -> datetime:
    """`instant`, unless it lies after `now` (`TimelineError` on `field`)."""
    if instant > now:
        raise TimelineError(field, "lies in the future")
    return instant


def opening_instant(
    reported_at: datetime | None, occurred_at: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """When a ticket was reported and when its opening happened, as `(reported_at, opened_at)`.

    A live ticket is reported and opened now. An imported one is reported when the import says
    (never in the future) and opens then too, unless the import gives `occurred_at`; it never
    opens before it was reported, or its later back-dated commands would lie before it.
    """
    if occurred_at is not None:
        not_in_future("occurred_at", occurred_at, now)
    reported = not_in_future("reported_at", reported_at or occurred_at or now, now)
    return reported, max(occurred_at or reported, reported)


def command_instant(ticket: Ticket, occurred_at: datetime, recorded_at: datetime) -> datetime:
    """When a command on `ticket` happens: a ticket's history never goes backwards.

    A back-dated (imported) command that lies before the ticket's last event is refused. A live
    command that read the clock just before a concurrent one committed happens right after
    that one instead.
    """
    if occurred_at >= ticket.last_occurred_at:
        return occurred_at
    if occurred_at != recorded_at:
        raise TimelineError("occurred_at", "is before the ticket's last recorded event")
    return ticket.last_occurred_at


def check_worked_at(ticket: Ticket, worked_at: datetime) -> None:
    """Work on a ticket follows its report (an import back-dates both).

    Compared to the minute, since clients send worked_at in whole seconds or minutes.
    """
    if worked_at < ticket.reported_at.replace(second=0, microsecond=0):
        raise TimelineError("worked_at", "lies before the ticket was reported")


def triage(
    ticket: Ticket,
    *,
    priority: Priority,
    kind: TicketKind,
    scope: Scope | None,
    category: str | None,
    in_scope: list[str],
    out_of_scope: list[str],
) -> TicketTriaged:
    """Set priority, kind, scope and category; the category must be in the scope catalogue.

    With no scope given, the catalogue decides it from the category.
    """
    _require_active(ticket, "triage")
    catalogue = [*in_scope, *out_of_scope]
    if category is not None and catalogue and category not in catalogue:
        raise UnknownCategoryError(
            f"category {category!r} is not in the agreement's scope catalogue"
        )
    if scope is None:
        scope = "out" if category is not None and category in out_of_scope else "in"
    return TicketTriaged(
        priority=priority,
        previous_priority=ticket.priority,
        kind=kind,
        scope=scope,
        category=category,
    )


def assign(ticket: Ticket, technician: str) -> TicketAssigned:
    """Give the ticket its dedicated technician."""
    _require_active(ticket, "assign")
    return TicketAssigned(technician=technician, previous=ticket.assignee)


def tier_response(
    ticket: Ticket,
    *,
    author_tier: EscalationTier | None,
    public: bool,
    responds_for: EscalationTier | None = None,
) -> EscalationTier | None:
    """Whose escalation response a staff comment is (seed 001: "Tickets that must be forward to
    Engineering, are allotted a 72 business hour response time" -- only that tier's own
    response meets it).

    `responds_for` is the explicit statement that the tier responded (e.g. the front line
    relays Engineering's answer); it needs an escalation to that tier. Otherwise a public reply
    by staff of a tier is that tier's response; an internal note is no response.
    """
    if responds_for is not None:
        if responds_for not in ticket.escalations:
            raise TransitionError(
                f"the ticket was not escalated to {responds_for}, so it cannot have responded"
            )
        return responds_for
    return author_tier if public else None


def comment(
    ticket: Ticket,
    *,
    comment_id: UUID,
    body: str,
    public: bool,
    by_staff: bool,
    author: str,
    tier: EscalationTier | None = None,
) -> TicketCommented:
    """A comment; allowed on any ticket that is not closed. `tier`: see `tier_response`."""
    if ticket.status == "closed":
        raise TransitionError("cannot comment on a closed ticket; reopen it first")
    return TicketCommented(
        comment_id=comment_id,
        body=body,
        public=public,
        by_staff=by_staff,
        author=author,
        tier_response=tier,
    )


def request_info(
    ticket: Ticket,
    *,
    comment_id: UUID,
    body: str,
    author: str,
    tier: EscalationTier | None = None,
) -> TicketInfoRequested:
    """Ask the customer; the ticket then waits on them (its clocks pause). `tier`: the author's
    escalation tier (a public response of that tier)."""
    if ticket.status not in {"new", "open"}:
        raise TransitionError(f"cannot request information on a {ticket.status} ticket")
    return TicketInfoRequested(comment_id=comment_id, body=body, author=author, tier_response=tier)


def customer_reply(
    ticket: Ticket, *, comment_id: UUID, body: str, author: str, channel: Channel
) -> TicketCustomerReplied:
    """The customer's answer; a ticket waiting on them resumes."""
    if ticket.status == "closed":
        raise TransitionError("the ticket is closed; reopen it to continue")
    return TicketCustomerReplied(
        comment_id=comment_id,
        body=body,
        author=author,
        channel=channel,
        resumed=ticket.status == "waiting_on_customer",
    )


def escalate(
    ticket: Ticket,
    *,
    tier: EscalationTier,
    vendor: str | None = None,
    fields: dict[str, Any],
    required: list[str],
) -> TicketEscalated:
    """Escalate; the agreement may require fields on every escalation (seed 001). A vendor
    escalation may name the vendor, whose response time the agreement may give."""
    _require_active(ticket, "escalate")
    if tier == "vendor" and ticket.status == "waiting_on_vendor":
        raise TransitionError("the ticket is already with the vendor")
    # A required name is a top-level ticket field (affected_users) or a key of `fields`.
    check_required(required, {**ticket.view(), **ticket.fields, **fields})
    return TicketEscalated(tier=tier, vendor=vendor, fields=fields)


def vendor_return(ticket: Ticket, note: str) -> TicketVendorReturned:
    """The vendor hands the ticket back."""
    if ticket.status != "waiting_on_vendor":
        raise TransitionError("the ticket is not with a vendor")
    return TicketVendorReturned(note=note)


def log_time(
    ticket: Ticket,
    *,
    entry_id: UUID,
    minutes: int,
    work_type: WorkType,
    scope: Scope | None,
    after_hours: bool | None,
    worked_at: datetime,
    note: str,
    technician: str,
    solution_design: bool | None = None,
) -> TicketTimeLogged:
    """Book work; allowed in any state (late entries on closed tickets are billed too)."""
    return TicketTimeLogged(
        entry_id=entry_id,
        minutes=minutes,
        work_type=work_type,
        scope=scope or ticket.scope,
        after_hours=after_hours,
        worked_at=worked_at,
        note=note,
        technician=technician,
        kind=ticket.kind,
        category=ticket.category,
        solution_design=solution_design,
    )


def resolve(ticket: Ticket, *, resolution: Resolution, summary: str) -> TicketResolved:
    """Deliver a fix or a workaround."""
    _require_active(ticket, "resolve")
    return TicketResolved(resolution=resolution, summary=summary)


def confirm(ticket: Ticket) -> list[BaseModel]:
    """The customer confirms: the standard closure."""
    if ticket.status != "resolved":
        raise TransitionError(
            f"only a resolved ticket can be confirmed; this one is {ticket.status}"
        )
    return [TicketConfirmed(), TicketClosed(reason="confirmed")]


def email_reply(ticket: Ticket, *, comment_id: UUID, body: str, author: str) -> list[BaseModel]:
    """The customer wrote about the ticket by e-mail: the reply, after reopening a closed ticket.

    Seed 003, 4.2: a closed ticket may be reopened if the problem persists, and the customer
    writing about it again is that. Any other state takes the reply as it is.
    """
    if ticket.status != "closed":
        return [
            customer_reply(ticket, comment_id=comment_id, body=body, author=author, channel="email")
        ]
    reopened = reopen(ticket, "customer replied by e-mail")
    after = fold(ticket, reopened, ticket.seq + 1, ticket.last_occurred_at)
    reply = customer_reply(after, comment_id=comment_id, body=body, author=author, channel="email")
    return [reopened, reply]


def close(ticket: Ticket, reason: CloseReason) -> TicketClosed:
    """Close with a reason; `confirmed` needs a resolved ticket, the others close any open one."""
    if ticket.status == "closed":
        raise TransitionError("the ticket is already closed")
    if reason == "confirmed" and ticket.status != "resolved":
        raise TransitionError("reason 'confirmed' needs a resolved ticket")
    return TicketClosed(reason=reason)


#: Where a ticket waits on the customer's answer to an inquiry: an information request, or a
#: resolution awaiting the customer's confirmation (seed 003 § 4.2.2 counts "inquires (3+) ...
#: to confirm whether the problem has been satisfactorily resolved").
AWAITING_CUSTOMER: frozenset[TicketStatus] = frozenset({"waiting_on_customer", "resolved"})


def auto_close(ticket: Ticket, request_seq: int) -> TicketClosed | None:
    """The SLA timer's follow-ups went unanswered: the closure (reason `no_response`), or None.

    None when the ticket moved on since the timer saw it (`request_seq` is not its seq: the
    customer answered, or anything else happened) or no longer waits on the customer (already
    closed included, so a repeated request closes nothing twice).
    """
    if ticket.seq != request_seq or ticket.status not in AWAITING_CUSTOMER:
        return None
    return close(ticket, "no_response")


def reopen(ticket: Ticket, reason: str) -> TicketReopened:
    """The problem persists: a new resolution cycle."""
    if ticket.status not in {"resolved", "closed"}:
        raise TransitionError(
            f"only a resolved or closed ticket can be reopened; this one is {ticket.status}"
        )
    return TicketReopened(reason=reason, cycle=ticket.cycle + 1)


def flag_partner_resolvable(ticket: Ticket, note: str) -> TicketFlaggedPartnerResolvable:
    """Mark a closed ticket as one the partner should have resolved itself (seed 001)."""
    if ticket.status != "closed":
        raise TransitionError("only a closed ticket can be flagged as partner-resolvable")
    if ticket.partner_resolvable:
        raise TransitionError("the ticket is already flagged")
    return TicketFlaggedPartnerResolvable(note=note)


def quote(
    ticket: Ticket, *, quote_id: UUID, minutes: int, amount_cents: int, note: str
) -> TicketQuoted:
    """A quote for out-of-scope work (seed 000: "For out-of-scope items we will respond with a
    statement of work"); it replaces a pending one."""
    _require_active(ticket, "quote")
    if ticket.scope != "out":
        raise TransitionError("only out-of-scope work is quoted; triage the ticket out of scope")
    return TicketQuoted(quote_id=quote_id, minutes=minutes, amount_cents=amount_cents, note=note)


def _pending_quote(ticket: Ticket, action: str) -> Quote:
    if ticket.quote is None or ticket.quote.status != "pending":
        raise TransitionError(f"cannot {action}: the ticket has no pending quote")
    return ticket.quote


def approve_quote(ticket: Ticket) -> TicketQuoteApproved:
    """The contact approves the pending quote."""
    return TicketQuoteApproved(quote_id=_pending_quote(ticket, "approve a quote").id)


def decline_quote(ticket: Ticket, reason: str) -> TicketQuoteDeclined:
    """The contact declines the pending quote."""
    return TicketQuoteDeclined(quote_id=_pending_quote(ticket, "decline a quote").id, reason=reason)


#: The author of the public notes intake writes on billing's behalf (seed 002's fair use).
BILLING_NOTE_AUTHOR = "system:billing"


def fair_use_note(ticket: Ticket, exceeded: FairUseExceeded) -> TicketCommented:
    """Seed 002's "If the ticket can't be finished in 30 minutes or less limited support may
    apply", told on the ticket: a public note, not a staff response (it meets no clock)."""
    limit, used = exceeded.limit_minutes, exceeded.used_minutes
    if exceeded.cap == "per_day":
        reached = (
            f"Remote work on {exceeded.day} has reached {used} minutes: more than the {limit} "
            "minutes a day the plan covers under fair use."
        )
    else:
        reached = (
            f"Work on this ticket has reached {used} minutes: more than the {limit} minutes a "
            "ticket the plan covers under fair use."
        )
    return comment(
        ticket,
        # One note per cap the entry took over, the same whenever it is decided.
        comment_id=uuid5(exceeded.entry_id, exceeded.cap),
        body=f"{reached} If the ticket can't be finished in {limit} minutes or less, limited "
        "support may apply.",
        public=True,
        by_staff=False,
        author=BILLING_NOTE_AUTHOR,
    )
