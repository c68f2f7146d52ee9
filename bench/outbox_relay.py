"""The outbox relay's publish rate against the raw producer's, for envelope-sized messages.

(a) raw: `reliable_producer` (acks="all", idempotent) sending serialized ticket.opened envelopes
    (~800 bytes), send() futures gathered in chunks;
(b) relay: the same envelopes appended to a fresh schema's outbox, then `OutboxRelay.
    publish_once()` called until the outbox is empty.

Target: the relay publishes at >= 50 % of the raw rate. Figures only; nothing asserts a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.db import create_engine, migrate
from helpdesk.shared.events import Actor, Envelope, new_envelope
from helpdesk.shared.kafka import ensure_topic, reliable_producer
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.outbox import OutboxRelay, append
from helpdesk.sla_timer.main import build_spec as sla_timer_spec
from tests.support import fresh_database

DEFAULT_MESSAGES = 50_000
PARTITIONS = 12
CHUNK = 5_000  # raw: futures gathered per chunk; relay: outbox rows inserted per transaction
TARGET = 0.5


def ticket_opened(number: int, account_id: uuid.UUID) -> Envelope:
    """A realistic ticket.opened envelope (about 800 bytes serialized)."""
    now = datetime.now(UTC)
    ticket_id = uuid.uuid4()
    payload = TicketOpened(
        ticket_id=ticket_id,
        number=f"HD-{100000 + number}",
        account_id=account_id,
        contact_id=uuid.uuid4(),
        subject="VPN drops every few minutes at the Rotterdam office",
        description="Since this morning the VPN drops every few minutes; RDP sessions are lost.",
        channel="email",
        priority="P2",
        affected_users=25,
        service_class="network",
        reported_at=now,
    )
    return new_envelope(
        payload,
        account_id=account_id,
        actor=Actor(type="staff", id=str(uuid.uuid4())),
        occurred_at=now,
        recorded_at=now,
        correlation_id=str(uuid.uuid4()),
        ticket_id=ticket_id,
        seq=1,
    )


@dataclass(frozen=True)
class Rate:
    """How many messages in how many seconds."""

    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else float("inf")


async def raw_produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> Rate:
    """(a) The idempotent acks=all producer on its own."""
    records = [(e.to_bytes(), str(e.account_id).encode(), e.headers()) for e in envelopes]
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        for begin in range(0, len(records), CHUNK):
            futures = [
                await producer.send(topic, value, key=key, headers=headers)
                for value, key, headers in records[begin : begin + CHUNK]
            ]
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return Rate(len(records), elapsed)


async def relay_publish(
    bootstrap: str, topic: str, url: str, envelopes: list[Envelope]
) -> tuple[Rate, Rate, int]:
    """(b) The outbox relay: fill a fresh outbox, then publish_once() until it is empty.

    Returns the insert rate, the relay rate and how many publish_once() calls it took.
    """
    spec = sla_timer_spec()
    await migrate(url, spec.metadata, spec.migrations)
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        for begin in range(0, len(envelopes), CHUNK):
            async with engine.begin() as conn:
                await append(conn, spec.tables, envelopes[begin : begin + CHUNK])
        inserted = Rate(len(envelopes), time.perf_counter() - started)
        relay = OutboxRelay(engine, spec.tables, bootstrap, topic, Metrics("bench"))
        await relay.start()
        try:
            calls = published = 0
            started = time.perf_counter()
            while n := await relay.publish_once():
                calls += 1
                published += n
            elapsed = time.perf_counter() - started
        finally:
            await relay.stop()
        async with engine.connect() as conn:
            left = await conn.scalar(sa.select(sa.func.count()).select_from(spec.tables.outbox))
        if left:
            raise RuntimeError(f"the relay left {left} rows in the outbox")
        return inserted, Rate(published, elapsed), calls
    finally:
        await engine.dispose()


async def topic_records(bootstrap: str, topic: str) -> int:
    """Records on `topic` (end offsets summed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _drop_database(base_url: str, name: str) -> None:
    engine: AsyncEngine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def run(bootstrap: str, database_url: str, messages: int = DEFAULT_MESSAGES) -> None:
    """Run both measurements and print the figures."""
    accounts = [uuid.uuid4() for _ in range(240)]
    envelopes = [ticket_opened(i, accounts[i % len(accounts)]) for i in range(messages)]
    size = sum(len(e.to_bytes()) for e in envelopes) / len(envelopes)
    raw_topic, relay_topic = (f"bench.{kind}.{uuid.uuid4().hex[:8]}" for kind in ("raw", "relay"))
    for topic in (raw_topic, relay_topic):
        await ensure_topic(bootstrap, topic, PARTITIONS)
    print(f"outbox relay bench: {messages} ticket.opened envelopes of {size:.0f} bytes on average")
    print(f"  broker {bootstrap}, {PARTITIONS} partitions, acks=all, idempotent producer")

    raw = await raw_produce(bootstrap, raw_topic, envelopes)
    print(f"  (a) raw producer:  {raw.per_second:>9,.0f} msg/s ({raw.seconds:.2f} s)")

    url = await fresh_database(database_url)
    name = make_url(url).database or ""
    try:
        inserted, relayed, calls = await relay_publish(bootstrap, relay_topic, url, envelopes)
    finally:
        await _drop_database(database_url, name)
    print(
        f"      outbox insert: {inserted.per_second:>9,.0f} rows/s ({inserted.seconds:.2f} s, "
        f"append() in transactions of {CHUNK})"
    )
    print(
        f"  (b) outbox relay:  {relayed.per_second:>9,.0f} msg/s ({relayed.seconds:.2f} s, "
        f"{calls} publish_once() calls)"
    )
    ratio = relayed.per_second / raw.per_second
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"  relay / raw = {ratio:.0%} (target >= {TARGET:.0%}: {verdict})")
    on_stream = {t: await topic_records(bootstrap, t) for t in (raw_topic, relay_topic)}
    print(
        f"  records on the stream: raw {on_stream[raw_topic]}, relay {on_stream[relay_topic]} "
        f"(sent {messages} each)"
    )
