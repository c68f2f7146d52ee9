"""Webhooks once through crashes and replicas (issue 12, item 5): the notifier as real processes
delivering to a real HTTP receiver in the test.

(a) kill -9 of the only notifier while every delivery waits for its retry (the receiver failed
    each first attempt): after a restart each event is accepted exactly once, under the same
    `webhook-id` as its failed attempt, signed (verified with `standardwebhooks`).
(b) two replicas at once (the second joins while the first delivers, so partitions move):
    every event arrives, and no webhook-id arrives twice at a receiver that accepts everything.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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

pytestmark = pytest.mark.e2e


@dataclass
class Request:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook endpoint: fails the first `fail_first` attempts of each webhook-id with 500,
    then accepts; keeps every request and the answer it gave."""

    fail_first: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def accepted(self) -> collections.Counter[str]:
        return collections.Counter(r.webhook_id for r in self.requests if r.status == 200)

    def seen(self) -> collections.Counter[str]:
        return collections.Counter(r.webhook_id for r in self.requests)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: the notifier's client reuses connections
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                webhook_id = headers.get("webhook-id", "")
                status = 500 if self.seen()[webhook_id] < self.fail_first else 200
                self.requests.append(Request(webhook_id, headers, body, status))
                reason = "OK" if status == 200 else "Internal Server Error"
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiving(fail_first: int = 0) -> AsyncIterator[Receiver]:
    receiver = Receiver(fail_first)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


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
