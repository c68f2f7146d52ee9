"""Test harness: fresh topics and databases, services in-process or as real processes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from helpdesk.billing.main import build_spec as billing_spec
from helpdesk.intake.main import build_spec as intake_spec
from helpdesk.notifier.main import build_spec as notifier_spec
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.db import migrate
from helpdesk.shared.events import Actor, Envelope, new_envelope
from helpdesk.shared.kafka import ensure_topic, reliable_producer
from helpdesk.shared.service import ServiceRuntime, ServiceSpec
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.main import build_spec as sla_timer_spec

ADMIN_TOKEN = "test-admin-token"
SPECS: dict[str, Callable[[], ServiceSpec]] = {
    "intake": intake_spec,
    "sla_timer": sla_timer_spec,
    "billing": billing_spec,
    "notifier": notifier_spec,
}
T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def fresh_database(base_url: str) -> str:
    """Create an empty database next to `base_url`'s and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def fresh_stack_settings(bootstrap: str, base_url: str, partitions: int = 12) -> Settings:
    """Settings for an isolated stack: its own topic and database, every schema migrated."""
    url = await fresh_database(base_url)
    topic = f"test.{uuid.uuid4().hex[:12]}"
    await ensure_topic(bootstrap, topic, partitions)
    for spec in SPECS.values():
        built = spec()
        await migrate(url, built.metadata, built.migrations)
    return Settings(
        kafka_bootstrap=bootstrap,
        topic=topic,
        partitions=partitions,
        database_url=url,
        admin_token=ADMIN_TOKEN,
        consumer_poll_ms=50,
        outbox_poll_ms=20,
    )


@dataclass
class InProcessService:
    """A service running inside the test's event loop, with an HTTP client on its app."""

    runtime: ServiceRuntime
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def in_process(name: str, settings: Settings) -> AsyncIterator[InProcessService]:
    """Run service `name` in this process until the block exits."""
    runtime = ServiceRuntime(SPECS[name](), settings)
    app = runtime.app()  # the ASGI transport runs no lifespan: start and stop it here
    await runtime.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    try:
        await wait_for(_caught_up(runtime), timeout=60)
        yield InProcessService(runtime, client)
    finally:
        await client.aclose()
        await runtime.stop()


def _caught_up(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return runtime.consumer.is_caught_up()

    return probe


def ticket_opened(
    account_id: uuid.UUID,
    *,
    ticket_id: uuid.UUID | None = None,
    seq: int = 1,
    number: int = 1,
    subject: str | None = None,
    description: str = "",
) -> Envelope:
    """A ticket.opened envelope as intake would write it (for tests that feed the stream)."""
    ticket_id = ticket_id or uuid.uuid4()
    now = datetime.now(UTC)
    payload = TicketOpened(
        ticket_id=ticket_id,
        number=f"HD-{number}",
        account_id=account_id,
        subject=subject or f"ticket {number}",
        description=description,
        channel="api",
        priority="P3",
        reported_at=now,
    )
    return new_envelope(
        payload,
        account_id=account_id,
        actor=Actor(type="system", id="test"),
        occurred_at=now,
        recorded_at=now,
        correlation_id=f"test-{number}",
        ticket_id=ticket_id,
        seq=seq,
    )


async def publish(bootstrap: str, topic: str, envelopes: Sequence[Envelope]) -> Counter[int]:
    """Publish `envelopes` in order, keyed by account; return the records per partition."""
    producer = reliable_producer(bootstrap)
    await producer.start()
    per_partition: Counter[int] = collections.Counter()
    try:
        for start in range(0, len(envelopes), 2000):
            # Queued in order; the idempotent producer keeps that order within a partition.
            futures = [
                await producer.send(
                    topic, e.to_bytes(), key=str(e.account_id).encode(), headers=e.headers()
                )
                for e in envelopes[start : start + 2000]
            ]
            for metadata in await asyncio.gather(*futures):
                per_partition[metadata.partition] += 1
    finally:
        await producer.stop()
    return per_partition


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """A service as a real OS process (`python -m helpdesk.<name> serve`), for fault tests."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_dir / f"{name}-{self.port}.log"
        self._env = os.environ | {
            "HELPDESK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "HELPDESK_TOPIC": settings.topic,
            "DATABASE_URL": settings.database_url,
            "HELPDESK_ADMIN_TOKEN": ADMIN_TOKEN,
            "HELPDESK_HTTP_PORT": str(self.port),
            "HELPDESK_CONSUMER_POLL_MS": str(settings.consumer_poll_ms),
            "HELPDESK_OUTBOX_POLL_MS": str(settings.outbox_poll_ms),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the process (returns at once; see `wait_ready`)."""
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"helpdesk.{self.name}", "serve"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until /readyz answers 200 (migrated, connected, caught up)."""

        last = "no answer"

        async def ready() -> bool:
            nonlocal last
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self._log.read_text()[-2000:]}")
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"{self.url}/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
                return False
            last = answer.text
            return answer.status_code == 200

        try:
            await wait_for(ready, timeout=timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{self.name} is not ready: {last}") from exc

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to the consumer group."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.AsyncClient:
        """An authenticated HTTP client on this process."""
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )


async def topic_ends(settings: Settings) -> dict[int, int]:
    """Each partition's end offset on the stack's topic now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def events_on_topic(settings: Settings, type_prefix: str = "") -> list[Envelope]:
    """Every event on the stack's topic so far whose type starts with `type_prefix`, in
    partition order (copies of one event included)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Envelope] = []
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    # By the type header: a record another producer wrote may be no envelope.
                    type_ = dict(record.headers or ()).get("type", b"").decode()
                    if type_.startswith(type_prefix):
                        found.append(Envelope.from_bytes(record.value))
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return found
    finally:
        await consumer.stop()
