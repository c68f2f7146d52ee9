"""Live loops: side effects from state, for owned partitions, claimed in PostgreSQL.

A live loop is an async callable that gets a `LiveContext` and returns the instant of the next
item it will have to act on (or None). The runtime runs each loop in its own task, sleeps until
that instant (or until the consumer applied something new), and never holds a process-wide lock
while the loop works: PostgreSQL decides instead. `LiveContext.claim` opens a transaction that
first checks this replica still owns the partitions at the epoch it took them with (the rows are
read FOR SHARE, so a takeover waits for the transaction and every later one fails); the loop
claims each item in it (`UPDATE … WHERE fired_at IS NULL RETURNING`) and emits the event that
records the side effect, with a deterministic id. HTTP and SMTP calls happen outside that
transaction, at least once, carrying a stable idempotency id.

Items are due only up to the partition's watermark: the instant up to which its projection is
known to be current, so a deadline never fires for a ticket whose resolution is still unapplied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from helpdesk.shared.consumer import (
    ConsumerRuntime,
    Ownership,
    Projection,
    UnitOfWork,
    fence_key,
)
from helpdesk.shared.context import Clock
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.waiting import woken_or_elapsed

log = logging.getLogger(__name__)


class OwnershipLostError(Exception):
    """This replica no longer owns a partition it tried to act for."""


@dataclass(frozen=True)
class LiveContext:
    """What a live loop may see and do in one tick."""

    owned: Mapping[int, Ownership]
    now: datetime
    engine: AsyncEngine
    tables: RuntimeTables
    projection: Projection
    consumer: str
    owner: str
    metrics: Metrics | None = None
    #: How long a deadline waits past its instant before it is acted on (`due_until`).
    lateness: timedelta = timedelta(0)

    @property
    def partitions(self) -> list[int]:
        """The partitions this replica acts for."""
        return sorted(self.owned)

    def watermark(self, partition: int) -> datetime:
        """The instant up to which `partition`'s projection is current."""
        return self.owned[partition].watermark

    def due_until(self, partition: int) -> datetime:
        """The latest deadline of `partition` to act on now: current in the projection and at
        least `lateness` in the past. An event that met the deadline just before it may still
        be on its way (in another service's outbox, or relayed by a slower host) when the
        deadline passes; the allowed lateness gives it time to arrive, so that a ticket that
        met its target is not declared breached. What is fired keeps its own instant."""
        current = min(self.watermark(partition), self.now)
        if current - datetime.min.replace(tzinfo=UTC) < self.lateness:
            return current  # nothing applied yet: no deadline is due anyway
        return current - self.lateness

    @contextlib.asynccontextmanager
    async def claim(self, partitions: Iterable[int]) -> AsyncIterator[UnitOfWork]:
        """A transaction that holds the ownership of `partitions`, or OwnershipLostError."""
        wanted = sorted(set(partitions))
        owners = self.tables.partition_owners
        async with self.engine.begin() as conn:
            # The rebuild fence, shared: a rebuild's swap never interleaves with a side effect
            # being recorded (it would swap in a state without it).
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock_shared(:k)"),
                {"k": fence_key(self.tables.schema)},
            )
            rows = await conn.execute(
                sa.select(owners.c.partition, owners.c.epoch)
                .where(
                    owners.c.consumer == self.consumer,
                    owners.c.owner == self.owner,
                    owners.c.partition.in_(wanted),
                )
                .with_for_update(read=True)
            )
            held = {row.partition: row.epoch for row in rows}
            lost = [p for p in wanted if held.get(p) != self.owned[p].epoch]
            if lost:
                raise OwnershipLostError(f"partitions {lost} were taken over")
            yield UnitOfWork(conn, self.tables, self.projection, self.metrics)


LiveLoop = Callable[[LiveContext], Awaitable[datetime | None]]


class LiveLoops:
    """Runs a service's live loops next to its consumer."""

    def __init__(
        self,
        consumer: ConsumerRuntime,
        loops: Iterable[LiveLoop],
        *,
        engine: AsyncEngine,
        tables: RuntimeTables,
        projection: Projection,
        metrics: Metrics,
        clock: Clock,
        max_idle: float = 5.0,
        retry_after: float = 0.05,
        lateness: timedelta = timedelta(0),
    ) -> None:
        self._consumer = consumer
        self._loops = list(loops)
        self._engine = engine
        self._tables = tables
        self._projection = projection
        self._metrics = metrics
        self._clock = clock
        self._max_idle = max_idle
        self._retry_after = retry_after
        self._lateness = lateness
        self._wakeups = [asyncio.Event() for _ in self._loops]
        self._next_due: list[datetime | None] = [None for _ in self._loops]
        consumer.on_progress(self.wake)

    def wake(self, changed: bool = True) -> None:
        """Run loops again now: every loop on new state or ownership; on a watermark move only
        the loops with an item due by now (they were waiting for the projection)."""
        now = self._clock() if not changed else None
        for index, event in enumerate(self._wakeups):
            due = self._next_due[index]
            if now is None or (due is not None and due <= now):
                event.set()

    def context(self) -> LiveContext:
        """The context of a tick at the current instant."""
        return LiveContext(
            owned=self._consumer.ownerships(),
            now=self._clock(),
            engine=self._engine,
            tables=self._tables,
            projection=self._projection,
            consumer=self._consumer.name,
            owner=self._consumer.owner,
            metrics=self._metrics,
            lateness=self._lateness,
        )

    async def run(self) -> None:
        """Run every loop until cancelled."""
        async with asyncio.TaskGroup() as group:
            for index in range(len(self._loops)):
                group.create_task(self._run_one(index))

    async def _run_one(self, index: int) -> None:
        loop, wakeup = self._loops[index], self._wakeups[index]
        while True:
            wakeup.clear()
            context = self.context()
            next_due: datetime | None = None
            if context.owned:
                try:
                    next_due = await loop(context)
                except OwnershipLostError as exc:
                    log.info("live loop stopped acting: %s", exc)
                except Exception:
                    log.exception("live loop failed; it runs again")
                    next_due = None
            self._next_due[index] = next_due
            delay = self._max_idle
            if next_due is not None:
                # An item due now but beyond the watermark waits for the projection to catch up.
                wait = (next_due - self._clock()).total_seconds()
                delay = min(self._max_idle, max(self._retry_after, wait))
            await woken_or_elapsed(wakeup, delay)
