"""Which e-mails an event produces, as data: recipient role, template, subject, threading.

Pure: the service layer passes the event and what it knows of the ticket (number, subject,
contact), resolves the recipient role to addresses, renders the template and sends.

Threading: every ticket mail has `Message-ID <HD-000123.{event_id}@{domain}>` (stable, so a
resend after a crash is recognisably the same message), and `In-Reply-To`/`References`
`<HD-000123@{domain}>`, the ticket's root; its Subject starts with `[HD-000123]`, which
intake's e-mail intake (`ticket_number_in`) threads a reply back by.

Rules:
- imported history (actor type `import`) sends nothing, nor do events without the facts a
  mail needs (a ticket mail without a known ticket, a contact mail without a contact);
- `ticket.opened` → the ticket contact gets the number (seed 003);
- `ticket.commented` public by staff, `ticket.info_requested` → the ticket contact;
- `ticket.resolved` → the ticket contact, asked to confirm;
- `sla.follow_up_due` → the ticket contact, a reminder; `ticket.closed` with reason
  `no_response` → the ticket contact, the auto-close notice;
- `sla.breached` (payload `kind`) of the resolution clock (the escalation threshold) or of
  the response clock → the provider's managers; `next_reply` and `escalation` clocks mail no one;
- `sla.breach_retracted` of such a clock → the managers, a short correction replying to the
  breach's mail (it retracts a breach that was mailed: same clocks, and a retraction carries
  its breach's actor, so an imported breach's retraction mails no one either);
- `account.partner_warning_issued` → the partner's key contacts (seed 001), and
  `account.partner_margin_revoked` likewise;
- `billing.invoice_finalized` → the account's billing contacts;
- `billing.budget_reviewed` → the account's billing contacts and the plan's Technical Account
  Manager (seed 004's quarterly review), unless it is `catching_up` on an earlier quarter;
- `ticket.quoted` → the ticket contact, asked to approve or decline the quote (seed 000);
- `billing.fair_use_exceeded` → the contact of the ticket whose work went over the cap (seed
  002: "If the ticket can't be finished in 30 minutes or less limited support may apply"),
  unless an imported time entry raised it;
- `account.password_reset_requested` → the person at the address the reset was asked for,
  the portal's link to choose a new password;
- `daily_digest` → the managers, tickets at risk or breached (not event-driven).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

DEFAULT_DOMAIN = "helpdesk.local"
MAX_SUBJECT_TEXT = 150
PROVIDER_ACCOUNT = UUID(int=0)

#: `person`: the address in the event itself (`email`), whoever has it; `account_manager`: the
#: staff member the intent names (`staff_id`).
RecipientRole = Literal[
    "ticket_contact", "managers", "key_contacts", "billing_contacts", "person", "account_manager"
]
MailKind = Literal[
    "ticket_opened",
    "staff_reply",
    "info_requested",
    "resolved",
    "follow_up",
    "auto_closed",
    "response_breached",
    "resolution_breached",
    "breach_retracted",
    "partner_warning",
    "partner_margin_revoked",
    "invoice_final",
    "fair_use",
    "budget_review",
    "quote",
    "daily_digest",
    "password_reset",
]


@dataclass(frozen=True)
class TicketFacts:
    """What the notifier's projection knows of a ticket."""

    ticket_id: UUID
    number: str  # `HD-000123`
    subject: str
    account_id: UUID
    contact_id: UUID | None = None
    priority: str | None = None


@dataclass(frozen=True)
class MailEvent:
    """The parts of an event the mail rules read."""

    event_id: UUID
    type: str
    account_id: UUID
    occurred_at: datetime
    actor_type: str = "system"
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MailIntent:
    """One e-mail to send: to whom (a role), with which template, subject and threading."""

    kind: MailKind
    template: str  # rendered as `{template}.txt` and `{template}.html`
    recipient: RecipientRole
    account_id: UUID
    subject: str
    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    ticket_id: UUID | None = None
    contact_id: UUID | None = None  # for `ticket_contact`
    staff_id: UUID | None = None  # for `account_manager`
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """Threading headers, plus RFC 3834's marker so auto-responders do not answer."""
        headers = {"Message-ID": self.message_id, "Auto-Submitted": "auto-generated"}
        if self.in_reply_to is not None:
            headers["In-Reply-To"] = self.in_reply_to
        if self.references:
            headers["References"] = " ".join(self.references)
        return headers


def one_line(text: str, limit: int = MAX_SUBJECT_TEXT) -> str:
    """Header-safe text: whitespace (CR/LF included) collapsed, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def ticket_root_id(number: str, domain: str = DEFAULT_DOMAIN) -> str:
    """The Message-ID every mail of a ticket replies to: `<HD-000123@helpdesk.local>`."""
    return f"<{number}@{domain}>"


def ticket_message_id(number: str, event_id: UUID, domain: str = DEFAULT_DOMAIN) -> str:
    """The Message-ID of the mail an event causes: `<HD-000123.{event_id}@helpdesk.local>`."""
    return f"<{number}.{event_id}@{domain}>"


def ticket_subject(number: str, label: str | None, subject: str) -> str:
    """`[HD-000123] Label: subject` (the bracketed number first, where intake looks)."""
    text = one_line(subject) or "(no subject)"
    return f"[{number}] {label}: {text}" if label else f"[{number}] {text}"


def _ticket_mail(
    kind: MailKind,
    label: str | None,
    recipient: RecipientRole,
    event: MailEvent,
    ticket: TicketFacts,
    domain: str,
    extra: Mapping[str, Any] | None = None,
) -> MailIntent:
    root = ticket_root_id(ticket.number, domain)
    return MailIntent(
        kind=kind,
        template=kind,
        recipient=recipient,
        account_id=ticket.account_id,
        subject=ticket_subject(ticket.number, label, ticket.subject),
        message_id=ticket_message_id(ticket.number, event.event_id, domain),
        in_reply_to=root,
        references=(root,),
        ticket_id=ticket.ticket_id,
        contact_id=ticket.contact_id if recipient == "ticket_contact" else None,
        context={
            "ticket": {
                "id": str(ticket.ticket_id),
                "number": ticket.number,
                "subject": ticket.subject,
                "priority": ticket.priority,
            },
            "event": dict(event.payload),
            "occurred_at": event.occurred_at.isoformat(),
            **(extra or {}),
        },
    )


def _account_mail(
    kind: MailKind, subject: str, recipient: RecipientRole, event: MailEvent, domain: str
) -> MailIntent:
    return MailIntent(
        kind=kind,
        template=kind,
        recipient=recipient,
        account_id=event.account_id,
        subject=one_line(subject),
        message_id=f"<{kind}.{event.event_id}@{domain}>",
        context={"event": dict(event.payload), "occurred_at": event.occurred_at.isoformat()},
    )


def _clock_kind(payload: Mapping[str, Any]) -> str | None:
    """The breached clock's kind when it is one management hears of (`sla.breached.kind`);
    next-reply and escalation-tier clocks are steering signals without a mail."""
    value = payload.get("kind")
    return str(value) if value in {"response", "resolution"} else None


def mails_for(
    event: MailEvent, ticket: TicketFacts | None = None, *, domain: str = DEFAULT_DOMAIN
) -> tuple[MailIntent, ...]:
    """The e-mails `event` causes (none for imported history or unknown types)."""
    if event.actor_type == "import":
        return ()
    payload = event.payload
    type_ = event.type

    if type_ == "account.partner_warning_issued":
        return (
            _account_mail(
                "partner_warning",
                "Warning: excessive escalations to our support",
                "key_contacts",
                event,
                domain,
            ),
        )
    if type_ == "account.partner_margin_revoked":
        return (
            _account_mail(
                "partner_margin_revoked",
                "Your partner margin is suspended",
                "key_contacts",
                event,
                domain,
            ),
        )
    if type_ == "account.password_reset_requested":
        return (_account_mail("password_reset", "Choose a new password", "person", event, domain),)
    if type_ == "billing.invoice_finalized":
        period = one_line(str(payload.get("period") or ""), 20)
        subject = f"Your invoice for {period}" if period else "Your invoice"
        return (_account_mail("invoice_final", subject, "billing_contacts", event, domain),)
    if type_ == "billing.budget_reviewed" and payload.get("catching_up") is not True:
        quarter = one_line(str(payload.get("quarter") or ""), 20)
        subject = f"Your support budget review for {quarter}" if quarter else "Budget review"
        to_billing = _account_mail("budget_review", subject, "billing_contacts", event, domain)
        manager = payload.get("technical_account_manager")
        if not manager:
            return (to_billing,)
        to_manager = replace(
            to_billing,
            recipient="account_manager",
            staff_id=UUID(str(manager)),
            message_id=f"<budget_review.account_manager.{event.event_id}@{domain}>",
        )
        return (to_billing, to_manager)

    if ticket is None:
        return ()
    to_contact = ticket.contact_id is not None

    if type_ == "ticket.opened" and to_contact:
        return (_ticket_mail("ticket_opened", "Received", "ticket_contact", event, ticket, domain),)
    if type_ == "ticket.commented" and to_contact:
        if payload.get("public") is True and payload.get("by_staff") is True:
            return (
                _ticket_mail("staff_reply", "New reply", "ticket_contact", event, ticket, domain),
            )
        return ()
    if type_ == "ticket.info_requested" and to_contact:
        label = "Information needed"
        return (_ticket_mail("info_requested", label, "ticket_contact", event, ticket, domain),)
    if type_ == "ticket.resolved" and to_contact:
        label = "Resolved, please confirm"
        return (_ticket_mail("resolved", label, "ticket_contact", event, ticket, domain),)
    if type_ == "sla.follow_up_due" and to_contact:
        reminder = payload.get("reminder")
        label = f"Reminder {reminder}" if isinstance(reminder, int) else "Reminder"
        label += ": we are waiting for your reply"
        return (_ticket_mail("follow_up", label, "ticket_contact", event, ticket, domain),)
    if type_ == "billing.fair_use_exceeded" and to_contact and payload.get("imported") is not True:
        label = "Limited support may apply"
        return (_ticket_mail("fair_use", label, "ticket_contact", event, ticket, domain),)
    if type_ == "ticket.quoted" and to_contact:
        label = "Quote for your approval"
        return (_ticket_mail("quote", label, "ticket_contact", event, ticket, domain),)
    if type_ == "ticket.closed" and to_contact and payload.get("reason") == "no_response":
        label = "Closed without reply"
        return (_ticket_mail("auto_closed", label, "ticket_contact", event, ticket, domain),)
    if type_ == "sla.breach_retracted" and _clock_kind(payload) is not None:
        return (_breach_correction(event, ticket, domain),)
    if type_ == "sla.breached":
        clock = _clock_kind(payload)
        priority = f" ({ticket.priority})" if ticket.priority else ""
        if clock == "resolution":
            label = f"Escalation threshold passed{priority}"
            return (_ticket_mail("resolution_breached", label, "managers", event, ticket, domain),)
        if clock == "response":
            label = f"Response target breached{priority}"
            return (_ticket_mail("response_breached", label, "managers", event, ticket, domain),)
    return ()


def _breach_correction(event: MailEvent, ticket: TicketFacts, domain: str) -> MailIntent:
    """The managers' correction of a breach mail: it replies to that mail, in the ticket's
    thread."""
    priority = f" ({ticket.priority})" if ticket.priority else ""
    label = f"Breach retracted{priority}"
    intent = _ticket_mail("breach_retracted", label, "managers", event, ticket, domain)
    breach = event.payload.get("breach_event_id")
    if breach is None:
        return intent
    breach_mail = ticket_message_id(ticket.number, UUID(str(breach)), domain)
    return replace(intent, in_reply_to=breach_mail, references=(*intent.references, breach_mail))


def intent_document(intent: MailIntent) -> dict[str, Any]:
    """What a mail row keeps of its intent, to render and send it later."""
    return {
        "kind": intent.kind,
        "template": intent.template,
        "recipient": intent.recipient,
        "account_id": str(intent.account_id),
        "subject": intent.subject,
        "message_id": intent.message_id,
        "in_reply_to": intent.in_reply_to,
        "references": list(intent.references),
        "ticket_id": str(intent.ticket_id) if intent.ticket_id else None,
        "contact_id": str(intent.contact_id) if intent.contact_id else None,
        "staff_id": str(intent.staff_id) if intent.staff_id else None,
        "context": intent.context,
    }


def intent_from_document(document: dict[str, Any]) -> MailIntent:
    """The intent a mail row keeps."""
    return MailIntent(
        kind=document["kind"],
        template=document["template"],
        recipient=document["recipient"],
        account_id=UUID(document["account_id"]),
        subject=document["subject"],
        message_id=document["message_id"],
        in_reply_to=document["in_reply_to"],
        references=tuple(document["references"]),
        ticket_id=UUID(document["ticket_id"]) if document["ticket_id"] else None,
        contact_id=UUID(document["contact_id"]) if document["contact_id"] else None,
        staff_id=UUID(document["staff_id"]) if document.get("staff_id") else None,
        context=document["context"],
    )


DigestStatus = Literal["at_risk", "breached"]


@dataclass(frozen=True)
class DigestItem:
    """One ticket in the managers' daily digest."""

    number: str
    subject: str
    account_name: str
    priority: str | None
    clock: str  # response | resolution
    status: DigestStatus
    due_at: datetime


def daily_digest(
    day: date,
    items: Sequence[DigestItem],
    *,
    account_id: UUID = PROVIDER_ACCOUNT,
    domain: str = DEFAULT_DOMAIN,
    send_empty: bool = False,
) -> MailIntent | None:
    """The managers' digest of `day`: breached tickets first, then at risk, by due time.

    None when nothing is at risk and `send_empty` is False. Its Message-ID depends on the
    day only, so a second run of the same day's digest is recognisably the same message.
    """
    if not items and not send_empty:
        return None
    ordered = sorted(items, key=lambda i: (i.status != "breached", i.due_at, i.number))
    breached = sum(1 for i in ordered if i.status == "breached")
    at_risk = len(ordered) - breached
    return MailIntent(
        kind="daily_digest",
        template="daily_digest",
        recipient="managers",
        account_id=account_id,
        subject=f"Helpdesk digest {day.isoformat()}: {breached} breached, {at_risk} at risk",
        message_id=f"<digest.{day.isoformat()}@{domain}>",
        context={
            "day": day.isoformat(),
            "breached": breached,
            "at_risk": at_risk,
            "items": [
                {
                    "number": i.number,
                    "subject": one_line(i.subject),
                    "account_name": i.account_name,
                    "priority": i.priority,
                    "clock": i.clock,
                    "status": i.status,
                    "due_at": i.due_at.isoformat(),
                }
                for i in ordered
            ],
        },
    )
