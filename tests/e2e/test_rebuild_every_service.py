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
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.shared.db import table_digest
from helpdesk.shared.kafka import reliable_producer
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from tests.support import InProcessService, events_on_topic, in_process, topic_ends, wait_for
from tests.support.webhooks import Receiver, receiving

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


async def settled(services: dict[str, InProcessService], settings: Settings) -> bool:
    """Every outbox empty, and every consumer's stored offsets at the stream's head: what it
    committed, not what it fetched (a fetched batch counts as caught up before it is applied)."""
    for service in services.values():
        async with service.runtime.engine.connect() as conn:
            outbox = service.runtime.spec.tables.outbox
            if await conn.scalar(sa.select(sa.func.count()).select_from(outbox)):
                return False
    ends = await topic_ends(settings)
    for service in services.values():
        runtime = service.runtime
        offsets = runtime.spec.tables.consumer_offsets
        async with runtime.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(offsets.c.partition, offsets.c.next_offset).where(
                    offsets.c.consumer == runtime.consumer.name,
                    offsets.c.topic == settings.topic,
                )
            )
            stored = {row.partition: row.next_offset for row in rows}
        if any(stored.get(partition, 0) < end for partition, end in ends.items()):
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
        await wait_for(lambda: settled(services, settings), timeout=120, interval=0.5)

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
        await wait_for(lambda: settled(services, settings), timeout=120, interval=0.5)

        live = {name: await digest(s.runtime) for name, s in services.items()}
        for service in services.values():
            await service.runtime.rebuild()
        rebuilt = {name: await digest(s.runtime) for name, s in services.items()}
    print(f"\nrebuilt while running, records read: {reads}")
    assert rebuilt == live


async def test_a_rebuild_of_each_service_under_traffic_loses_and_repeats_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20, point 6: each service is rebuilt in turn while tickets are opened and answered,
    webhooks go to a receiver and SLA deadlines fall due; one event is parked before, and
    intake's relay is stopped during its own rebuild while an API key is revoked. Afterwards:
    every acknowledged ticket is in every service's view once, no webhook-id was accepted
    twice, every deadline fired exactly once, the revoked key is refused everywhere, the parked
    event is still listed, and an account without traffic has the same invoices as before."""
    monkeypatch.setenv("HELPDESK_NOTIFIER_ALLOW_TARGETS", "127.0.0.1")
    async with receiving() as receiver, stack(settings) as services:
        intake, http = services["intake"], services["intake"].http
        subscribed = await services["notifier"].http.post(
            "/v1/subscriptions", json={"url": receiver.url, "event_types": ["ticket.opened"]}
        )
        assert subscribed.status_code == 201, subscribed.text
        busy, quiet = await _account(http, "Busy"), await _account(http, "Quiet")
        importer = (await http.post("/v1/api-keys", json={"role": "import"})).json()["token"]
        revoked = (await http.post("/v1/api-keys", json={"role": "import"})).json()
        await _ticket(http, quiet, minutes=50)  # billed work, then no traffic on this account
        poison = await _park_a_poison_event(settings, busy)
        await wait_for(lambda: settled(services, settings), timeout=120, interval=0.5)
        parked_before = {name: await _parked(s.runtime) for name, s in services.items()}
        invoices_before = await _invoices(services["billing"], quiet)

        opened: list[str] = []
        due: list[str] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set() and len(opened) < 200:
                opened.append(await _ticket(http, busy, minutes=15))

        async def deadlines() -> None:
            # P1 responds within an hour: reported 59:57 ago, each is due 3 s from its opening.
            while not stop.is_set() and len(due) < 8:
                reported = datetime.now(UTC) - timedelta(minutes=59, seconds=57)
                due.append(await _ticket(http, busy, token=importer, reported_at=reported))
                deadline = reported + timedelta(hours=1)
                await wait_for(lambda at=deadline: _passed(at), timeout=10)  # type: ignore[misc]

        load = [asyncio.create_task(traffic()), asyncio.create_task(deadlines())]
        try:
            for name, service in services.items():
                if name == "intake":
                    await _stop_relay(intake)  # a slow relay: intake's events wait meanwhile
                    gone = await http.delete(f"/v1/api-keys/{revoked['id']}")
                    assert gone.status_code in (200, 204), gone.text
                await service.runtime.rebuild()
                if name == "intake":
                    relay = asyncio.create_task(intake.runtime.relay.run(), name="relay")
                    intake.runtime._tasks.append(relay)
        finally:
            stop.set()
            await asyncio.gather(*load)
        await wait_for(lambda: settled(services, settings), timeout=180, interval=0.5)
        await wait_for(lambda: _delivered(receiver, len(opened) + len(due) + 1), timeout=120)

        views = {
            "intake": [f"/v1/tickets/{t}" for t in opened + due],
            "sla_timer": [f"/v1/tickets/{t}/sla" for t in opened + due],
            "notifier": [f"/v1/tickets/{t}/notifications" for t in opened + due],
        }
        missing = {
            name: [p for p in paths if (await services[name].http.get(p)).status_code != 200]
            for name, paths in views.items()
        }

        async def response_breaches() -> list[Any]:
            return [
                e
                for e in await events_on_topic(settings, "sla.breached")
                if e.document()["kind"] == "response"
            ]

        async def every_deadline_fired() -> bool:
            # The last deadline fires its allowed lateness after it passed, maybe after settling.
            fired = {e.document()["ticket_id"] for e in await response_breaches()}
            return fired >= set(due)

        await wait_for(every_deadline_fired, timeout=30, interval=0.5)
        breaches = await response_breaches()
        fired = collections.Counter(e.document()["ticket_id"] for e in breaches)
        distinct = {(e.document()["ticket_id"], e.event_id) for e in breaches}
        refused = {
            name: (
                await s.http.get(
                    "/v1/me" if name == "intake" else "/v1/admin/dead-letters",
                    headers={"authorization": f"Bearer {revoked['token']}"},
                )
            ).status_code
            for name, s in services.items()
        }
        parked_after = {name: await _parked(s.runtime) for name, s in services.items()}
        invoices_after = await _invoices(services["billing"], quiet)
        usage = await _usage(services["billing"], busy)
    print(
        f"\n{len(opened)} tickets and {len(due)} deadlines during the rebuilds; "
        f"{len(receiver.requests)} webhook requests; parked {parked_after}"
    )
    assert len(opened) >= 4
    assert missing == {"intake": [], "sla_timer": [], "notifier": []}
    assert usage["tickets_opened"] == len(opened) + len(due)
    assert max(receiver.accepted().values()) == 1
    assert set(fired) == set(due)
    assert len(distinct) == len(due)  # one breach each, never decided twice
    assert refused == dict.fromkeys(SERVICES, 401)
    assert parked_after == parked_before
    assert poison in {name for name, count in parked_after.items() if count}
    assert invoices_after == invoices_before


async def _account(http: Any, name: str) -> str:
    account = (await http.post("/v1/accounts", json={"name": name, "timezone": "UTC"})).json()
    body = {"preset": "four_tier_24x7"}
    agreed = await http.put(f"/v1/accounts/{account['id']}/agreement", json=body)
    assert agreed.status_code == 200, agreed.text
    return str(account["id"])


async def _ticket(
    http: Any,
    account: str,
    *,
    minutes: int = 0,
    token: str | None = None,
    reported_at: datetime | None = None,
) -> str:
    """Open a ticket (and log out-of-scope time on it); the answer acknowledges it."""
    body: dict[str, Any] = {"account_id": account, "subject": "Load", "affected_users": 1}
    headers = {}
    if reported_at is not None:
        body |= {"priority": "P1", "reported_at": reported_at.isoformat()}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    created = await http.post("/v1/tickets", json=body, headers=headers)
    assert created.status_code == 201, created.text
    ticket = str(created.json()["id"])
    if minutes:
        logged = await http.post(
            f"/v1/tickets/{ticket}/time-entries",
            json={
                "minutes": minutes,
                "work_type": "remote",
                "scope": "out",
                "worked_at": datetime.now(UTC).isoformat(),
            },
        )
        assert logged.status_code in (200, 201), logged.text
    return ticket


async def _park_a_poison_event(settings: Settings, account: str) -> str:
    """A `ticket.commented` whose body no build can read: the SLA timer parks it."""
    producer = reliable_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic,
            b'{"not": "an event"}',
            key=account.encode(),
            headers=[("type", b"ticket.commented"), ("event_id", str(uuid.uuid4()).encode())],
        )
    finally:
        await producer.stop()
    return "sla_timer"


async def _parked(runtime: ServiceRuntime) -> int:
    async with runtime.engine.connect() as conn:
        table = runtime.spec.tables.parked_events
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def _invoices(billing: InProcessService, account: str) -> Any:
    answer = await billing.http.get(f"/v1/accounts/{account}/invoices")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _usage(billing: InProcessService, account: str) -> Any:
    period = datetime.now(UTC).strftime("%Y-%m")
    answer = await billing.http.get(f"/v1/accounts/{account}/usage", params={"period": period})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _stop_relay(service: InProcessService) -> None:
    relay = next(t for t in service.runtime._tasks if t.get_name() == "relay")
    relay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay
    service.runtime._tasks.remove(relay)


async def _passed(instant: datetime) -> bool:
    return datetime.now(UTC) >= instant


async def _delivered(receiver: Receiver, count: int) -> bool:
    return len(receiver.accepted()) >= count
