"""The notifier's composition root."""

from __future__ import annotations

from pathlib import Path

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.notifier.adapters.delivery import WebhookDeliveries
from helpdesk.notifier.adapters.digests import DailyDigests
from helpdesk.notifier.adapters.mailing import MailDeliveries, SubmissionFailures
from helpdesk.notifier.adapters.metrics import NotifierMetrics
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import metadata, runtime
from helpdesk.notifier.api.routes import build_router
from helpdesk.notifier.handlers import projection
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT
from helpdesk.shared.live import LiveLoop
from helpdesk.shared.service import ServiceRuntime, ServiceSpec, run_cli


def build_spec(settings: NotifierSettings | None = None) -> ServiceSpec:
    """Describe the notifier service (its own settings from the environment by default)."""
    own = settings or NotifierSettings()

    def live_loops(service: ServiceRuntime) -> list[LiveLoop]:
        failures = SubmissionFailures(
            own.mail_retry_policy, service.clock, service.metrics.registry
        )
        webhooks = WebhookDeliveries(own, service.clock)
        service.on_stop(webhooks.aclose)
        return [
            webhooks,
            MailDeliveries(own, service.clock, failures),
            DailyDigests(own, failures),
        ]

    return ServiceSpec(
        name="notifier",
        title="Helpdesk notifier",
        metadata=metadata,
        tables=runtime,
        projection=projection,
        migrations=Path(__file__).parent / "migrations",
        routers=[build_router(own)],
        live_loops=live_loops,
        metrics=lambda runtime: [NotifierMetrics(runtime.engine, runtime.clock)],
        # Provider-wide subscriptions live on the provider's partition; replayed first, each
        # exists before the other partitions' events it matches are replayed.
        rebuild_first=[PROVIDER_ACCOUNT],
    )


def main() -> None:
    """`python -m helpdesk.notifier serve|migrate|rebuild`."""
    run_cli(build_spec)
