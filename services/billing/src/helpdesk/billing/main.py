"""Billing's composition root."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.billing.adapters.metrics import BillingMetrics
from helpdesk.billing.adapters.tables import metadata, runtime
from helpdesk.billing.api.routes import router
from helpdesk.billing.handlers import (
    BillingSettings,
    finaliser,
    projection,
    reactions,
    reviewer,
)
from helpdesk.shared.service import ServiceSpec, run_cli


def build_spec() -> ServiceSpec:
    """Describe the billing service (its settings are read here, from the environment)."""
    settings = BillingSettings()
    return ServiceSpec(
        name="billing",
        title="Helpdesk billing",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        reactions=reactions,
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        live_loops=lambda runtime: [finaliser(settings), reviewer(settings)],
        metrics=lambda runtime: [BillingMetrics(runtime.engine, runtime.clock)],
    )


def main() -> None:
    """`python -m helpdesk.billing serve|migrate|rebuild`."""
    run_cli(build_spec)
