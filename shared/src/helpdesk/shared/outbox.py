"""The transactional outbox: events are written with the state they explain, then relayed.

`append` runs inside the caller's transaction. The `OutboxRelay` publishes rows in id order
through an idempotent `acks="all"` producer and deletes them once Kafka has acknowledged them.
A crash between the acknowledgement and the delete republishes the rows: publishing is
at-least-once and every consumer deduplicates by event_id.

Each round is one short transaction that takes a transaction-level advisory lock, reads a batch,
publishes it and deletes it: two relays of one service never publish at once (a relay whose
connection died loses the lock with its transaction, and its round is rolled back), and no
transaction stays open between rounds (an idle-in-transaction session would pin VACUUM).
At most one record batch per partition goes out per round, so a retried batch can never land
behind a later one of the same partition.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import Envelope
from helpdesk.shared.kafka import reliable_producer
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.waiting import woken_or_elapsed

#: What the producer's send() uses to place a key.
_PARTITIONER = DefaultPartitioner()


def account_key(account_id: UUID) -> bytes:
    """The Kafka key of an account's events: all of them share its partition, in order."""
    return str(account_id).encode()


def partition_of(account_id: UUID, partitions: Sequence[int]) -> int:
    """The partition of `partitions` that an account's events go to."""
    available = sorted(partitions)
    return int(_PARTITIONER(account_key(account_id), available, available))


log = logging.getLogger(__name__)

# Only one relay of a service publishes at a time, so rows go out in id order even when the
# service runs several replicas. The key is per schema.
_LOCK_NAMESPACE = 0x68656C70  # "help"


async def append(
    conn: AsyncConnection,
    tables: RuntimeTables,
    events: Sequence[Envelope],
    values: Sequence[bytes] | None = None,
) -> None:
    """Write `events` to the outbox in the caller's transaction, in order.

    `values` are the envelopes already serialised (`UnitOfWork.encode`), one per event;
    without them each is serialised here.
    """
    if not events:
        return
    if values is None:
        values = [e.to_bytes() for e in events]
    source = ["source", tables.schema or ""]
    # An event decided twice (same deterministic id) before the relay published it is one row.
    await conn.execute(
        pg.insert(tables.outbox).on_conflict_do_nothing(index_elements=["event_id"]),
        [
            {
                "event_id": e.event_id,
                "type": e.type,
                "key": account_key(e.account_id),
                "value": value,
                # `source` names the writing service (informational: nothing skips by it).
                "headers": [[k, v.decode()] for k, v in e.headers()] + [source],
            }
            for e, value in zip(events, values, strict=True)
        ],
    )


def jsonb_text(name: str) -> Any:
    """A bind parameter `name` that takes JSON text and stores it as jsonb as it is.

    For a command that writes its events to a jsonb column too: bind each row's envelope as
    `UnitOfWork.encode(...)[i].decode()`, so it is not dumped to a dict and encoded again, as a
    `JSONB` column's own binding would.
    """
    return sa.cast(sa.bindparam(name, type_=sa.Text), pg.JSONB)


class OutboxRelay:
    """Publishes a service's outbox to Kafka, in order, at least once."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: RuntimeTables,
        bootstrap: str,
        topic: str,
        metrics: Metrics,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.1,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._topic = topic
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._partitioner = _PARTITIONER
        self._lock_key = _LOCK_NAMESPACE ^ hash_schema(tables.schema or "")

    async def start(self) -> None:
        """Connect the producer (it must be created inside the running event loop)."""
        self._producer = reliable_producer(self._bootstrap)
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def notify(self) -> None:
        """Wake the relay now: a transaction with outbox rows has just committed."""
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled; retry on any Kafka or database failure."""
        while True:
            try:
                published = await self.publish_once()
                if published < self._batch_size:
                    await self._idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)

    async def _idle(self) -> None:
        await woken_or_elapsed(self._wakeup, self._poll_interval)
        self._wakeup.clear()

    async def publish_once(self) -> int:
        """Publish up to one batch of pending rows in one fenced round; return how many.

        Returns 0 when another relay of the service holds the round lock.
        """
        outbox = self._tables.outbox
        assert self._producer is not None, "start() the relay first"
        async with self._engine.begin() as conn:
            if not await conn.scalar(
                sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._lock_key}
            ):
                return 0
            rows = (
                await conn.execute(
                    sa.select(
                        outbox.c.id, outbox.c.type, outbox.c.key, outbox.c.value, outbox.c.headers
                    )
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            # count(*) over a large outbox costs as much as publishing a batch: short of a full
            # batch the backlog is what was read, else estimate it from the ids (an overcount
            # only by the ids of rolled-back inserts between them).
            if len(rows) < self._batch_size:
                backlog = len(rows)
            else:
                newest = await conn.scalar(sa.select(sa.func.max(outbox.c.id)))
                backlog = max(newest or 0, rows[-1].id) - rows[0].id + 1
            self._metrics.outbox_backlog.set(backlog)
            if not rows:
                return 0
            futures, sent = await self._send(self._producer, rows)
            await asyncio.gather(*futures)
            ids = sa.bindparam("ids", [row.id for row in sent], type_=pg.ARRAY(sa.BigInteger))
            await conn.execute(outbox.delete().where(outbox.c.id == sa.any_(ids)))
        for type_, published in collections.Counter(row.type for row in sent).items():
            self._metrics.events_produced.labels(type_).inc(published)
        self._metrics.outbox_backlog.set(max(0, backlog - len(sent)))
        log.debug("published %d events", len(sent))
        return len(sent)

    async def _send(
        self, producer: AIOKafkaProducer, rows: Sequence[Any]
    ) -> tuple[list[asyncio.Future[Any]], list[Any]]:
        """Queue `rows` as at most one record batch per partition, in id order.

        A send() per message costs more Python than the publishing itself at relay rates.
        The partition is the one send() would choose (the default partitioner over the key).
        Once a partition's batch is full, its later rows wait for the next round: two batches
        of one partition in flight could land out of order if the first one's send is retried
        after a leader change. Returns the futures and the rows they carry.
        """
        partitions = sorted(await producer.partitions_for(self._topic))
        partition_of: dict[bytes, int] = {}
        batches: dict[int, Any] = {}
        full: set[int] = set()
        sent: list[Any] = []
        for row in rows:
            partition = partition_of.get(row.key)
            if partition is None:
                partition = self._partitioner(row.key, partitions, partitions)
                partition_of[row.key] = partition
            if partition in full:
                continue
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            appended = batch.append(
                key=row.key,
                value=row.value,
                timestamp=None,
                headers=[(k, v.encode()) for k, v in row.headers],
            )
            if appended is None:
                if batch.record_count() == 0:
                    raise ValueError(f"outbox row {row.id} does not fit in a record batch")
                full.add(partition)
                continue
            sent.append(row)
        futures = [
            await producer.send_batch(batch, self._topic, partition=partition)
            for partition, batch in batches.items()
        ]
        return futures, sent


def hash_schema(schema: str) -> int:
    """A stable 31-bit number for a schema name (Python's hash() is salted per process)."""
    return int.from_bytes(schema.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF
