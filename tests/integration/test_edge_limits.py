"""Issue 21: one request must never stop the stream.

All four services run in-process on one stack, intake with its SMTP listener. Requests are
sent at each size limit and one byte over, over HTTP and over SMTP (and an e-mail with 6,000
attachments); then a canary ticket must reach the SLA timer, billing and the notifier within
seconds, which it did not when one oversized event froze intake's outbox for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.billing.adapters.tables import billing_tickets
from helpdesk.intake.adapters.tables import runtime as intake_tables
from helpdesk.intake.application.commands import MAX_FIELDS_BYTES, MAX_TEXT
from helpdesk.intake.inbound import MAX_LISTED_ATTACHMENTS
from helpdesk.notifier.adapters.tables import tickets as notifier_tickets
from helpdesk.shared.web import MAX_BODY_BYTES
from helpdesk.sla_timer.adapters.tables import sla_tickets
from services.intake.tests.integration._support import As, new_account, ok, problem_fields
from services.intake.tests.integration.test_limits_and_races import fields_of_size
from tests.support import (
    ADMIN_TOKEN,
    InProcessService,
    free_port,
    fresh_stack_settings,
    in_process,
    wait_for,
)

pytestmark = pytest.mark.integration

SUPPORT = "support@provider.example"
#: Intake's e-mail limit for this stack: small enough to send at and over it quickly, large
#: enough for a message with 6,000 attachments.
EMAIL_LIMIT = 1_500_000


@pytest.fixture(scope="module")
async def services(infra: tuple[str, str]) -> AsyncIterator[dict[str, InProcessService]]:
    bootstrap, database_url = infra
    stack = await fresh_stack_settings(bootstrap, database_url)
    port = free_port()
    own = {"intake": {"smtp_port": port, "email_max_bytes": EMAIL_LIMIT}}
    async with contextlib.AsyncExitStack() as running:
        yield {
            name: await running.enter_async_context(
                in_process(name, stack.model_copy(update=own.get(name, {})))
            )
            for name in ("intake", "sla_timer", "billing", "notifier")
        }


def _raw_email(sender: str, subject: str, size: int) -> bytes:
    """A plain message of exactly `size` bytes with CRLF line ends, as SMTP counts it."""
    line = b"x" * 76 + b"\r\n"
    for pad in ("", "0"):  # a last line needs 2 bytes at least (its CRLF)
        head = (
            f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}{pad}@customer.example>\r\n\r\n"
        ).encode()
        lines, rest = divmod(size - len(head), len(line))
        if rest != 1:
            break
    last = b"y" * (rest - 2) + b"\r\n" if rest else b""
    raw = head + line * lines + last
    assert len(raw) == size
    return raw


def _with_attachments(sender: str, count: int) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = "scans"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@customer.example>"
    message.set_content("see attached")
    for i in range(count):
        message.add_attachment(b"%", maintype="application", subtype="pdf", filename=f"{i}.pdf")
    return message.as_bytes(policy=SMTP)


def _send(port: int, sender: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail(sender, [SUPPORT], raw)


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _tickets_of(admin: As, account_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(await admin.get("/v1/tickets", account_id=account_id))["items"]
    return items


async def test_requests_at_and_over_each_limit_leave_the_stream_flowing(
    services: dict[str, InProcessService],
) -> None:
    intake = services["intake"]
    admin = As(intake.http, ADMIN_TOKEN)
    account = await new_account(admin, {"preset": "small_business_remote"})
    sender = f"{uuid.uuid4().hex[:8]}@customer.example"
    ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts", {"name": "Ann", "email": sender}
        ),
        201,
    )

    # HTTP: fields and description at their limits are taken; one over and the 1 MiB body
    # one byte over are refused.
    base = {"account_id": account["id"], "subject": "at the limits"}
    at_limits = {**base, "description": "d" * MAX_TEXT, "fields": fields_of_size(MAX_FIELDS_BYTES)}
    ok(await admin.post("/v1/tickets", at_limits), 201)
    over = {**at_limits, "fields": fields_of_size(MAX_FIELDS_BYTES + 1)}
    assert problem_fields(await admin.post("/v1/tickets", over)) == ["fields"]
    huge = json.dumps({**base, "description": "d" * MAX_BODY_BYTES}).encode()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    refused = await intake.http.post("/v1/tickets", content=huge, headers=headers)
    assert problem_fields(refused, 413) == ["body"]

    # HTTP inbound e-mail: at the e-mail limit taken (its text cut to the API's), one over 413
    mail = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "message/rfc822"}
    at_mail = _raw_email(sender, "http at the limit", EMAIL_LIMIT)
    opened = ok(await intake.http.post("/v1/inbound/email", content=at_mail, headers=mail), 201)
    view = ok(await admin.get(f"/v1/tickets/{opened['ticket_id']}"))
    assert len(view["description"]) == MAX_TEXT
    over_mail = _raw_email(sender, "http over the limit", EMAIL_LIMIT + 1)
    too_large = await intake.http.post("/v1/inbound/email", content=over_mail, headers=mail)
    assert problem_fields(too_large, 413) == ["body"]

    # SMTP: the same two messages, 250 and 552
    port = intake.runtime.settings.smtp_port
    await wait_for(lambda: _listening(port))
    await asyncio.to_thread(
        _send, port, sender, _raw_email(sender, "smtp at the limit", EMAIL_LIMIT)
    )
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as rejected:
        await asyncio.to_thread(
            _send, port, sender, _raw_email(sender, "smtp over the limit", EMAIL_LIMIT + 1)
        )
    assert rejected.value.smtp_code == 552

    # SMTP: 6,000 attachments open a ticket that names 20 and counts the rest
    many = _with_attachments(sender, 6000)
    assert len(many) <= EMAIL_LIMIT
    await asyncio.to_thread(_send, port, sender, many)

    async def scans() -> dict[str, Any] | None:
        found = [t for t in await _tickets_of(admin, account["id"]) if t["subject"] == "scans"]
        return found[0] if found else None

    ticket = ok(await admin.get(f"/v1/tickets/{(await wait_for(scans))['id']}"))
    assert len(ticket["fields"]["attachments"]) == MAX_LISTED_ATTACHMENTS
    rest = 6000 - MAX_LISTED_ATTACHMENTS
    assert ticket["fields"]["attachments_not_listed"] == {"count": rest, "bytes": rest}
    assert f"and {rest} more ({rest} bytes)]" in ticket["description"]
    subjects = {t["subject"] for t in await _tickets_of(admin, account["id"])}
    assert {"http at the limit", "smtp at the limit"} <= subjects
    assert not {"http over the limit", "smtp over the limit"} & subjects

    # the canary: a ticket opened now reaches every consumer within seconds
    canary = ok(await admin.post("/v1/tickets", {**base, "subject": "canary"}), 201)
    consumers = [
        (services["sla_timer"], sla_tickets.c.ticket_id),
        (services["billing"], billing_tickets.c.ticket_id),
        (services["notifier"], notifier_tickets.c.ticket_id),
    ]
    for service, column in consumers:

        async def arrived(service: InProcessService = service, column: Any = column) -> bool:
            async with service.runtime.engine.connect() as conn:
                found = await conn.scalar(sa.select(column).where(column == canary["id"]))
            return found is not None

        await wait_for(arrived, timeout=20)
    async with intake.runtime.engine.connect() as conn:
        waiting = await conn.scalar(sa.select(sa.func.count()).select_from(intake_tables.outbox))
    assert waiting == 0


def test_the_limits_keep_a_ticket_opened_far_below_a_topic_message() -> None:
    """The worst case of a ticket.opened (every character escaped to 6 bytes) stays under
    half of Kafka's 1 MB default message size."""
    # `fields` is measured as JSON already; subject, description, category, severity and
    # service class are counted in characters.
    worst = 6 * (500 + MAX_TEXT + 3 * 100) + MAX_FIELDS_BYTES
    assert worst < 500_000, worst
