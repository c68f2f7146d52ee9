"""Every service's rebuild reproduces its live projection, byte for byte (issue 7, "done when").

The four services run in this process on one stream. A history is driven over HTTP — accounts
with agreements, contacts, tickets with triage, replies, time, resolutions, a webhook
subscription — so every service has own events interleaved with foreign ones. One command
commits while intake's relay is stopped, so a rebuild runs with an own event still in the
outbox. Then each service is rebuilt while it runs, and each live projection must equal what a
second rebuild from the settled stream produces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.shared.db import table_digest
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from tests.support import InProcessService, in_process, wait_for

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "sla_timer", "billing", "notifier")


@contextlib.asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[dict[str, InProcessService]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(in_process(name, settings)) for name in SERVICES
        }


async def digest(runtime: ServiceRuntime) -> str:
    async with runtime.engine.connect() as conn:
        return await table_digest(conn, runtime.projection.tables)


async def settled(services: dict[str, InProcessService]) -> bool:
    """Every outbox empty and every consumer at the head of the stream."""
    for service in services.values():
        runtime = service.runtime
        if not runtime.consumer.is_caught_up():  # e.g. still seeking after a swap
            return False
        async with runtime.engine.connect() as conn:
            outbox = runtime.spec.tables.outbox
            pending = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
        if pending:
            return False
        lag = [
            sample.value
            for metric in runtime.metrics.consumer_lag.collect()
            for sample in metric.samples
        ]
        if any(lag):
            return False
    return True


async def drive(intake: InProcessService) -> None:
    """A history touching every service: two accounts, tickets with a full life."""
    http = intake.http
    for index, preset in enumerate(("four_tier_24x7", "cloud_platform")):
        account = (
            await http.post(
                "/v1/accounts", json={"name": f"Rebuild {index}", "timezone": "Europe/Amsterdam"}
            )
        ).json()
        body: dict[str, Any] = {"preset": preset}
        if preset == "cloud_platform":
            body["plan_variant"] = "starter"
        assert (
            await http.put(f"/v1/accounts/{account['id']}/agreement", json=body)
        ).status_code == 200
        contact = (
            await http.post(
                f"/v1/accounts/{account['id']}/contacts",
                json={
                    "name": "Ann",
                    "email": f"ann{index}@rebuild.example",
                    "roles": ["key_contact", "billing"],
                    "visibility": "account",
                },
            )
        ).json()
        for number in range(3):
            ticket = (
                await http.post(
                    "/v1/tickets",
                    json={
                        "account_id": account["id"],
                        "contact_id": contact["id"],
                        "subject": f"Printer {number}",
                        "affected_users": 3,
                    },
                )
            ).json()
            base = f"/v1/tickets/{ticket['id']}"
            await http.post(f"{base}/triage", json={"priority": "P2"})
            await http.post(f"{base}/comments", json={"body": "On it", "public": True})
            await http.post(
                f"{base}/time-entries",
                json={"minutes": 40, "work_type": "remote", "scope": "out"},
            )
            if number < 2:
                await http.post(f"{base}/resolve", json={"resolution": "fix", "summary": "done"})


async def test_every_service_rebuilds_to_its_live_state(settings: Settings) -> None:
    async with stack(settings) as services:
        intake = services["intake"]
        await drive(intake)
        await wait_for(lambda: settled(services), timeout=120)

        # A command commits while intake cannot publish: its event waits in the outbox.
        relay = next(t for t in intake.runtime._tasks if t.get_name() == "relay")
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        pending = await intake.http.post(
            "/v1/accounts", json={"name": "Pending Ltd", "timezone": "UTC"}
        )
        assert pending.status_code == 201
        reads = {name: await s.runtime.rebuild() for name, s in services.items()}
        await intake.runtime.relay.publish_once()

        async def pending_applied() -> bool:
            answer = await intake.http.get(f"/v1/accounts/{pending.json()['id']}")
            return answer.status_code == 200  # the event that was in the outbox was not lost

        await wait_for(pending_applied, timeout=60)
        await wait_for(lambda: settled(services), timeout=120)

        live = {name: await digest(s.runtime) for name, s in services.items()}
        for service in services.values():
            await service.runtime.rebuild()
        rebuilt = {name: await digest(s.runtime) for name, s in services.items()}
    print(f"\nrebuilt while running, records read: {reads}")
    assert rebuilt == live
