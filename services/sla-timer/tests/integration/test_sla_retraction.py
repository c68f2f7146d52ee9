"""A breach proved wrong by a late event is retracted once (issue 20, point 4), end to end.

Intake, the SLA timer and the notifier in-process on one topic and database, a real aiosmtpd
relay for the managers' mail and a real HTTP receiver for a provider's `sla.*` webhooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP

from helpdesk.notifier.adapters.digests import digest_states
from helpdesk.notifier.adapters.tables import mails
from helpdesk.notifier.domain.digest import digest_items
from helpdesk.shared.db import table_digest
from helpdesk.shared.events import Envelope
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import projection_tables, sla_tickets, sla_timers
from services.intake.tests.integration._support import (
    As,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
)
from services.notifier.tests.integration.test_notifier_smtp import Inbox
from services.notifier.tests.integration.test_notifier_webhook_delivery import Receiver, Reply
from tests.support import InProcessService, events_on_topic, in_process, wait_for
from tests.support.stack import instant, iso, sla_view

pytestmark = pytest.mark.integration


@pytest.fixture
async def notifier(
    stack: Settings, sla: InProcessService, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessService, Inbox]]:
    """The notifier in-process, mailing to a local relay and allowed to call loopback hooks."""
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    monkeypatch.setenv("HELPDESK_SMTP_RELAY_PORT", str(smtp.sockets[0].getsockname()[1]))
    monkeypatch.setenv("HELPDESK_NOTIFIER_ALLOW_TARGETS", "127.0.0.1")
    monkeypatch.setenv("HELPDESK_NOTIFIER_MAIL_RETRY_SECONDS", "0.5")
    try:
        async with in_process("notifier", stack) as service:
            yield service, inbox
    finally:
        smtp.close()
        await smtp.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook endpoint that accepts everything."""
    started = Receiver([Reply(200)])
    await started.start()
    yield started
    await started.close()


def _messages(inbox: Inbox, ticket: dict[str, Any]) -> list[EmailMessage]:
    parsed = [message_from_bytes(e.content, policy=default) for e in inbox.envelopes]  # type: ignore[arg-type]
    return [m for m in parsed if isinstance(m, EmailMessage) and ticket["number"] in m["Subject"]]


async def _of_ticket(stack: Settings, type_: str, ticket: dict[str, Any]) -> list[Envelope]:
    """The ticket's events of `type_` on the topic, one per event id (the relay publishes at
    least once; consumers drop a copy by its id)."""
    found = await events_on_topic(stack, type_)
    return list(
        {e.event_id: e for e in found if e.document()["ticket_id"] == ticket["id"]}.values()
    )


async def test_a_resolution_relayed_after_its_breach_retracts_it_once_everywhere(
    sla: InProcessService,
    notifier: tuple[InProcessService, Inbox],
    receiver: Receiver,
    admin: As,
    importer: As,
    stack: Settings,
) -> None:
    """Before, an answer given 30 ms before the response deadline that reached the SLA timer
    after the breach fired left the breach standing: management was told of a breach that never
    happened and no event corrected it. Now the late answer makes the SLA timer emit one
    `sla.breach_retracted` naming the breach; the clock shows met, management gets one
    correction replying to the breach mail, a provider's `sla.*` webhook receives it, the daily
    digest drops the clock, and rebuilding the SLA timer and the notifier decides nothing again.
    """
    service, inbox = notifier
    await staff_key(admin, "manager")
    hooks = As(service.http, admin.token)
    ok(await hooks.post("/v1/subscriptions", {"url": receiver.url, "event_types": ["sla.*"]}), 201)
    account = await new_account(admin, {"preset": "four_tier_24x7"})
    # P1 responds within 60 minutes: reported 59:56 ago, the response is due in 4 s.
    reported = datetime.now(UTC) - timedelta(minutes=59, seconds=56)
    due = reported + timedelta(hours=1)
    ticket = await new_ticket(
        importer, account["id"], priority="P1", affected_users=1, reported_at=iso(reported)
    )

    async def breached() -> list[Envelope]:
        found = await _of_ticket(stack, "sla.breached", ticket)
        return [e for e in found if e.document()["kind"] == "response"]

    [breach] = await wait_for(breached, timeout=60, interval=0.2)
    assert breach.actor.type == "system"  # a live breach: management is mailed

    async def breach_mailed() -> list[EmailMessage]:
        return [m for m in _messages(inbox, ticket) if "Response target breached" in m["Subject"]]

    [breach_mail] = await wait_for(breach_mailed, timeout=60)

    # The answer was given 30 ms before the deadline; it reaches the stream only now.
    answered = due - timedelta(milliseconds=30)
    reply = {"body": "on it", "public": True, "occurred_at": iso(answered)}
    ok(await run(importer, ticket["id"], "comments", reply))

    async def retracted() -> list[Envelope]:
        return await _of_ticket(stack, "sla.breach_retracted", ticket)

    [retraction] = await wait_for(retracted, timeout=60)
    document = retraction.document()
    assert document["breach_event_id"] == str(breach.event_id)
    assert (document["kind"], document["reason"]) == ("response", "met")
    assert instant(document["settled_at"]) == answered == retraction.occurred_at
    assert instant(document["breached_at"]) == due
    assert retraction.actor.type == "system"

    view = await wait_for(sla_view(sla, admin, ticket["id"]))
    response = next(c for c in view["clocks"] if c["kind"] == "response")
    assert (response["status"], instant(response["met_at"])) == ("met", answered)
    month = reported.astimezone(UTC).strftime("%Y-%m")  # the account's zone is UTC
    report = ok(await sla.http.get(f"/v1/accounts/{account['id']}/sla-report?period={month}"))
    [line] = [x for x in report["lines"] if (x["priority"], x["kind"]) == ("P1", "response")]
    assert (line["met"], line["breached"]) == (1, 0)

    async def corrected() -> list[EmailMessage]:
        return [m for m in _messages(inbox, ticket) if "Breach retracted" in m["Subject"]]

    [correction] = await wait_for(corrected, timeout=60)
    assert correction["In-Reply-To"] == breach_mail["Message-ID"]
    assert "not breached" in correction.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    async def hooked() -> list[str]:
        types = [r.body for r in receiver.requests if b"sla.breach_retracted" in r.body]
        return [t.decode() for t in types if ticket["id"].encode() in t]

    assert len(await wait_for(hooked, timeout=60)) == 1

    async with service.runtime.engine.connect() as conn:
        listed = [
            i for i in digest_items(await digest_states(conn)) if i.number == ticket["number"]
        ]
    assert listed == []

    # The met clock's own timer (imported history: 15 s after the import settles) fires too;
    # then nothing of this ticket is left to fire, and a rebuild must reproduce the state.
    async def met() -> list[Envelope]:
        return await _of_ticket(stack, "sla.met", ticket)

    await wait_for(met, timeout=40, interval=0.5)
    async with sla.runtime.engine.connect() as conn:
        rows = list(
            await conn.execute(sa.select(sla_timers).where(sla_timers.c.ticket_id == ticket["id"]))
        )
        before = await table_digest(conn, projection_tables)
    assert [(r.action, r.key) for r in rows if r.action == "retraction"] == [
        ("retraction", "response:1:1")
    ]
    await sla.runtime.rebuild()
    async with sla.runtime.engine.connect() as conn:
        assert await table_digest(conn, projection_tables) == before
    await service.runtime.rebuild()
    async with service.runtime.engine.connect() as conn:
        statuses = list(
            await conn.scalars(
                sa.select(mails.c.status).where(
                    mails.c.ticket_id == ticket["id"], mails.c.kind == "breach_retracted"
                )
            )
        )
    assert statuses == ["sent"]

    # A new event of the ticket after the rebuilds: the reaction looks again, finds the
    # breach answered, and decides nothing.
    async def seq_of() -> int:
        async with sla.runtime.engine.connect() as conn:
            query = sa.select(sla_tickets.c.seq).where(sla_tickets.c.ticket_id == ticket["id"])
            return int(await conn.scalar(query) or 0)

    seq = await seq_of()
    ok(await run(importer, ticket["id"], "comments", {"body": "more", "public": False}))

    async def applied() -> bool:
        return await seq_of() > seq

    await wait_for(applied)
    assert len(await retracted()) == 1
    assert len(await corrected()) == 1
