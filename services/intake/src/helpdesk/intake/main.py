"""Intake's composition root: the only place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.intake.adapters.tables import metadata, runtime
from helpdesk.intake.api import accounts, people, tickets
from helpdesk.intake.handlers import projection
from helpdesk.shared.service import ServiceSpec, run_cli


def build_spec() -> ServiceSpec:
    """Describe the intake service."""
    return ServiceSpec(
        name="intake",
        title="Helpdesk intake",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        migrations=Path(__file__).parent / "migrations",
        routers=[accounts.router, people.router, tickets.router],
    )


def main() -> None:
    """`python -m helpdesk.intake serve|migrate|rebuild`."""
    run_cli(build_spec)
