"""Kafka plumbing shared by the outbox relay, the consumer runtime and the local stack."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

#: What one Kafka message may hold: the topic's `max.message.bytes` and the relay producer's
#: `max_request_size` are both set to it, and checked against each other at start.
MESSAGE_MAX_BYTES = 1024 * 1024


async def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
) -> None:
    """Create the event topic (key = account_id, infinite retention) unless it exists.

    Locally one broker: replication 1, min.insync.replicas 1. In production use 3 and 2, so an
    `acks=all` write survives the loss of one broker (Settings.replication_factor and
    Settings.min_insync_replicas).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic in existing:
            return
        try:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=topic,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs={
                            "retention.ms": "-1",
                            # Said explicitly: the relay's producer sends up to this much.
                            "max.message.bytes": str(MESSAGE_MAX_BYTES),
                            "min.insync.replicas": str(min_insync_replicas),
                        },
                    )
                ]
            )
            # aiokafka reports per-topic failures in the response instead of raising.
            for name, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {name} failed: {code} {message}")
            log.info("created topic", extra={"topic": topic, "partitions": partitions})
        except TopicAlreadyExistsError:
            pass
        await _until_described(admin, topic)
    finally:
        await admin.close()


async def _until_described(admin: AIOKafkaAdminClient, topic: str, timeout: float = 30.0) -> None:
    """Wait until the broker describes a just-created topic: the controller answers the create
    before every broker's metadata has it, and a describe in between says it does not exist."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described = await admin.describe_topics([topic])
        if described and described[0].get("error_code", 0) == 0 and described[0]["partitions"]:
            return
        if loop.time() >= deadline:
            raise RuntimeError(f"topic {topic} was created but is not described after {timeout} s")
        await asyncio.sleep(0.05)  # polling the broker's metadata, bounded by the deadline


def reliable_producer(bootstrap: str, **overrides: object) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas.

    aiokafka's defaults (acks=1, no idempotence) can lose or duplicate a write on a leader
    failure, which the outbox contract does not allow.
    """
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 1024 * 1024,
        "request_timeout_ms": 30000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of `topic` (a consumer outside a group has no metadata of it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0].get("error_code", 0) != 0:
        raise RuntimeError(f"topic {topic} does not exist")
    return sorted(p["partition"] for p in described[0]["partitions"])


async def check_message_size(bootstrap: str, topic: str) -> None:
    """Refuse to start when the topic takes smaller messages than the relay may send: a row
    between the two limits would be refused by the broker on every retry."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})]
        )
    finally:
        await admin.close()
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "max.message.bytes" and int(entry[1]) < MESSAGE_MAX_BYTES:
                    raise RuntimeError(
                        f"topic {topic} takes messages of at most {entry[1]} bytes, but the "
                        f"outbox relay sends up to {MESSAGE_MAX_BYTES}: set the topic's "
                        f"max.message.bytes to {MESSAGE_MAX_BYTES} or more"
                    )
