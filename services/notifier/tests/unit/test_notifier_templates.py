"""Every mail template renders both alternatives; HTML escapes, plain text does not."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import pytest

from helpdesk.intake.domain.email import parse_message, ticket_number_in
from helpdesk.notifier.adapters.mail import TEMPLATES, MailRenderer, Recipient, money
from helpdesk.notifier.adapters.webhooks import decode_excerpt
from helpdesk.notifier.domain.messages import (
    DigestItem,
    MailEvent,
    MailIntent,
    TicketFacts,
    daily_digest,
    mails_for,
)

pytestmark = pytest.mark.unit

ACCOUNT = UUID("00000000-0000-0000-0000-00000000acbe")
TICKET = TicketFacts(
    ticket_id=UUID("00000000-0000-0000-0000-0000000000a1"),
    number="HD-000123",
    subject="Printer <b>on</b> fire & smoke",
    account_id=ACCOUNT,
    contact_id=UUID("00000000-0000-0000-0000-0000000000c1"),
    priority="P1",
)
AT = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
ANN = Recipient(email="ann@customer.example", name="Ann <Admin>")


def _intent(type_: str, **payload: Any) -> MailIntent:
    event = MailEvent(UUID(int=7), type_, ACCOUNT, AT, "staff", payload)
    (intent,) = mails_for(event, TICKET)
    return intent


ALL_INTENTS = [
    _intent("ticket.opened", description="<script>alert(1)</script>"),
    _intent("ticket.commented", body="Try <this>", public=True, by_staff=True, author="Bob"),
    _intent("ticket.info_requested", body="Which floor?", author="Bob"),
    _intent("ticket.resolved", resolution="workaround", summary="Unplugged it"),
    _intent("sla.follow_up_due", reminder=1, max_unanswered=3),
    _intent("ticket.closed", reason="no_response"),
    _intent("sla.breached", kind="resolution", due_at="2025-06-02T11:00:00Z"),
    _intent("sla.breached", kind="response"),
    _intent("sla.breach_retracted", kind="resolution", reason="met", due_at="2025-06-02T11:00:00Z",
            settled_at="2025-06-02T10:59:59.970000Z", breach_event_id=str(UUID(int=6))),
    _intent("account.partner_warning_issued", flagged_in_window=4, window_days=90),
    _intent("account.partner_margin_revoked", restore_on="2026-01-01T00:00:00Z"),
    _intent("ticket.quoted", quote_id=str(UUID(int=9)), minutes=240, amount_cents=60000,
            note="Migrate <the> mailboxes"),
    _intent("account.password_reset_requested", kind="contact", email="ann@customer.example",
            path="/password-resets/t0ken", expires_at="2025-06-02T10:00:00Z"),
    _intent("billing.fair_use_exceeded", cap="per_day", limit_minutes=30, used_minutes=45,
            day="2025-06-02"),
    _intent("billing.fair_use_exceeded", cap="per_ticket", limit_minutes=30, used_minutes=40),
    _intent("billing.budget_reviewed", quarter="2026-Q1", currency="USD", budget_cents=900000,
            covered_value_cents=41250, balance_cents=858750, next_budget_cents=1050000,
            by_kind={"incident": {"minutes": 195, "covered_minutes": 165, "billed_minutes": 30,
                                  "covered_value_cents": 41250, "billed_cents": 7500}}),
    _intent("billing.invoice_finalized", period="2025-05", total_cents=56000, currency="USD"),
]  # fmt: skip


def test_every_kind_has_both_templates() -> None:
    kinds = {intent.template for intent in ALL_INTENTS} | {"daily_digest"}
    for kind in kinds:
        assert (TEMPLATES / f"{kind}.txt").is_file()
        assert (TEMPLATES / f"{kind}.html").is_file()


@pytest.mark.parametrize("intent", ALL_INTENTS, ids=lambda i: i.kind)
def test_renders_text_and_escaped_html(intent: MailIntent) -> None:
    rendered = MailRenderer().render(intent, ANN)
    assert "Hello Ann <Admin>," in rendered.text
    assert "Hello Ann &lt;Admin&gt;," in rendered.html
    assert "<script>" not in rendered.html
    assert "<b>on</b>" not in rendered.html
    if intent.ticket_id is not None:
        assert "HD-000123" in rendered.text
        assert "Printer <b>on</b> fire & smoke" in rendered.text
        assert "Printer &lt;b&gt;on&lt;/b&gt; fire &amp; smoke" in rendered.html


def test_specific_content() -> None:
    renderer = MailRenderer()
    invoice = renderer.render(ALL_INTENTS[-1], ANN)
    assert "USD 560.00" in invoice.text
    resolved = renderer.render(ALL_INTENTS[3], ANN)
    assert "workaround" in resolved.text
    assert "confirm" in resolved.text
    per_day, per_ticket = (renderer.render(i, ANN) for i in ALL_INTENTS[-4:-2])
    review = renderer.render(ALL_INTENTS[-2], ANN)
    quote = renderer.render(next(i for i in ALL_INTENTS if i.kind == "quote"), ANN)
    assert "240 minutes, 600.00" in quote.text
    assert "approve or decline" in quote.text
    assert "budget for 2026-Q1: USD 9,000.00" in review.text
    assert "incident: 195 min, 165 covered, 30 billed (USD 75.00)" in review.text
    assert "From the next quarter the budget is USD 10,500.00." in review.text
    assert "on 2025-06-02" in per_day.text
    assert "45 minutes: more than the 30 minutes a day" in per_day.text
    assert "40 minutes: more than the 30 minutes a ticket" in per_ticket.text
    assert "can't be finished in 30 minutes or less, limited support may apply" in per_ticket.text
    opened = renderer.render(ALL_INTENTS[0], ANN)
    assert "&lt;script&gt;" in opened.html
    assert "<script>alert(1)</script>" in opened.text


def test_digest_renders() -> None:
    item = DigestItem("HD-9", "Down & out", "Acme", "P1", "response", "breached", AT)
    intent = daily_digest(date(2025, 6, 2), [item])
    assert intent is not None
    rendered = MailRenderer().render(intent, Recipient("boss@provider.example"))
    assert "[HD-9] Down & out" in rendered.text
    assert "Down &amp; out" in rendered.html
    assert "BREACHED" in rendered.text


def test_built_message_threads_back_through_intake() -> None:
    intent = ALL_INTENTS[1]
    message = MailRenderer().build(
        intent,
        ANN,
        sender="Helpdesk <support@helpdesk.local>",
        reply_to="in@helpdesk.local",
        date=AT,
    )
    assert isinstance(message, EmailMessage)
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/alternative"
    assert (
        message["Message-ID"] == "<HD-000123.00000000-0000-0000-0000-000000000007@helpdesk.local>"
    )
    assert message["In-Reply-To"] == "<HD-000123@helpdesk.local>"
    # What intake reads back out of it (as if the customer's reply quoted the subject).
    parsed = parse_message(message.as_bytes())
    assert ticket_number_in(parsed.subject) == "HD-000123"
    assert parsed.in_reply_to == "<HD-000123@helpdesk.local>"
    assert parsed.auto_submitted  # auto-responders must not answer our notifications


def test_money_and_excerpt_helpers() -> None:
    assert money(56000, "USD") == "USD 560.00"
    assert money(-5, "EUR") == "EUR -0.05"
    assert money(123456789) == "1,234,567.89"
    assert decode_excerpt("héllo".encode()[:2]) == "h"  # a cut character is dropped
    assert decode_excerpt(b"ok\x00\x1b[31m\n\xff") == "ok[31m\n\ufffd"
    assert decode_excerpt("é".encode("latin-1"), "latin-1") == "é"
    assert decode_excerpt(b"x", "no-such-charset") == "x"


def test_a_password_reset_links_into_the_portal() -> None:
    """The reset mail (new) carries the portal's link, under the address it is configured with."""
    (intent,) = [i for i in ALL_INTENTS if i.kind == "password_reset"]
    assert intent.recipient == "person"
    rendered = MailRenderer(globals_={"portal_url": "https://portal.example"}).render(intent, ANN)
    assert "https://portal.example/password-resets/t0ken" in rendered.text
    assert 'href="https://portal.example/password-resets/t0ken"' in rendered.html
