"""Each service's rebuild rate against the raw drain rate of the same stream, in one run.

A fresh topic gets a realistic history: accounts with the four-tier agreement, then tickets
whose life is opened, triaged, a public comment, a time entry and resolved (five events each,
seq 1..5). Then:
(a) raw: an AIOKafkaConsumer outside any group drains the topic with getmany (no decoding);
(b) each service's `ServiceRuntime.rebuild()` (shadow tables, per-batch commits, swap) over the
    same topic into its own fresh database.

(c) the SLA timer's rebuild of long-lived tickets (twenty events over four days, interleaved),
    in batches small enough that one ticket's events land in many of them.

Two floors say where a rebuild's time goes and bound what any service can reach:
(d) the drain of (a) plus the runtime's decode of every record (a batch's events kept, as the
    runtime keeps them): no rebuild can be faster;
(e) a rebuild by the runtime of a projection whose handlers do nothing: claims, sequences,
    offsets, decode and per-batch transactions, the cost every service pays before its own.

Target (issue 7): every rebuild at 25 % or more of the raw drain rate. Figures only.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel
from sqlalchemy.engine import make_url

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from bench.outbox_relay import PARTITIONS, Rate, _drop_database
from helpdesk.shared.agreements import get_preset
from helpdesk.shared.consumer import AnyEvent, Projection, Record, UnitOfWork
from helpdesk.shared.contracts.accounts import AccountOpened, AgreementSet
from helpdesk.shared.contracts.tickets import (
    TicketCommented,
    TicketOpened,
    TicketResolved,
    TicketTimeLogged,
    TicketTriaged,
)
from helpdesk.shared.db import create_engine
from helpdesk.shared.events import Actor, Envelope, decode, new_envelope, registry
from helpdesk.shared.kafka import ensure_topic, reliable_producer
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.rebuild import rebuild
from helpdesk.shared.service import ServiceRuntime, ServiceSpec, tune_garbage_collection
from helpdesk.shared.settings import Settings
from tests.support import SPECS, fresh_stack_settings

DEFAULT_EVENTS = 200_000
ACCOUNTS = 200
TARGET = 0.25
STAFF = Actor(type="staff", id="bench")


def history(events: int, *, long_lived: bool = False) -> list[Envelope]:
    """About `events` envelopes: per account opened + agreement, then ticket lives.

    By default five events ten minutes apart, each life's events next to each other. With
    `long_lived`, twenty events (fifteen more comments) spread over four days and the tickets
    interleaved in time, as in a real stream, so one ticket's events land in many batches.
    """
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    agreement = get_preset("four_tier_24x7")
    assert agreement is not None
    document = agreement.agreement.model_dump(mode="json")
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    out: list[Envelope] = []
    for index, account in enumerate(accounts):
        out.append(
            wrap(
                AccountOpened(
                    account_id=account,
                    number=f"AC-{index}",
                    name=f"Account {index}",
                    timezone="Europe/Amsterdam",
                ),
                account,
                start,
            )
        )
        out.append(
            wrap(AgreementSet(account_id=account, version=1, agreement=document), account, start)
        )
    extra, stretch = (15, 144) if long_lived else (0, 1)
    lives: list[Envelope] = []
    for number in range(max(1, (events - len(out)) // (5 + extra))):
        account = accounts[number % ACCOUNTS]
        ticket = uuid.uuid4()
        opened_at = start + timedelta(minutes=number)
        life = ticket_life(ticket, number, account, opened_at, extra_comments=extra)
        for seq, (at, payload) in enumerate(life, 1):
            stretched = opened_at + (at - opened_at) * stretch
            lives.append(wrap(payload, account, stretched, ticket, seq))
    if long_lived:
        lives.sort(key=lambda e: e.occurred_at)  # stable: one ticket's events keep seq order
    return out + lives


def ticket_life(
    ticket: uuid.UUID, number: int, account: uuid.UUID, at: datetime, *, extra_comments: int = 0
) -> list[tuple[datetime, BaseModel]]:
    """Opened, triaged, answered (plus `extra_comments` more), 25 minutes worked, resolved:
    ten minutes apart."""
    step = [at + timedelta(minutes=10 * i) for i in range(5)]
    life: list[tuple[datetime, BaseModel]] = [
        (
            step[0],
            TicketOpened(
                ticket_id=ticket,
                number=f"HD-{number:06d}",
                account_id=account,
                subject="VPN drops at the Rotterdam office",
                description="Since this morning the VPN drops every few minutes.",
                channel="email",
                priority="P2",
                affected_users=25,
                reported_at=step[0],
            ),
        ),
        (
            step[1],
            TicketTriaged(priority="P2", previous_priority="P2", kind="incident", scope="in"),
        ),
        (step[2], _staff_comment("Looking into it now.", public=True)),
        (
            step[3],
            TicketTimeLogged(
                entry_id=uuid.uuid4(),
                minutes=25,
                work_type="remote",
                scope="out",
                after_hours=False,
                worked_at=step[3],
                technician="bob",
                kind="incident",
            ),
        ),
        (step[4], TicketResolved(resolution="fix", summary="Replaced the edge router's config.")),
    ]
    comments = [
        (
            step[2] + timedelta(minutes=10 * (i + 1) / (extra_comments + 1)),
            _staff_comment("Still on it.", public=False),
        )
        for i in range(extra_comments)
    ]
    return [*life[:3], *comments, *life[3:]]


def _staff_comment(body: str, *, public: bool) -> TicketCommented:
    return TicketCommented(
        comment_id=uuid.uuid4(), body=body, public=public, by_staff=True, author="staff:bench"
    )


def wrap(
    payload: BaseModel,
    account: uuid.UUID,
    at: datetime,
    ticket: uuid.UUID | None = None,
    seq: int | None = None,
) -> Envelope:
    return new_envelope(
        payload,
        account_id=account,
        actor=STAFF,
        occurred_at=at,
        recorded_at=at,
        correlation_id="bench",
        ticket_id=ticket,
        seq=seq,
    )


async def produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    """Put the history on the topic, in order per account."""
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        for begin in range(0, len(envelopes), 5000):
            futures = [
                await producer.send(
                    topic, e.to_bytes(), key=str(e.account_id).encode(), headers=e.headers()
                )
                for e in envelopes[begin : begin + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_drain(bootstrap: str, topic: str, *, decoding: bool = False) -> Rate:
    """(a) getmany over every partition to the end, records counted, nothing decoded; (d) with
    `decoding`, each batch's records decoded as the runtime decodes them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        read = 0
        started = time.perf_counter()
        while read < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            read += sum(len(records) for records in batches.values())
            if decoding:
                events = [_decoded(r) for records in batches.values() for r in records]
                del events
        return Rate(read, time.perf_counter() - started)
    finally:
        await consumer.stop()


def _decoded(record: Record) -> AnyEvent:
    type_ = dict(record.headers)["type"].decode()
    return decode(record.value or b"", record.partition, record.offset, type_=type_)


def idle_projection() -> Projection:
    """(e) A projection that takes every event type and writes nothing."""
    projection = Projection()

    async def ignore(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
        """Nothing: what remains is the runtime's own cost."""

    projection.on_batch(*(registry.spec(type_).model for type_ in registry.types()))(ignore)
    return projection


async def runtime_floor(bootstrap: str, database_url: str, topic: str) -> Rate:
    """(e) The runtime's rebuild of `idle_projection()` into a fresh database."""
    settings = await fresh_stack_settings(bootstrap, database_url)
    engine = create_engine(settings.database_url)
    try:
        started = time.perf_counter()
        read = await rebuild(
            "floor",
            engine=engine,
            bootstrap=bootstrap,
            topic=topic,
            tables=SPECS["notifier"]().tables,
            projection=idle_projection(),
            metrics=Metrics("floor"),
        )
        return Rate(read, time.perf_counter() - started)
    finally:
        await engine.dispose()
        await _drop_database(database_url, make_url(settings.database_url).database or "")


async def rebuild_rate(spec: ServiceSpec, settings: Settings) -> Rate:
    """(b) One service's rebuild over the whole topic."""
    runtime = ServiceRuntime(spec, settings)
    try:
        started = time.perf_counter()
        read = await runtime.rebuild()
        return Rate(read, time.perf_counter() - started)
    finally:
        await runtime.engine.dispose()


async def run(bootstrap: str, database_url: str, events: int = DEFAULT_EVENTS) -> None:
    """Build the history, then print the raw drain rate and every service's rebuild rate."""
    envelopes = history(events)
    topic = f"bench.rebuild.{uuid.uuid4().hex[:8]}"
    await ensure_topic(bootstrap, topic, PARTITIONS)
    await produce(bootstrap, topic, envelopes)
    print(f"rebuild bench: {len(envelopes)} events ({ACCOUNTS} accounts, 5-event ticket lives)")
    # Measured as a service process runs: without the generated history on the heap (every
    # garbage collection would rescan it) and with the collector set up as `run_cli` does.
    del envelopes
    gc.collect()
    tune_garbage_collection()
    raw = await raw_drain(bootstrap, topic)
    print(f"  (a) raw getmany drain: {raw.per_second:>9,.0f} events/s ({raw.seconds:.2f} s)")
    for name in SPECS:
        rate = await _rebuild_on(bootstrap, database_url, name, topic)
        print(f"  (b) {name:<9} rebuild: {_against(rate, raw)}")
    decoded = await raw_drain(bootstrap, topic, decoding=True)
    print(f"  (d) floor, drain + decode:      {_against(decoded, raw)}")
    idle = await runtime_floor(bootstrap, database_url, topic)
    print(f"  (e) floor, idle projection:     {_against(idle, raw)}")
    # (c) Long-lived tickets: in a stream of years a ticket's life spans many batches, which
    # batches of 1 000 over this shorter history reproduce. The SLA timer is the service that
    # re-derives a ticket from its whole history; a rebuild folds each ticket once at its end.
    topic = f"bench.rebuild.long.{uuid.uuid4().hex[:8]}"
    await ensure_topic(bootstrap, topic, PARTITIONS)
    envelopes = history(max(events // 4, 1000), long_lived=True)
    await produce(bootstrap, topic, envelopes)
    count = len(envelopes)
    del envelopes
    gc.collect()
    rate = await _rebuild_on(bootstrap, database_url, "sla_timer", topic, max_records=1000)
    print(f"  (c) sla_timer rebuild of {count} events, 20-event tickets over four days, batches")
    print(f"      of 1 000: {_against(rate, raw)}")


async def _rebuild_on(
    bootstrap: str, database_url: str, name: str, topic: str, max_records: int = 5000
) -> Rate:
    """One service's rebuild of `topic` into a fresh database of its own."""
    settings = await fresh_stack_settings(bootstrap, database_url)
    settings = settings.model_copy(update={"topic": topic, "consumer_max_records": max_records})
    database = make_url(settings.database_url).database or ""
    try:
        return await rebuild_rate(SPECS[name](), settings)
    finally:
        await _drop_database(database_url, database)


def _against(rate: Rate, raw: Rate) -> str:
    ratio = rate.per_second / raw.per_second
    verdict = "meets" if ratio >= TARGET else "BELOW"
    return (
        f"{rate.per_second:>9,.0f} events/s ({rate.seconds:.2f} s) "
        f"= {ratio:.0%} of raw (target >= {TARGET:.0%}: {verdict})"
    )
