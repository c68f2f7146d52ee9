"""The notifier's composition root."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.notifier.adapters.tables import metadata, runtime
from helpdesk.notifier.api.routes import router
from helpdesk.notifier.handlers import projection
from helpdesk.shared.service import ServiceSpec, run_cli


def build_spec() -> ServiceSpec:
    """Describe the notifier service."""
    return ServiceSpec(
        name="notifier",
        title="Helpdesk notifier",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
    )


def main() -> None:
    """`python -m helpdesk.notifier serve|migrate|rebuild`."""
    run_cli(build_spec)
