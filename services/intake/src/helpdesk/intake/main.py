"""Intake's composition root: the only place its parts are wired together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.intake.adapters.metrics import IntakeMetrics
from helpdesk.intake.adapters.smtp import SmtpListener
from helpdesk.intake.adapters.tables import metadata, runtime
from helpdesk.intake.api import accounts, email, people, sessions, tickets
from helpdesk.intake.handlers import projection, reactions
from helpdesk.shared.service import ServiceRuntime, ServiceSpec, run_cli


def build_spec() -> ServiceSpec:
    """Describe the intake service."""
    return ServiceSpec(
        name="intake",
        title="Helpdesk intake",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        reactions=reactions,
        migrations=Path(__file__).parent / "migrations",
        routers=[accounts.router, people.router, sessions.router, tickets.router, email.router],
        raw_body_paths=[email.RAW_MESSAGE_PATH],
        tasks=smtp_tasks,
        metrics=lambda runtime: [IntakeMetrics(runtime.engine, runtime.clock)],
    )


def smtp_tasks(runtime: ServiceRuntime) -> Sequence[Callable[[], Awaitable[None]]]:
    """The SMTP listener, when HELPDESK_SMTP_PORT is set (0, the default, disables it)."""
    if not runtime.settings.smtp_port:
        return []
    settings = runtime.settings
    listener = SmtpListener(
        runtime, settings.http_host, settings.smtp_port, data_size_limit=settings.email_max_bytes
    )
    return [listener.run]


def main() -> None:
    """`python -m helpdesk.intake serve|migrate|rebuild`."""
    run_cli(build_spec)
