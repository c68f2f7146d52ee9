"""The consumer runtime's second version, each failure it prevents reproduced against real
Kafka and PostgreSQL: own events across a rebuild, a rebuild racing a running replica, reactions
during a rebuild, poison events, the fenced relay, partition ownership and the partition count.

Most tests run a small "echo" service built here: its projection records every ticket.opened
(foreign) and every echo it decided (own), and its reaction answers each ticket.opened with one
own event whose id derives from the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from helpdesk.shared.consumer import take_ownership
from helpdesk.shared.context import Context, system_actor, utc_now
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.db import (
    SchemaDriftError,
    create_engine,
    is_migrated,
    migrate,
)
from helpdesk.shared.events import Event, derive_event_id
from helpdesk.shared.kafka import reliable_producer
from helpdesk.shared.live import LiveContext, OwnershipLostError
from helpdesk.shared.outbox import OutboxRelay, append
from helpdesk.shared.service import ServiceRuntime, StopTimeoutError
from helpdesk.shared.settings import Settings
from tests.support import SPECS, fresh_database, in_process, publish, ticket_opened, wait_for
from tests.support.echo import (
    Echo,
    count_rows,
    create_schema,
    digest,
    echo_service,
    fresh_name,
    running,
)

pytestmark = pytest.mark.integration


# -- own events, reactions and rebuilds ------------------------------------------------------------


async def test_own_event_still_in_the_outbox_survives_a_rebuild(settings: Settings) -> None:
    """v1 skipped a service's own events by their source header: an own event committed while
    Kafka was unreachable (still in the outbox), then wiped by a rebuild, was dropped for good
    when the relay finally published it. Then (until issue 20) the rebuild swapped in a state
    without it until its copy came back. Now the swap folds the outbox in: the account is there
    throughout, and the copy is deduplicated by id."""
    async with in_process("intake", settings) as intake:
        relay = next(t for t in intake.runtime._tasks if t.get_name() == "relay")
        relay.cancel()  # Kafka "down" for intake's relay: events stay in the outbox
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        created = await intake.http.post(
            "/v1/accounts", json={"name": "Outbox Ltd", "timezone": "UTC"}
        )
        assert created.status_code == 201, created.text
        account_id = created.json()["id"]
        assert (await intake.http.get(f"/v1/accounts/{account_id}")).status_code == 200

        read = await intake.runtime.rebuild()  # the stream does not hold the account yet
        after_swap = (await intake.http.get(f"/v1/accounts/{account_id}")).status_code
        published = await intake.runtime.relay.publish_once()  # Kafka is back

        async def visible() -> bool:
            return (await intake.http.get(f"/v1/accounts/{account_id}")).status_code == 200

        await wait_for(visible, timeout=30)
    print(f"\nrebuilt from {read} records; account after swap: {after_swap}; relayed {published}")
    assert after_swap == 200
    assert published >= 1


async def test_reactions_do_not_run_in_a_rebuild_and_it_reproduces_live_state(
    settings: Settings,
) -> None:
    """Foreign events keep arriving between each decision and its copy on the stream; the
    rebuilt projection equals the live one, and the rebuild decides nothing again."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    async with running(echo, settings) as replica:
        for wave in range(5):
            envelopes = [ticket_opened(account, number=wave * 40 + i) for i in range(40)]
            await publish(settings.kafka_bootstrap, settings.topic, envelopes)
        total = 200

        async def settled() -> bool:
            echoes = await count_rows(replica, echo.rows, kind="echo")
            outbox = await count_rows(replica, echo.spec.tables.outbox)
            return echoes == total and outbox == 0 and await _copies_consumed(replica, total)

        await wait_for(settled, timeout=90)
        live = await digest(replica)
        read = await replica.rebuild()
        rebuilt = await digest(replica)
        outbox_after = await count_rows(replica, echo.spec.tables.outbox)
        produced = await _records_on_topic(settings)
    print(f"\n{total} foreign events, {total} own echoes; rebuilt from {read} records")
    assert rebuilt == live
    assert read == 2 * total
    assert outbox_after == 0  # the rebuild emitted nothing
    assert produced == 2 * total  # one echo per cause, never a second copy


async def _copies_consumed(runtime: ServiceRuntime, echoes: int) -> bool:
    """The own echoes came back from Kafka and were dropped as duplicates."""
    duplicates = runtime.metrics.duplicates_skipped._value.get()
    return bool(duplicates >= echoes)


async def _records_on_topic(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(settings.topic) or set()
        tps = [TopicPartition(settings.topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_a_rebuild_is_fenced_from_a_running_replica(settings: Settings) -> None:
    """v1 rebuilt in one transaction while a running replica went on from its in-memory position
    and wrote rows the rebuild then wiped. Now the swap takes the fence, the replica's next batch
    sees the new generation and seeks to the rebuilt offsets: nothing lost, nothing twice."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    async with running(echo, settings) as replica:
        first = [ticket_opened(account, number=i) for i in range(300)]
        await publish(settings.kafka_bootstrap, settings.topic, first)
        cli = ServiceRuntime(echo.spec, settings)  # `make rebuild-…` while the replica runs
        try:
            more = [ticket_opened(account, number=1000 + i) for i in range(300)]
            _, read = await asyncio.gather(
                publish(settings.kafka_bootstrap, settings.topic, more), cli.rebuild()
            )
        finally:
            await cli.engine.dispose()
        late = [ticket_opened(account, number=5000 + i) for i in range(100)]
        await publish(settings.kafka_bootstrap, settings.topic, late)
        total = len(first) + len(more) + len(late)

        async def all_applied() -> bool:
            return await count_rows(replica, echo.rows, kind="opened") == total

        await wait_for(all_applied, timeout=90)
        await wait_for(lambda: _echoes(replica, echo, total), timeout=90)
        generation = await _generation(replica, echo)
    print(f"\nrebuild read {read} records while {len(more)} more arrived; generation {generation}")
    assert generation == 1


async def _echoes(runtime: ServiceRuntime, echo: Echo, total: int) -> bool:
    return await count_rows(runtime, echo.rows, kind="echo") == total


async def _generation(runtime: ServiceRuntime, echo: Echo) -> int:
    state = echo.spec.tables.consumer_state
    async with runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(state.c.generation)) or 0)


# -- poison -----------------------------------------------------------------------------------


async def test_a_poison_event_is_parked_the_partition_goes_on_and_it_can_be_retried(
    settings: Settings,
) -> None:
    echo = echo_service(fresh_name())
    echo.poisoned.add("poison")
    await create_schema(settings, echo)
    account, poisoned = uuid.uuid4(), uuid.uuid4()
    envelopes = [
        ticket_opened(account, number=1),
        ticket_opened(account, ticket_id=poisoned, number=2, subject="poison"),
        ticket_opened(account, ticket_id=poisoned, seq=2, number=3),  # held behind it
        ticket_opened(account, number=4),
    ]
    parked = echo.spec.tables.parked_events
    async with running(echo, settings) as replica:
        await publish(settings.kafka_bootstrap, settings.topic, envelopes)

        async def others_applied() -> bool:
            return await count_rows(replica, echo.rows, kind="opened") == 2

        await wait_for(others_applied, timeout=30)
        await wait_for(lambda: _parked(replica, parked, 2), timeout=30)
        readiness = await replica.readiness()
        metric = replica.metrics.parked_events._value.get()
        echo.poisoned.clear()  # the fix is deployed
        applied, failing = await replica.retry_parked()
        rows_after = await count_rows(replica, echo.rows, kind="opened")
        parked_after = await count_rows(replica, parked)
    print(f"\nparked 2 of 4, readiness {readiness}; retry applied {applied}, failing {failing}")
    assert readiness["no_parked_events"] is False
    assert metric == 2  # the failed one, and its ticket's next event held behind it
    assert (applied, failing) == (1, 0)
    assert rows_after == 4  # the retried event, then the one held behind it
    assert parked_after == 0


async def test_a_record_with_unreadable_headers_is_parked_and_its_partition_goes_on(
    settings: Settings,
) -> None:
    """A record another producer wrote (a console producer, a bad tool) must not stop the
    partition: before, one header that was not a uuid failed every retry of the batch."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account = uuid.uuid4()
    bad = [ticket_opened(account, number=n) for n in (1, 2, 3)]
    good = ticket_opened(account, number=4)
    type_ = ("type", b"ticket.opened")
    headers: list[list[tuple[str, bytes]]] = [
        [type_, ("event_id", b"not-a-uuid")],
        [type_],  # no event id at all
        [type_, ("event_id", str(bad[2].event_id).encode()), ("seq", b"first")],
        [],  # no headers: no service handles it, it is passed over
    ]
    producer = reliable_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        key = str(account).encode()
        for envelope, sent in zip([*bad, bad[0]], headers, strict=True):
            await producer.send_and_wait(settings.topic, envelope.to_bytes(), key=key, headers=sent)
    finally:
        await producer.stop()
    await publish(settings.kafka_bootstrap, settings.topic, [good])  # same account: same partition
    parked = echo.spec.tables.parked_events
    async with running(echo, settings) as replica:

        async def good_applied() -> bool:
            return await count_rows(replica, echo.rows, event_id=good.event_id) == 1

        await wait_for(good_applied, timeout=30)
        async with replica.engine.connect() as conn:
            errors = await conn.execute(sa.select(parked.c.error).order_by(parked.c.offset))
            errors_seen = list(errors.scalars())
        # The bodies are sound: once parked, the events apply from them.
        applied, failing = await replica.retry_parked()
        opened = await count_rows(replica, echo.rows, kind="opened")
    assert len(errors_seen) == 3
    assert all(error.startswith("unreadable headers: header ") for error in errors_seen)
    assert (applied, failing) == (3, 0)
    assert opened == 4


async def test_a_retried_record_with_unreadable_headers_releases_its_ticket_s_later_events(
    settings: Settings,
) -> None:
    """A record parked for its headers is stored without its ticket or seq. Before, its retry
    applied it but left the ticket's sequence where it was, so the ticket's next event stayed
    held for good; and it claimed the parked row's id, not the event's own."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    account, ticket = uuid.uuid4(), uuid.uuid4()
    first = ticket_opened(account, ticket_id=ticket, number=1)
    second = ticket_opened(account, ticket_id=ticket, seq=2, number=2)  # held behind the first
    garbled = [(k, b"garbled" if k == "event_id" else v) for k, v in first.headers()]
    producer = reliable_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        key = str(account).encode()
        await producer.send_and_wait(settings.topic, first.to_bytes(), key=key, headers=garbled)
    finally:
        await producer.stop()
    await publish(settings.kafka_bootstrap, settings.topic, [second])
    tables = echo.spec.tables
    async with running(echo, settings) as replica:
        await wait_for(lambda: _parked(replica, tables.parked_events, 2), timeout=30)
        applied, failing = await replica.retry_parked()
        opened = await count_rows(replica, echo.rows, kind="opened")
        parked_after = await count_rows(replica, tables.parked_events)
        claimed = await count_rows(replica, tables.processed_events, event_id=first.event_id)
    assert (applied, failing) == (1, 0)
    assert opened == 2  # the retried event, then the one held behind it
    assert parked_after == 0
    assert claimed == 1


async def _parked(runtime: ServiceRuntime, table: sa.Table, count: int) -> bool:
    return await count_rows(runtime, table) == count


# -- partition ownership and count -------------------------------------------------------------


async def test_a_replica_that_lost_a_partition_cannot_act_for_it(settings: Settings) -> None:
    """v1 let a live-loop tick that outlived the rebalance act while the new owner acted too.
    Now the takeover bumps the partition's epoch and the old owner's claim fails."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    tables = echo.spec.tables
    try:
        async with runtime.engine.begin() as conn:
            first = await take_ownership(conn, tables, "c", "replica-1", [3])

        def context(owner: str, epoch: int) -> LiveContext:
            from helpdesk.shared.consumer import Ownership

            return LiveContext(
                owned={3: Ownership(3, epoch, utc_now())},
                now=utc_now(),
                engine=runtime.engine,
                tables=tables,
                projection=runtime.projection,
                consumer="c",
                owner=owner,
            )

        async with context("replica-1", first[3]).claim([3]):
            pass  # the owner may act
        async with runtime.engine.begin() as conn:
            second = await take_ownership(conn, tables, "c", "replica-2", [3])
        with pytest.raises(OwnershipLostError):
            async with context("replica-1", first[3]).claim([3]):
                pass
        async with context("replica-2", second[3]).claim([3]):
            pass
    finally:
        await runtime.engine.dispose()
    assert second[3] == first[3] + 1


async def test_a_service_refuses_a_topic_with_another_partition_count(settings: Settings) -> None:
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    state = echo.spec.tables.consumer_state
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(
                state.insert().values(consumer=echo.spec.name, generation=0, partitions=6)
            )
        with pytest.raises(RuntimeError, match="12 partitions but this service's stored state"):
            await runtime.start()
    finally:
        await runtime.engine.dispose()


async def test_migrate_refuses_a_schema_an_earlier_build_created(settings: Settings) -> None:
    """Until release 1 a baseline migration changes in place (ADR 0001). Before, `make up` on a
    database an earlier build created found it at head, started the notifier on a table without
    `cycle`, and every event it applied was parked."""
    url = await fresh_database(settings.database_url)
    notifier = SPECS["notifier"]()
    await migrate(url, notifier.metadata, notifier.migrations)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # what the earlier build's baseline created
            await conn.execute(sa.text("ALTER TABLE notifier.tickets DROP COLUMN cycle"))
            await conn.execute(sa.text("ALTER TABLE notifier.tickets ADD COLUMN legacy int"))
        with pytest.raises(SchemaDriftError) as refused:
            await migrate(url, notifier.metadata, notifier.migrations)
        async with engine.connect() as conn:
            migrated = await is_migrated(conn, notifier.metadata, notifier.migrations)
    finally:
        await engine.dispose()
    message = str(refused.value)
    assert "tickets.cycle is missing; tickets.legacy is unknown" in message
    assert "rm -rf .state/dev" in message
    assert migrated is False  # /readyz says so too


async def test_a_stop_ends_even_if_a_task_ignores_its_cancellation(settings: Settings) -> None:
    """Before, stop() awaited each cancelled task for as long as it took: one that swallowed its
    cancellation (cpython gh-86296 once made a live loop do so) kept the replica from ever
    stopping. Now stop() closes everything else and names the task, with its stack."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    running, released = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        running.set()
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    spec = dataclasses.replace(echo.spec, tasks=lambda runtime: [stubborn])
    runtime = ServiceRuntime(spec, settings.model_copy(update={"stop_timeout_seconds": 0.5}))
    await runtime.start()
    try:
        async with asyncio.timeout(30):
            await running.wait()
        # In a task of its own: the old stop() also swallowed a cancellation aimed at its caller.
        stopping = asyncio.create_task(runtime.stop())
        await asyncio.wait([stopping], timeout=60)
    finally:
        released.set()
    assert stopping.done(), "stop() did not return"
    with pytest.raises(StopTimeoutError) as stopped:
        stopping.result()
    assert "task0:" in str(stopped.value)
    assert "in stubborn" in str(stopped.value)  # the stack of the task that did not end


# -- deterministic ids and the fenced relay ---------------------------------------------------


async def test_an_event_decided_twice_is_applied_and_queued_once(settings: Settings) -> None:
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    try:
        envelope = ticket_opened(uuid.uuid4())
        opened = TicketOpened.model_validate(envelope.payload)
        ctx = Context.caused_by(Event(envelope, opened), system_actor("echo"), utc_now())
        decided = AutoCloseRequested(
            ticket_id=opened.ticket_id, ticket_seq=1, unanswered_follow_ups=0
        )
        fresh = []
        for _ in range(2):  # e.g. a crash after the first commit, and the decision made again
            async with runtime.unit_of_work() as uow:
                event = ctx.event(decided, account_id=envelope.account_id, purpose="echo")
                fresh.append(len(await uow.emit([event])))
        outbox = await count_rows(runtime, echo.spec.tables.outbox)
        rows = await count_rows(runtime, echo.rows)
    finally:
        await runtime.engine.dispose()
    assert event.envelope.event_id == derive_event_id(envelope.event_id, "echo")
    assert fresh == [1, 0]
    assert (outbox, rows) == (1, 1)


async def test_the_relay_is_fenced_per_round_and_sends_one_batch_per_partition(
    settings: Settings,
) -> None:
    """v1 held a session lock on a pooled connection for the life of the service (lost silently
    with its backend, and idle in transaction, pinning VACUUM) and could send two batches of one
    partition in one round. Now each round is one short transaction with a transaction lock."""
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    runtime = ServiceRuntime(echo.spec, settings)
    account = uuid.uuid4()
    big = "x" * 400_000  # three of these do not fit one 1 MiB record batch
    envelopes = [ticket_opened(account, number=i, description=big) for i in range(3)]
    relay = OutboxRelay(
        runtime.engine, echo.spec.tables, settings.kafka_bootstrap, settings.topic, runtime.metrics
    )
    await relay.start()
    try:
        async with runtime.engine.begin() as conn:
            await append(conn, echo.spec.tables, envelopes)
        async with runtime.engine.connect() as other:
            await other.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": relay._lock_key})
            fenced = await relay.publish_once()  # another relay is mid-round
            await other.rollback()
        rounds = [await relay.publish_once() for _ in range(3)]
        async with runtime.engine.connect() as conn:
            idle = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction'"
                )
            )
    finally:
        await relay.stop()
        await runtime.engine.dispose()
    print(f"\nfenced round published {fenced}; rounds {rounds}")
    assert fenced == 0
    assert rounds[0] == 2  # the partition's batch was full: the third waits for the next round
    assert rounds[1:] == [1, 0]
    assert idle == 0


async def test_stop_closes_what_the_service_registered_once_its_tasks_have_ended(
    settings: Settings,
) -> None:
    echo = echo_service(fresh_name())
    await create_schema(settings, echo)
    closed: list[tuple[str, list[str]]] = []
    others = asyncio.all_tasks()  # other runtimes of this test session run tasks of these names
    mine: set[asyncio.Task[Any]] = set()

    def closer(name: str) -> Any:
        async def close() -> None:
            closed.append((name, sorted(t.get_name() for t in mine if not t.done())))

        return close

    async with running(echo, settings) as runtime:
        mine.update(
            t for t in asyncio.all_tasks() - others if t.get_name() in {"relay", "consumer", "live"}
        )
        # (The echo service has no live loop: its "live" task has ended already.)
        assert {t.get_name() for t in mine} >= {"relay", "consumer"}
        runtime.on_stop(closer("pool"))
        runtime.on_stop(closer("client"))
        assert closed == []
    # Once each, last registered first, and none while the loops that use them still run.
    assert closed == [("client", []), ("pool", [])]
