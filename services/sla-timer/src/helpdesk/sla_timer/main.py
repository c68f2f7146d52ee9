"""The SLA timer's composition root."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.shared.service import ServiceSpec, run_cli
from helpdesk.sla_timer.adapters.metrics import SlaMetrics
from helpdesk.sla_timer.adapters.tables import metadata, runtime
from helpdesk.sla_timer.api.routes import router
from helpdesk.sla_timer.handlers import fire_timers, projection, reactions


def build_spec() -> ServiceSpec:
    """Describe the SLA timer service."""
    return ServiceSpec(
        name="sla_timer",
        title="Helpdesk SLA timer",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        reactions=reactions,
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        live_loops=lambda runtime: [fire_timers],
        metrics=lambda runtime: [SlaMetrics(runtime.engine, runtime.clock)],
    )


def main() -> None:
    """`python -m helpdesk.sla_timer serve|migrate|rebuild`."""
    run_cli(build_spec)
