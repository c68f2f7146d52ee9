"""The SLA timer's operations metrics, computed from its own tables at scrape time.

Labels stay bounded: priority, ticket status, clock kind, SLA state, technician (the staff
list) and, only while there are few accounts (`HELPDESK_METRICS_MAX_ACCOUNT_LABELS`), account.
Never a ticket id.

- backlog: every ticket not closed, by priority and status, and its age since it was reported;
- SLA now: the clocks still to be met of tickets not closed, as on track, at risk (past their
  warning instant), paused or breached;
- SLA outcomes: fired `met`, `breach` and `warning` timers, and the retractions of breaches a
  late event proved wrong (history rows that never change, so they count like counters and
  survive restarts and rebuilds; breaches that stand = breaches − retractions);
- time to first response and to resolution, in business minutes, of every clock met so far;
- open tickets per technician, and the work queue's nearest deadline.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.metrics import PRIORITIES, StateCollector
from helpdesk.sla_timer.adapters.tables import sla_tickets, sla_timers

STATUSES = ("new", "open", "waiting_on_customer", "waiting_on_vendor", "resolved")
CLOCK_KINDS = ("response", "resolution")
#: The fired rows counted as outcomes (`retraction`: a breach a late event proved wrong).
OUTCOMES = ("met", "breach", "warning", "retraction")
CLOCK_STATES = ("on_track", "at_risk", "paused", "breached")
#: Backlog age buckets, in seconds: 1 h, 4 h, 8 h, 1 d, 3 d, 1 week, 30 days.
AGE_BUCKETS = (3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
#: Time-to-target buckets, in business minutes: 15 min to one week.
MINUTE_BUCKETS = (15, 30, 60, 120, 240, 480, 960, 1440, 2880, 4320, 10080)

_OPEN = sla_tickets.c.status != "closed"

# One row per clock still to be met of a ticket not closed, with its state at :now. A clock
# folded as running whose deadline has passed since is breached now (its timer may not have
# fired yet); a breached clock that was met late is done and not counted.
_ACTIVE_CLOCKS = sa.text(
    f"""
    SELECT coalesce(c->>'priority', t.priority, 'none') AS priority,
           c->>'kind' AS kind,
           t.account_id AS account_id,
           CASE
             WHEN c->>'status' = 'breached' THEN 'breached'
             WHEN (c->>'paused')::boolean THEN 'paused'
             WHEN (c->>'due_at')::timestamptz <= :now THEN 'breached'
             WHEN (c->>'warning_at')::timestamptz <= :now THEN 'at_risk'
             ELSE 'on_track'
           END AS state,
           count(*) AS clocks
    FROM {sla_tickets.fullname} AS t, jsonb_array_elements(t.clocks) AS c
    WHERE t.status <> 'closed'
      AND c->>'status' IN ('running', 'paused', 'breached')
      AND c->>'met_at' IS NULL AND c->>'stopped_at' IS NULL
    GROUP BY 1, 2, 3, 4
    """
)


def _met_times_query() -> sa.TextClause:
    """Met clocks (first response: the first cycle's response clock; resolution: any cycle's
    resolution clock; escalation clocks excluded), bucketed by business minutes used."""
    buckets = ", ".join(
        f"count(*) FILTER (WHERE m <= {bound}) AS le_{bound}" for bound in MINUTE_BUCKETS
    )
    return sa.text(
        f"""
        SELECT kind, priority, {buckets}, count(*) AS total, coalesce(sum(m), 0) AS minutes
        FROM (
          SELECT c->>'kind' AS kind, coalesce(c->>'priority', 'none') AS priority,
                 (c->>'elapsed_minutes')::numeric AS m
          FROM {sla_tickets.fullname} AS t, jsonb_array_elements(t.clocks) AS c
          WHERE c->>'met_at' IS NOT NULL AND c->>'tier' IS NULL
            AND (c->>'kind' = 'resolution' OR (c->>'kind' = 'response' AND c->>'cycle' = '1'))
        ) AS met
        GROUP BY kind, priority
        """
    )


class SlaMetrics(StateCollector):
    """Backlog, SLA state and outcomes, response and resolution times, technicians, queue."""

    async def measure(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        """Every SLA timer family as of `now`."""
        families = await self._backlog(conn, now)
        families += await self._clocks(conn, now)
        families += await self._outcomes(conn)
        families += await self._times(conn)
        return families

    async def _backlog(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        rows = (
            await conn.execute(
                sa.select(
                    sla_tickets.c.priority,
                    sla_tickets.c.status,
                    sla_tickets.c.reported_at,
                    sla_tickets.c.assignee,
                    sla_tickets.c.next_due_at,
                ).where(_OPEN)
            )
        ).all()
        by_status: Counter[tuple[str, str]] = Counter(
            {(p, s): 0 for p in PRIORITIES for s in STATUSES}
        )
        ages: defaultdict[str, list[float]] = defaultdict(list)
        technicians: Counter[str] = Counter({"unassigned": 0})
        deadlines: list[dt.datetime] = []
        for row in rows:
            priority = row.priority or "none"
            by_status[priority, row.status] += 1
            ages[priority].append(max(0.0, (now - row.reported_at).total_seconds()))
            if row.status != "resolved":
                technicians[row.assignee or "unassigned"] += 1
            if row.next_due_at is not None and row.status != "resolved":
                deadlines.append(row.next_due_at)

        backlog = GaugeMetricFamily(
            "helpdesk_backlog_tickets",
            "Tickets not closed, by priority (P1..P4, none before triage) and status.",
            labels=["priority", "status"],
        )
        for (priority, status), count in sorted(by_status.items()):
            backlog.add_metric([priority, status], count)

        age = GaugeHistogramMetricFamily(
            "helpdesk_backlog_age_seconds",
            "Age of the tickets not closed (since reported), by priority.",
            labels=["priority"],
        )
        for priority in sorted(set(PRIORITIES) | set(ages)):
            values = ages.get(priority, [])
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in AGE_BUCKETS]
            buckets.append(("+Inf", len(values)))
            age.add_metric([priority], buckets, sum(values))

        per_technician = GaugeMetricFamily(
            "helpdesk_technician_open_tickets",
            "Tickets open (not resolved or closed) per assigned technician.",
            labels=["technician"],
        )
        for technician, count in sorted(technicians.items()):
            per_technician.add_metric([technician], count)

        oldest = GaugeMetricFamily(
            "helpdesk_queue_oldest_deadline_timestamp_seconds",
            "The work queue's nearest SLA deadline (Unix time; in the past when overdue).",
        )
        if deadlines:
            oldest.add_metric([], min(deadlines).timestamp())
        return [backlog, age, per_technician, oldest]

    async def _clocks(self, conn: AsyncConnection, now: dt.datetime) -> list[Metric]:
        rows = (await conn.execute(_ACTIVE_CLOCKS, {"now": now})).all()
        states: Counter[tuple[str, str, str]] = Counter(
            {(p, k, s): 0 for p in PRIORITIES for k in CLOCK_KINDS for s in CLOCK_STATES}
        )
        per_account: Counter[tuple[str, str]] = Counter()
        for row in rows:
            states[row.priority, row.kind, row.state] += row.clocks
            per_account[str(row.account_id), row.state] += row.clocks
        clocks = GaugeMetricFamily(
            "helpdesk_sla_clocks",
            "SLA clocks still to be met, by priority, kind and state "
            "(on_track, at_risk: past the warning instant, paused, breached).",
            labels=["priority", "kind", "state"],
        )
        for key, count in sorted(states.items()):
            clocks.add_metric(list(key), count)
        families: list[Metric] = [clocks]
        accounts = {account for account, _ in per_account}
        if len(accounts) <= self.settings.max_account_labels:
            by_account = GaugeMetricFamily(
                "helpdesk_sla_account_clocks",
                "SLA clocks at risk or breached now, by account (only exported while there are "
                "at most HELPDESK_METRICS_MAX_ACCOUNT_LABELS accounts with clocks).",
                labels=["account_id", "state"],
            )
            for account in sorted(accounts):
                for state in ("at_risk", "breached"):
                    by_account.add_metric([account, state], per_account[account, state])
            families.append(by_account)
        return families

    async def _outcomes(self, conn: AsyncConnection) -> list[Metric]:
        priority = sa.func.coalesce(sla_timers.c.payload["priority"].astext, "none")
        rows = (
            await conn.execute(
                sa.select(
                    sla_timers.c.action,
                    sla_timers.c.kind,
                    priority,
                    sla_timers.c.account_id,
                    sa.func.count(),
                )
                .where(
                    sla_timers.c.fired_at.is_not(None),
                    sla_timers.c.action.in_(OUTCOMES),
                )
                .group_by(sla_timers.c.action, sla_timers.c.kind, priority, sla_timers.c.account_id)
            )
        ).all()
        outcomes: Counter[tuple[str, str, str]] = Counter(
            {(a, k, p): 0 for a in OUTCOMES for k in CLOCK_KINDS for p in PRIORITIES}
        )
        breaches_by_account: Counter[str] = Counter()
        for action, kind, prio, account_id, count in rows:
            outcomes[action, kind or "none", prio] += count
            if action == "breach":
                breaches_by_account[str(account_id)] += count
        names = {
            "met": ("helpdesk_sla_met", "SLA clocks met in time"),
            "breach": ("helpdesk_sla_breaches", "SLA clocks breached"),
            "warning": ("helpdesk_sla_warnings", "SLA warnings fired"),
            "retraction": ("helpdesk_sla_breach_retractions", "SLA breaches retracted"),
        }
        families: list[Metric] = []
        for action, (name, text) in names.items():
            family = CounterMetricFamily(
                name,
                f"{text}, by priority and clock kind (fired timers).",
                labels=["priority", "kind"],
            )
            for (act, kind, prio), count in sorted(outcomes.items()):
                if act == action:
                    family.add_metric([prio, kind], count)
            families.append(family)
        if len(breaches_by_account) <= self.settings.max_account_labels:
            by_account = CounterMetricFamily(
                "helpdesk_sla_account_breaches",
                "SLA clocks breached, by account (only while there are at most "
                "HELPDESK_METRICS_MAX_ACCOUNT_LABELS such accounts).",
                labels=["account_id"],
            )
            for account, count in sorted(breaches_by_account.items()):
                by_account.add_metric([account], count)
            families.append(by_account)
        return families

    async def _times(self, conn: AsyncConnection) -> list[Metric]:
        rows = (await conn.execute(_met_times_query())).mappings().all()
        found: dict[tuple[str, str], Any] = {(r["kind"], r["priority"]): r for r in rows}
        families: list[Metric] = []
        for kind, name, text in (
            ("response", "helpdesk_first_response_minutes", "Time to first response"),
            ("resolution", "helpdesk_resolution_minutes", "Time to resolution"),
        ):
            family = HistogramMetricFamily(
                name,
                f"{text} of every ticket so far, in business minutes of its SLA calendar, "
                "by priority.",
                labels=["priority"],
            )
            priorities = set(PRIORITIES) | {p for k, p in found if k == kind}
            for priority in sorted(priorities):
                row = found.get((kind, priority))
                buckets = [(str(b), int(row[f"le_{b}"]) if row else 0) for b in MINUTE_BUCKETS]
                buckets.append(("+Inf", int(row["total"]) if row else 0))
                total = float(row["minutes"]) if row else 0.0
                family.add_metric([priority], buckets, total)
            families.append(family)
        return families
