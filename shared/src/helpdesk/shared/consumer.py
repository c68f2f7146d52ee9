"""The one consumer runtime of every service: exactly-once effect on a PostgreSQL projection.

For each fetched batch of one partition, the runtime opens one transaction, skips events whose
event_id it already applied, runs the handlers, and stores the partition's next offset in the
same transaction. On assignment it seeks to the stored offset; Kafka's own committed offsets are
informational. A crash anywhere therefore replays exactly what was not committed.

Live loops (timers, deliveries) run only for partitions this replica owns *and* has caught up
with, so a side effect is never taken on a stale projection or by two replicas at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import Event, decode
from helpdesk.shared.kafka import topic_partitions
from helpdesk.shared.logs import correlation_id
from helpdesk.shared.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """An event as a handler sees it: decoded, with where it sits on the stream."""

    event: Event
    partition: int | None  # None when the writing service applies its own event at once
    offset: int | None


Handler = Callable[[AsyncConnection, Delivery], Awaitable[None]]
LiveLoop = Callable[[frozenset[int]], Awaitable[None]]


@dataclass
class Projection:
    """What one service builds from the stream: handlers by event type, and its tables."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    tables: list[sa.Table] = field(default_factory=list)

    def on(self, *types: str) -> Callable[[Handler], Handler]:
        """Decorator: register a handler for one or more event types."""

        def decorate(handler: Handler) -> Handler:
            for type_ in types:
                self.handlers[type_] = handler
            return handler

        return decorate


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return str(value.decode())
    return None


class SequenceCheck:
    """Per-ticket seq bookkeeping for one batch: read once, checked in memory, written once.

    A handled event must be its ticket's last seq + 1. An event this service skips (a type it
    does not handle, or a copy of one already applied) still advances the sequence, but it
    cannot be told from a republished copy, so for it only a hole (seq > last + 1) alerts.
    """

    def __init__(self, tables: RuntimeTables, metrics: Metrics) -> None:
        self._table = tables.ticket_sequence
        self._metrics = metrics
        self._last: dict[UUID, int] = {}
        self._changed: set[UUID] = set()

    async def load(
        self, conn: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Lock and read the last seq of every ticket the batch touches."""
        ids = {UUID(t) for r in records if (t := _header(r, "ticket_id")) is not None}
        if not ids:
            return
        table = self._table
        rows = await conn.execute(
            sa.select(table.c.ticket_id, table.c.last_seq)
            .where(table.c.ticket_id.in_(sorted(ids)))
            .with_for_update()
        )
        self._last = {row.ticket_id: row.last_seq for row in rows}

    def observe(self, record: ConsumerRecord[bytes, bytes], *, handled: bool) -> None:
        """Check one record's place in its ticket's sequence (no-op for non-ticket events)."""
        ticket, seq_header = _header(record, "ticket_id"), _header(record, "seq")
        if ticket is None or seq_header is None:
            return
        ticket_id, seq = UUID(ticket), int(seq_header)
        expected = self._last.get(ticket_id, 0) + 1
        if seq > expected or (handled and seq != expected):
            self._metrics.sequence_gaps.inc()
            log.error(
                "ticket event out of sequence",
                extra={
                    "ticket_id": ticket,
                    "seq": seq,
                    "expected": expected,
                    "event_id": _header(record, "event_id"),
                },
            )
        self._last[ticket_id] = max(seq, expected - 1)
        self._changed.add(ticket_id)

    async def save(self, conn: AsyncConnection) -> None:
        """Write the new last seqs (never lowering one)."""
        if not self._changed:
            return
        table = self._table
        stmt = pg_insert(table).values(
            [{"ticket_id": t, "last_seq": self._last[t]} for t in sorted(self._changed)]
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.ticket_id],
                set_={"last_seq": sa.func.greatest(table.c.last_seq, stmt.excluded.last_seq)},
            )
        )


async def apply_own(
    conn: AsyncConnection, tables: RuntimeTables, projection: Projection, events: Sequence[Event]
) -> None:
    """Apply events a service has just decided, before they reach the stream.

    They are claimed as processed, so when the relay's copy comes back from Kafka the consumer
    skips it; a rebuild replays them from the stream like any other event. Their sequence is
    not checked: the writer's own store decided it (intake's primary key on ticket and seq).
    """
    await conn.execute(
        tables.processed_events.insert(), [{"event_id": e.envelope.event_id} for e in events]
    )
    for event in events:
        handler = projection.handlers.get(event.type)
        if handler is not None:
            await handler(conn, Delivery(event, None, None))


class BatchApplier:
    """Applies one partition's records to the projection in one transaction."""

    def __init__(
        self,
        consumer_name: str,
        topic: str,
        tables: RuntimeTables,
        projection: Projection,
        metrics: Metrics,
        *,
        skip_own: bool = False,
    ) -> None:
        self.consumer_name = consumer_name
        # Live consumers skip what their own service wrote: `emit` applied it already, in the
        # transaction that queued it. A rebuild (skip_own=False) replays everything.
        self.own_source = tables.schema if skip_own else None
        self.topic = topic
        self.tables = tables
        self.projection = projection
        self.metrics = metrics

    async def apply(
        self, conn: AsyncConnection, partition: int, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> list[str]:
        """Apply `records` (consecutive, of one partition) and store the next offset.

        Returns the types of the events applied, to be counted once the transaction commits.
        """
        next_offset = records[-1].offset + 1
        if self.own_source is not None:
            records = [r for r in records if _header(r, "source") != self.own_source]
        handled = [r for r in records if _header(r, "type") in self.projection.handlers]
        fresh = await self._claim(conn, handled)
        sequences = SequenceCheck(self.tables, self.metrics)
        await sequences.load(conn, records)
        applied: list[str] = []
        for record in records:
            if _header(record, "type") not in self.projection.handlers:
                sequences.observe(record, handled=False)
                continue
            event_id = UUID(_header(record, "event_id"))
            if event_id not in fresh:
                self.metrics.duplicates_skipped.inc()
                # A copy of an event applied before (the writer's own, applied by apply_own,
                # or a republished one) still takes its place in the ticket's sequence.
                sequences.observe(record, handled=False)
                continue
            fresh.discard(event_id)  # a second copy in this same batch is a duplicate too
            sequences.observe(record, handled=True)
            event = decode(record.value or b"")
            token = correlation_id.set(event.envelope.correlation_id)
            started = time.perf_counter()
            try:
                await self.projection.handlers[event.type](
                    conn, Delivery(event, partition, record.offset)
                )
            finally:
                correlation_id.reset(token)
            self.metrics.handler_seconds.labels(event.type).observe(time.perf_counter() - started)
            applied.append(event.type)
        await sequences.save(conn)
        offsets = self.tables.consumer_offsets
        stmt = pg_insert(offsets).values(
            consumer=self.consumer_name,
            topic=self.topic,
            partition=partition,
            next_offset=next_offset,
        )
        # GREATEST: a replica that lost the partition mid-batch must never move it backwards.
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[offsets.c.consumer, offsets.c.topic, offsets.c.partition],
                set_={
                    "next_offset": sa.func.greatest(
                        offsets.c.next_offset, stmt.excluded.next_offset
                    )
                },
            )
        )
        return applied

    def count(self, applied: Iterable[str]) -> None:
        """Count applied events once their transaction committed."""
        for type_ in applied:
            self.metrics.events_consumed.labels(type_).inc()

    async def _claim(
        self, conn: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> set[UUID]:
        """Record the batch's event ids as processed; return those not seen before."""
        if not records:
            return set()
        ids = [UUID(_header(r, "event_id")) for r in records]
        processed = self.tables.processed_events
        rows = await conn.execute(
            pg_insert(processed)
            .values([{"event_id": i} for i in ids])
            .on_conflict_do_nothing()
            .returning(processed.c.event_id)
        )
        return {row.event_id for row in rows}


class ConsumerRuntime(ConsumerRebalanceListener):  # type: ignore[misc]
    """A service's consumer-group member, its caught-up signals and its live loops."""

    def __init__(
        self,
        name: str,
        *,
        engine: AsyncEngine,
        bootstrap: str,
        topic: str,
        tables: RuntimeTables,
        projection: Projection,
        metrics: Metrics,
        live_loops: Sequence[LiveLoop] = (),
        max_records: int = 500,
        poll_ms: int = 200,
        live_interval: float = 0.5,
    ) -> None:
        self.name = name
        self._engine = engine
        self._bootstrap = bootstrap
        self._topic = topic
        self._tables = tables
        self.applier = BatchApplier(name, topic, tables, projection, metrics, skip_own=True)
        self._metrics = metrics
        self._live_loops = list(live_loops)
        self._max_records = max_records
        self._poll_ms = poll_ms
        self._live_interval = live_interval
        self._consumer: AIOKafkaConsumer | None = None
        # Held while a batch or a live-loop tick runs; a revocation waits for it.
        self._busy = asyncio.Lock()
        self._assigned: set[int] = set()
        self._positioned: set[int] = set()  # assigned and sought to the stored offset
        self._joined = False
        self._caught_up: set[int] = set()
        self._ends: dict[int, int] = {}
        self._ends_checked = 0.0
        self._changed = asyncio.Condition()

    # -- what other parts of the service ask ------------------------------------------------

    @property
    def assigned(self) -> frozenset[int]:
        """Partitions this replica owns now."""
        return frozenset(self._assigned)

    @property
    def caught_up(self) -> frozenset[int]:
        """Owned partitions whose projection has reached the head of the stream."""
        return frozenset(self._caught_up & self._assigned)

    def is_caught_up(self) -> bool:
        """Whether the consumer has joined its group and every owned partition caught up."""
        return self._joined and self._assigned <= self._caught_up

    async def wait_caught_up(self) -> None:
        """Wait until `is_caught_up()` (callers bound it with `asyncio.timeout`)."""
        async with self._changed:
            await self._changed.wait_for(self.is_caught_up)

    # -- rebalance listener --------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Stop acting for revoked partitions, after the in-flight batch or tick commits."""
        async with self._busy:
            for tp in revoked:
                self._assigned.discard(tp.partition)
                self._positioned.discard(tp.partition)
                self._caught_up.discard(tp.partition)
                with contextlib.suppress(KeyError):
                    self._metrics.consumer_lag.remove(str(tp.partition))
        await self._notify()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Take the new partitions; the consuming task seeks them before applying anything.

        aiokafka starts fetching a new assignment before this callback finishes, so a seek made
        here would race the fetcher; seeking from the task that calls getmany does not.
        """
        async with self._busy:
            self._assigned = {tp.partition for tp in assigned}
            self._positioned &= self._assigned
            self._caught_up &= self._assigned
            self._joined = True
        self._ends_checked = 0.0
        log.info(
            "partitions assigned",
            extra={"consumer": self.name, "partitions": sorted(self._assigned)},
        )

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled; the consumer leaves its group cleanly on cancellation."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=f"helpdesk.{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._max_records,
        )
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=self)
        live = asyncio.create_task(self._run_live_loops(), name=f"{self.name}-live")
        try:
            while True:
                await self._position_new_partitions()
                batches = await self._consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._max_records
                )
                for tp, records in batches.items():
                    await self._apply(tp, records)
                await self._refresh_caught_up()
        finally:
            live.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live
            await self._consumer.stop()
            self._consumer = None

    async def _apply(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        assert self._consumer is not None
        async with self._busy:
            if tp.partition not in self._positioned:
                # Fetched before we sought it to the stored offset, or revoked meanwhile: the
                # records come again from the stored offset (ours, or the new owner's).
                return
            try:
                async with self._engine.begin() as conn:
                    applied = await self.applier.apply(conn, tp.partition, records)
            except Exception:
                failing = {_header(r, "type") or "?" for r in records}
                for type_ in failing:
                    self._metrics.handler_errors.labels(type_).inc()
                log.exception("batch failed; it is retried from the stored offset")
                self._consumer.seek(tp, records[0].offset)
                await asyncio.sleep(1.0)
                return
        self.applier.count(applied)
        # Informational only: the stored offset in PostgreSQL is what the runtime resumes from.
        with contextlib.suppress(Exception):
            await self._consumer.commit({tp: records[-1].offset + 1})

    async def _position_new_partitions(self) -> None:
        assert self._consumer is not None
        async with self._busy:
            new = self._assigned - self._positioned
            if not new:
                return
            stored = await self._stored_offsets()
            for partition in sorted(new):
                tp = TopicPartition(self._topic, partition)
                if partition in stored:
                    self._consumer.seek(tp, stored[partition])
                else:
                    await self._consumer.seek_to_beginning(tp)
            self._positioned |= new

    async def _refresh_caught_up(self) -> None:
        assert self._consumer is not None
        now = time.monotonic()
        if now - self._ends_checked >= 1.0 or not self._caught_up >= self._assigned:
            tps = [TopicPartition(self._topic, p) for p in self._positioned & self._assigned]
            if tps:
                ends = await self._consumer.end_offsets(tps)
                self._ends = {tp.partition: off for tp, off in ends.items()}
            self._ends_checked = now
        changed = False
        for partition in sorted(self._positioned & self._assigned):
            position = await self._consumer.position(TopicPartition(self._topic, partition))
            head = max(
                self._ends.get(partition, 0),
                self._consumer.highwater(TopicPartition(self._topic, partition)) or 0,
            )
            lag = max(0, head - position)
            self._metrics.consumer_lag.labels(str(partition)).set(lag)
            if lag == 0 and partition not in self._caught_up:
                self._caught_up.add(partition)
                changed = True
        if changed:
            await self._notify()

    async def _run_live_loops(self) -> None:
        while True:
            await asyncio.sleep(self._live_interval)
            async with self._busy:
                owned = self.caught_up
                if not owned:
                    continue
                for loop in self._live_loops:
                    try:
                        await loop(owned)
                    except Exception:
                        log.exception("live loop failed; it runs again next tick")

    async def _stored_offsets(self) -> dict[int, int]:
        offsets = self._tables.consumer_offsets
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(offsets.c.partition, offsets.c.next_offset).where(
                    offsets.c.consumer == self.name, offsets.c.topic == self._topic
                )
            )
            return {row.partition: row.next_offset for row in rows}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


async def replay(
    name: str,
    *,
    engine: AsyncEngine,
    bootstrap: str,
    topic: str,
    tables: RuntimeTables,
    projection: Projection,
    metrics: Metrics,
    max_records: int = 2000,
) -> int:
    """Rebuild: clear the projection and replay the whole stream up to its current head.

    All of it is one transaction: a failed rebuild leaves the old projection in place, and a
    replica still running waits on the TRUNCATE lock, then goes on from the new offsets.
    Returns the number of records read.
    """
    applier = BatchApplier(name, topic, tables, projection, metrics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=max_records,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        read = 0
        applied: list[str] = []
        async with engine.begin() as conn:
            for table in [*projection.tables, *tables.replay_state]:
                if table is tables.consumer_offsets:
                    await conn.execute(table.delete().where(table.c.consumer == name))
                else:
                    await conn.execute(sa.text(f"TRUNCATE {table.fullname}"))
            while remaining:
                batches = await consumer.getmany(
                    *remaining, timeout_ms=500, max_records=max_records
                )
                for tp, records in batches.items():
                    records = [r for r in records if r.offset < ends[tp]]
                    if records:
                        applied += await applier.apply(conn, tp.partition, records)
                        read += len(records)
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        applier.count(applied)
        return read
    finally:
        await consumer.stop()
