"""The notifier's operations metrics, computed from its own tables at scrape time.

Webhook attempts (the attempt log, kept by a rebuild and only ever appended to) count like
counters: by verdict, and as a latency histogram. Deliveries, endpoints and mails are gauges
of their current state. No label names an endpoint, ticket or account.

`helpdesk_mails{status="retrying"}` is the mails queued that were tried (or leased) at least
once, `failed` those given up; every failed SMTP submission is counted where the mail loops
catch the error (`helpdesk_mail_failures_total{verdict="retry"|"give_up"}`, in
`adapters/mailing.py`), since a back-off leaves no row to count.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.tables import (
    attempts,
    deliveries,
    delivery_state,
    endpoint_state,
    mail_leases,
    mails,
    subscriptions,
)
from helpdesk.shared.metrics import StateCollector

VERDICTS = ("delivered", "retry", "give_up", "disable_endpoint")
#: Attempt latency buckets, in seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NotifierMetrics(StateCollector):
    """Webhook attempts, latency, retry queue, endpoints; mails by status."""

    async def measure(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        """Every notifier family as of `now`."""
        return [
            *await self._attempts(conn),
            await self._deliveries(conn, now),
            await self._endpoints(conn),
            await self._mails(conn),
        ]

    async def _attempts(self, conn: AsyncConnection) -> list[Metric]:
        by_verdict = CounterMetricFamily(
            "helpdesk_webhook_attempts",
            "Webhook delivery attempts, by verdict (delivered, retry, give_up, disable_endpoint).",
            labels=["verdict"],
        )
        counts = dict.fromkeys(VERDICTS, 0)
        for verdict, count in await conn.execute(
            sa.select(attempts.c.verdict, sa.func.count()).group_by(attempts.c.verdict)
        ):
            counts[str(verdict)] = int(count)
        for verdict, count in sorted(counts.items()):
            by_verdict.add_metric([verdict], count)

        bounds = [
            sa.func.count().filter(attempts.c.latency_ms <= b * 1000) for b in LATENCY_BUCKETS
        ]
        row = (
            await conn.execute(
                sa.select(
                    *bounds,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(attempts.c.latency_ms), 0),
                )
            )
        ).one()
        latency = HistogramMetricFamily(
            "helpdesk_webhook_latency_seconds",
            "Time from sending a webhook to its answer (or failure), per attempt.",
        )
        buckets = [(str(b), int(n)) for b, n in zip(LATENCY_BUCKETS, row, strict=False)]
        buckets.append(("+Inf", int(row[-2])))
        latency.add_metric([], buckets, int(row[-1]) / 1000)
        return [by_verdict, latency]

    async def _deliveries(self, conn: AsyncConnection, now: dt.datetime) -> Metric:
        # A pending delivery with attempts behind it is in the retry queue; one without is new.
        tried = sa.func.coalesce(delivery_state.c.attempts, 0) > 0
        state = sa.case(
            (sa.and_(deliveries.c.status == "pending", tried), "retrying"),
            else_=deliveries.c.status,
        )
        counts = dict.fromkeys(("pending", "retrying", "delivered", "failed"), 0)
        for name, count in await conn.execute(
            sa.select(state, sa.func.count())
            .select_from(
                deliveries.outerjoin(
                    delivery_state, delivery_state.c.delivery_id == deliveries.c.delivery_id
                )
            )
            .group_by(state)
        ):
            counts[str(name)] = int(count)
        family = GaugeMetricFamily(
            "helpdesk_webhook_deliveries",
            "Webhook deliveries by state: pending (not tried yet), retrying (the retry queue), "
            "delivered, failed (given up).",
            labels=["state"],
        )
        for name, count in sorted(counts.items()):
            family.add_metric([name], count)
        return family

    async def _endpoints(self, conn: AsyncConnection) -> Metric:
        live = subscriptions.c.deleted_at.is_(None)
        failing = endpoint_state.c.failing_since.is_not(None)
        state = sa.case(
            (sa.not_(subscriptions.c.enabled), "disabled"),
            (failing, "failing"),
            else_="healthy",
        )
        counts = dict.fromkeys(("healthy", "failing", "disabled"), 0)
        for name, count in await conn.execute(
            sa.select(state, sa.func.count())
            .select_from(
                subscriptions.outerjoin(
                    endpoint_state,
                    endpoint_state.c.subscription_id == subscriptions.c.subscription_id,
                )
            )
            .where(live)
            .group_by(state)
        ):
            counts[str(name)] = int(count)
        family = GaugeMetricFamily(
            "helpdesk_webhook_endpoints",
            "Webhook subscriptions (endpoints) by state: healthy, failing (failures without a "
            "success since), disabled.",
            labels=["state"],
        )
        for name, count in sorted(counts.items()):
            family.add_metric([name], count)
        return family

    async def _mails(self, conn: AsyncConnection) -> Metric:
        leased = sa.exists().where(mail_leases.c.mail_id == mails.c.mail_id)
        state = sa.case(
            (sa.and_(mails.c.status == "queued", leased), "retrying"),
            else_=mails.c.status,
        )
        counts = dict.fromkeys(("queued", "retrying", "sent", "no_recipient", "failed"), 0)
        for name, count in await conn.execute(sa.select(state, sa.func.count()).group_by(state)):
            counts[str(name)] = int(count)
        family = GaugeMetricFamily(
            "helpdesk_mails",
            "E-mails by status: queued, retrying (tried, not accepted by the relay yet), "
            "sent, no_recipient, failed (given up).",
            labels=["status"],
        )
        for name, count in sorted(counts.items()):
            family.add_metric([name], count)
        return family
