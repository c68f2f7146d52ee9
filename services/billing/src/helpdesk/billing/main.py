"""Billing's composition root."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.billing.adapters.tables import metadata, runtime
from helpdesk.billing.api.routes import router
from helpdesk.billing.handlers import projection
from helpdesk.shared.service import ServiceSpec, run_cli


def build_spec() -> ServiceSpec:
    """Describe the billing service."""
    return ServiceSpec(
        name="billing",
        title="Helpdesk billing",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
    )


def main() -> None:
    """`python -m helpdesk.billing serve|migrate|rebuild`."""
    run_cli(build_spec)
