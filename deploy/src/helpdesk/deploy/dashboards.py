"""The Grafana dashboards of the operations team, as code: Service desk, Billing, Pipeline health.

`python -m helpdesk.deploy.dashboards` writes them as JSON under deploy/grafana/dashboards/
(what docker-compose.yml provisions); a test checks the committed files are what this module
writes. `helpdesk.deploy.ops_report` renders the same panels' queries without Grafana.

Queries use `$__rate_interval` (Grafana's rate window) and no other template variable, so that
anything evaluating them outside Grafana substitutes just that one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpdesk.deploy._proc import repo_root

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE_INTERVAL = "$__rate_interval"
SERVICE_JOBS = 'job=~"intake|sla-timer|billing|notifier"'


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and the legend of its series."""

    expr: str
    legend: str = "__auto"


@dataclass(frozen=True)
class Panel:
    """A panel: `kind` is Grafana's panel type (stat, timeseries, bargauge, gauge, table)."""

    title: str
    kind: str
    queries: Sequence[Query]
    description: str
    unit: str = "short"
    width: int = 6
    height: int = 4
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dashboard:
    """A dashboard and the file it is written to."""

    uid: str
    title: str
    description: str
    panels: Sequence[Panel]
    time_from: str = "now-6h"

    @property
    def file_name(self) -> str:
        """The JSON file under deploy/grafana/dashboards."""
        return f"{self.uid}.json"


_RED_FROM_1 = ((None, "green"), (1.0, "red"))
_AMBER_FROM_1 = ((None, "green"), (1.0, "orange"))


def _q(expr: str, legend: str = "__auto") -> Query:
    return Query(expr, legend)


SERVICE_DESK = Dashboard(
    uid="helpdesk-service-desk",
    title="Helpdesk: Service desk",
    description="Backlog, SLA compliance and breaches, the work queue and technicians.",
    panels=[
        Panel(
            "Open backlog",
            "stat",
            [_q('sum(helpdesk_backlog_tickets{status!="resolved"})')],
            "Tickets neither resolved nor closed.",
        ),
        Panel(
            "Breached now",
            "stat",
            [_q('sum(helpdesk_sla_clocks{state="breached"})')],
            "SLA clocks past their deadline and not met yet.",
            thresholds=_RED_FROM_1,
        ),
        Panel(
            "At risk now",
            "stat",
            [_q('sum(helpdesk_sla_clocks{state="at_risk"})')],
            "SLA clocks past their warning instant, not breached yet.",
            thresholds=_AMBER_FROM_1,
        ),
        Panel(
            "SLA compliance",
            "stat",
            [
                _q(
                    "sum(helpdesk_sla_met_total) / (sum(helpdesk_sla_met_total)"
                    " + sum(helpdesk_sla_breaches_total))"
                )
            ],
            "Share of the SLA clocks that ended (met or breached) which were met in time.",
            unit="percentunit",
            thresholds=((None, "red"), (0.9, "orange"), (0.95, "green")),
        ),
        Panel(
            "Backlog by priority",
            "timeseries",
            [_q("sum by (priority) (helpdesk_backlog_tickets)", "{{priority}}")],
            "Tickets not closed, by priority (none: not triaged yet).",
            width=8,
            height=8,
        ),
        Panel(
            "Backlog by status",
            "timeseries",
            [_q("sum by (status) (helpdesk_backlog_tickets)", "{{status}}")],
            "Tickets not closed, by status.",
            width=8,
            height=8,
        ),
        Panel(
            "Backlog age",
            "bargauge",
            [_q("sum by (le) (helpdesk_backlog_age_seconds_bucket)", "{{le}}")],
            "Tickets not closed reported at most this long ago (seconds; cumulative buckets).",
            width=8,
            height=8,
            extra={"format": "heatmap"},
        ),
        Panel(
            "SLA clocks by state",
            "timeseries",
            [_q("sum by (state) (helpdesk_sla_clocks)", "{{state}}")],
            "Clocks still to be met: on track, at risk, paused, breached.",
            width=8,
            height=8,
        ),
        Panel(
            "SLA compliance by priority",
            "bargauge",
            [
                _q(
                    "sum by (priority) (helpdesk_sla_met_total) / (sum by (priority)"
                    " (helpdesk_sla_met_total) + sum by (priority) (helpdesk_sla_breaches_total)"
                    " > 0)",
                    "{{priority}}",
                )
            ],
            "Share met in time of every SLA clock that ended, per priority.",
            unit="percentunit",
            width=8,
            height=8,
        ),
        Panel(
            "Breaches by priority (last hour)",
            "timeseries",
            [
                _q(
                    "sum by (priority) (increase(helpdesk_sla_breaches_total[1h]))",
                    "{{priority}}",
                )
            ],
            "SLA clocks breached in the hour before each point.",
            width=8,
            height=8,
        ),
        Panel(
            "At risk and breached by account",
            "table",
            [_q("sum by (account_id, state) (helpdesk_sla_account_clocks)", "{{account_id}}")],
            "Per account while there are few accounts (HELPDESK_METRICS_MAX_ACCOUNT_LABELS).",
            width=12,
            height=8,
        ),
        Panel(
            "First response and resolution time, p90",
            "bargauge",
            [
                _q(
                    "histogram_quantile(0.9, sum by (le, priority)"
                    " (helpdesk_first_response_minutes_bucket))",
                    "response {{priority}}",
                ),
                _q(
                    "histogram_quantile(0.9, sum by (le, priority)"
                    " (helpdesk_resolution_minutes_bucket))",
                    "resolution {{priority}}",
                ),
            ],
            "90th percentile of every ticket so far, in business minutes.",
            unit="m",
            width=12,
            height=8,
        ),
        Panel(
            "Escalations by tier",
            "bargauge",
            [_q("sum by (tier) (helpdesk_escalations_total)", "{{tier}}")],
            "Tickets escalated so far, by tier.",
            width=8,
            height=8,
        ),
        Panel(
            "Open tickets per technician",
            "bargauge",
            [_q("sum by (technician) (helpdesk_technician_open_tickets)", "{{technician}}")],
            "Tickets neither resolved nor closed, per assignee.",
            width=8,
            height=8,
        ),
        Panel(
            "Queue: nearest deadline",
            "stat",
            [_q("min(helpdesk_queue_oldest_deadline_timestamp_seconds) - time()")],
            "Time until the work queue's nearest SLA deadline (negative: overdue by).",
            unit="s",
            width=8,
            height=8,
            thresholds=((None, "red"), (0.0, "orange"), (3600.0, "green")),
        ),
    ],
)

BILLING = Dashboard(
    uid="helpdesk-billing",
    title="Helpdesk: Billing",
    description="This month's minutes and revenue, allowance use, invoices and fair-use events.",
    time_from="now-7d",
    panels=[
        Panel(
            "Billable minutes this month",
            "stat",
            [_q('sum(helpdesk_billing_month_minutes{kind="billable"})')],
            "Minutes priced at the hourly rate this month (each account's local month).",
            unit="m",
        ),
        Panel(
            "Included minutes used this month",
            "stat",
            [_q('sum(helpdesk_billing_month_minutes{kind="included_used"})')],
            "Minutes taken from the plans' included allowances.",
            unit="m",
        ),
        Panel(
            "Revenue this month",
            "stat",
            [_q("sum by (currency) (helpdesk_billing_month_revenue_cents) / 100", "{{currency}}")],
            "What this month would bill if finalised now.",
            unit="currencyUSD",
        ),
        Panel(
            "Allowance use",
            "gauge",
            [
                _q(
                    'sum(helpdesk_billing_month_minutes{kind="included_used"})'
                    ' / sum(helpdesk_billing_month_minutes{kind="included"})'
                )
            ],
            "Included minutes used of all included minutes this month.",
            unit="percentunit",
            thresholds=((None, "green"), (0.8, "orange"), (1.0, "red")),
        ),
        Panel(
            "Minutes this month by kind",
            "timeseries",
            [_q("sum by (kind) (helpdesk_billing_month_minutes)", "{{kind}}")],
            "Billable, included, included used, in scope and out of scope.",
            unit="m",
            width=12,
            height=8,
        ),
        Panel(
            "Revenue this month by plan",
            "timeseries",
            [
                _q(
                    "sum by (plan, currency) (helpdesk_billing_month_revenue_cents) / 100",
                    "{{plan}} {{currency}}",
                )
            ],
            "This month's draft amount, by plan kind.",
            unit="currencyUSD",
            width=12,
            height=8,
        ),
        Panel(
            "Accounts with the allowance used up",
            "stat",
            [_q("sum(helpdesk_billing_accounts_allowance_used_up)")],
            "Accounts that used all of this month's included minutes.",
            thresholds=_AMBER_FROM_1,
        ),
        Panel(
            "Fair-use events",
            "bargauge",
            [_q("sum by (cap) (helpdesk_billing_fair_use_events_total)", "{{cap}}")],
            "Fair-use caps exceeded so far (per day, per ticket).",
        ),
        Panel(
            "Final invoices",
            "stat",
            [_q("sum by (currency) (helpdesk_billing_invoices_total)", "{{currency}}")],
            "Final invoices issued so far.",
        ),
        Panel(
            "Invoiced so far",
            "stat",
            [_q("sum by (currency) (helpdesk_billing_invoiced_cents_total) / 100", "{{currency}}")],
            "Totals of every final invoice.",
            unit="currencyUSD",
        ),
    ],
)

PIPELINE = Dashboard(
    uid="helpdesk-pipeline",
    title="Helpdesk: Pipeline health",
    description="Services up, event rates, consumer lag, outbox, parked events, deliveries, mail.",
    time_from="now-1h",
    panels=[
        Panel(
            "Services up",
            "stat",
            [_q(f"sum(up{{{SERVICE_JOBS}}})")],
            "Services whose /metrics answered the last scrape (of 4).",
            thresholds=((None, "red"), (4.0, "green")),
        ),
        Panel(
            "Parked events",
            "stat",
            [_q("sum(helpdesk_parked_events)")],
            "Events whose handler failed or whose ticket sequence has a gap, all services.",
            thresholds=_RED_FROM_1,
        ),
        Panel(
            "Webhook success rate",
            "stat",
            [
                _q(
                    'sum(increase(helpdesk_webhook_attempts_total{verdict="delivered"}[1h]))'
                    " / sum(increase(helpdesk_webhook_attempts_total[1h]))"
                )
            ],
            "Attempts answered with success in the last hour, of all attempts.",
            unit="percentunit",
            thresholds=((None, "red"), (0.9, "orange"), (0.99, "green")),
        ),
        Panel(
            "Disabled webhook endpoints",
            "stat",
            [_q('sum(helpdesk_webhook_endpoints{state="disabled"})')],
            "Subscriptions the notifier disabled after failing for too long.",
            thresholds=_RED_FROM_1,
        ),
        Panel(
            "Service up",
            "timeseries",
            [_q(f"up{{{SERVICE_JOBS}}}", "{{job}}")],
            "1 while Prometheus scrapes the service.",
            width=12,
            height=8,
        ),
        Panel(
            "Events consumed per second by type",
            "timeseries",
            [
                _q(
                    f"sum by (type) (rate(helpdesk_events_consumed_total[{RATE_INTERVAL}]))",
                    "{{type}}",
                )
            ],
            "Events applied per second, all services.",
            unit="ops",
            width=12,
            height=8,
        ),
        Panel(
            "Consumer lag by service and partition",
            "timeseries",
            [
                _q(
                    "max by (job, partition) (helpdesk_consumer_lag)",
                    "{{job}} p{{partition}}",
                )
            ],
            "Records between each consumer's position and the partition head.",
            width=12,
            height=8,
        ),
        Panel(
            "Outbox backlog and age",
            "timeseries",
            [
                _q("max by (job) (helpdesk_outbox_backlog)", "{{job}} backlog"),
                _q("max by (job) (helpdesk_outbox_oldest_age_seconds)", "{{job}} age (s)"),
            ],
            "Events written and not yet published; the age of the oldest one.",
            width=12,
            height=8,
        ),
        Panel(
            "Parked events by service",
            "timeseries",
            [_q("sum by (job, reason) (helpdesk_parked_events_by_reason)", "{{job}} {{reason}}")],
            "failed: the handler raised; held: a ticket sequence gap.",
            width=12,
            height=8,
        ),
        Panel(
            "Webhook deliveries by state",
            "timeseries",
            [_q("sum by (state) (helpdesk_webhook_deliveries)", "{{state}}")],
            "retrying is the retry queue; failed deliveries were given up.",
            width=12,
            height=8,
        ),
        Panel(
            "Webhook delivery latency",
            "timeseries",
            [
                _q(
                    "histogram_quantile(0.5, sum by (le)"
                    f" (rate(helpdesk_webhook_latency_seconds_bucket[{RATE_INTERVAL}])))",
                    "p50",
                ),
                _q(
                    "histogram_quantile(0.95, sum by (le)"
                    f" (rate(helpdesk_webhook_latency_seconds_bucket[{RATE_INTERVAL}])))",
                    "p95",
                ),
            ],
            "Time from sending a webhook to its answer, per attempt.",
            unit="s",
            width=12,
            height=8,
        ),
        Panel(
            "Webhook endpoints by state",
            "bargauge",
            [_q("sum by (state) (helpdesk_webhook_endpoints)", "{{state}}")],
            "Healthy, failing (no success since the first failure), disabled.",
            width=12,
            height=8,
        ),
        Panel(
            "E-mails",
            "bargauge",
            [
                _q("sum by (status) (helpdesk_mails)", "{{status}}"),
                _q(
                    "sum by (verdict) (increase(helpdesk_mail_failures_total[1h]))",
                    "failed submissions, last hour: {{verdict}}",
                ),
            ],
            "Sent, no recipient, queued, and retrying (the relay refused them so far); SMTP "
            "submissions that failed in the last hour, by what followed (retry or give_up).",
            width=12,
            height=8,
        ),
    ],
)

DASHBOARDS = (SERVICE_DESK, BILLING, PIPELINE)


def _layout(panels: Sequence[Panel]) -> list[dict[str, int]]:
    """Grid positions: left to right, wrapping at Grafana's 24 columns."""
    positions, x, y, row_height = [], 0, 0, 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"h": panel.height, "w": panel.width, "x": x, "y": y})
        x += panel.width
        row_height = max(row_height, panel.height)
    return positions


def panel_json(panel: Panel, panel_id: int, position: dict[str, int]) -> dict[str, Any]:
    """One panel as Grafana's dashboard JSON model."""
    steps = [{"color": color, "value": value} for value, color in panel.thresholds]
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "refId": chr(ord("A") + i),
            "range": panel.kind == "timeseries",
            "instant": panel.kind != "timeseries",
            **panel.extra,
        }
        for i, query in enumerate(panel.queries)
    ]
    options: dict[str, Any] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}
    }
    if panel.kind == "timeseries":
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "bargauge":
        options |= {"displayMode": "gradient", "orientation": "horizontal"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": position,
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": options,
        "targets": targets,
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """A dashboard as Grafana's dashboard JSON model (provisioned read-only)."""
    positions = _layout(dashboard.panels)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["helpdesk", "operations"],
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": dashboard.time_from, "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": []},
        "panels": [
            panel_json(panel, i + 1, position)
            for i, (panel, position) in enumerate(zip(dashboard.panels, positions, strict=True))
        ],
    }


def dashboards_dir() -> Path:
    """deploy/grafana/dashboards in the repository."""
    return repo_root() / "deploy" / "grafana" / "dashboards"


def render(dashboard: Dashboard) -> str:
    """The file content of a dashboard."""
    return json.dumps(dashboard_json(dashboard), indent=2) + "\n"


def main() -> int:
    """Write every dashboard's JSON file."""
    for dashboard in DASHBOARDS:
        path = dashboards_dir() / dashboard.file_name
        path.write_text(render(dashboard), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
