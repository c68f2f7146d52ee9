"""Prometheus metrics every service exposes at /metrics.

Each service instance owns its own `CollectorRegistry`, so that tests can run several services
(or two replicas of one) in one process without their counters mixing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
