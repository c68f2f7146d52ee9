"""The process shape every service shares: engine, outbox relay, consumer, HTTP app, CLI.

A service's `main.py` describes itself with a `ServiceSpec` and hands it to `ServiceRuntime`;
nothing is built at import time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.auth import Authenticator, RevocationListener, key_projection
from helpdesk.shared.consumer import (
    ConsumerRuntime,
    Projection,
    Reactions,
    UnitOfWork,
    check_partition_count,
)
from helpdesk.shared.context import Clock, utc_now
from helpdesk.shared.db import (
    RuntimeTables,
    SchemaDriftError,
    create_engine,
    is_migrated,
    migrate,
)
from helpdesk.shared.idempotency import IdempotencyKeys, command_transaction
from helpdesk.shared.kafka import check_message_size, topic_partitions
from helpdesk.shared.live import LiveLoop, LiveLoops
from helpdesk.shared.logs import configure_logging
from helpdesk.shared.metrics import Metrics, RuntimeStateCollector, register_all
from helpdesk.shared.operations import (
    DeadLetter,
    count_parked,
    list_dead_letters,
    operations_router,
)
from helpdesk.shared.outbox import OutboxRelay
from helpdesk.shared.rebuild import rebuild, retry_parked
from helpdesk.shared.settings import Settings
from helpdesk.shared.web import ERROR_RESPONSES, create_app

log = logging.getLogger(__name__)

LiveLoopFactory = Callable[["ServiceRuntime"], Sequence[LiveLoop]]
TaskFactory = Callable[["ServiceRuntime"], Sequence[Callable[[], Awaitable[None]]]]
CollectorFactory = Callable[["ServiceRuntime"], Sequence[Collector]]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything that distinguishes one service from another."""

    name: str  # the contract name: intake, sla_timer, billing, notifier
    title: str
    metadata: sa.MetaData
    tables: RuntimeTables
    projection: Projection
    migrations: Path
    routers: Sequence[APIRouter]
    reactions: Reactions = field(default_factory=Reactions)
    live_loops: LiveLoopFactory = field(default=lambda runtime: ())
    tasks: TaskFactory = field(default=lambda runtime: ())
    #: State-derived metrics (`helpdesk.shared.metrics.StateCollector`s) on the service's tables.
    metrics: CollectorFactory = field(default=lambda runtime: ())
    #: Accounts whose partitions a rebuild replays before the rest, because applying other
    #: partitions' events needs theirs (the notifier's provider-wide subscriptions).
    rebuild_first: Sequence[UUID] = ()
    #: Paths whose routes read and limit their own request bodies (intake's raw e-mail); every
    #: other body is limited to `helpdesk.shared.web.MAX_BODY_BYTES`.
    raw_body_paths: Sequence[str] = ()

    @property
    def schema(self) -> str:
        """The service's PostgreSQL schema."""
        assert self.metadata.schema is not None
        return self.metadata.schema


class StopTimeoutError(RuntimeError):
    """Tasks that did not end after their cancellation; the replica stopped without them."""

    def __init__(self, service: str, tasks: Iterable[asyncio.Task[None]]) -> None:
        stacks = [
            f"{task.get_name()}:\n" + "\n".join(_awaiting(task))
            for task in sorted(tasks, key=lambda t: t.get_name())
        ]
        super().__init__(
            f"{service} stopped without tasks that ignored their cancellation:\n"
            + "\n".join(stacks)
        )


def _awaiting(task: asyncio.Task[None]) -> list[str]:
    # Where the task waits, outermost first: `Task.print_stack` shows only the outermost frame
    # of a suspended coroutine, and the culprit is where the chain of awaits ends.
    lines = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaited = getattr(awaited, "cr_await", None)
    return lines


class ServiceRuntime:
    """One running instance (replica) of a service."""

    def __init__(self, spec: ServiceSpec, settings: Settings, *, clock: Clock = utc_now) -> None:
        self.spec = spec
        # Filled while the spec builds its parts (below), run at stop().
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        # Every service also keeps the API keys, to authenticate them itself.
        self.projection = Projection(tables=spec.projection.tables)
        self.projection.include(spec.projection)
        keys = key_projection(spec.tables)
        if not keys.types <= self.projection.types:
            self.projection.include(keys)
        self.reactions = spec.reactions
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics(spec.name)
        self.engine = create_engine(settings.database_url)
        self.relay = OutboxRelay(
            self.engine,
            spec.tables,
            settings.kafka_bootstrap,
            settings.topic,
            self.metrics,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_ms / 1000,
        )
        self.consumer = ConsumerRuntime(
            spec.name,
            engine=self.engine,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic,
            tables=spec.tables,
            projection=self.projection,
            reactions=self.reactions,
            metrics=self.metrics,
            max_records=settings.consumer_max_records,
            poll_ms=settings.consumer_poll_ms,
            clock=clock,
            dedup_retention_hours=settings.dedup_retention_hours,
        )
        self.live = LiveLoops(
            self.consumer,
            spec.live_loops(self),
            engine=self.engine,
            tables=spec.tables,
            projection=self.projection,
            metrics=self.metrics,
            clock=clock,
            max_idle=settings.live_loop_max_idle_ms / 1000,
            lateness=timedelta(seconds=settings.allowed_lateness_seconds),
        )
        runtime_state = RuntimeStateCollector(
            self.engine,
            clock,
            spec.tables.outbox,
            spec.tables.parked_events,
            self.metrics,
            spec.tables.dead_letters,
        )
        register_all(self.metrics.registry, [runtime_state, *spec.metrics(self)])
        self.revocations = RevocationListener(self.engine, spec.tables.schema)
        self._tasks: list[asyncio.Task[None]] = []
        self._migrated = False

    async def start(self) -> None:
        """Check the topic, then start the relay, the consumer, live loops and own tasks."""
        partitions = await topic_partitions(self.settings.kafka_bootstrap, self.settings.topic)
        await check_partition_count(self.engine, self.spec.tables, self.spec.name, len(partitions))
        await check_message_size(self.settings.kafka_bootstrap, self.settings.topic)
        self.relay.partitions = self.consumer.partitions = len(partitions)
        await self.revocations.start()
        await self.relay.start()
        runners: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("relay", self.relay.run),
            ("consumer", self.consumer.run),
            ("live", self.live.run),
        ]
        runners += [(f"task{i}", task) for i, task in enumerate(self.spec.tasks(self))]
        for name, run in runners:
            self._tasks.append(asyncio.create_task(_supervised(run, name), name=name))

    async def stop(self) -> None:
        """Cancel every task (the consumer leaves its group) and close connections.

        A task still running `stop_timeout_seconds` after its cancellation is left behind, and
        `StopTimeoutError` names it with its stack once everything else is closed. Waiting on
        would never end (a cancellation swallowed somewhere, as cpython gh-86296 once did
        here), and ending without it loses nothing: what a task acknowledges or sends is
        claimed in PostgreSQL first, so a restarted replica takes up the rest.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.settings.stop_timeout_seconds)
        for close in reversed(self._on_stop):
            await close()
        await self.relay.stop()
        await self.revocations.stop()
        await self.engine.dispose()
        if stuck:
            raise StopTimeoutError(self.spec.name, stuck)

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` at stop(), once the tasks have ended (e.g. a live loop's HTTP pool)."""
        self._on_stop.append(close)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One database transaction; the relay is woken once it has committed.

        Under a POST with an Idempotency-Key it is the request's transaction, which holds the
        key's claim and commits with the stored answer once the route has answered (so a
        route reads its own writes through this connection, not a pooled one).
        """
        async with command_transaction(self.engine) as conn:
            yield conn
        self.relay.notify()

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction with `emit`; the relay is woken once it has committed."""
        async with self.transaction() as conn:
            yield self.bind(conn)

    def bind(self, conn: AsyncConnection) -> UnitOfWork:
        """A unit of work of this service on a transaction the caller holds."""
        return UnitOfWork(conn, self.spec.tables, self.projection, self.metrics)

    async def readiness(self) -> dict[str, bool]:
        """migrated, database reachable, consumer joined and caught up now (each owned
        partition within `ready_max_lag` records of its head), nothing parked, and the outbox
        relay publishing (not failing for longer than its `stuck_after`)."""
        database = True
        parked = 0
        try:
            async with self.engine.connect() as conn:
                table = self.spec.tables.parked_events
                parked = int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
                if not self._migrated:
                    self._migrated = await is_migrated(
                        conn, self.spec.metadata, self.spec.migrations
                    )
        except Exception:
            database = False
        self.metrics.parked_events.set(parked)
        relay_failure = self.relay.failure()
        if relay_failure is not None:
            log.warning("not ready: the outbox relay fails", extra={"error": relay_failure})
        return {
            "migrated": self._migrated,
            "database": database,
            "caught_up": await self.consumer.caught_up_now(self.settings.ready_max_lag),
            "no_parked_events": parked == 0,
            "relay_publishing": relay_failure is None,
        }

    def app(self) -> FastAPI:
        """The HTTP app; its lifespan starts and stops this runtime."""

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        authenticate = Authenticator(
            self.settings.admin_token.get_secret_value(),
            self.engine,
            self.spec.tables,
            clock=self.clock,
        )
        # Authentication runs inside the idempotency middleware, so a stored answer is only
        # replayed to the principal it was given to.
        idempotency = IdempotencyKeys(
            self.engine,
            self.spec.tables,
            authenticate,
            retention=timedelta(hours=self.settings.idempotency_retention_hours),
            lease=timedelta(seconds=self.settings.idempotency_lease_seconds),
            on_commit=self.relay.notify,
        )
        app = create_app(
            title=self.spec.title,
            metrics=self.metrics,
            readiness=self.readiness,
            lifespan=lifespan,
            middleware=[idempotency.middleware],
            raw_body_paths=self.spec.raw_body_paths,
        )
        for router in [*self.spec.routers, operations_router()]:
            # One shared set of problem+json error answers in every service's OpenAPI document.
            app.include_router(router, responses=ERROR_RESPONSES)
        app.state.runtime = self
        app.state.authenticate = authenticate
        return app

    async def rebuild(self) -> int:
        """Replay the stream into shadow tables and swap them in (replicas may keep running)."""
        return await rebuild(
            self.spec.name,
            engine=self.engine,
            bootstrap=self.settings.kafka_bootstrap,
            topic=self.settings.topic,
            tables=self.spec.tables,
            projection=self.projection,
            metrics=self.metrics,
            reactions=self.reactions,
            max_records=self.settings.consumer_max_records,
            first=self.spec.rebuild_first,
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The outbox rows that could never be published, newest first."""
        async with self.engine.connect() as conn:
            return await list_dead_letters(conn, self.spec.tables, limit)

    async def retry_parked(self) -> tuple[int, int]:
        """Apply parked events again after a fix: (applied, still failing)."""
        return await retry_parked(
            self.spec.name,
            engine=self.engine,
            topic=self.settings.topic,
            tables=self.spec.tables,
            projection=self.projection,
            reactions=self.reactions,
            metrics=self.metrics,
        )


async def _supervised(run: Callable[[], Awaitable[None]], name: str) -> None:
    """Run a long-lived task; restart it after a failure instead of letting the service die."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it", name)
            await asyncio.sleep(1.0)


def tune_garbage_collection() -> None:
    """Set the cyclic garbage collector up for a long-running process that applies batches.

    Each fetched batch allocates hundreds of thousands of short-lived objects (records, events,
    rows), freed by reference counting; at the default thresholds the collector still runs
    every 700 allocations, and its full collections rescan every long-lived object (modules,
    table metadata). The objects alive after startup are frozen out of collection, and a
    collection runs every 50 000 allocations: rebuilds run 15-46 % faster (ADR 0003).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_cli(spec_factory: Callable[[], ServiceSpec], argv: Sequence[str] | None = None) -> None:
    """`python -m helpdesk.<service> serve|migrate|rebuild|retry-parked`."""
    parser = argparse.ArgumentParser(prog=f"python -m helpdesk.{spec_factory().name}")
    parser.add_argument(
        "command", choices=["serve", "migrate", "rebuild", "retry-parked", "dead-letters"]
    )
    args = parser.parse_args(argv)
    settings = Settings()
    spec = spec_factory()
    configure_logging(spec.name, settings.log_level)
    tune_garbage_collection()
    if args.command == "migrate":
        try:
            asyncio.run(migrate(settings.database_url, spec.metadata, spec.migrations))
        except SchemaDriftError as exc:
            print(f"{spec.name}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"{spec.name}: migrated schema {spec.schema}")
    elif args.command == "rebuild":
        asyncio.run(_rebuild(spec, settings))
    elif args.command == "retry-parked":
        asyncio.run(_retry_parked(spec, settings))
    elif args.command == "dead-letters":
        asyncio.run(_print_dead_letters(spec, settings))
    else:
        runtime = ServiceRuntime(spec, settings)
        # uvloop and httptools, not uvicorn's fallbacks (asyncio's own loop, the pure-Python
        # h11 parser): every service spends most of its CPU in loop turns, socket I/O and
        # request parsing, and on 2 cores that CPU is a command's latency (docs/adr/0007).
        config = uvicorn.Config(
            runtime.app(),
            host=settings.http_host,
            port=settings.port_for(spec.name),
            log_config=None,
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
        uvicorn.Server(config).run()


async def _rebuild(spec: ServiceSpec, settings: Settings) -> None:
    runtime = ServiceRuntime(spec, settings)
    try:
        read = await runtime.rebuild()
        async with runtime.engine.connect() as conn:
            parked = await count_parked(conn, spec.tables)
        print(
            f"{spec.name}: rebuilt from {read} events; {parked} parked "
            "(list them in parked_events; `retry-parked` after a fix)"
        )
    finally:
        await runtime.engine.dispose()


async def _print_dead_letters(spec: ServiceSpec, settings: Settings) -> None:
    runtime = ServiceRuntime(spec, settings)
    try:
        letters = await runtime.dead_letters(limit=1000)
    finally:
        await runtime.engine.dispose()
    for letter in letters:
        print(
            f"{letter.dead_at.isoformat()} {letter.event_id} {letter.type} "
            f"{letter.size_bytes} bytes: {letter.reason}"
        )
    print(f"{spec.name}: {len(letters)} dead letters")


async def _retry_parked(spec: ServiceSpec, settings: Settings) -> None:
    runtime = ServiceRuntime(spec, settings)
    try:
        applied, failing = await runtime.retry_parked()
        print(f"{spec.name}: {applied} parked events applied, {failing} still failing")
    finally:
        await runtime.engine.dispose()
