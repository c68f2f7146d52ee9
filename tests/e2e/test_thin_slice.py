"""A ticket opened over HTTP reaches every service, each as a real process."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from helpdesk.shared.settings import Settings
from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e


async def test_ticket_reaches_all_consumers_within_a_second(
    settings: Settings, log_dir: Path
) -> None:
    services = {
        name: ServiceProcess(name, settings, log_dir)
        for name in ("intake", "sla_timer", "billing", "notifier")
    }
    for service in services.values():
        service.start()
    try:
        for service in services.values():
            await service.wait_ready()
        async with services["intake"].client() as intake:
            account = (
                await intake.post(
                    "/v1/accounts", json={"name": "Acme", "timezone": "Europe/Amsterdam"}
                )
            ).json()
            created = await intake.post(
                "/v1/tickets",
                json={"account_id": account["id"], "subject": "VPN down", "priority": "P2"},
            )
            assert created.status_code == 201, created.text
            ticket = created.json()
            assert created.headers["etag"] == '"1"'
            assert ticket["number"].startswith("HD-")
        started = time.monotonic()
        # Billing months are the account's local months (around midnight UTC, not the UTC one).
        reported = datetime.fromisoformat(ticket["reported_at"])
        period = reported.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m")
        checks = {
            "sla_timer": f"/v1/tickets/{ticket['id']}/sla",
            "billing": f"/v1/accounts/{account['id']}/usage?period={period}",
            "notifier": f"/v1/tickets/{ticket['id']}/notifications",
        }
        for name, path in checks.items():
            async with services[name].client() as client:

                async def visible(
                    client: httpx.AsyncClient = client, path: str = path, name: str = name
                ) -> bool:
                    response = await client.get(path)
                    if response.status_code != 200:
                        return False
                    # The usage report exists once the account does; the ticket is in it once
                    # billing applied it.
                    return name != "billing" or response.json()["tickets_opened"] == 1

                await wait_for(visible, timeout=1.0, interval=0.01)
        elapsed = time.monotonic() - started
        print(f"\nticket visible in sla_timer, billing and notifier after {elapsed * 1000:.0f} ms")
        async with services["sla_timer"].client() as client:
            sla = (await client.get(checks["sla_timer"])).json()
            assert sla["priority"] == "P2"
        async with services["billing"].client() as client:
            assert (await client.get(checks["billing"])).json()["tickets_opened"] == 1
        for name in checks:
            async with services[name].client() as client:
                metrics = (await client.get("/metrics")).text
            assert 'helpdesk_events_consumed_total{type="ticket.opened"} 1.0' in metrics, name
    finally:
        for service in services.values():
            service.stop()
