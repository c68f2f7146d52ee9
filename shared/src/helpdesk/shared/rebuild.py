"""Rebuilding a projection from the stream, and retrying parked events.

A rebuild replays the whole stream into shadow tables (schema `<schema>_rebuild`), committing
per batch, so a failure midway leaves the live projection untouched. An event whose handler
fails is parked in the shadow, as live consumption parks it, and the replay goes on. Folds the
projection's handlers deferred while replaying (`Projection.after_replay`) then run once per key,
still into the shadow tables, and the replay catches up with the stream in batches until little
is left. It then swaps, in one transaction that takes the rebuild fence exclusively (live
batches and live-loop claims of running replicas wait on it):
1. it reads the service's outbox (its own events not yet on Kafka), then applies what reached
   the stream meanwhile, then folds in those outbox events, so that the swapped-in state is not
   older than what the service already acted on (a delivered webhook, a revoked key);
2. it carries the live parked rows over (failed and held events are never dropped);
3. it moves the shadow tables into the service's schema in place of the live ones, copies the
   consumer's offsets and bumps its generation; every running replica sees the new generation
   (in its next batch, or within a second when idle), seeks to the new offsets and takes its
   partitions with new epochs, so its live loops re-read;
4. a carried-over parked event the replay applied has its reactions run now, once (the live
   consumer never reacted to it), and leaves the parked rows.
Reactions do not run otherwise: their events are on the stream already. docs/adr/0005 says what
is guaranteed under which interleavings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.consumer import (
    BatchApplier,
    Projection,
    Reactions,
    Record,
    Replay,
    TransientFailureError,
    UnitOfWork,
    check_partition_count,
    claim,
    fenced_generation,
)
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import decode
from helpdesk.shared.failures import TRANSIENT_ATTEMPTS, is_transient
from helpdesk.shared.kafka import topic_partitions
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.outbox import partition_of

log = logging.getLogger(__name__)

#: Keys a finisher gets per transaction after a replay.
FINISH_CHUNK = 2000
#: Deferred keys a replay holds in memory before it runs the finishers early: a rebuild's
#: memory then stays bounded whatever the number of tickets on the stream.
MAX_DEFERRED_KEYS = 50_000
_REBUILD_NAMESPACE = 0x72626C64  # "rbld": one rebuild of a schema at a time


class RebuildRefusedError(RuntimeError):
    """Another rebuild of the same service is running."""


def _rebuild_lock_key(schema: str) -> int:
    return _REBUILD_NAMESPACE ^ (
        int.from_bytes(schema.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF
    )


def shadow_tables(projection: Projection, tables: RuntimeTables) -> list[sa.Table]:
    """The tables a rebuild builds anew: the projection and the replay state."""
    return [*projection.tables, *tables.replay_state]


async def rebuild(
    name: str,
    *,
    engine: AsyncEngine,
    bootstrap: str,
    topic: str,
    tables: RuntimeTables,
    projection: Projection,
    metrics: Metrics,
    reactions: Reactions | None = None,
    max_records: int = 5000,
    first: Sequence[UUID] = (),
    max_deferred: int = MAX_DEFERRED_KEYS,
) -> int:
    """Replay the stream into shadow tables and swap them in; returns the records read.

    The partitions of the `first` accounts are replayed to their end before the others: their
    events are needed to apply the other partitions' (partitions replay in no fixed order).
    Once handlers have deferred work for `max_deferred` keys, the finishers run on them early.
    """
    schema = tables.schema or "public"
    shadow = f"{schema}_rebuild"
    async with engine.connect() as lock_conn:
        if not await lock_conn.scalar(
            sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _rebuild_lock_key(schema)}
        ):
            raise RebuildRefusedError(f"a rebuild of {name} is already running")
        await lock_conn.commit()
        try:
            await _create_shadow(engine, schema, shadow, shadow_tables(projection, tables), tables)
            return await _replay_and_swap(
                name,
                engine=engine,
                bootstrap=bootstrap,
                topic=topic,
                tables=tables,
                projection=projection,
                metrics=metrics,
                reactions=reactions,
                max_records=max_records,
                schema=schema,
                shadow=shadow,
                first=first,
                max_deferred=max_deferred,
            )
        finally:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE'))
            await lock_conn.execute(
                sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _rebuild_lock_key(schema)}
            )
            await lock_conn.commit()


async def _create_shadow(
    engine: AsyncEngine,
    schema: str,
    shadow: str,
    rebuilt: Sequence[sa.Table],
    tables: RuntimeTables,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE'))
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
        shadowed = await conn.execution_options(schema_translate_map={schema: shadow})

        def create(sync_conn: sa.Connection) -> None:
            for table in [*rebuilt, tables.consumer_offsets, tables.consumer_state]:
                table.create(sync_conn)

        await shadowed.run_sync(create)


async def _replay_and_swap(
    name: str,
    *,
    engine: AsyncEngine,
    bootstrap: str,
    topic: str,
    tables: RuntimeTables,
    projection: Projection,
    metrics: Metrics,
    reactions: Reactions | None,
    max_records: int,
    schema: str,
    shadow: str,
    first: Sequence[UUID],
    max_deferred: int,
) -> int:
    applier = BatchApplier(name, topic, tables, projection, metrics)
    replay = applier.replay = Replay()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=max_records,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topic)
        await check_partition_count(engine, tables, name, len(partitions))
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        read = 0
        applied: list[str] = []
        ends = await consumer.end_offsets(tps)
        leading = {partition_of(account, partitions) for account in first}
        for phase in ({tp: end for tp, end in ends.items() if tp.partition in leading}, ends):
            while (batches := await _fetch_until(consumer, phase, max_records)) is not None:
                applied += await _replay_batch(engine, applier, batches, schema, shadow)
                read += sum(len(records) for records in batches.values())
                if len(replay) >= max_deferred:
                    await _finish_deferred(engine, applier, replay, schema, shadow)
        await _finish_deferred(engine, applier, replay, schema, shadow)
        applier.replay = None  # from here on, batches are applied as live ones are
        # What arrived during the replay, in batches of their own, until one batch is left for
        # the fenced step: the swap then holds the fence for a short while, whatever the load.
        while True:
            ends = await consumer.end_offsets(tps)
            behind = 0
            for tp, end in ends.items():
                behind += end - await consumer.position(tp)
            if behind <= max_records:
                break
            while (batches := await _fetch_until(consumer, ends, max_records)) is not None:
                applied += await _replay_batch(engine, applier, batches, schema, shadow)
                read += sum(len(records) for records in batches.values())
        async with engine.begin() as conn:
            await fenced_generation(conn, tables, name, exclusive=True)
            # The outbox first, then the stream's end: a row the relay publishes in between is
            # read from one or the other, and applied once by its id.
            unpublished = await _outbox_values(conn, tables)
            ends = await consumer.end_offsets(tps)
            shadowed = await conn.execution_options(schema_translate_map={schema: shadow})
            while (batches := await _fetch_until(consumer, ends, max_records)) is not None:
                applied += await _apply_in(shadowed, applier, batches)
                read += sum(len(records) for records in batches.values())
            applied += await applier.apply_own(shadowed, unpublished)
            await _swap(conn, name, tables, projection, schema, shadow)
            # The translation is the connection's own (set in place): the live tables again.
            await conn.execution_options(schema_translate_map=None)
            await _react_to_carried_over(conn, tables, projection, reactions, metrics)
        applier.count(applied)
        log.info("rebuilt %s from %d records", name, read)
        return read
    finally:
        await consumer.stop()


async def _replay_batch(
    engine: AsyncEngine,
    applier: BatchApplier,
    batches: dict[int, list[Record]],
    schema: str,
    shadow: str,
) -> list[str]:
    """Apply one fetched batch to the shadow tables in a transaction of its own, parking what
    fails (as a live batch does); a transient failure is retried with backoff."""
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            async with _shadow_transaction(engine, schema, shadow) as shadowed:
                return await _apply_in(shadowed, applier, batches)
        except Exception as exc:
            if not isinstance(exc, TransientFailureError) and not is_transient(exc):
                raise
            if attempt == TRANSIENT_ATTEMPTS:
                raise
            log.warning("rebuild batch failed; retrying", extra={"error": str(exc)[:500]})
            await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


async def _apply_in(
    conn: AsyncConnection, applier: BatchApplier, batches: dict[int, list[Record]]
) -> list[str]:
    """Apply a batch; if it fails, apply it event by event in savepoints, parking what fails."""
    try:
        async with conn.begin_nested():
            return await applier.apply(conn, batches)
    except TransientFailureError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning(
            "rebuild batch failed; applying it event by event, parking what fails",
            extra={"error": f"{type(exc).__name__}: {exc}"[:500]},
        )
        return await applier.apply(conn, batches, careful=True)


async def _outbox_values(conn: AsyncConnection, tables: RuntimeTables) -> list[bytes]:
    """The service's own events not yet published, in the order it decided them."""
    outbox = tables.outbox
    rows = await conn.execute(sa.select(outbox.c.value).order_by(outbox.c.id))
    return list(rows.scalars())


async def _react_to_carried_over(
    conn: AsyncConnection,
    tables: RuntimeTables,
    projection: Projection,
    reactions: Reactions | None,
    metrics: Metrics,
) -> None:
    """Parked events the replay applied: run their reactions (never run live), unpark them."""
    parked, processed = tables.parked_events, tables.processed_events
    rows = (
        await conn.execute(
            sa.select(parked.c.event_id, parked.c.value)
            .where(parked.c.event_id.in_(sa.select(processed.c.event_id)))
            .order_by(parked.c.partition, parked.c.offset)
        )
    ).all()
    uow = UnitOfWork(conn, tables, projection, metrics)
    for row in rows:
        if reactions is not None:
            await reactions.dispatch(uow, [decode(row.value)])
        await conn.execute(parked.delete().where(parked.c.event_id == row.event_id))
    if rows:
        log.info("parked events the rebuild applied were reacted to", extra={"count": len(rows)})


async def _finish_deferred(
    engine: AsyncEngine, applier: BatchApplier, replay: Replay, schema: str, shadow: str
) -> None:
    """Run the projection's finishers over what its handlers deferred so far, a chunk per
    transaction, and forget it."""
    for name, finish in applier.projection.finishers.items():
        for chunk in replay.drain(name, FINISH_CHUNK):
            async with _shadow_transaction(engine, schema, shadow) as shadowed:
                uow = UnitOfWork(shadowed, applier.tables, applier.projection, applier.metrics)
                await finish(uow, chunk)


@contextlib.asynccontextmanager
async def _shadow_transaction(
    engine: AsyncEngine, schema: str, shadow: str
) -> AsyncIterator[AsyncConnection]:
    """A transaction whose statements on `schema` go to the shadow tables."""
    async with engine.begin() as conn:
        # Shadow tables only: a crash before the swap drops them and the rebuild runs again,
        # so a commit need not wait for its WAL flush.
        await conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        yield await conn.execution_options(schema_translate_map={schema: shadow})


async def _fetch_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], max_records: int
) -> dict[int, list[Record]] | None:
    """The next records below `ends`, per partition; None once every partition reached it."""
    remaining = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
        batches = {
            tp.partition: kept
            for tp, records in fetched.items()
            if (kept := [r for r in records if r.offset < ends[tp]])
        }
        if batches:
            return batches
        remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
    return None


async def _swap(
    conn: AsyncConnection,
    name: str,
    tables: RuntimeTables,
    projection: Projection,
    schema: str,
    shadow: str,
) -> None:
    # Text statements: the schema translation of the connection leaves them alone.
    # Parked rows are carried over, never dropped: what the live consumer parked stays parked
    # unless the replay applied it (then `_react_to_carried_over` finishes it).
    await conn.execute(
        sa.text(
            f'INSERT INTO "{shadow}".parked_events SELECT * FROM "{schema}".parked_events '
            "ON CONFLICT DO NOTHING"
        )
    )
    for table in shadow_tables(projection, tables):
        await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{schema}"."{table.name}" CASCADE'))
        await conn.execute(sa.text(f'ALTER TABLE "{shadow}"."{table.name}" SET SCHEMA "{schema}"'))
    # The live consumer resumes at the lesser of where it was and where the replay ended: the
    # projection already holds the events in between (their copies are deduplicated), and the
    # reactions, which never ran in the replay, still see them.
    await conn.execute(
        sa.text(
            f'INSERT INTO "{schema}".consumer_offsets AS live '
            "SELECT s.consumer, s.topic, s.partition, s.next_offset "
            f'FROM "{shadow}".consumer_offsets s WHERE s.consumer = :c '
            "ON CONFLICT (consumer, topic, partition) DO UPDATE "
            "SET next_offset = LEAST(live.next_offset, EXCLUDED.next_offset)"
        ),
        {"c": name},
    )
    await conn.execute(
        sa.text(
            f'UPDATE "{schema}".consumer_state SET generation = generation + 1 WHERE consumer = :c'
        ),
        {"c": name},
    )


async def retry_parked(
    name: str,
    *,
    engine: AsyncEngine,
    topic: str,
    tables: RuntimeTables,
    projection: Projection,
    reactions: Reactions | None,
    metrics: Metrics,
) -> tuple[int, int]:
    """Apply parked (failed) events again, oldest first; returns (applied, still failing).

    Each runs in a transaction that takes the rebuild fence (shared) and locks its ticket's
    sequence row, so it is serialised with a live batch of the same ticket: whichever commits
    second sees the other's seq, and the events held behind the retried one are released.
    What did not run runs: the projection if the event was never applied (a copy may have been,
    after a rebuild or a republish), and the reactions always (their ids are derived from the
    cause, so a reaction that did run decides nothing new). A transient failure is retried with
    backoff a few times (`helpdesk.shared.failures`) before it counts as still failing.
    """
    applier = BatchApplier(name, topic, tables, projection, metrics, reactions)
    parked = tables.parked_events
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(parked.c.event_id, parked.c.value)
                .where(parked.c.consumer == name, parked.c.reason == "failed")
                .order_by(parked.c.partition, parked.c.offset)
            )
        ).all()
    applied = failing = 0
    for row in rows:
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                async with engine.begin() as conn:
                    await fenced_generation(conn, tables, name, exclusive=False)
                    await _retry_one(conn, applier, row.event_id, row.value)
                applied += 1
                break
            except Exception as exc:
                if is_transient(exc) and attempt < TRANSIENT_ATTEMPTS:
                    await asyncio.sleep(0.1 * 2**attempt)
                    continue
                failing += 1
                async with engine.begin() as conn:
                    await conn.execute(
                        parked.update()
                        .where(parked.c.event_id == row.event_id)
                        .values(error=f"{type(exc).__name__}: {exc}"[:2000])
                    )
                break
    return applied, failing


async def _retry_one(
    conn: AsyncConnection, applier: BatchApplier, parked_id: UUID, value: bytes
) -> None:
    tables, parked = applier.tables, applier.tables.parked_events
    uow = UnitOfWork(conn, tables, applier.projection, applier.metrics)
    event = decode(value)
    # The body, not the parked row, names the event: a record parked for unreadable headers is
    # stored under an id derived from its place, without ticket or seq.
    envelope = event.envelope
    ticket = str(envelope.ticket_id) if envelope.ticket_id and envelope.seq else None
    sequences = await applier.load_sequences(conn, [ticket] if ticket else [])
    if await claim(conn, tables, [envelope.event_id]):
        await applier.projection.dispatch(uow, [event])
    if applier.reactions is not None:
        await applier.reactions.dispatch(uow, [event])
    await conn.execute(parked.delete().where(parked.c.event_id == parked_id))
    if ticket is not None and envelope.seq is not None:
        sequences.last[ticket] = max(envelope.seq, sequences.last.get(ticket, 0))
        sequences.changed.add(ticket)
        await applier.release_held(uow, sequences)
        await applier.save_sequences(conn, sequences)
