"""Intake's operations metrics, computed from its own tables at scrape time.

Escalations by tier are counted from the ticket event store (every `ticket.escalated` ever
recorded), so the figure survives restarts and never double counts a redelivery. Inbound
e-mails are counted by what became of them.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import inbound_messages, ticket_events
from helpdesk.shared.metrics import StateCollector

TIERS = ("engineering", "vendor", "management")


class IntakeMetrics(StateCollector):
    """Escalations by tier; inbound e-mails by outcome."""

    async def measure(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        """Both families as of now (they do not depend on the instant)."""
        tier = ticket_events.c.envelope["payload"]["tier"].astext
        escalations = CounterMetricFamily(
            "helpdesk_escalations",
            "Tickets escalated, by tier (engineering, vendor, management).",
            labels=["tier"],
        )
        counts = dict.fromkeys(TIERS, 0)
        for name, count in await conn.execute(
            sa.select(tier, sa.func.count())
            .where(ticket_events.c.type == "ticket.escalated")
            .group_by(tier)
        ):
            counts[str(name)] = int(count)
        for name, count in sorted(counts.items()):
            escalations.add_metric([name], count)

        inbound = CounterMetricFamily(
            "helpdesk_inbound_emails",
            "E-mails received by intake, by outcome.",
            labels=["outcome"],
        )
        for outcome, count in await conn.execute(
            sa.select(inbound_messages.c.outcome, sa.func.count()).group_by(
                inbound_messages.c.outcome
            )
        ):
            inbound.add_metric([str(outcome)], int(count))
        return [escalations, inbound]
