"""The outbox relay publishes every row once, to its key's partition, each partition in order."""

from __future__ import annotations

import collections
import itertools
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from helpdesk.shared.db import create_engine
from helpdesk.shared.events import Envelope
from helpdesk.shared.kafka import reliable_producer
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.outbox import OutboxRelay, append
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import runtime as tables
from tests.support import ticket_opened

pytestmark = pytest.mark.integration


async def test_relay_keeps_partition_and_order(settings: Settings) -> None:
    # Two big accounts (over 1 MB each, more than one record batch per call) and many small.
    accounts = [uuid.uuid4() for _ in range(40)]
    envelopes = [
        ticket_opened(
            accounts[i % 3 if i % 3 < 2 else i % 40],
            number=i,
            subject="s" * 200,
            description="d" * 300,
        )
        for i in range(6000)
    ]
    engine = create_engine(settings.database_url)
    relay = OutboxRelay(
        engine, tables, settings.kafka_bootstrap, settings.topic, Metrics("t"), batch_size=5000
    )
    try:
        async with engine.begin() as conn:
            await append(conn, tables, envelopes)
        await relay.start()
        calls = published = 0
        while n := await relay.publish_once():
            calls += 1
            published += n
        async with engine.connect() as conn:
            left = await conn.scalar(sa.select(sa.func.count()).select_from(tables.outbox))
    finally:
        await relay.stop()
        await engine.dispose()

    # Where send() puts each account's key: the partition the relay must have used.
    producer = reliable_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.partitions_for(settings.topic)
        expected_partition = {
            key: producer._partition(settings.topic, None, None, None, key, None)
            for key in (str(account).encode() for account in accounts)
        }
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    got: dict[int, list[uuid.UUID]] = collections.defaultdict(list)
    misplaced = 0
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        while sum(len(v) for v in got.values()) < total:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    if expected_partition[record.key] != tp.partition:
                        misplaced += 1
                    got[tp.partition].append(Envelope.from_bytes(record.value).event_id)
    finally:
        await consumer.stop()

    order = {e.event_id: i for i, e in enumerate(envelopes)}
    out_of_order = sum(
        1
        for ids in got.values()
        for before, after in itertools.pairwise(ids)
        if order[before] > order[after]
    )
    sizes = sorted((len(v) for v in got.values()), reverse=True)
    print(
        f"\nrelay published {published} rows in {calls} publish_once() calls; records per "
        f"partition {sizes}; misplaced={misplaced}, out of order={out_of_order}, left={left}"
    )
    assert published == len(envelopes)
    assert left == 0
    assert total == len(envelopes)
    assert sorted(order[i] for ids in got.values() for i in ids) == list(range(len(envelopes)))
    assert misplaced == 0
    assert out_of_order == 0
