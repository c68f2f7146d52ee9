"""Prometheus metrics every service exposes at /metrics.

Each service instance owns its own `CollectorRegistry`, so that tests can run several services
(or two replicas of one) in one process without their counters mixing.

Two kinds of metric live here:

- event-time instruments (`Metrics`): counters and histograms the runtime updates as it
  consumes, publishes and handles events;
- state-derived metrics (`StateCollector`): a few aggregate SQL queries over a service's own
  tables, so that the figures are exact and survive restarts and rebuilds. A Prometheus scrape
  is synchronous and runs on the event loop, so a collector answers from a cache; a scrape
  that finds the cache older than `HELPDESK_METRICS_REFRESH_SECONDS` starts one refresh in the
  background (never two at once). A figure is thus at most one scrape interval plus the refresh
  period old, the database sees at most one set of queries per period whatever the scrape
  rate, and nothing runs between scrapes (no task to start or stop with the service).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

#: The priorities every SLA figure is reported for, so a query sees a 0 rather than nothing.
PRIORITIES = ("P1", "P2", "P3", "P4")


class MetricsSettings(BaseSettings):
    """How state-derived metrics are computed (environment `HELPDESK_METRICS_*`)."""

    model_config = SettingsConfigDict(env_prefix="HELPDESK_METRICS_", extra="ignore")

    #: The least age of the cached figures before a scrape refreshes them.
    refresh_seconds: float = 10.0
    #: Per-account series (SLA by account) are exported only while there are at most this many
    #: accounts: beyond it they would blow up the series count, and the aggregate ones remain.
    max_account_labels: int = 25


class Metrics:
    """The runtime metrics of one service instance."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.events_consumed = Counter(
            "helpdesk_events_consumed",
            "Events applied by this service's consumer, by type.",
            ["type"],
            registry=self.registry,
        )
        self.events_produced = Counter(
            "helpdesk_events_produced",
            "Events published to Kafka by this service's outbox relay, by type.",
            ["type"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "helpdesk_handler_seconds",
            "Time spent in event handlers, by type.",
            ["type"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "helpdesk_consumer_lag",
            "Records between this consumer's position and the partition head.",
            ["partition"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "helpdesk_outbox_backlog",
            "Events written to the outbox and not yet published.",
            registry=self.registry,
        )
        self.relay_failing = Gauge(
            "helpdesk_outbox_relay_failing",
            "1 while this replica's outbox relay fails to publish (it retries with backoff).",
            registry=self.registry,
        )
        self.duplicates_skipped = Counter(
            "helpdesk_duplicate_events",
            "Redelivered events skipped because their event_id was already applied.",
            registry=self.registry,
        )
        self.sequence_gaps = Counter(
            "helpdesk_sequence_gaps",
            "Ticket events whose seq was not the ticket's last applied seq + 1.",
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "helpdesk_handler_errors",
            "Events whose handler raised (each is parked; the partition goes on).",
            ["type"],
            registry=self.registry,
        )

        self.parked_events = Gauge(
            "helpdesk_parked_events",
            "Events parked because their handler failed or their ticket's sequence has a gap.",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text exposition format of this instance's metrics."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Metric families computed from a service's tables, served from a cache (see the module).

    Subclasses implement `measure`: one read-only transaction, the injected clock's `now`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        settings: MetricsSettings | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.settings = settings or MetricsSettings()
        self._families: list[Metric] = []
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def measure(self, conn: AsyncConnection, now: datetime) -> list[Metric]:
        """The metric families as of `now` (each service's collector says what it counts)."""

    async def refresh(self) -> None:
        """Compute the families now and cache them (a failed refresh keeps the last ones)."""
        try:
            async with self.engine.connect() as conn:
                self._families = await self.measure(conn, self.clock())
        except Exception:
            log.warning("%s: metrics refresh failed", type(self).__name__, exc_info=True)
        finally:
            self._refreshed_at = time.monotonic()

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not run `collect` (and its database queries)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The cached families; starts a refresh if they are older than the refresh period."""
        stale = (
            self._refreshed_at is None
            or time.monotonic() - self._refreshed_at >= self.settings.refresh_seconds
        )
        if stale and (self._refreshing is None or self._refreshing.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: a synchronous caller
                loop = asyncio.get_running_loop()
                self._refreshing = loop.create_task(self.refresh())
        return list(self._families)


class RuntimeStateCollector(StateCollector):
    """What every service's runtime tables say: outbox age and parked events."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        outbox: sa.Table,
        parked: sa.Table,
        metrics: Metrics,
        dead_letters: sa.Table,
    ) -> None:
        super().__init__(engine, clock)
        self._outbox = outbox
        self._parked = parked
        self._metrics = metrics
        self._dead_letters = dead_letters

    async def measure(self, conn: AsyncConnection, now: datetime) -> list[Metric]:
        """Age of the oldest unpublished event; parked events by reason (also the gauge); dead
        letters of the outbox."""
        oldest = await conn.scalar(sa.select(sa.func.min(self._outbox.c.created_at)))
        age = GaugeMetricFamily(
            "helpdesk_outbox_oldest_age_seconds",
            "Age of the oldest event in the outbox not yet published (0 when it is empty).",
        )
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        rows = await conn.execute(
            sa.select(self._parked.c.reason, sa.func.count()).group_by(self._parked.c.reason)
        )
        by_reason = {"failed": 0, "held": 0} | {str(r): int(n) for r, n in rows}
        parked = GaugeMetricFamily(
            "helpdesk_parked_events_by_reason",
            "Parked events: `failed` (the handler raised) or `held` (a ticket sequence gap).",
            labels=["reason"],
        )
        for reason, count in sorted(by_reason.items()):
            parked.add_metric([reason], count)
        # The runtime's own gauge is otherwise only set when /readyz is asked.
        self._metrics.parked_events.set(sum(by_reason.values()))
        letters = await conn.scalar(sa.select(sa.func.count()).select_from(self._dead_letters))
        dead = GaugeMetricFamily(
            "helpdesk_outbox_dead_letters",
            "Outbox rows that can never be published (too large, not encodable), moved aside.",
        )
        dead.add_metric([], int(letters or 0))
        return [age, parked, dead]


def register_all(registry: CollectorRegistry, collectors: Sequence[Collector]) -> None:
    """Register `collectors` on a service instance's registry."""
    for collector in collectors:
        registry.register(collector)
