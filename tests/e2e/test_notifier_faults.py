"""Webhooks once through crashes and replicas (issue 12, item 5): the notifier as real processes
delivering to a real HTTP receiver in the test.

(a) kill -9 of the only notifier while every delivery waits for its retry (the receiver failed
    each first attempt): after a restart each event is accepted exactly once, under the same
    `webhook-id` as its failed attempt, signed (verified with `standardwebhooks`).
(b) two replicas at once (the second joins while the first delivers, so partitions move):
    every event arrives, and no webhook-id arrives twice at a receiver that accepts everything.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from helpdesk.notifier.adapters.tables import attempts, deliveries
from helpdesk.shared.db import create_engine
from helpdesk.shared.events import Envelope
from helpdesk.shared.settings import Settings
from tests.support import ServiceProcess, publish, ticket_opened, wait_for
from tests.support.webhooks import Receiver, receiving

pytestmark = pytest.mark.e2e


def notifier(settings: Settings, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceProcess:
    """A notifier process allowed to deliver to loopback, retrying after 5 s without jitter."""
    monkeypatch.setenv("HELPDESK_NOTIFIER_ALLOW_TARGETS", "127.0.0.1")
    monkeypatch.setenv("HELPDESK_NOTIFIER_RETRY_SCHEDULE_SECONDS", "5,1,1,1")
    monkeypatch.setenv("HELPDESK_NOTIFIER_RETRY_JITTER", "0")
    monkeypatch.setenv("HELPDESK_NOTIFIER_WEBHOOK_TIMEOUT_SECONDS", "5")
    return ServiceProcess("notifier", settings, log_dir)


def tickets(count: int, accounts: int = 40) -> list[Envelope]:
    """`count` ticket.opened envelopes over `accounts` accounts (so over every partition)."""
    ids = [uuid.uuid4() for _ in range(accounts)]
    return [ticket_opened(ids[i % accounts], number=i) for i in range(count)]


async def subscribe(process: ServiceProcess, url: str) -> dict[str, str]:
    """A provider-wide subscription to every ticket event."""
    async with process.client() as client:
        answer = await client.post(
            "/v1/subscriptions", json={"url": url, "event_types": ["ticket.*"]}
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, str] = answer.json()
    return created


async def count(settings: Settings, query: sa.Select[Any]) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


def verify(receiver: Receiver, secret: str) -> None:
    """Every request is signed with the subscription's secret, and says what it carries."""
    hook = Webhook(secret)
    for request in receiver.requests:
        hook.verify(request.body, request.headers)
        assert json.loads(request.body)["type"] == "ticket.opened"


async def test_kill_9_while_retries_wait_gives_one_accepted_delivery_per_event(
    settings: Settings, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = 60
    started = time.perf_counter()
    first = notifier(settings, log_dir, monkeypatch)
    processes = [first]
    first.start()
    try:
        await first.wait_ready()
        async with receiving(fail_first=1) as receiver:
            sub = await subscribe(first, receiver.url)
            await publish(settings.kafka_bootstrap, settings.topic, tickets(events))
            retrying = sa.select(sa.func.count()).where(attempts.c.verdict == "retry")

            async def all_failed_once() -> bool:
                return await count(settings, retrying) == events

            # Every first attempt failed and its retry is scheduled 5 s later: kill -9 now.
            await wait_for(all_failed_once, timeout=30, interval=0.02)
            first.kill()
            accepted_before = sum(receiver.accepted().values())
            restarted = notifier(settings, log_dir, monkeypatch)
            processes.append(restarted)
            restarted.start()
            await restarted.wait_ready()
            delivered = sa.select(sa.func.count()).where(deliveries.c.status == "delivered")

            async def all_delivered() -> bool:
                return await count(settings, delivered) == events

            await wait_for(all_delivered, timeout=45, interval=0.1)
            accepted = receiver.accepted()
            seen = receiver.seen()
            verify(receiver, sub["secret"])
    finally:
        for process in processes:
            process.stop()
    elapsed = time.perf_counter() - started
    print(
        f"\n{events} events; accepted before the kill: {accepted_before}; requests "
        f"{len(receiver.requests)}; accepted {sum(accepted.values())}; {elapsed:.1f} s"
    )
    assert accepted_before == 0
    assert len(accepted) == events
    assert set(accepted.values()) == {1}  # one accepted delivery per event
    assert set(seen.values()) == {2}  # the failed attempt and the accepted one, same webhook-id


async def test_two_replicas_never_deliver_an_attempt_twice(
    settings: Settings, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = 200
    started = time.perf_counter()
    replicas = [notifier(settings, log_dir, monkeypatch) for _ in range(2)]
    replicas[0].start()
    try:
        await replicas[0].wait_ready()
        async with receiving() as receiver:
            sub = await subscribe(replicas[0], receiver.url)
            await publish(settings.kafka_bootstrap, settings.topic, tickets(events))
            replicas[1].start()  # joins while the first delivers: partitions move between them
            await replicas[1].wait_ready()
            delivered = sa.select(sa.func.count()).where(deliveries.c.status == "delivered")

            async def all_delivered() -> bool:
                return await count(settings, delivered) == events

            await wait_for(all_delivered, timeout=45, interval=0.1)
            seen = receiver.seen()
            verify(receiver, sub["secret"])
            recorded = await count(settings, sa.select(sa.func.count()).select_from(attempts))
    finally:
        for replica in replicas:
            replica.stop()
    elapsed = time.perf_counter() - started
    twice = {webhook_id: n for webhook_id, n in seen.items() if n > 1}
    print(f"\n{events} events, 2 replicas: {len(receiver.requests)} requests; {elapsed:.1f} s")
    assert not twice, f"delivered more than once: {list(twice.items())[:5]}"
    assert len(seen) == events
    assert recorded == events  # one attempt each, every one logged
