"""Billing's operations metrics, computed from its own tables at scrape time.

This month's figures are each account's usage in its own current calendar month, rated with
the pure domain exactly as `GET /v1/accounts/{id}/usage` rates it, then summed by plan kind
and currency (never by account: an account id is not a label here). Final invoices and
fair-use events are history rows, so they count like counters and survive rebuilds.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.billing.adapters.books import load_books
from helpdesk.billing.adapters.tables import (
    billing_accounts,
    billing_fair_use_events,
    billing_invoices,
)
from helpdesk.billing.domain.periods import period_of
from helpdesk.billing.domain.rating import plan_at
from helpdesk.billing.domain.usage import period_usage
from helpdesk.shared.metrics import StateCollector

PLAN_KINDS = ("hourly", "monthly", "managed")
MINUTE_KINDS = ("billable", "included", "included_used", "in_scope", "out_of_scope")
FAIR_USE_CAPS = ("per_day", "per_ticket")


class BillingMetrics(StateCollector):
    """Minutes and revenue this month, allowance use, final invoices, fair-use events."""

    async def measure(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        """Every billing family as of `now` (each account's month is its local one)."""
        account_ids = list((await conn.scalars(sa.select(billing_accounts.c.account_id))).all())
        books = await load_books(conn, account_ids)
        minutes: Counter[tuple[str, str]] = Counter(
            {(kind, plan): 0 for kind in MINUTE_KINDS for plan in PLAN_KINDS}
        )
        revenue: Counter[tuple[str, str]] = Counter()
        over_allowance: Counter[str] = Counter(dict.fromkeys(PLAN_KINDS, 0))
        for book in books.values():
            usage = period_usage(book.rating(period_of(now, book.timezone)))
            plan: str = plan_at(book.plans, now).kind
            minutes["billable", plan] += usage.billable_minutes
            minutes["included", plan] += usage.included_minutes
            minutes["included_used", plan] += usage.included_used_minutes
            minutes["in_scope", plan] += usage.in_scope_minutes
            minutes["out_of_scope", plan] += usage.out_of_scope_minutes
            revenue[plan, usage.currency] += usage.amount_cents
            if usage.included_minutes and usage.included_used_minutes >= usage.included_minutes:
                over_allowance[plan] += 1

        month_minutes = GaugeMetricFamily(
            "helpdesk_billing_month_minutes",
            "Minutes this month (each account's local month), by kind (billable, included "
            "allowance, included used, in scope, out of scope) and plan kind.",
            labels=["kind", "plan"],
        )
        for (kind, plan_kind), value in sorted(minutes.items()):
            month_minutes.add_metric([kind, plan_kind], value)
        month_revenue = GaugeMetricFamily(
            "helpdesk_billing_month_revenue_cents",
            "What this month would bill if finalised now, in cents, by plan kind and currency.",
            labels=["plan", "currency"],
        )
        for plan_kind in PLAN_KINDS:
            if not any(p == plan_kind for p, _ in revenue):
                revenue[plan_kind, "USD"] += 0
        for (plan_kind, currency), cents in sorted(revenue.items()):
            month_revenue.add_metric([plan_kind, currency], cents)
        exhausted = GaugeMetricFamily(
            "helpdesk_billing_accounts_allowance_used_up",
            "Accounts that used all of this month's included minutes, by plan kind.",
            labels=["plan"],
        )
        for plan_kind, count in sorted(over_allowance.items()):
            exhausted.add_metric([plan_kind], count)

        invoiced = CounterMetricFamily(
            "helpdesk_billing_invoiced_cents",
            "Totals of final invoices, in cents, by currency.",
            labels=["currency"],
        )
        invoices = CounterMetricFamily(
            "helpdesk_billing_invoices", "Final invoices issued, by currency.", labels=["currency"]
        )
        rows = await conn.execute(
            sa.select(
                billing_invoices.c.currency,
                sa.func.coalesce(sa.func.sum(billing_invoices.c.total_cents), 0),
                sa.func.count(),
            ).group_by(billing_invoices.c.currency)
        )
        for currency, cents, count in rows:
            invoiced.add_metric([str(currency)], int(cents))
            invoices.add_metric([str(currency)], int(count))

        fair_use = CounterMetricFamily(
            "helpdesk_billing_fair_use_events",
            "Fair-use caps exceeded (one per account and day or ticket), by cap.",
            labels=["cap"],
        )
        caps = dict.fromkeys(FAIR_USE_CAPS, 0)
        for cap, count in await conn.execute(
            sa.select(billing_fair_use_events.c.cap, sa.func.count()).group_by(
                billing_fair_use_events.c.cap
            )
        ):
            caps[str(cap)] = int(count)
        for cap, count in sorted(caps.items()):
            fair_use.add_metric([cap], count)
        return [month_minutes, month_revenue, exhausted, invoiced, invoices, fair_use]
