"""The transactional outbox: events are written with the state they explain, then relayed.

`append` runs inside the caller's transaction. The `OutboxRelay` publishes rows in id order
through an idempotent `acks="all"` producer and deletes them once Kafka has acknowledged them.
A crash between the acknowledgement and the delete republishes the rows: publishing is
at-least-once and every consumer deduplicates by event_id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.consumer import Projection, apply_own
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import Envelope, Event
from helpdesk.shared.kafka import reliable_producer
from helpdesk.shared.metrics import Metrics

log = logging.getLogger(__name__)

# Only one relay of a service publishes at a time, so rows go out in id order even when the
# service runs several replicas. The key is per schema.
_LOCK_NAMESPACE = 0x68656C70  # "help"


async def append(conn: AsyncConnection, tables: RuntimeTables, events: Sequence[Envelope]) -> None:
    """Write `events` to the outbox in the caller's transaction, in order."""
    if not events:
        return
    source = tables.schema or ""
    await conn.execute(
        tables.outbox.insert(),
        [
            {
                "event_id": e.event_id,
                "type": e.type,
                "key": str(e.account_id).encode(),
                "value": e.to_bytes(),
                # `source` names the writing service: its own consumer skips the event (see
                # BatchApplier), since `emit` applied it in the transaction that queued it.
                "headers": [[k, v.decode()] for k, v in e.headers()] + [["source", source]],
            }
            for e in events
        ],
    )


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
        self._partitioner = DefaultPartitioner()  # what the producer's send() uses
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
                async with self._engine.connect() as lock_conn:
                    if not await lock_conn.scalar(
                        sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._lock_key}
                    ):
                        await self._idle()
                        continue
                    try:
                        while True:
                            published = await self.publish_once()
                            if published < self._batch_size:
                                await self._idle()
                    finally:
                        with contextlib.suppress(Exception):
                            await lock_conn.execute(
                                sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key}
                            )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
        self._wakeup.clear()

    async def publish_once(self) -> int:
        """Publish up to one batch of pending rows; return how many were published."""
        outbox = self._tables.outbox
        async with self._engine.connect() as conn:
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
        assert self._producer is not None, "start() the relay first"
        await asyncio.gather(*await self._send(self._producer, rows))
        ids = sa.bindparam("ids", [row.id for row in rows], type_=pg.ARRAY(sa.BigInteger))
        async with self._engine.begin() as conn:
            await conn.execute(outbox.delete().where(outbox.c.id == sa.any_(ids)))
        for type_, published in collections.Counter(row.type for row in rows).items():
            self._metrics.events_produced.labels(type_).inc(published)
        self._metrics.outbox_backlog.set(max(0, backlog - len(rows)))
        log.debug("published %d events", len(rows))
        return len(rows)

    async def _send(
        self, producer: AIOKafkaProducer, rows: Sequence[Any]
    ) -> list[asyncio.Future[Any]]:
        """Queue `rows` as record batches, one per partition at a time, in id order.

        A send() per message costs more Python than the publishing itself at relay rates.
        The partition is the one send() would choose (the default partitioner over the key);
        a partition's next batch waits until its previous one is drained, and the idempotent
        producer keeps them in order through retries, so each partition stays in id order.
        """
        partitions = sorted(await producer.partitions_for(self._topic))
        partition_of: dict[bytes, int] = {}
        batches: dict[int, Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for row in rows:
            partition = partition_of.get(row.key)
            if partition is None:
                partition = self._partitioner(row.key, partitions, partitions)
                partition_of[row.key] = partition
            record = {
                "key": row.key,
                "value": row.value,
                "timestamp": None,
                "headers": [(k, v.encode()) for k, v in row.headers],
            }
            batch = batches.get(partition)
            if batch is not None and batch.append(**record) is not None:
                continue
            if batch is not None:  # full: queue it and start the partition's next one
                futures.append(await producer.send_batch(batch, self._topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            if batch.append(**record) is None:
                raise ValueError(f"outbox row {row.id} does not fit in a record batch")
        for partition, batch in batches.items():
            futures.append(await producer.send_batch(batch, self._topic, partition=partition))
        return futures


def hash_schema(schema: str) -> int:
    """A stable 31-bit number for a schema name (Python's hash() is salted per process)."""
    return int.from_bytes(schema.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF


async def emit(
    conn: AsyncConnection, tables: RuntimeTables, projection: Projection, events: Sequence[Event]
) -> None:
    """Record events a service decided: apply them to its own projection, and queue them.

    Runs in the caller's transaction, so state, dedup marks and outbox rows commit together.
    """
    await apply_own(conn, tables, projection, events)
    await append(conn, tables, [e.envelope for e in events])
