"""What the pages show, in plain words: times in the viewer's zone, SLA clocks, the
conversation of a ticket. Pure functions of the APIs' answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CLOCK_NAMES = {
    "response": "First response",
    "next_reply": "Next reply",
    "resolution": "Resolution",
    "escalation": "Escalation",
}


def zone(name: str | None) -> ZoneInfo:
    """The time zone named, UTC when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(value: str | None, tz: ZoneInfo) -> str:
    """An instant of the API as the viewer reads it: `Mon 7 Dec 14:30 CET`."""
    if not value:
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz)
    return f"{at:%a} {at.day} {at:%b %H:%M} {at.tzname()}"


def clock_sentences(sla: dict[str, Any] | None, tz: ZoneInfo) -> list[str]:
    """The ticket's SLA clocks in words: `First response due by Mon 7 Dec 14:30 CET`."""
    if not sla:
        return []
    sentences = []
    for clock in sla.get("clocks") or []:
        name = CLOCK_NAMES.get(str(clock.get("kind")), str(clock.get("kind", "SLA")).title())
        status = str(clock.get("status") or "")
        due = when(clock.get("due_at"), tz)
        if status == "met":
            sentences.append(f"{name} given in time.")
        elif clock.get("breached_at") or status == "breached":
            sentences.append(f"{name} was due by {due}: overdue.")
        elif clock.get("paused") or status == "paused":
            sentences.append(f"{name} paused while we wait for your answer.")
        elif due:
            sentences.append(f"{name} due by {due}.")
    return sentences


@dataclass(frozen=True)
class Message:
    """One entry of a ticket's conversation."""

    who: str
    at: str
    text: str
    internal: bool = False


def conversation(events: list[dict[str, Any]], tz: ZoneInfo) -> list[Message]:
    """The messages of a ticket's history, oldest first (the APIs already leave out what the
    caller may not see)."""
    messages = []
    for event in events:
        payload = event.get("payload") or {}
        kind, at = event.get("type"), when(event.get("occurred_at"), tz)
        if kind == "ticket.opened":
            text = payload.get("description") or payload.get("subject", "")
            messages.append(Message("Customer", at, f"Opened: {text}"))
        elif kind == "ticket.commented":
            public = bool(payload.get("public"))
            who = "Support" if public else "Internal note"
            messages.append(Message(who, at, str(payload.get("body", "")), internal=not public))
        elif kind == "ticket.info_requested":
            messages.append(Message("Support", at, str(payload.get("body", ""))))
        elif kind == "ticket.customer_replied":
            messages.append(Message("Customer", at, str(payload.get("body", ""))))
        elif kind == "ticket.resolved":
            messages.append(Message("Support", at, f"Resolved: {payload.get('summary', '')}"))
        elif kind == "ticket.reopened":
            messages.append(Message("Customer", at, "Reopened."))
    return messages


def size(count: int) -> str:
    """A number of bytes as people read it: `512 bytes`, `12.5 KB`, `3.1 MB`."""
    if count < 1000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1000:.1f} KB"
    return f"{count / 1_000_000:.1f} MB"


def attachments(ticket: dict[str, Any]) -> list[str]:
    """The files a ticket names (intake keeps their names, types and sizes, not the files), in
    words: `report.pdf (application/pdf, 12.5 KB)`, and how many more were not listed."""
    fields = ticket.get("fields") or {}
    lines = [
        f"{a.get('filename') or 'unnamed'} ({a.get('content_type', '')}, {size(a.get('size', 0))})"
        for a in fields.get("attachments") or []
    ]
    more = fields.get("attachments_not_listed") or {}
    if more.get("count"):
        lines.append(f"{more['count']} more, {size(more.get('bytes', 0))} in all, not listed")
    return lines


def percent(share: float | None) -> str:
    """A share of the SLA report (0..1) as a percentage, or a dash when nothing ended."""
    return "–" if share is None else f"{share * 100:.1f} %"


def money(cents: int, currency: str) -> str:
    """An amount of the API (integer cents) as people read it: `USD 1,234.50`."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{currency} {sign}{whole:,}.{rest:02d}"


def pending_quote(ticket: dict[str, Any]) -> str | None:
    """The ticket's quote waiting for the customer's answer, in words (seed 000's statement
    of work), or None."""
    quote = ticket.get("quote")
    if not quote or quote.get("status") != "pending":
        return None
    terms = f"{quote['minutes']} minutes of work for {money(quote['amount_cents'], '').strip()}"
    return f"{terms}: {quote['note']}" if quote.get("note") else terms


def cents(amount: str) -> int | str:
    """An amount typed as `600` or `600.50`, in cents; the text as it is when it is none (the
    API then names the field)."""
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        return amount
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        return amount
    return int(value * 100)


#: The ticket-opening fields the form knows as such; any other required field is a custom one.
TYPED_FIELDS = {"category", "severity", "affected_users", "service_class"}
FIELD_LABELS = {"affected_users": "Number of affected users", "service_class": "Service class"}


def field_label(name: str) -> str:
    """A required field's label."""
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


def ticket_body(form: dict[str, str], account_id: str, required: list[str]) -> dict[str, Any]:
    """The `POST /v1/tickets` body of the support form (empty fields left out, so that the API
    names what is missing)."""
    body: dict[str, Any] = {
        "account_id": account_id,
        "subject": form.get("subject", "").strip(),
        "description": form.get("description", "").strip(),
        "channel": "web",
    }
    if form.get("priority"):
        body["priority"] = form["priority"]
    custom: dict[str, Any] = {}
    for name in required:
        value = form.get(name, "").strip()
        if not value:
            continue
        if name == "affected_users":
            body[name] = int(value) if value.isdigit() else value
        elif name in TYPED_FIELDS:
            body[name] = value
        else:
            custom[name] = value
    if custom:
        body["fields"] = custom
    if not body["subject"]:
        del body["subject"]
    return body
