"""Webhook deliveries with 1 000 subscriptions: deliveries per second to a local receiver and
p99 event-to-delivery latency, next to a bare httpx client posting the same signed payloads
in the same run.

(a) the notifier in-process, 1 000 account subscriptions made over its HTTP API (one per
    account, `ticket.*`), then `events` ticket.opened events over those accounts published at
    once: each is one delivery; its latency is from publishing to the receiver reading it;
(b) baseline: one `httpx.AsyncClient` posting the bodies the receiver got, signed the same
    way, with the notifier's concurrency, to the same receiver.

Both share this process's event loop with the receiver. Aim (issue 12): the notifier at 50 %
or more of the bare client's rate. Figures only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from bench.rebuild import produce
from helpdesk.notifier.adapters.delivery import CONCURRENCY
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import deliveries
from helpdesk.notifier.domain.signing import delivery_headers, new_secret
from helpdesk.notifier.main import build_spec
from helpdesk.shared.service import ServiceRuntime
from tests.support import ADMIN_TOKEN, fresh_stack_settings, ticket_opened, wait_for

SUBSCRIPTIONS = 1_000
DEFAULT_EVENTS = 5_000


class Receiver:
    """A keep-alive HTTP/1.1 endpoint that answers 200 and notes when each body arrived."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, bytes]] = []
        self.port = 0
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def close(self) -> None:
        """End the open keep-alive connections (each handler then reads its end of stream)."""
        for writer in self.connections.values():
            writer.close()
        await asyncio.gather(*self.connections, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                self.arrived.append((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.connections.pop(task, None)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _subscribe(runtime: ServiceRuntime, url: str, accounts: list[uuid.UUID]) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=runtime.app()),
        base_url="http://bench",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    gate = asyncio.Semaphore(16)

    async def one(account: uuid.UUID) -> None:
        async with gate:
            body = {"url": url, "event_types": ["ticket.*"], "account_id": str(account)}
            answer = await client.post("/v1/subscriptions", json=body)
            answer.raise_for_status()

    async with client:
        await asyncio.gather(*(one(a) for a in accounts))


async def baseline(url: str, bodies: list[bytes]) -> tuple[float, list[float]]:
    """Seconds to post every body with a bare client, and each request's latency."""
    secret = new_secret(bytes(range(32)))
    gate = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []
    async with httpx.AsyncClient() as client:

        async def post(index: int, body: bytes) -> None:
            async with gate:
                started = time.perf_counter()
                headers = delivery_headers(
                    msg_id=f"msg_{index}", at=datetime.now(UTC), body=body, secrets=[secret]
                )
                answer = await client.post(url, content=body, headers=headers)
                answer.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
    return time.perf_counter() - started, latencies


async def run(bootstrap: str, database_url: str, events: int = DEFAULT_EVENTS) -> None:
    """Subscribe, publish, wait for every delivery, then run the baseline; print figures."""
    settings = await fresh_stack_settings(bootstrap, database_url)
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    own = NotifierSettings(allow_targets="127.0.0.1", smtp_relay_port=1)
    runtime = ServiceRuntime(build_spec(own), settings)
    await runtime.start()
    try:
        await wait_for(_caught_up(runtime), timeout=60)
        accounts = [uuid.uuid4() for _ in range(SUBSCRIPTIONS)]
        made = time.perf_counter()
        await _subscribe(runtime, url, accounts)
        made = time.perf_counter() - made
        envelopes = [ticket_opened(accounts[i % SUBSCRIPTIONS], number=i) for i in range(events)]
        published_at = {str(e.event_id): e.recorded_at.timestamp() for e in envelopes}
        started = time.perf_counter()
        await produce(bootstrap, settings.topic, envelopes)
        await wait_for(_all_arrived(receiver, events), timeout=1800, interval=0.1)
        elapsed = time.perf_counter() - started
        await wait_for(_all_recorded(runtime, events), timeout=600, interval=0.2)
    finally:
        await runtime.stop()
    latencies = [at - published_at[_event_id(body)] for at, body in receiver.arrived]
    bodies = [body for _, body in receiver.arrived]
    receiver.arrived.clear()
    base_elapsed, base_latencies = await baseline(url, bodies)
    server.close()
    await receiver.close()
    await server.wait_closed()
    rate, base_rate = events / elapsed, events / base_elapsed
    print(f"Webhook deliveries bench: {SUBSCRIPTIONS} subscriptions, {events} deliveries")
    print(f"  subscriptions made over HTTP in {made:.1f} s")
    print(
        f"  notifier     {rate:8,.0f} deliveries/s ({elapsed:.1f} s); event-to-delivery "
        f"p50 {statistics.median(latencies) * 1000:,.0f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1000:,.0f} ms"
    )
    print(
        f"  bare httpx   {base_rate:8,.0f} posts/s ({base_elapsed:.1f} s); request "
        f"p50 {statistics.median(base_latencies) * 1000:,.1f} ms, "
        f"p99 {_percentile(base_latencies, 0.99) * 1000:,.1f} ms"
    )
    share = rate / base_rate
    verdict = "meets" if share >= 0.5 else "BELOW"
    print(f"  aim >= 50 % of bare httpx: {verdict} ({share:.0%})")


def _event_id(body: bytes) -> str:
    # The body is `{"type":…,"timestamp":…,"data":{"event_id":"…",…}}`: avoid a full parse.
    start = body.index(b'"event_id":"') + len(b'"event_id":"')
    return body[start : start + 36].decode()


def _caught_up(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return runtime.consumer.is_caught_up()

    return probe


def _all_arrived(receiver: Receiver, events: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(receiver.arrived) >= events

    return probe


def _all_recorded(runtime: ServiceRuntime, events: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        async with runtime.engine.connect() as conn:
            done = await conn.scalar(
                sa.select(sa.func.count()).where(deliveries.c.status == "delivered")
            )
        return done == events

    return probe


if __name__ == "__main__":
    from helpdesk.deploy.testing import provision_test_infra, teardown_test_infra

    infra = provision_test_infra()
    try:
        asyncio.run(run(*infra))
    finally:
        teardown_test_infra()
