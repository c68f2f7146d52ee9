"""The provisioned Kafka and PostgreSQL really work; a killed broker or server comes back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from helpdesk.deploy._proc import free_port, wait_until
from helpdesk.deploy.kafka import LocalKafka
from helpdesk.deploy.postgres import LocalPostgres
from helpdesk.shared.kafka import ensure_topic, reliable_producer

pytestmark = pytest.mark.integration

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17")


async def _consume_one(bootstrap: str, topic: str, deadline_s: float) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values = [record.value for records in batches.values() for record in records]
            if values:
                return values
        return []
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, topic: str, value: bytes, deadline_s: float) -> None:
    """Send one record, retrying until `deadline_s` (a restarted broker may still elect)."""
    deadline = time.monotonic() + deadline_s
    while True:
        producer = reliable_producer(bootstrap, request_timeout_ms=5000)
        try:
            await producer.start()
            await producer.send_and_wait(topic, value, key=b"acct-1")
            return
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await producer.stop()


async def test_produce_and_consume(infra: tuple[str, str]) -> None:
    bootstrap, _ = infra
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    await ensure_topic(bootstrap, topic, 3)
    await _produce(bootstrap, topic, b"hello", deadline_s=30)
    assert await _consume_one(bootstrap, topic, deadline_s=30) == [b"hello"]


async def test_select_one(infra: tuple[str, str]) -> None:
    _, database_url = infra
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_default_topic_exists(infra: tuple[str, str]) -> None:
    bootstrap, _ = infra
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    assert (os.environ.get("HELPDESK_TOPIC") or "helpdesk.events") in topics


@needs_java
async def test_broker_recovers_from_kill(tmp_path: Path) -> None:
    # A broker of its own: killing the session's shared broker would disturb other tests.
    broker = LocalKafka(tmp_path / "kafka", free_port(), free_port())
    await broker.astart()
    try:
        topic = "test.recovery"
        await ensure_topic(broker.bootstrap, topic, 2)
        await _produce(broker.bootstrap, topic, b"before", deadline_s=30)

        broker.kill()
        assert not broker.is_running()
        await broker.astart()  # waits until an admin client lists topics again
        assert broker.is_running()

        await _produce(broker.bootstrap, topic, b"after", deadline_s=30)
        values = await _consume_all(broker.bootstrap, topic, expected=2, deadline_s=30)
        assert sorted(v or b"" for v in values) == [b"after", b"before"]

        broker.start()  # reattaching to a running broker is a no-op
        assert broker.is_running()
    finally:
        broker.stop()
    assert not broker.is_running()


async def _consume_all(
    bootstrap: str, topic: str, expected: int, deadline_s: float
) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes | None] = []
    try:
        deadline = time.monotonic() + deadline_s
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
        return values
    finally:
        await consumer.stop()


async def test_postgres_recovers_from_kill(tmp_path: Path) -> None:
    server = LocalPostgres(tmp_path / "pg")
    url = await asyncio.to_thread(server.start)
    try:
        assert await asyncio.to_thread(server.start) == url  # reattach
        pid = server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert await asyncio.to_thread(wait_until, lambda: not server.is_running(), 10.0)
        # Crash recovery; the stale postmaster.pid and socket lock are dealt with.
        assert await asyncio.to_thread(server.start) == url
        assert await _select_one(url) == 1
    finally:
        await asyncio.to_thread(server.stop)
    assert not server.is_running()


async def _select_one(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            value: int = (await conn.execute(text("SELECT 1"))).scalar_one()
            return value
    finally:
        await engine.dispose()
