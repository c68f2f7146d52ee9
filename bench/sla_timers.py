"""The SLA timer with 100 000 live clocks: memory, catch-up rate, and how late deadlines fire,
next to a bare asyncio `call_at` baseline with the same deadlines, in one run.

(a) background: accounts on four_tier_24x7 and 100 000 open P4 tickets (response 48 h,
    resolution 96 h: live clocks and timers that stay pending for the whole run);
(b) probes: 1 000 P1 tickets reported so that their response deadline falls 10-40 s after they
    are published; each fires an `sla.breached` whose recorded_at - occurred_at is its lateness;
(c) baseline: `loop.call_at` for the same deadlines in a bare event loop.

Aim (issue 10): p99 lateness within 1 s and within 2x the baseline. Figures only.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from bench.outbox_relay import PARTITIONS
from bench.rebuild import ACCOUNTS, produce, wrap
from helpdesk.shared.agreements import Priority, get_preset
from helpdesk.shared.contracts.accounts import AccountOpened, AgreementSet
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.events import Envelope
from helpdesk.shared.service import ServiceRuntime
from helpdesk.sla_timer.adapters.tables import sla_timers
from helpdesk.sla_timer.main import build_spec
from tests.support import fresh_stack_settings, wait_for

DEFAULT_CLOCKS = 100_000
PROBES = 1_000


def _ticket(account: uuid.UUID, number: int, priority: Priority, reported: datetime) -> Envelope:
    ticket = uuid.uuid4()
    opened = TicketOpened(
        ticket_id=ticket,
        number=f"HD-{number:06d}",
        account_id=account,
        subject="Slow file share",
        description="",
        channel="phone",
        priority=priority,
        reported_at=reported,
        agreement_version=1,
    )
    return wrap(opened, account, reported, ticket, 1)


def background(clocks: int, accounts: list[uuid.UUID]) -> list[Envelope]:
    """Accounts with the four-tier agreement, then `clocks` open P4 tickets."""
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    document = preset.agreement.model_dump(mode="json")
    now = datetime.now(UTC)
    out: list[Envelope] = []
    for index, account in enumerate(accounts):
        opened = AccountOpened(
            account_id=account, number=f"AC-{index}", name=f"Account {index}", timezone="UTC"
        )
        out.append(wrap(opened, account, now))
        agreed = AgreementSet(account_id=account, version=1, agreement=document)
        out.append(wrap(agreed, account, now))
    out += [_ticket(accounts[i % len(accounts)], i, "P4", now) for i in range(clocks)]
    return out


def probes(accounts: list[uuid.UUID], start: int) -> tuple[list[Envelope], list[datetime]]:
    """P1 tickets whose 60-minute response deadline falls 10-40 s from now."""
    now = datetime.now(UTC)
    due = [now + timedelta(seconds=10 + 30 * i / PROBES) for i in range(PROBES)]
    envelopes = [
        _ticket(accounts[i % len(accounts)], start + i, "P1", at - timedelta(minutes=60))
        for i, at in enumerate(due)
    ]
    return envelopes, due


async def baseline(due: list[datetime]) -> list[float]:
    """Lateness of bare `loop.call_at` callbacks at the same instants (seconds)."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()

    def fire(at: datetime) -> None:
        lateness.append((datetime.now(UTC) - at).total_seconds())
        if len(lateness) == len(due):
            done.set()

    offset = loop.time() - time.time()
    for at in due:
        loop.call_at(at.timestamp() + offset, fire, at)
    await done.wait()
    return lateness


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(bootstrap: str, database_url: str, clocks: int = DEFAULT_CLOCKS) -> None:
    """Load the clocks, measure firing lateness and the baseline, print the figures."""
    # The runtime's own firing delay, without the allowed lateness it then adds on purpose.
    settings = (await fresh_stack_settings(bootstrap, database_url)).model_copy(
        update={"allowed_lateness_seconds": 0.0}
    )
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    await produce(bootstrap, settings.topic, background(clocks, accounts))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runtime = ServiceRuntime(build_spec(), settings)
    started = time.perf_counter()
    await runtime.start()
    try:
        await wait_for(_caught_up(runtime), timeout=1800, interval=0.5)
        caught_up = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        live = await _live_timers(runtime)
        envelopes, due = probes(accounts, clocks)
        await produce(bootstrap, settings.topic, envelopes)
        base = asyncio.create_task(baseline(due))

        async def all_fired() -> bool:
            return len(await breach_lateness(bootstrap, settings.topic)) >= len(due)

        await wait_for(all_fired, timeout=180, interval=1.0)
        lateness = await breach_lateness(bootstrap, settings.topic)
        base_lateness = await base
    finally:
        await runtime.stop()
    print(f"SLA timer bench: {clocks} open tickets ({live} pending timers), {PROBES} probes")
    print(
        f"  catch-up: {clocks / caught_up:,.0f} tickets/s ({caught_up:.1f} s); "
        f"max RSS {rss / 1024:,.0f} MiB (before start {before / 1024:,.0f} MiB)"
    )
    for name, values in (("sla_timer", lateness), ("asyncio call_at", base_lateness)):
        print(
            f"  {name:<16} lateness p50 {statistics.median(values) * 1000:7.1f} ms, "
            f"p99 {_percentile(values, 0.99) * 1000:7.1f} ms, max {max(values) * 1000:7.1f} ms"
        )
    p99 = _percentile(lateness, 0.99)
    ratio = p99 / max(_percentile(base_lateness, 0.99), 1e-3)
    verdict = "meets" if p99 <= 1.0 and ratio <= 2 else "BELOW"
    print(f"  aim p99 <= 1 s and <= 2x baseline: {verdict} (p99 ratio {ratio:.1f}x)")


def _caught_up(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return runtime.consumer.is_caught_up()

    return probe


async def _live_timers(runtime: ServiceRuntime) -> int:
    async with runtime.engine.connect() as conn:
        pending = sa.select(sa.func.count()).select_from(sla_timers)
        return int(await conn.scalar(pending.where(sla_timers.c.fired_at.is_(None))) or 0)


async def breach_lateness(bootstrap: str, topic: str) -> list[float]:
    """recorded_at - occurred_at (the deadline) of every P1 response breach on the topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        lateness: dict[str, float] = {}
        remaining = {tp for tp, end in ends.items() if end}
        while remaining:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    if dict(record.headers).get("type") != b"sla.breached":
                        continue
                    envelope = Envelope.from_bytes(record.value)
                    payload = envelope.document()
                    if payload["kind"] == "response" and payload["priority"] == "P1":
                        late = envelope.recorded_at - envelope.occurred_at
                        lateness[str(envelope.event_id)] = late.total_seconds()
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return list(lateness.values())
    finally:
        await consumer.stop()
