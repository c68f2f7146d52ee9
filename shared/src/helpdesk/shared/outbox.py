"""The transactional outbox: events are written with the state they explain, then relayed.

`append` runs inside the caller's transaction and refuses an event larger than the stream takes
(`EventTooLargeError`, naming the payload's largest field), so nothing that can never be published
enters the outbox through the runtime. The `OutboxRelay` publishes rows in id order through an
idempotent `acks="all"` producer and deletes them once Kafka has acknowledged them. A crash
between the acknowledgement and the delete republishes the rows: publishing is at-least-once
and every consumer deduplicates by event_id.

Only one relay of a service publishes at a time: it holds a session-level advisory lock on a
connection of its own (its lease), and reads and deletes on that connection outside any open
transaction, so no snapshot stays open across the Kafka round trip (an idle-in-transaction
session would pin VACUUM's horizon while Kafka is slow). A relay whose connection died loses
the lease with it, and its delete fails with it: the next holder republishes those rows. At
most one record batch per partition goes out per round, so a retried batch can never land
behind a later one of the same partition.

A row that can never be published (larger than a message may be) is moved to
`outbox_dead_letters` with its reason, so the rows behind it flow; one that fails for any other
reason is retried with backoff, the failure logged once and reported by `failure` (readiness).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.errors import InvalidField
from helpdesk.shared.events import Envelope
from helpdesk.shared.kafka import MESSAGE_MAX_BYTES, reliable_producer
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
_IDS = pg.ARRAY(sa.BigInteger)


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
    check_event_sizes(events, values)
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


class EventTooLargeError(InvalidField):
    """An event would be larger than the stream takes; the command that decided it is refused."""


#: The largest event body `append` takes: the message limit less room for headers and the
#: record batch's own framing.
MAX_EVENT_BYTES = MESSAGE_MAX_BYTES - 64 * 1024


def check_event_sizes(events: Sequence[Envelope], values: Sequence[bytes]) -> None:
    """Raise `EventTooLargeError` for the first event whose wire form exceeds MAX_EVENT_BYTES,
    naming the payload field that takes the most room (what the caller must shorten)."""
    for envelope, value in zip(events, values, strict=True):
        if len(value) <= MAX_EVENT_BYTES:
            continue
        payload = envelope.payload
        document = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        sizes = {name: len(json.dumps(field)) for name, field in dict(document or {}).items()}
        largest = max(sizes, key=sizes.__getitem__, default="payload")
        raise EventTooLargeError(
            largest,
            f"makes the {envelope.type} event {len(value)} bytes long; the event stream takes "
            f"at most {MAX_EVENT_BYTES}",
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
        stuck_after: float = 30.0,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._topic = topic
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._stuck_after = stuck_after
        self._wakeup = asyncio.Event()
        self._partitioner = _PARTITIONER
        self._lock_key = _LOCK_NAMESPACE ^ hash_schema(tables.schema or "")
        self._lease: AsyncConnection | None = None
        self._leased = False
        #: A round ended mid-statement (cancelled or failed): the lease is not to be reused.
        self._broken = False
        #: The partition count publishing assumes (set at start): a topic that grows would move
        #: accounts to other partitions, so the relay refuses to publish rather than rehash.
        self.partitions: int | None = None
        self._failing_since: float | None = None
        self._last_error: str | None = None

    async def start(self) -> None:
        """Connect the producer (it must be created inside the running event loop)."""
        self._producer = reliable_producer(
            self._bootstrap, max_request_size=MESSAGE_MAX_BYTES, max_batch_size=MESSAGE_MAX_BYTES
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Give up the lease, then flush and close the producer."""
        await self._release(broken=self._broken)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def notify(self) -> None:
        """Wake the relay now: a transaction with outbox rows has just committed."""
        self._wakeup.set()

    def failure(self) -> str | None:
        """Why the relay has not published for `stuck_after` seconds while it had rows, or None."""
        since = self._failing_since
        if since is None or time.monotonic() - since < self._stuck_after:
            return None
        return self._last_error

    async def run(self) -> None:
        """Publish until cancelled; retry with backoff on any Kafka or database failure."""
        failures = 0
        while True:
            try:
                published = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._failed(exc)
                await self._release(broken=True)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            self._recovered()
            if published < self._batch_size:
                await self._idle()

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:500]
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._metrics.relay_failing.set(1)
        if error != self._last_error:  # once per distinct error, not once per retry
            log.error("outbox relay cannot publish; retrying: %s", error, extra={"error": error})
            self._last_error = error

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info("outbox relay publishes again")
        self._failing_since = None
        self._last_error = None
        self._metrics.relay_failing.set(0)

    async def _idle(self) -> None:
        await woken_or_elapsed(self._wakeup, self._poll_interval)
        self._wakeup.clear()

    async def _acquire(self) -> AsyncConnection | None:
        """The lease connection if this relay holds the service's relay lock (taking it if free)."""
        if self._broken:
            await self._release(broken=True)
        if self._lease is None:
            lease = await self._engine.connect()
            self._lease = await lease.execution_options(isolation_level="AUTOCOMMIT")
        if not self._leased:
            self._leased = bool(
                await self._lease.scalar(
                    sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._lock_key}
                )
            )
        return self._lease if self._leased else None

    async def _release(self, *, broken: bool = False) -> None:
        lease, self._lease, leased = self._lease, None, self._leased
        self._leased = self._broken = False
        if lease is None:
            return
        try:
            if broken:
                raise ConnectionError("the lease's connection failed")
            if leased:
                await lease.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key})
        except Exception:
            # Closing the server session is what releases its lock, whatever state it is in
            # (a round cancelled mid-statement leaves the connection unusable).
            with contextlib.suppress(Exception):
                await lease.invalidate()
        finally:
            with contextlib.suppress(Exception):
                await lease.close()

    async def publish_once(self) -> int:
        """Publish up to one batch of pending rows; return how many.

        Returns 0 when another relay of the service holds the lease.
        """
        assert self._producer is not None, "start() the relay first"
        lease = await self._acquire()
        if lease is None:
            return 0
        try:
            return await self._round(lease)
        except BaseException:
            self._broken = True  # cancelled or failed mid-statement
            raise

    async def _round(self, lease: AsyncConnection) -> int:
        outbox = self._tables.outbox
        assert self._producer is not None
        rows = (
            await lease.execute(
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
            newest = await lease.scalar(sa.select(sa.func.max(outbox.c.id)))
            backlog = max(newest or 0, rows[-1].id) - rows[0].id + 1
        self._metrics.outbox_backlog.set(backlog)
        if not rows:
            return 0
        futures, sent, dead = await self._send(self._producer, rows)
        if dead:
            await self._bury(lease, dead)
        await asyncio.gather(*futures)
        ids = sa.bindparam("ids", [row.id for row in sent], type_=pg.ARRAY(sa.BigInteger))
        await lease.execute(outbox.delete().where(outbox.c.id == sa.any_(ids)))
        for type_, published in collections.Counter(row.type for row in sent).items():
            self._metrics.events_produced.labels(type_).inc(published)
        self._metrics.outbox_backlog.set(max(0, backlog - len(sent) - len(dead)))
        log.debug("published %d events", len(sent))
        return len(sent) + len(dead)

    async def _bury(self, lease: AsyncConnection, dead: Mapping[int, str]) -> None:
        """Move rows that can never be published to the dead letters, in one statement."""
        outbox, letters = self._tables.outbox, self._tables.dead_letters
        moved = (
            outbox.delete()
            .where(outbox.c.id == sa.any_(sa.bindparam("dead", list(dead), type_=_IDS)))
            .returning(
                outbox.c.id,
                outbox.c.event_id,
                outbox.c.type,
                outbox.c.key,
                outbox.c.value,
                outbox.c.headers,
                outbox.c.created_at,
            )
            .cte("moved")
        )
        reasons = (
            sa.func.unnest(
                sa.bindparam("ids", list(dead), type_=_IDS),
                sa.bindparam("reasons", list(dead.values()), type_=pg.ARRAY(sa.Text)),
            )
            .table_valued("id", "reason")
            .render_derived()
        )
        await lease.execute(
            pg.insert(letters)
            .from_select(
                ["event_id", "type", "key", "value", "headers", "created_at", "reason"],
                sa.select(
                    moved.c.event_id,
                    moved.c.type,
                    moved.c.key,
                    moved.c.value,
                    moved.c.headers,
                    moved.c.created_at,
                    reasons.c.reason,
                ).join_from(moved, reasons, moved.c.id == reasons.c.id),
            )
            .on_conflict_do_nothing()
        )
        for row_id, reason in dead.items():
            log.error(
                "outbox row moved to the dead letters", extra={"row": row_id, "reason": reason}
            )

    async def _send(
        self, producer: AIOKafkaProducer, rows: Sequence[Any]
    ) -> tuple[list[asyncio.Future[Any]], list[Any], dict[int, str]]:
        """Queue `rows` as at most one record batch per partition, in id order.

        A send() per message costs more Python than the publishing itself at relay rates.
        The partition is the one send() would choose (the default partitioner over the key).
        Once a partition's batch is full, its later rows wait for the next round: two batches
        of one partition in flight could land out of order if the first one's send is retried
        after a leader change. Returns the futures, the rows they carry, and the rows that can
        never be published with the reason (by outbox id).
        """
        partitions = sorted(await producer.partitions_for(self._topic))
        if self.partitions is not None and len(partitions) != self.partitions:
            raise PartitionCountError(self._topic, len(partitions), self.partitions)
        partition_of: dict[bytes, int] = {}
        batches: dict[int, Any] = {}
        full: set[int] = set()
        sent: list[Any] = []
        dead: dict[int, str] = {}
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
            try:
                headers = [(k, v.encode()) for k, v in row.headers]
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(row.key, row.value, headers)
                if size > MESSAGE_MAX_BYTES:
                    # A batch takes its first record whatever its size; the broker would not.
                    dead[row.id] = (
                        f"{size} bytes: larger than a message may be ({MESSAGE_MAX_BYTES} bytes)"
                    )
                    continue
                appended = batch.append(
                    key=row.key, value=row.value, timestamp=None, headers=headers
                )
            except Exception as exc:  # not encodable as a record: it never will be
                dead[row.id] = f"not encodable: {type(exc).__name__}: {exc}"[:500]
                continue
            if appended is None:
                full.add(partition)
                continue
            sent.append(row)
        futures = [
            await producer.send_batch(batch, self._topic, partition=partition)
            for partition, batch in batches.items()
            if batch.record_count()
        ]
        return futures, sent, dead


class PartitionCountError(RuntimeError):
    """The topic's partition count is not the one this service's stored state assumes."""

    def __init__(self, topic: str, found: int, expected: int) -> None:
        super().__init__(
            f"topic {topic} has {found} partitions, but this service's state was built for "
            f"{expected}. Changing the partition count moves accounts to other partitions; "
            "restore it, or rebuild every service against the new topic (make rebuild-…) after "
            "resetting its consumer_state row."
        )


def hash_schema(schema: str) -> int:
    """A stable 31-bit number for a schema name (Python's hash() is salted per process)."""
    return int.from_bytes(schema.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF
