"""Mail rendered from the templates and sent with aiosmtplib to a real aiosmtpd server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any
from uuid import UUID

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from helpdesk.intake.domain.email import parse_message, ticket_number_in
from helpdesk.notifier.adapters.mail import Mailer, Recipient, SmtpSettings
from helpdesk.notifier.domain.messages import MailEvent, TicketFacts, mails_for

pytestmark = pytest.mark.integration

ACCOUNT = UUID("00000000-0000-0000-0000-00000000acbe")
EVENT_ID = UUID("0190a3c4-0000-7000-8000-0000000000e1")
TICKET = TicketFacts(
    ticket_id=UUID("00000000-0000-0000-0000-0000000000a1"),
    number="HD-000123",
    subject="Printer <on> fire",
    account_id=ACCOUNT,
    contact_id=UUID("00000000-0000-0000-0000-0000000000c1"),
)


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield inbox, port
    server.close()
    await server.wait_closed()


def _settings(port: int) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="Helpdesk Support <support@helpdesk.local>",
        reply_to="tickets@helpdesk.local",
        timeout=10,
    )


def _intent(type_: str, **payload: Any) -> Any:
    event = MailEvent(EVENT_ID, type_, ACCOUNT, datetime(2025, 6, 2, tzinfo=UTC), "staff", payload)
    (intent,) = mails_for(event, TICKET)
    return intent


async def test_a_rendered_mail_arrives_with_threading_headers_and_both_parts(
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    intent = _intent("ticket.info_requested", body="Which <floor>?", author="Bob")
    ann = Recipient("ann@customer.example", "Ann Example")
    sent = await Mailer(_settings(port)).send(intent, [ann], date=datetime.now(UTC))
    assert len(sent) == 1

    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "support@helpdesk.local"
    assert envelope.rcpt_tos == ["ann@customer.example"]
    assert isinstance(envelope.content, bytes)
    message = message_from_bytes(envelope.content, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == f"<HD-000123.{EVENT_ID}@helpdesk.local>"
    assert message["In-Reply-To"] == "<HD-000123@helpdesk.local>"
    assert message["References"] == "<HD-000123@helpdesk.local>"
    assert message["Subject"].startswith("[HD-000123] ")
    assert message["Reply-To"] == "tickets@helpdesk.local"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "Which <floor>?" in text.get_content()
    assert "Which &lt;floor&gt;?" in html.get_content()
    assert "Hello Ann Example" in text.get_content()

    # The customer's reply threads back: intake finds the number in the subject.
    reply = parse_message(envelope.content)
    assert ticket_number_in(reply.subject) == "HD-000123"


async def test_one_message_per_recipient(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    intent = _intent("ticket.resolved", resolution="fix", summary="Replaced the fuser")
    people = [Recipient("a@customer.example", "A"), Recipient("b@customer.example")]
    await Mailer(_settings(port)).send(intent, people)
    assert [e.rcpt_tos for e in inbox.envelopes] == [["a@customer.example"], ["b@customer.example"]]


async def test_an_unreachable_server_raises_an_smtp_error() -> None:
    intent = _intent("ticket.opened")
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(aiosmtplib.SMTPException):
        await Mailer(_settings(port)).send(intent, [Recipient("a@customer.example")])
