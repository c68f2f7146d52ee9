"""The runtime's recovery paths (issue 20) and a stream no single event can stop (issue 21),
each failure reproduced against real Kafka and PostgreSQL with the echo service.

Each test names the failure it proves gone; docs/adr/0005 states what is guaranteed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa

from helpdesk.shared.auth import RevocationListener
from helpdesk.shared.consumer import ConsumerRuntime, Ownership, Projection, fence_key
from helpdesk.shared.context import Context
from helpdesk.shared.contracts.accounts import ApiKeyRevoked
from helpdesk.shared.errors import Conflict
from helpdesk.shared.events import Actor
from helpdesk.shared.failures import is_transient
from helpdesk.shared.live import LiveContext
from helpdesk.shared.outbox import (
    MAX_EVENT_BYTES,
    EventTooLargeError,
    OutboxRelay,
    PartitionCountError,
    account_key,
    append,
)
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from tests.support import publish, ticket_opened, wait_for
from tests.support.echo import count_rows, create_schema, echo_service, fresh_name, running

pytestmark = pytest.mark.integration


# -- a rebuild keeps what it cannot replay --------------------------------------------------------


async def test_a_rebuild_after_the_fix_applies_a_parked_event_and_runs_its_reaction_once(
    settings: Settings,
) -> None:
    """Before, the rebuild swapped the live parked rows for the shadow's (empty) copy: after
    "handler bug → fix deployed → rebuild" the event was in the projection, but its reaction
    never ran and nothing said so. Now the parked row is carried over, and since the replay
    applied it, its reaction runs once at the swap and the row leaves."""
    echo = echo_service(fresh_name())
    echo.poisoned.add("poison")
    await create_schema(settings, echo)
    account, ticket = uuid.uuid4(), uuid.uuid4()
    envelopes = [
        ticket_opened(account, ticket_id=ticket, subject="poison"),
        ticket_opened(account, number=2),
    ]
    tables = echo.spec.tables
    async with running(echo, settings) as replica:
        await publish(settings.kafka_bootstrap, settings.topic, envelopes)
        await wait_for(lambda: _count_is(replica, tables.parked_events, 1), timeout=30)
        await wait_for(lambda: _count_is(replica, echo.rows, 1, kind="echo"), timeout=30)
        echo.poisoned.clear()  # the fix is deployed
        await replica.rebuild()
        parked_after = await count_rows(replica, tables.parked_events)
        await wait_for(lambda: _count_is(replica, echo.rows, 2, kind="echo"), timeout=30)
        echoes_of_ticket = await count_rows(replica, echo.rows, kind="echo", ticket_id=ticket)
        opened = await count_rows(replica, echo.rows, kind="opened")
    assert parked_after == 0
    assert echoes_of_ticket == 1
    assert opened == 2


async def test_a_rebuild_parks_a_poison_event_and_keeps_the_live_parked_row(
    settings: Settings,
) -> None:
    """Before, one event whose handler fails made every rebuild fail (the replay had no park
    path). Now the replay parks it as live consumption does, the rebuild completes, and the
    event stays parked (readiness says so) for retry-parked after a fix."""
    echo = echo_service(fresh_name())
    echo.poisoned.add("poison")
    await create_schema(settings, echo)
    account = uuid.uuid4()
    envelopes = [
        ticket_opened(account, number=1),
        ticket_opened(account, number=2, subject="poison"),
        ticket_opened(account, number=3),
    ]
    tables = echo.spec.tables
    async with running(echo, settings) as replica:
        await publish(settings.kafka_bootstrap, settings.topic, envelopes)
        await wait_for(lambda: _count_is(replica, echo.rows, 2, kind="opened"), timeout=30)
        await wait_for(lambda: _count_is(replica, tables.parked_events, 1), timeout=30)
        read = await replica.rebuild()
        parked = await count_rows(replica, tables.parked_events, reason="failed")
        ready = await replica.readiness()
        opened = await count_rows(replica, echo.rows, kind="opened")
        echo.poisoned.clear()
        applied, failing = await replica.retry_parked()
    assert read == 3 + 2  # three foreign events, two own echoes
    assert parked == 1
    assert ready["no_parked_events"] is False
    assert opened == 2
    assert (applied, failing) == (1, 0)


# -- retry-parked and releases ----------------------------------------------------------------


async def test_a_held_event_that_fails_on_release_is_parked_and_the_partition_goes_on(
    settings: Settings,
) -> None:
    """Before, a held event was released outside the per-event savepoints: its failure failed
    the careful path too, and the partition sought back every second for ever. Now it is
    parked as failed, and the partition's later events apply."""
    echo = echo_service(fresh_name())
    echo.poisoned.add("poison")
    await create_schema(settings, echo)
    account, ticket = uuid.uuid4(), uuid.uuid4()
    second = ticket_opened(account, ticket_id=ticket, seq=2, number=2, subject="poison")
    first = ticket_opened(account, ticket_id=ticket, seq=1, number=1)
    later = ticket_opened(account, number=3)
    parked = echo.spec.tables.parked_events
    async with running(echo, settings) as replica:
        await publish(settings.kafka_bootstrap, settings.topic, [second])
        await wait_for(lambda: _count_is(replica, parked, 1, reason="held"), timeout=30)
        await publish(settings.kafka_bootstrap, settings.topic, [first, later])
        await wait_for(
            lambda: _count_is(replica, echo.rows, 1, event_id=later.event_id), timeout=30
        )
        failed = await count_rows(replica, parked, reason="failed", event_id=second.event_id)
        opened = await count_rows(replica, echo.rows, kind="opened")
        echo.poisoned.clear()
        applied, failing = await replica.retry_parked()
        opened_after = await count_rows(replica, echo.rows, kind="opened")
    assert failed == 1
    assert opened == 2
    assert (applied, failing) == (1, 0)
    assert opened_after == 3


async def test_retry_runs_the_reaction_of_an_event_whose_copy_was_applied(
    settings: Settings,
) -> None:
    """Before, a parked event whose id was already claimed (a copy applied after a rebuild's
    LEAST offsets, or a republish) was deleted and counted applied, its reaction never run.
    Now retry runs what did not run: here the reaction."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    envelope = ticket_opened(account, number=1)
    tables = echo.spec.tables
    runtime = ServiceRuntime(echo.spec, settings)
    try:
        # The projection applied it (claimed), and the reaction failed on a copy: parked.
        async with runtime.engine.begin() as conn:
            await conn.execute(tables.processed_events.insert().values(event_id=envelope.event_id))
            await conn.execute(
                tables.parked_events.insert().values(
                    event_id=envelope.event_id,
                    consumer=echo.spec.name,
                    partition=0,
                    offset=0,
                    type=envelope.type,
                    reason="failed",
                    error="ConnectionResetError: a reaction failed on a copy",
                    value=envelope.to_bytes(),
                )
            )
        applied, failing = await runtime.retry_parked()
        echoes = await count_rows(runtime, echo.rows, kind="echo")
        opened = await count_rows(runtime, echo.rows, kind="opened")
    finally:
        await runtime.engine.dispose()
    assert (applied, failing) == (1, 0)
    assert echoes == 1  # the reaction ran
    assert opened == 0  # the projection did not run twice


async def test_a_retry_and_a_live_batch_of_one_ticket_are_serialised(settings: Settings) -> None:
    """Before, a ticket whose first event was parked had no sequence row to lock: a live batch
    that held seq 2 and a retry that applied seq 1 each committed without seeing the other, and
    seq 2 stayed held for ever. Now the sequence row is created and locked by whoever comes
    first, so the second waits and sees the first's seq."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    ticket = uuid.uuid4()
    tables = echo.spec.tables
    runtime = ServiceRuntime(echo.spec, settings)
    try:
        async with runtime.engine.begin() as live_batch:
            await runtime.consumer.applier.load_sequences(live_batch, [str(ticket)])
            retry = asyncio.create_task(_lock_sequence(runtime, ticket))
            done, _ = await asyncio.wait({retry}, timeout=1.0)  # it must not get through
            waited = not done
        await asyncio.wait_for(retry, timeout=30)
        rows = await count_rows(runtime, tables.ticket_sequence, ticket_id=ticket)
    finally:
        await runtime.engine.dispose()
    assert waited
    assert rows == 1


async def _lock_sequence(runtime: ServiceRuntime, ticket: uuid.UUID) -> None:
    async with runtime.engine.begin() as conn:
        await runtime.consumer.applier.load_sequences(conn, [str(ticket)])


def test_which_failures_are_transient() -> None:
    """One place says which failures are retried before an event is parked."""

    class SerializationFailureError(Exception):
        sqlstate = "40001"

    assert is_transient(Conflict("a concurrent command changed the ticket"))
    assert is_transient(ConnectionResetError())
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = SerializationFailureError()
    assert is_transient(wrapped)
    assert not is_transient(ValueError("a handler bug"))
    assert not is_transient(KeyError("payload"))


# -- caught up means caught up now ------------------------------------------------------------


async def test_readiness_says_behind_while_a_burst_waits_and_ready_once_applied(
    settings: Settings,
) -> None:
    """Before, "caught up" was a flag set once and never reset: with hundreds of records
    waiting, /readyz still said caught up. Now it measures the lag of every owned partition."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    async with running(echo, settings) as replica:
        assert (await replica.readiness())["caught_up"] is True
        async with replica.engine.connect() as fence:
            # A rebuild's swap holds the fence: live batches wait behind it.
            await fence.execute(
                sa.text("SELECT pg_advisory_lock(:k)"), {"k": fence_key(echo.spec.schema)}
            )
            await publish(
                settings.kafka_bootstrap,
                settings.topic,
                [ticket_opened(account, number=i) for i in range(300)],
            )

            async def behind() -> bool:
                return (await replica.readiness())["caught_up"] is False

            await wait_for(behind, timeout=30)
            await fence.execute(
                sa.text("SELECT pg_advisory_unlock(:k)"), {"k": fence_key(echo.spec.schema)}
            )

        async def ready_again() -> bool:
            return (await replica.readiness())["caught_up"] is True

        await wait_for(ready_again, timeout=60)
        opened = await count_rows(replica, echo.rows, kind="opened")
    assert opened == 300


async def test_dedup_marks_are_pruned_by_the_database_clock(settings: Settings) -> None:
    """Before, marks were pruned against the injected clock: a clock 30 days ahead pruned every
    mark, and copies were applied again. Now the database's own clock decides."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    tables = echo.spec.tables
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(tables.processed_events.insert().values(event_id=uuid.uuid4()))
        consumer = ConsumerRuntime(
            echo.spec.name,
            engine=runtime.engine,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic,
            tables=tables,
            projection=runtime.projection,
            metrics=runtime.metrics,
            clock=lambda: runtime.clock() + timedelta(days=30),
            dedup_retention_hours=24,
        )
        consumer._pruned_at = -1e9  # due for pruning now
        await consumer._prune_dedup_marks()
        marks = await count_rows(runtime, tables.processed_events)
    finally:
        await runtime.engine.dispose()
    assert marks == 1


# -- one event must never stop the stream ------------------------------------------------------


async def test_an_event_larger_than_the_stream_takes_is_refused_at_emit(settings: Settings) -> None:
    """Before, a 1.5 MB event entered the outbox and the relay retried it for ever. Now the
    command's transaction refuses it, naming the field that makes it large, and writes nothing."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    account = uuid.uuid4()
    large = ticket_opened(account, description="x" * (MAX_EVENT_BYTES + 1))
    try:
        with pytest.raises(EventTooLargeError) as refused:
            async with runtime.engine.begin() as conn:
                await append(conn, echo.spec.tables, [ticket_opened(account), large])
        outbox = await count_rows(runtime, echo.spec.tables.outbox)
    finally:
        await runtime.engine.dispose()
    assert refused.value.status == 422
    assert refused.value.errors == [
        {"field": "description", "reason": refused.value.reason},
    ]
    assert outbox == 0


async def test_an_outbox_row_that_can_never_be_published_is_moved_aside_and_the_rest_flows(
    settings: Settings,
) -> None:
    """Before, a row larger than a message may be (written before the emit check existed, or by
    hand) failed every relay round: no event of any account left the service again, while
    readiness said ready. Now it goes to the dead letters with its reason, listed for the admin,
    and the rows behind it are published."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    tables = echo.spec.tables
    too_large = ticket_opened(account, number=1)
    canary = ticket_opened(account, number=2)
    async with running(echo, settings) as replica:
        async with replica.engine.begin() as conn:
            await conn.execute(
                tables.outbox.insert().values(
                    event_id=too_large.event_id,
                    type=too_large.type,
                    key=account_key(account),
                    value=b"x" * (2 * 1024 * 1024),
                    headers=[[k, v.decode()] for k, v in too_large.headers()],
                )
            )
            await append(conn, tables, [canary])
        replica.relay.notify()
        await wait_for(
            lambda: _count_is(replica, echo.rows, 1, event_id=canary.event_id), timeout=30
        )
        # The consumer can see the canary before the relay's round has deleted its outbox row:
        # the round ends after the publish is acknowledged.
        await wait_for(lambda: _count_is(replica, tables.outbox, 0), timeout=30)
        letters = await replica.dead_letters()
        ready = await replica.readiness()
    assert [letter.event_id for letter in letters] == [too_large.event_id]
    assert "larger than a message may be" in letters[0].reason
    assert letters[0].size_bytes == 2 * 1024 * 1024
    assert ready["relay_publishing"] is True


async def test_a_relay_that_cannot_publish_says_so_in_readiness(settings: Settings) -> None:
    """Before, a relay that failed every round logged each failure and readiness said ready.
    Now readiness turns not-ready with the reason once it has failed for `stuck_after`."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    relay = OutboxRelay(
        runtime.engine,
        echo.spec.tables,
        "127.0.0.1:1",  # no broker: every round fails
        settings.topic,
        runtime.metrics,
        stuck_after=0.0,
    )
    try:
        assert relay.failure() is None
        relay._failed(ConnectionRefusedError("no broker"))
        reason = relay.failure()
        failing = runtime.metrics.relay_failing._value.get()
        relay._recovered()
        after = relay.failure()
    finally:
        await runtime.engine.dispose()
    assert reason is not None
    assert "no broker" in reason
    assert failing == 1
    assert after is None


# -- live loops and the rebuild fence ------------------------------------------------------


async def test_a_live_loop_claim_waits_for_a_rebuild_swap(settings: Settings) -> None:
    """Before, a live loop could record a side effect while a rebuild swapped its tables in,
    and the swap published a state without it. Now a claim takes the rebuild fence, shared."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    async with running(echo, settings) as replica:
        context = replica.live.context()
        async with replica.engine.connect() as swap:
            await swap.execute(
                sa.text("SELECT pg_advisory_lock(:k)"), {"k": fence_key(echo.spec.schema)}
            )

            async def claim() -> None:
                async with context.claim(context.partitions):
                    pass

            claiming = asyncio.create_task(claim())
            done, _ = await asyncio.wait({claiming}, timeout=1.0)
            waited = not done
            await swap.execute(
                sa.text("SELECT pg_advisory_unlock(:k)"), {"k": fence_key(echo.spec.schema)}
            )
        await asyncio.wait_for(claiming, timeout=30)
    assert waited


async def _count_is(runtime: ServiceRuntime, table: sa.Table, count: int, **where: object) -> bool:
    return await count_rows(runtime, table, **where) == count


def test_a_deadline_is_acted_on_only_after_its_allowed_lateness() -> None:
    """Before, a deadline fired as soon as the watermark passed it: a resolution that occurred
    30 ms before the deadline and was relayed 30 ms after it let a breach fire for a ticket
    that met its target. Now a live loop acts on deadlines at least `lateness` old."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    lateness = timedelta(seconds=2)

    def context(watermark: datetime) -> LiveContext:
        return LiveContext(
            owned={0: Ownership(0, 1, watermark)},
            now=now,
            engine=cast(Any, None),
            tables=cast(Any, None),
            projection=Projection(),
            consumer="sla_timer",
            owner="replica",
            lateness=lateness,
        )

    assert context(now).due_until(0) == now - lateness  # caught up
    lagging = now - timedelta(minutes=5)
    assert context(lagging).due_until(0) == lagging - lateness
    nothing_applied = datetime.min.replace(tzinfo=UTC)
    assert context(nothing_applied).due_until(0) == nothing_applied
    assert Settings().allowed_lateness_seconds == 2.0


async def test_every_replica_hears_of_a_revoked_key_when_its_revocation_commits(
    settings: Settings,
) -> None:
    """Before, a replica that did not apply a revoke itself (its service's other replicas did)
    accepted the key until its cache entry expired, 5 s. Now applying the revocation notifies
    every replica of the service when the transaction commits, and each forgets the key."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    heard: list[str] = []
    listener = RevocationListener(runtime.engine, echo.spec.schema, on_revoked=heard.append)
    await listener.start()
    try:
        revoke = ApiKeyRevoked(key_id="0a1b2c")
        ctx = Context(Actor(type="admin", id="admin"), runtime.clock(), runtime.clock())
        async with runtime.unit_of_work() as uow:
            await uow.emit([ctx.event(revoke, account_id=uuid.uuid4())])
            uncommitted = list(heard)

        async def told() -> bool:
            return heard == ["0a1b2c"]

        await wait_for(told, timeout=10)
    finally:
        await listener.stop()
        await runtime.engine.dispose()
    assert uncommitted == []  # nothing is heard of a revocation that may still roll back


async def test_the_relay_and_a_rebuild_refuse_a_topic_whose_partition_count_changed(
    settings: Settings,
) -> None:
    """Before, only a service's start checked the partition count: a running relay rehashed
    accounts onto other partitions, and a rebuild replayed whatever the topic held. Both now
    refuse, saying how to proceed."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    tables = echo.spec.tables
    relay = OutboxRelay(
        runtime.engine, tables, settings.kafka_bootstrap, settings.topic, runtime.metrics
    )
    relay.partitions = settings.partitions - 1  # what the stored state was built for
    await relay.start()
    try:
        async with runtime.engine.begin() as conn:
            await append(conn, tables, [ticket_opened(uuid.uuid4())])
        with pytest.raises(PartitionCountError, match="partitions"):
            await relay.publish_once()
        async with runtime.engine.begin() as conn:
            await conn.execute(
                tables.consumer_state.insert().values(
                    consumer=echo.spec.name, generation=0, partitions=settings.partitions - 1
                )
            )
        with pytest.raises(RuntimeError, match="partitions"):
            await runtime.rebuild()
        outbox = await count_rows(runtime, tables.outbox)
    finally:
        await relay.stop()
        await runtime.engine.dispose()
    assert outbox == 1  # nothing was published to a rehashed partition
