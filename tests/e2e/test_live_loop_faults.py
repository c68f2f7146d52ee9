"""Side effects exactly once through crashes: the SLA timer's deadlines fire once each when a
replica is killed with -9 in the middle of firing, and when the only replica is killed and
restarted (issue 7, "done when"; issue 10, fault tests).

The stream gets accounts on the four-tier agreement and P1 tickets reported hours ago, so every
ticket has four timers already due (response and resolution, warning and breach). Each fired
timer is an `sla.*` event with an id derived from ticket, clock and action: the test reads the
whole topic and checks that no timer has two different ids and that every one fired.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from helpdesk.shared.agreements import get_preset
from helpdesk.shared.contracts.accounts import AccountOpened, AgreementSet
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.db import create_engine
from helpdesk.shared.events import Actor, Envelope, new_envelope
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import sla_timers
from tests.support import ServiceProcess, publish, wait_for

pytestmark = pytest.mark.e2e

ACTOR = Actor(type="system", id="test")


def overdue_history(accounts: int, tickets: int, *, start: int = 0) -> list[Envelope]:
    """Accounts on four_tier_24x7 and P1 tickets reported five hours ago (all timers due)."""
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    document = preset.agreement.model_dump(mode="json")
    now = datetime.now(UTC)
    reported = now - timedelta(hours=5)
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"live-loop-account-{i}") for i in range(accounts)]
    out: list[Envelope] = []
    if start == 0:
        for index, account in enumerate(ids):
            opened = AccountOpened(
                account_id=account, number=f"AC-{index}", name=f"Acct {index}", timezone="UTC"
            )
            agreed = AgreementSet(account_id=account, version=1, agreement=document)
            out += [_wrap(opened, account, now), _wrap(agreed, account, now)]
    for number in range(start, start + tickets):
        account = ids[number % accounts]
        ticket = uuid.uuid4()
        opened_ticket = TicketOpened(
            ticket_id=ticket,
            number=f"HD-{number:06d}",
            account_id=account,
            subject="Mail down",
            description="",
            channel="phone",
            priority="P1",
            reported_at=reported,
            agreement_version=1,
        )
        out.append(_wrap(opened_ticket, account, reported, ticket, 1))
    return out


def _wrap(
    payload: TicketOpened | AccountOpened | AgreementSet,
    account: uuid.UUID,
    at: datetime,
    ticket: uuid.UUID | None = None,
    seq: int | None = None,
) -> Envelope:
    return new_envelope(
        payload,
        account_id=account,
        actor=ACTOR,
        occurred_at=at,
        recorded_at=at,
        correlation_id="live-loop-faults",
        ticket_id=ticket,
        seq=seq,
    )


async def fired_on_topic(settings: Settings) -> dict[tuple[str, str], set[str]]:
    """Every sla.warning / sla.breached on the topic: (ticket and clock, action) -> event ids."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        fired: dict[tuple[str, str], set[str]] = defaultdict(set)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    envelope = json.loads(record.value)
                    if envelope["type"] in {"sla.warning", "sla.breached"}:
                        payload = envelope["payload"]
                        timer = f"{payload['ticket_id']}/{payload['kind']}/{payload['cycle']}"
                        fired[(timer, envelope["type"])].add(envelope["event_id"])
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return fired
    finally:
        await consumer.stop()


async def unfired_timers(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            due = sa.and_(sla_timers.c.fired_at.is_(None), sla_timers.c.fire_at <= sa.func.now())
            return int(
                await conn.scalar(sa.select(sa.func.count()).select_from(sla_timers).where(due))
                or 0
            )
    finally:
        await engine.dispose()


def check_once(fired: dict[tuple[str, str], set[str]], tickets: int) -> None:
    """Every due timer fired, each under exactly one event id."""
    twice = {key: ids for key, ids in fired.items() if len(ids) > 1}
    actions = Counter(action for _, action in fired)
    assert not twice, f"timers fired under two ids: {list(twice.items())[:3]}"
    # Two clocks per ticket (response, resolution), each a warning and a breach.
    assert actions == {"sla.warning": 2 * tickets, "sla.breached": 2 * tickets}, actions


async def test_deadlines_fire_once_through_kill_9_of_a_replica_and_of_the_last_one(
    settings: Settings, log_dir: Path
) -> None:
    accounts, first, second = 48, 600, 300
    replicas = [ServiceProcess("sla_timer", settings, log_dir) for _ in range(2)]
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            await replica.wait_ready()
        await publish(settings.kafka_bootstrap, settings.topic, overdue_history(accounts, first))

        async def firing_started() -> bool:
            return len(await fired_on_topic(settings)) > 0

        await wait_for(firing_started, timeout=60, interval=0.02)
        replicas[0].kill()  # in the middle of firing: its open transaction is lost

        async def all_fired(tickets: int) -> bool:
            return len(await fired_on_topic(settings)) == 4 * tickets

        await wait_for(lambda: all_fired(first), timeout=120, interval=0.5)
        check_once(await fired_on_topic(settings), first)

        # The survivor is killed while firing the next wave, and restarted.
        await publish(
            settings.kafka_bootstrap,
            settings.topic,
            overdue_history(accounts, second, start=first),
        )

        async def more() -> bool:
            return len(await fired_on_topic(settings)) > 4 * first

        await wait_for(more, timeout=60, interval=0.02)
        replicas[1].kill()
        restarted = ServiceProcess("sla_timer", settings, log_dir)
        replicas.append(restarted)
        restarted.start()
        await restarted.wait_ready()
        await wait_for(lambda: all_fired(first + second), timeout=120, interval=0.5)
        fired = await fired_on_topic(settings)
        unfired = await unfired_timers(settings)
    finally:
        for replica in replicas:
            replica.stop()
    print(f"\n{len(fired)} timers fired for {first + second} tickets; unfired due: {unfired}")
    check_once(fired, first + second)
    assert unfired == 0
