"""The managers' daily digest end to end: events on a real topic, the notifier in-process on a
clock the test moves, a real aiosmtpd relay; once per day and manager through a restart and a
rebuild, and a mail given up when the relay stays down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from helpdesk.notifier.adapters.digests import DailyDigests
from helpdesk.notifier.adapters.mailing import SubmissionFailures
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import mails, sla_clocks
from helpdesk.notifier.domain.digest import digest_due, next_digest
from helpdesk.notifier.main import build_spec
from helpdesk.shared.contracts.accounts import (
    PROVIDER_ACCOUNT,
    AccountOpened,
    ContactAdded,
    StaffAdded,
)
from helpdesk.shared.contracts.sla import SlaBreached, SlaMet, SlaWarning
from helpdesk.shared.contracts.tickets import TicketClosed, TicketOpened
from helpdesk.shared.events import Actor, Envelope, new_envelope
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from services.notifier.tests.integration.test_notifier_smtp import Inbox
from tests.support import publish, wait_for

pytestmark = pytest.mark.integration

ACTOR = Actor(type="system", id="test")
UTC_ZONE = NotifierSettings().digest_zone


class MovableClock:
    """A clock the test sets; the notifier's live loops and watermarks read it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _wrap(
    payload: BaseModel, account: uuid.UUID, ticket: uuid.UUID | None = None, seq: int | None = None
) -> Envelope:
    now = datetime.now(UTC)
    return new_envelope(
        payload,
        account_id=account,
        actor=ACTOR,
        occurred_at=now,
        recorded_at=now,
        correlation_id="digest-test",
        ticket_id=ticket,
        seq=seq,
    )


def _clock_facts(ticket: uuid.UUID, kind: str, due: datetime) -> dict[str, object]:
    return {
        "ticket_id": ticket,
        "kind": kind,
        "cycle": 1,
        "ordinal": 1,
        "priority": "P1",
        "target_minutes": 240,
        "calendar": "24x7",
        "due_at": due,
    }


def history(account: uuid.UUID) -> list[Envelope]:
    """An account with four tickets: breached, at risk, met in time, breached but closed."""
    due = datetime.now(UTC) + timedelta(hours=1)
    out = [
        _wrap(
            AccountOpened(account_id=account, number="AC-1", name="Acme", timezone="UTC"), account
        )
    ]
    tickets = [uuid.uuid4() for _ in range(4)]
    for index, ticket in enumerate(tickets):
        opened = TicketOpened(
            ticket_id=ticket,
            number=f"HD-00000{index + 1}",
            account_id=account,
            subject=f"Problem {index + 1}",
            description="",
            channel="phone",
            priority="P1",
            reported_at=datetime.now(UTC),
        )
        out.append(_wrap(opened, account, ticket, 1))
    breached, at_risk, met, closed = tickets
    out += [
        _wrap(SlaWarning(**_clock_facts(breached, "resolution", due), warning_at=due), account),
        _wrap(SlaBreached(**_clock_facts(breached, "resolution", due), breached_at=due), account),
        _wrap(SlaWarning(**_clock_facts(at_risk, "response", due), warning_at=due), account),
        _wrap(SlaWarning(**_clock_facts(met, "response", due), warning_at=due), account),
        _wrap(
            SlaMet(**_clock_facts(met, "response", due), met_at=due, elapsed_minutes=200),
            account,
        ),
        _wrap(SlaBreached(**_clock_facts(closed, "response", due), breached_at=due), account),
        _wrap(TicketClosed(reason="duplicate"), account, closed, 2),
    ]
    return out


def managers() -> list[Envelope]:
    """Two managers and a technician of the provider."""
    people = [("Mia Manager", "mia@provider.example", "manager")]
    people += [("Max Manager", "max@provider.example", "manager")]
    people += [("Tom Tech", "tom@provider.example", "technician")]
    return [
        _wrap(StaffAdded(staff_id=uuid.uuid4(), name=n, email=e, role=r), PROVIDER_ACCOUNT)
        for n, e, r in people
    ]


def digests(inbox: Inbox) -> list[tuple[str, str, EmailMessage]]:
    """(recipient, Message-ID, message) of every digest that arrived."""
    out = []
    for envelope in inbox.envelopes:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=default)
        assert isinstance(message, EmailMessage)
        if str(message["Message-ID"]).startswith("<digest."):
            out.append((envelope.rcpt_tos[0], str(message["Message-ID"]), message))
    return out


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    yield inbox, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _started(
    settings: Settings, own: NotifierSettings, clock: MovableClock
) -> ServiceRuntime:
    runtime = ServiceRuntime(build_spec(own), settings, clock=clock)
    await runtime.start()

    async def caught_up() -> bool:
        return runtime.consumer.is_caught_up() and bool(runtime.consumer.ownerships())

    await wait_for(caught_up, timeout=60)
    return runtime


async def _tick(runtime: ServiceRuntime, own: NotifierSettings) -> None:
    """One tick of a fresh digest loop on the runtime's current state and clock."""
    failures = SubmissionFailures(own.mail_retry_policy, runtime.clock, CollectorRegistry())
    await DailyDigests(own, failures)(runtime.live.context())


async def test_each_manager_gets_one_digest_a_day_through_restart_and_rebuild(
    settings: Settings, relay: tuple[Inbox, int]
) -> None:
    inbox, port = relay
    own = NotifierSettings(smtp_relay_port=port, digest_hour=7)
    now = datetime.now(UTC)
    day, _ = digest_due(now, 7, UTC_ZONE)
    tomorrow_at = next_digest(day, 7, UTC_ZONE)
    clock = MovableClock(tomorrow_at - timedelta(minutes=1))  # the hour of the next day is near
    account = uuid.uuid4()
    await publish(settings.kafka_bootstrap, settings.topic, history(account))
    runtime = await _started(settings, own, clock)
    try:

        async def clocks_known() -> bool:
            async with runtime.engine.connect() as conn:
                count = await conn.scalar(sa.select(sa.func.count()).select_from(sla_clocks))
            return count == 4

        await wait_for(clocks_known, timeout=30)
        # The managers become known: the digest of the day due (the previous one) goes at once.
        await publish(settings.kafka_bootstrap, settings.topic, managers())

        async def first_digests() -> bool:
            return len(digests(inbox)) == 2

        await wait_for(first_digests, timeout=30)
        first = digests(inbox)
        assert sorted(r for r, _, _ in first) == ["max@provider.example", "mia@provider.example"]
        assert {m for _, m, _ in first} == {f"<digest.{day.isoformat()}@helpdesk.local>"}
        message = first[0][2]
        assert message["Subject"] == f"Helpdesk digest {day.isoformat()}: 1 breached, 1 at risk"
        text = message.get_body(("plain",))
        assert text is not None
        body = text.get_content()
        assert "[HD-000001] Problem 1" in body
        assert "BREACHED" in body
        assert "[HD-000002] Problem 2" in body
        assert "Acme" in body
        assert "HD-000003" not in body
        assert "HD-000004" not in body

        async def recorded() -> bool:
            async with runtime.engine.connect() as conn:
                sent = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(mails)
                    .where(mails.c.kind == "daily_digest", mails.c.status == "sent")
                )
            return sent == 2

        await wait_for(recorded, timeout=30)
        await _tick(runtime, own)  # a minute before the next hour: nothing more
        assert len(digests(inbox)) == 2

        clock.at = tomorrow_at + timedelta(seconds=1)
        runtime.live.wake()

        async def second_digests() -> bool:
            return len(digests(inbox)) == 4

        await wait_for(second_digests, timeout=30)
        tomorrow = (day + timedelta(days=1)).isoformat()
        assert {m for _, m, _ in digests(inbox)[2:]} == {f"<digest.{tomorrow}@helpdesk.local>"}
        await wait_for(lambda: _sent_digests(runtime, 4), timeout=30)

        # A restart and a rebuild know what was sent: nothing goes twice.
        await runtime.stop()
        runtime = await _started(settings, own, clock)
        await _tick(runtime, own)
        await runtime.rebuild()
        await _tick(runtime, own)
        assert len(digests(inbox)) == 4
        assert await _sent_digests(runtime, 4)
    finally:
        await runtime.stop()


async def _sent_digests(runtime: ServiceRuntime, expected: int) -> bool:
    async with runtime.engine.connect() as conn:
        sent = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(mails)
            .where(mails.c.kind == "daily_digest", mails.c.status == "sent")
        )
    return sent == expected


async def test_a_mail_the_relay_keeps_refusing_is_given_up_and_counted(settings: Settings) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()  # nothing listens there: every submission fails
    own = NotifierSettings(
        smtp_relay_port=port, smtp_timeout_seconds=2, mail_retry_seconds=0.05, mail_max_attempts=3
    )
    account = uuid.uuid4()
    contact = uuid.uuid4()
    ticket = uuid.uuid4()
    added = ContactAdded(
        contact_id=contact,
        account_id=account,
        name="Ann",
        email="ann@customer.example",
        roles=[],
        visibility="own",
    )
    opened = TicketOpened(
        ticket_id=ticket,
        number="HD-000042",
        account_id=account,
        contact_id=contact,
        subject="VPN",
        description="",
        channel="phone",
        priority="P3",
        reported_at=datetime.now(UTC),
    )
    await publish(
        settings.kafka_bootstrap,
        settings.topic,
        [_wrap(added, account), _wrap(opened, account, ticket, 1)],
    )
    runtime = ServiceRuntime(build_spec(own), settings)
    await runtime.start()
    try:

        async def given_up() -> bool:
            async with runtime.engine.connect() as conn:
                status = await conn.scalar(
                    sa.select(mails.c.status).where(mails.c.ticket_id == ticket)
                )
            return status == "failed"

        await wait_for(given_up, timeout=30)
        registry = runtime.metrics.registry
        retried = registry.get_sample_value("helpdesk_mail_failures_total", {"verdict": "retry"})
        gave_up = registry.get_sample_value("helpdesk_mail_failures_total", {"verdict": "give_up"})
        assert (retried, gave_up) == (2.0, 1.0)
    finally:
        await runtime.stop()
