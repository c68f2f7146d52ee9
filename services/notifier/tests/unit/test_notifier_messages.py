"""Which e-mails events produce, and that their subjects and headers thread back to intake."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.intake.domain.email import ticket_number_in
from helpdesk.notifier.domain.messages import (
    DigestItem,
    MailEvent,
    TicketFacts,
    daily_digest,
    intent_document,
    intent_from_document,
    mails_for,
    one_line,
    ticket_subject,
)

pytestmark = pytest.mark.unit

ACCOUNT = UUID("00000000-0000-0000-0000-00000000acbe")
CONTACT = UUID("00000000-0000-0000-0000-0000000000c1")
TICKET = TicketFacts(
    ticket_id=UUID("00000000-0000-0000-0000-0000000000a1"),
    number="HD-000123",
    subject="Printer on fire",
    account_id=ACCOUNT,
    contact_id=CONTACT,
    priority="P2",
)
EVENT_ID = UUID("0190a3c4-0000-7000-8000-000000000001")
AT = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


def _event(type_: str, actor: str = "staff", **payload: Any) -> MailEvent:
    return MailEvent(
        event_id=EVENT_ID,
        type=type_,
        account_id=ACCOUNT,
        occurred_at=AT,
        actor_type=actor,
        payload=payload,
    )


CONTACT_MAILS = [
    (_event("ticket.opened", actor="contact", description="Smoke"), "ticket_opened"),
    (_event("ticket.commented", body="On it", public=True, by_staff=True), "staff_reply"),
    (_event("ticket.info_requested", body="Which floor?"), "info_requested"),
    (_event("ticket.resolved", resolution="fix", summary="Replaced"), "resolved"),
    (_event("sla.follow_up_due", actor="system", reminder=2, max_unanswered=3), "follow_up"),
    (_event("ticket.closed", actor="system", reason="no_response"), "auto_closed"),
    # Seed 002: "If the ticket can't be finished in 30 minutes or less limited support may
    # apply" - the contact is told, not only staff.
    (
        _event("billing.fair_use_exceeded", actor="system", cap="per_ticket", limit_minutes=30),
        "fair_use",
    ),
]


@pytest.mark.parametrize(("event", "kind"), CONTACT_MAILS)
def test_ticket_contact_mails(event: MailEvent, kind: str) -> None:
    (intent,) = mails_for(event, TICKET)
    assert intent.kind == kind
    assert intent.template == kind
    assert intent.recipient == "ticket_contact"
    assert intent.contact_id == CONTACT
    assert intent.ticket_id == TICKET.ticket_id
    assert intent.subject.startswith("[HD-000123] ")
    assert ticket_number_in(intent.subject) == "HD-000123"
    assert intent.message_id == f"<HD-000123.{EVENT_ID}@helpdesk.local>"
    assert intent.in_reply_to == "<HD-000123@helpdesk.local>"
    assert intent.headers["References"] == "<HD-000123@helpdesk.local>"
    assert intent.headers["Auto-Submitted"] == "auto-generated"
    assert intent.context["ticket"]["number"] == "HD-000123"


@pytest.mark.parametrize(
    ("clock", "kind"), [("resolution", "resolution_breached"), ("response", "response_breached")]
)
def test_breaches_go_to_management(clock: str, kind: str) -> None:
    (intent,) = mails_for(_event("sla.breached", actor="system", kind=clock), TICKET)
    assert (intent.kind, intent.recipient, intent.contact_id) == (kind, "managers", None)
    assert ticket_number_in(intent.subject) == "HD-000123"
    assert "(P2)" in intent.subject


@pytest.mark.parametrize("clock", ["resolution", "response"])
def test_a_retracted_breach_sends_management_a_correction_in_reply_to_the_breach(
    clock: str,
) -> None:
    """Before, a breach a late event proved wrong stayed the managers' last word. Now its
    retraction mails them a correction that answers the breach mail (same thread)."""
    breach_id = UUID(int=5)
    (breach,) = mails_for(
        MailEvent(breach_id, "sla.breached", ACCOUNT, AT, "system", {"kind": clock}), TICKET
    )
    retraction = _event(
        "sla.breach_retracted", actor="system", kind=clock, reason="met",
        breach_event_id=str(breach_id),
    )  # fmt: skip
    (intent,) = mails_for(retraction, TICKET)
    assert (intent.kind, intent.recipient) == ("breach_retracted", "managers")
    assert intent.in_reply_to == breach.message_id
    assert intent.references == (breach.in_reply_to, breach.message_id)
    assert ticket_number_in(intent.subject) == "HD-000123"
    assert intent.subject.startswith("[HD-000123] Breach retracted (P2)")


def test_partner_warning_and_invoice_go_to_account_roles() -> None:
    (warning,) = mails_for(
        _event("account.partner_warning_issued", flagged_in_window=4, window_days=90)
    )
    assert (warning.kind, warning.recipient) == ("partner_warning", "key_contacts")
    assert warning.message_id == f"<partner_warning.{EVENT_ID}@helpdesk.local>"
    assert ticket_number_in(warning.subject) is None  # nothing to thread
    (revoked,) = mails_for(_event("account.partner_margin_revoked", restore_on="2026-01-01"))
    assert revoked.recipient == "key_contacts"
    (invoice,) = mails_for(
        _event("billing.invoice_finalized", period="2025-05", total_cents=56000, currency="USD")
    )
    assert (invoice.kind, invoice.recipient) == ("invoice_final", "billing_contacts")
    assert invoice.subject == "Your invoice for 2025-05"
    assert invoice.in_reply_to is None
    # Seed 004: "the Managed Support budget is reviewed regularly and may be adjusted quarterly"
    (review,) = mails_for(_event("billing.budget_reviewed", actor="system", quarter="2026-Q1"))
    assert (review.kind, review.recipient) == ("budget_review", "billing_contacts")
    assert review.subject == "Your support budget review for 2026-Q1"
    assert mails_for(_event("billing.budget_reviewed", quarter="2025-Q4", catching_up=True)) == ()
    # "Regular reviews with your Technical Account Manager": the plan's TAM gets it too.
    tam = uuid.uuid4()
    reviewed = _event("billing.budget_reviewed", quarter="2026-Q1", technical_account_manager=tam)
    to_billing, to_tam = mails_for(reviewed)
    assert (to_billing.recipient, to_tam.recipient, to_tam.staff_id) == (
        "billing_contacts",
        "account_manager",
        tam,
    )
    assert to_tam.message_id != to_billing.message_id
    assert intent_from_document(intent_document(to_tam)) == to_tam
    # Imported history tells nobody: a fair-use exceedance raised by an imported entry.
    imported = _event("billing.fair_use_exceeded", actor="system", cap="per_day", imported=True)
    assert mails_for(imported, TICKET) == ()


@pytest.mark.parametrize(
    "event",
    [
        _event("ticket.commented", body="note", public=False, by_staff=True),
        _event("ticket.commented", body="thanks", public=True, by_staff=False),
        _event("ticket.customer_replied", body="here"),
        _event("ticket.time_logged", minutes=30),
        _event("ticket.closed", reason="confirmed"),
        _event("ticket.assigned", technician="bob"),
        _event("sla.breached", kind="next_reply"),
        _event("sla.warning", kind="resolution"),
        # A retraction mails only where its breach did: not for clocks nobody was told of, nor
        # for imported history (a retraction carries its breach's actor).
        _event("sla.breach_retracted", actor="system", kind="next_reply", reason="met"),
        _event("sla.breach_retracted", actor="import", kind="resolution", reason="met"),
        _event("ticket.opened", actor="import"),  # imported history sends nothing
        _event("ticket.resolved", actor="import", summary="old"),
        _event("account.partner_warning_issued", actor="import"),
    ],
)
def test_events_without_mail(event: MailEvent) -> None:
    assert mails_for(event, TICKET) == ()


def test_ticket_mails_need_the_ticket_and_contact_mails_a_contact() -> None:
    assert mails_for(_event("ticket.opened")) == ()
    no_contact = TicketFacts(
        ticket_id=TICKET.ticket_id, number="HD-7", subject="x", account_id=ACCOUNT
    )
    assert mails_for(_event("ticket.opened"), no_contact) == ()
    (breach,) = mails_for(_event("sla.breached", kind="resolution"), no_contact)
    assert breach.recipient == "managers"


def test_custom_domain_and_hostile_subjects() -> None:
    hostile = TicketFacts(
        ticket_id=TICKET.ticket_id,
        number="HD-000042",
        subject="Re: [HD-999999] evil\r\nBcc: victim@example.com " + "x" * 500,
        account_id=ACCOUNT,
        contact_id=CONTACT,
    )
    (intent,) = mails_for(_event("ticket.opened"), hostile, domain="support.example")
    assert "\n" not in intent.subject
    assert "\r" not in intent.subject
    assert len(intent.subject) < 200
    assert ticket_number_in(intent.subject) == "HD-000042"  # ours comes first
    assert intent.message_id == f"<HD-000042.{EVENT_ID}@support.example>"
    assert intent.in_reply_to == "<HD-000042@support.example>"


@given(subject=st.text(max_size=300), digits=st.integers(min_value=0, max_value=10**9))
def test_every_subject_threads_back(subject: str, digits: int) -> None:
    number = f"HD-{digits:06d}"
    made = ticket_subject(number, "New reply", subject)
    assert ticket_number_in(made) == number
    assert "\n" not in made
    assert one_line(subject) == one_line(one_line(subject))


def test_daily_digest() -> None:
    items = [
        DigestItem(
            "HD-2", "Slow VPN", "Acme", "P3", "resolution", "at_risk", AT + timedelta(hours=3)
        ),
        DigestItem("HD-1", "Down", "Acme", "P1", "response", "breached", AT + timedelta(hours=5)),
        DigestItem("HD-3", "Mail", "Beta", None, "resolution", "breached", AT),
    ]
    intent = daily_digest(date(2025, 6, 2), items)
    assert intent is not None
    assert intent.recipient == "managers"
    assert intent.subject == "Helpdesk digest 2025-06-02: 2 breached, 1 at risk"
    assert intent.message_id == "<digest.2025-06-02@helpdesk.local>"
    assert [i["number"] for i in intent.context["items"]] == ["HD-3", "HD-1", "HD-2"]
    assert daily_digest(date(2025, 6, 2), []) is None
    empty = daily_digest(date(2025, 6, 2), [], send_empty=True)
    assert empty is not None
    assert empty.context["items"] == []
