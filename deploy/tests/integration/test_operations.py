"""The operations stack end to end: the four services and a Prometheus with the project's rules.

Traffic makes every panel meaningful (back-dated tickets that breach, one at risk, met clocks,
escalations, time entries over a fair-use cap, last month's invoices finalised, webhooks to a
healthy and to a failing endpoint, mails into the mail sink); then every query of every
dashboard panel is evaluated against that Prometheus and must return a finite value, and the
ops report renders the Service desk and Pipeline panels to a PNG with none empty.
"""

from __future__ import annotations

import asyncio
import http.server
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpdesk.deploy._proc import free_port, wait_until
from helpdesk.deploy.dashboards import DASHBOARDS, PIPELINE, SERVICE_DESK
from helpdesk.deploy.ops_report import PrometheusClient, promql, render
from helpdesk.deploy.prometheus import prometheus_binary
from helpdesk.deploy.stack import SERVICES, Infra, ServiceSpec, Stack
from tests.support import fresh_stack_settings

pytestmark = pytest.mark.e2e

TOKEN = "ops-test-admin-token"
# Prometheus starts before the traffic, so rate windows this long see all of it.
RATE_INTERVAL = "3m"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Webhook endpoints: /ok answers 204, anything else 500."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


def _iso(at: datetime) -> str:
    return at.isoformat()


def _drive(intake: httpx.Client, notifier: httpx.Client, receiver: str) -> None:
    """Accounts on three presets, back-dated tickets and their commands, two webhooks."""
    now = datetime.now(UTC).replace(microsecond=0)
    for path in ("ok", "fail"):
        body = {"url": f"{receiver}/{path}", "event_types": ["ticket.*", "sla.*"]}
        _ok(notifier.post("/v1/subscriptions", json=body), 201)
    importer = _ok(intake.post("/v1/api-keys", json={"role": "import"}), 201)["token"]
    imports = {"Authorization": f"Bearer {importer}"}
    month_start = now.replace(day=1, hour=0, minute=0, second=0)
    last_month = (month_start - timedelta(days=1)).replace(day=3, hour=9)
    accounts = {}
    for preset in ("four_tier_24x7", "cloud_platform", "small_business_remote"):
        account = _ok(
            intake.post("/v1/accounts", json={"name": f"{preset}-{uuid.uuid4().hex[:6]}"}), 201
        )
        # In force since last month, so last month's invoice exists and is finalised.
        agreement = {"preset": preset, "effective_from": _iso(last_month - timedelta(days=2))}
        _ok(intake.put(f"/v1/accounts/{account['id']}/agreement", json=agreement))
        contact = _ok(
            intake.post(
                f"/v1/accounts/{account['id']}/contacts",
                json={
                    "name": "Key Contact",
                    "email": f"key-{uuid.uuid4().hex[:8]}@example.com",
                    "roles": ["key_contact"],
                    "visibility": "account",
                },
            ),
            201,
        )
        accounts[preset] = (account["id"], contact["id"])

    def ticket(preset: str, priority: str, reported: datetime) -> str:
        account_id, contact_id = accounts[preset]
        body = {
            "account_id": account_id,
            "contact_id": contact_id,
            "subject": f"{priority} {preset}",
            "description": "ops test",
            "channel": "phone",
            "priority": priority,
            "affected_users": 1,
            "reported_at": _iso(reported),
        }
        ticket_id: str = _ok(intake.post("/v1/tickets", json=body, headers=imports), 201)["id"]
        return ticket_id

    def command(ticket_id: str, name: str, at: datetime, **body: Any) -> None:
        body["occurred_at"] = _iso(at)
        _ok(intake.post(f"/v1/tickets/{ticket_id}/{name}", json=body, headers=imports))

    # Breached: P1 and P2 tickets reported hours ago and never answered.
    for priority in ("P1", "P2", "P1"):
        breached = ticket("four_tier_24x7", priority, now - timedelta(hours=5))
        command(breached, "assign", now - timedelta(hours=4), technician="alice")
    # At risk: a P1 reported 50 minutes ago (response due after 60, warned after 45).
    ticket("four_tier_24x7", "P1", now - timedelta(minutes=50))
    # Met in time, escalated, worked and resolved.
    for priority, tier in (("P3", "engineering"), ("P2", "vendor"), ("P4", "management")):
        met = ticket("four_tier_24x7", priority, now - timedelta(hours=3))
        command(met, "assign", now - timedelta(hours=3) + timedelta(minutes=5), technician="bob")
        at = now - timedelta(hours=3) + timedelta(minutes=10)
        command(met, "comments", at, body="On it.", public=True)
        command(met, "escalate", at + timedelta(minutes=5), tier=tier)
        if tier != "vendor":
            command(met, "resolve", at + timedelta(minutes=30), resolution="fix", summary="done")
    # Live (not imported) work, which mails the contact: imported history sends nothing.
    account_id, contact_id = accounts["four_tier_24x7"]
    live = {
        "account_id": account_id,
        "contact_id": contact_id,
        "subject": "Printer on fire",
        "description": "ops test, live",
        "channel": "phone",
        "priority": "P3",
        "affected_users": 2,
    }
    live_id = _ok(intake.post("/v1/tickets", json=live), 201)["id"]
    _ok(intake.post(f"/v1/tickets/{live_id}/comments", json={"body": "Seen.", "public": True}))
    # Billing: last month's work (finalised invoices), this month's work, a fair-use cap.
    for preset in ("cloud_platform", "small_business_remote"):
        old = ticket(preset, "P3", last_month)
        command(
            old,
            "time-entries",
            last_month + timedelta(hours=1),
            minutes=90,
            work_type="remote",
            worked_at=_iso(last_month + timedelta(minutes=30)),
        )
        command(old, "resolve", last_month + timedelta(hours=2), resolution="fix", summary="ok")
        # This month's work lies in this month (the accounts' zone is UTC) even in its first
        # hours: two hours back would be last month's, and the month's minutes would show 0.
        reported = max(now - timedelta(hours=2), month_start)
        current = ticket(preset, "P3", reported)
        command(
            current,
            "time-entries",
            reported + (now - reported) / 2,
            minutes=75,
            work_type="remote",
            worked_at=_iso(reported + (now - reported) / 4),
        )


# What the traffic must show, beyond "a value": the stories the dashboards are for.
POSITIVE = (
    'sum(helpdesk_sla_clocks{state="breached"})',
    'sum(helpdesk_sla_clocks{priority="P1", state="at_risk"})',
    "sum(helpdesk_sla_breaches_total)",
    "sum(helpdesk_sla_met_total)",
    "sum(helpdesk_escalations_total)",
    'sum(helpdesk_technician_open_tickets{technician="alice"})',
    "sum(helpdesk_resolution_minutes_count)",
    'sum(helpdesk_billing_month_minutes{kind=~"in_scope|out_of_scope"})',
    "sum(helpdesk_billing_month_revenue_cents)",
    "sum(helpdesk_billing_invoices_total)",
    "sum(helpdesk_billing_fair_use_events_total)",
    'sum(helpdesk_webhook_attempts_total{verdict="delivered"})',
    'sum(helpdesk_webhook_deliveries{state=~"retrying|failed"})',
    'sum(helpdesk_webhook_endpoints{state=~"failing|disabled"})',
    'sum(helpdesk_mails{status="sent"})',
    f"sum(rate(helpdesk_events_consumed_total[{RATE_INTERVAL}]))",
)


def _evaluate_all(client: PrometheusClient) -> dict[str, str]:
    """Every dashboard query: '' when it returns a finite value, else what it returned."""
    problems: dict[str, str] = {}
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for query in panel.queries:
                result = client.instant(promql(query.expr, RATE_INTERVAL))
                finite = [r for r in result if math.isfinite(float(r["value"][1]))]
                if not finite:
                    problems[f"{dashboard.uid}/{panel.title}: {query.expr}"] = str(result)[:200]
    for expr in POSITIVE:
        result = client.instant(expr)
        if not result or not float(result[0]["value"][1]) > 0:
            problems[f"not positive: {expr}"] = str(result)[:200]
    return problems


def test_every_dashboard_panel_has_data(
    infra: tuple[str, str], receiver: str, tmp_path: Path
) -> None:
    if prometheus_binary() is None:
        pytest.skip("Prometheus is not installed (apt-get install prometheus)")
    started = time.monotonic()
    bootstrap, base_url = infra
    settings = asyncio.run(fresh_stack_settings(bootstrap, base_url))
    specs = tuple(
        ServiceSpec(
            spec.name,
            spec.module,
            free_port(),
            {"HELPDESK_SMTP_PORT": str(free_port())} if "HELPDESK_SMTP_PORT" in spec.env else {},
        )
        for spec in SERVICES
    )
    stack = Stack(
        tmp_path / "state",
        services=specs,
        python=sys.executable,
        prometheus_port=free_port(),
        mail_port=free_port(),
        scrape_interval="1s",
        extra_env={
            "HELPDESK_CONSUMER_POLL_MS": "50",
            "HELPDESK_OUTBOX_POLL_MS": "20",
            "HELPDESK_METRICS_REFRESH_SECONDS": "1",
            "HELPDESK_BILLING_GRACE_HOURS": "0",
            "HELPDESK_NOTIFIER_ALLOW_TARGETS": "127.0.0.1",
            "HELPDESK_NOTIFIER_RETRY_SCHEDULE_SECONDS": "1,1,1,1,1,1,1,1,1,1",
            "HELPDESK_NOTIFIER_DISABLE_AFTER_HOURS": "0.002",
        },
    )
    running = Infra(bootstrap, settings.database_url, settings.topic, settings.partitions)
    assert stack.prometheus is not None
    assert stack.mail_sink is not None
    stack.log_dir.mkdir(parents=True)
    client = PrometheusClient(stack.prometheus.url)
    try:
        stack.start_extras()
        stack.start_services(running, TOKEN)
        stack.wait_services_ready(timeout=90)
        print(f"stack ready after {time.monotonic() - started:.1f} s")
        by_name = {spec.name: spec for spec in specs}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with (
            httpx.Client(base_url=by_name["intake"].url, headers=headers, timeout=30) as intake,
            httpx.Client(base_url=by_name["notifier"].url, headers=headers, timeout=30) as notifier,
        ):
            _drive(intake, notifier, receiver)
        print(f"traffic driven after {time.monotonic() - started:.1f} s")

        problems: dict[str, str] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            problems = _evaluate_all(client)
            if not problems:
                break
            time.sleep(2)
        assert not problems, "panels without data:\n" + "\n".join(
            f"{k}\n    -> {v}" for k, v in problems.items()
        )
        queries = sum(len(p.queries) for d in DASHBOARDS for p in d.panels)
        print(f"{queries} dashboard queries with data after {time.monotonic() - started:.1f} s")
        mail_dir = stack.mail_sink.mail_dir
        assert wait_until(lambda: any(mail_dir.glob("*.eml")), 30), "the mail sink holds no mail"

        out = tmp_path / "ops-report.png"
        drawn = render(
            client, out, dashboards=(SERVICE_DESK, PIPELINE), minutes=3, rate_interval=RATE_INTERVAL
        )
        assert out.stat().st_size > 10_000
        assert all(drawn.values()), f"empty panels: {[t for t, n in drawn.items() if not n]}"
        example = os.environ.get("HELPDESK_OPS_REPORT_EXAMPLE")
        if example:  # how docs/ops-report.png is made
            shutil.copyfile(out, example)
        print(f"ops report {out.stat().st_size} bytes, {len(drawn)} panels")
    finally:
        client.close()
        stack.stop_services()
        stack.stop_extras()
    print(f"done after {time.monotonic() - started:.1f} s")
