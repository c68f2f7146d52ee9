"""The one consumer runtime of every service: exactly-once effect on a PostgreSQL projection.

Per `getmany` (thousands of records during catch-up, across partitions) the runtime opens one
transaction: it takes the rebuild fence, claims the batch's event ids with one statement, checks
ticket sequences, hands the fresh events to the projection's handlers (grouped into runs, so a
batch handler writes many rows with a few set-based statements), runs the reactions (live only),
and stores every partition's next offset, then commits. A crash anywhere replays exactly what was
not committed; a copy of an event already applied is a no-op by its id.

Three kinds of handler are kept apart (docs/writing-a-service.md):
- a `Projection` builds views; it runs live and during a rebuild;
- `Reactions` decide new events from events; they run live only (their events are already on
  the stream when a rebuild replays it) and emit with deterministic ids, so they also run for a
  copy of an event already applied (a rebuild may have applied it before any live reaction);
- live loops (`helpdesk.shared.live`) do side effects from state, claimed in PostgreSQL.

An event whose handler fails is parked (`parked_events`) and the partition goes on; a ticket
event whose seq is not the ticket's last + 1 is held there until the gap fills.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import operator
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeAlias, TypeVar
from uuid import UUID, uuid4

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.context import Clock, utc_now
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import Event, decode, derive_event_id, registry
from helpdesk.shared.failures import TRANSIENT_ATTEMPTS, is_transient
from helpdesk.shared.logs import correlation_id
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.outbox import PartitionCountError, append

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)
#: A fetched Kafka record (bytes key and value; aiokafka ships no type information).
Record: TypeAlias = ConsumerRecord
AnyEvent = Event[BaseModel]
Handler = Callable[["UnitOfWork", Event[P]], Awaitable[None]]
BatchHandler = Callable[["UnitOfWork", Sequence[AnyEvent]], Awaitable[None]]

_UUIDS = pg.ARRAY(pg.UUID(as_uuid=True))

# Live batches take this advisory lock shared, a rebuild's swap takes it exclusively (per schema).
_FENCE_NAMESPACE = 0x66656E63  # "fenc"


def fence_key(schema: str | None) -> int:
    """The advisory-lock key that fences a schema's live consumers from a rebuild's swap."""
    return _FENCE_NAMESPACE ^ _stable_hash(schema or "")


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; two replicas must agree on the key.
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF


# -- handlers --------------------------------------------------------------------------------


class Handlers:
    """Handlers keyed by payload class; consecutive events of one handler form one run."""

    def __init__(self) -> None:
        self._by_type: dict[str, BatchHandler] = {}

    def on(self, model: type[P]) -> Callable[[Handler[P]], Handler[P]]:
        """Decorator: handle each event of payload class `model` on its own."""

        def decorate(handler: Handler[P]) -> Handler[P]:
            async def run(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
                for event in events:
                    await handler(uow, event)  # type: ignore[arg-type]  # keyed by its class

            self._register(model, run)
            return handler

        return decorate

    def on_batch(
        self, *models: type[P]
    ) -> Callable[[Callable[[UnitOfWork, Sequence[Event[P]]], Awaitable[None]]], Any]:
        """Decorator: handle runs of consecutive events of these classes in one call.

        The run keeps stream order; a batch handler loads the rows it touches at once, folds the
        events in memory and writes the rows back with a few set-based statements.
        """

        def decorate(
            handler: Callable[[UnitOfWork, Sequence[Event[P]]], Awaitable[None]],
        ) -> Callable[[UnitOfWork, Sequence[Event[P]]], Awaitable[None]]:
            for model in models:
                # Registered by class: the run holds only events of these classes.
                self._register(model, handler)  # type: ignore[arg-type]
            return handler

        return decorate

    def _register(self, model: type[BaseModel], handler: BatchHandler) -> None:
        type_ = registry.type_of_model(model)
        if type_ in self._by_type:
            raise ValueError(f"{type_} has a handler already")
        self._by_type[type_] = handler

    def include(self, other: Handlers) -> None:
        """Take over every handler of `other` (e.g. the API-key projection every service has)."""
        for type_, handler in other._by_type.items():
            if type_ in self._by_type:
                raise ValueError(f"{type_} has a handler already")
            self._by_type[type_] = handler

    def handles(self, type_: str | None) -> bool:
        """Whether an event of `type_` has a handler here."""
        return type_ in self._by_type

    @property
    def types(self) -> frozenset[str]:
        """The event types handled."""
        return frozenset(self._by_type)

    async def dispatch(self, uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
        """Run the handlers over `events` in order, one call per run of one handler."""
        run: list[AnyEvent] = []
        current: BatchHandler | None = None
        for event in events:
            handler = self._by_type.get(event.type)
            if handler is not current and run:
                assert current is not None
                await _timed(current, uow, run)
                run = []
            current = handler
            if handler is not None:
                run.append(event)
        if run and current is not None:
            await _timed(current, uow, run)


async def _timed(handler: BatchHandler, uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    token = correlation_id.set(events[0].envelope.correlation_id)
    started = time.perf_counter()
    try:
        await handler(uow, events)
    finally:
        correlation_id.reset(token)
    if uow.metrics is not None:
        uow.metrics.handler_seconds.labels(events[0].type).observe(time.perf_counter() - started)


#: Finishes deferred work for some keys, in one transaction of a rebuild.
ReplayFinisher = Callable[["UnitOfWork", Mapping[UUID, Any]], Awaitable[None]]


class Projection(Handlers):
    """What one service builds from the stream: its view handlers and its tables."""

    def __init__(self, tables: Iterable[sa.Table] = ()) -> None:
        super().__init__()
        self.tables: list[sa.Table] = list(tables)
        self.finishers: dict[str, ReplayFinisher] = {}

    def after_replay(self, name: str) -> Callable[[ReplayFinisher], ReplayFinisher]:
        """Decorator: finish the work that handlers deferred under `name` during a rebuild.

        A handler that re-derives a whole row from its history (a fold) may, while replaying,
        only record its inputs with `uow.replay.defer(name, {key: inputs})`; the rebuild then
        calls the finisher once per key, with the inputs recorded last, in chunks, before the
        swap. Each row is then folded once per rebuild instead of once per batch that touched it.
        A finisher may run for a key more than once in a rebuild (it runs early once the
        deferred keys reach a bound, so memory stays bounded): it must derive the row from the
        shadow tables and the inputs it is given, nothing it saw before.
        """

        def decorate(finish: ReplayFinisher) -> ReplayFinisher:
            self._add_finisher(name, finish)
            return finish

        return decorate

    def _add_finisher(self, name: str, finish: ReplayFinisher) -> None:
        if name in self.finishers:
            raise ValueError(f"{name} has a finisher already")
        self.finishers[name] = finish

    def include(self, other: Handlers) -> None:
        """Take over every handler of `other`, and its finishers if it is a projection."""
        super().include(other)
        if isinstance(other, Projection):
            for name, finish in other.finishers.items():
                self._add_finisher(name, finish)


class Replay:
    """Work handlers deferred during one rebuild, by finisher name and key.

    In memory: a rebuild that fails drops its shadow tables, and this with them.
    """

    def __init__(self) -> None:
        self._deferred: dict[str, dict[UUID, Any]] = {}

    def __len__(self) -> int:
        """The keys deferred and not drained yet, over every finisher."""
        return sum(len(pending) for pending in self._deferred.values())

    def defer(self, name: str, inputs: Mapping[UUID, Any]) -> None:
        """Record (or replace) the inputs of `name`'s finisher for these keys."""
        self._deferred.setdefault(name, {}).update(inputs)

    def drain(self, name: str, size: int) -> Iterator[dict[UUID, Any]]:
        """Remove what was deferred under `name`, in chunks of `size` keys, in key order."""
        pending = self._deferred.pop(name, {})
        keys = sorted(pending, key=_UUID_INT)
        for start in range(0, len(keys), size):
            yield {key: pending[key] for key in keys[start : start + size]}


class Reactions(Handlers):
    """Handlers that decide new events from events; live only, never during a rebuild."""


# -- the unit of work --------------------------------------------------------------------------


@dataclass
class UnitOfWork:
    """One transaction of a service: its connection, and `emit` for the events it decides.

    Handlers, reactions, live loops and commands all get one; what they write and emit
    commits together, or not at all.
    """

    conn: AsyncConnection
    tables: RuntimeTables
    projection: Projection
    metrics: Metrics | None = None
    emitted: list[AnyEvent] = field(default_factory=list)
    #: Each decided event's wire form (JSON), by event id: serialised once, written twice.
    encoded: dict[UUID, bytes] = field(default_factory=dict)
    #: Set while a rebuild replays the stream: handlers may defer folds to its end.
    replay: Replay | None = None

    def encode(self, events: Sequence[AnyEvent]) -> list[bytes]:
        """The events' envelopes as JSON bytes, serialised once per event and unit of work.

        A command that also writes its events elsewhere in the transaction (an event store)
        takes them from here, and `emit` reuses them for the outbox.
        """
        out = []
        for event in events:
            envelope = event.envelope
            value = self.encoded.get(envelope.event_id)
            if value is None:
                value = self.encoded[envelope.event_id] = envelope.to_bytes()
            out.append(value)
        return out

    async def emit(self, events: Sequence[AnyEvent]) -> list[AnyEvent]:
        """Record decided events: apply them to this service's projection and queue them.

        Each is claimed by its id first: an event decided again (same deterministic id) that
        was applied already is dropped here, so it is neither applied nor published twice. The
        copy that comes back from Kafka is dropped by the same claim. Returns the fresh ones.
        """
        if not events:
            return []
        fresh_ids = await claim(self.conn, self.tables, [e.envelope.event_id for e in events])
        fresh = [e for e in events if e.envelope.event_id in fresh_ids]
        await self.projection.dispatch(self, fresh)
        await append(self.conn, self.tables, [e.envelope for e in fresh], self.encode(fresh))
        self.emitted += fresh
        return fresh


async def claim(conn: AsyncConnection, tables: RuntimeTables, ids: Sequence[UUID]) -> set[UUID]:
    """Mark event ids as processed in one statement; return those not processed before."""
    if not ids:
        return set()
    processed = tables.processed_events
    rows = await conn.execute(_claim_statement(tables, _in_order(ids), processed.c.event_id))
    return set(rows.scalars())


async def claim_keys(conn: AsyncConnection, tables: RuntimeTables, keys: Sequence[str]) -> set[str]:
    """`claim` for event ids in their canonical text form (as Kafka headers carry them).

    A batch reads thousands of ids from headers; parsing each into a `UUID` cost more than the
    claim itself, and PostgreSQL parses and prints the text form in C.
    """
    if not keys:
        return set()
    returned = sa.cast(tables.processed_events.c.event_id, sa.Text)
    rows = await conn.execute(_claim_statement(tables, sorted(set(keys)), returned))
    return set(rows.scalars())


def _claim_statement(tables: RuntimeTables, ordered: Sequence[UUID | str], returned: Any) -> Any:
    processed = tables.processed_events
    # Core, not text: a rebuild runs it with its schema translated to the shadow tables.
    return (
        pg_insert(processed)
        .from_select(["event_id"], sa.select(_unnest(ordered, _UUIDS)))
        .on_conflict_do_nothing()
        .returning(returned)
    )


def _in_order(ids: Iterable[UUID]) -> list[UUID]:
    """Distinct ids in one global order, so concurrent transactions lock rows in the same order
    (sorted by their integer: a key is computed once per id, `<` would run per comparison).

    The canonical text forms of the same ids sort in the same order, so `claim_keys` and the
    per-ticket rows keyed by text take their locks in it too.
    """
    return sorted(set(ids), key=_UUID_INT)


_UUID_INT = operator.attrgetter("int")


def _unnest(values: Sequence[Any], type_: Any) -> Any:
    """`unnest(:array)` over one bound array: one statement, one plan, whatever the length."""
    return sa.func.unnest(sa.bindparam(None, list(values), type_=type_))


# -- applying batches ----------------------------------------------------------------------------


class _Meta(NamedTuple):
    """What the runtime reads from a record's headers, parsed once per record.

    Ids stay in the canonical text form `Envelope.headers` writes (lowercase, hyphenated):
    PostgreSQL takes them as uuid, and a batch keeps no `UUID` objects it does not need.
    Headers that cannot be read (a record some other producer wrote) leave `unreadable` set,
    and the record is parked rather than stopping its partition.
    """

    type: str | None
    event_id: str
    ticket_id: str | None
    seq: int | None
    unreadable: str | None = None


_UUID_TEXT = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _meta(record: Record) -> _Meta:
    headers = dict(record.headers or ())
    type_, ticket, seq = headers.get("type"), headers.get("ticket_id"), headers.get("seq")
    try:
        name = type_.decode() if type_ is not None else None
    except UnicodeDecodeError:
        name = None  # no handler takes it
    try:
        return _Meta(
            name,
            _uuid_text(headers.get("event_id"), "event_id"),
            _uuid_text(ticket, "ticket_id") if ticket is not None else None,
            _seq(seq) if seq is not None else None,
        )
    except ValueError as exc:
        return _Meta(name, "", None, None, unreadable=str(exc))


def _uuid_text(raw: bytes | None, header: str) -> str:
    """A header's uuid as canonical text; ValueError when it is missing or not a uuid (checked
    here, so that PostgreSQL never fails a whole batch on one record's id)."""
    text = (raw or b"").lower()
    if _UUID_TEXT.fullmatch(text) is None:
        raise ValueError(f"header {header} is not a uuid: {raw!r:.60}")
    return text.decode()


def _seq(raw: bytes) -> int:
    if not raw.isdigit():
        raise ValueError(f"header seq is not a number: {raw!r:.60}")
    return int(raw)


@dataclass
class _Sequences:
    """Per-ticket seq bookkeeping for one batch: read once, checked in memory, written once.

    Keyed by the ticket id's canonical text form, as `_Meta` carries it.
    """

    last: dict[str, int] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)


class SequenceGapError(Exception):
    """A ticket event arrived before its predecessor; it is held until the gap fills."""


class TransientFailureError(Exception):
    """A handler failed in a way a later attempt may not (`helpdesk.shared.failures`): the
    transaction is given up and retried with backoff instead of parking the event."""


class BatchApplier:
    """Applies fetched records to a projection in the caller's transaction."""

    def __init__(
        self,
        consumer_name: str,
        topic: str,
        tables: RuntimeTables,
        projection: Projection,
        metrics: Metrics,
        reactions: Reactions | None = None,
    ) -> None:
        self.consumer_name = consumer_name
        self.topic = topic
        self.tables = tables
        self.projection = projection
        self.reactions = reactions
        self.metrics = metrics
        #: Set by a rebuild for its replay: the units of work carry it to the handlers.
        self.replay: Replay | None = None
        #: Transient failures per record (partition, offset), until it applies or is parked.
        self._attempts: collections.Counter[tuple[int, int]] = collections.Counter()

    def handles_type(self, type_: str | None) -> bool:
        """Whether any projection handler or reaction takes events of `type_`."""
        return self.projection.handles(type_) or (
            self.reactions is not None and self.reactions.handles(type_)
        )

    def _reacts_to(self, meta: _Meta) -> bool:
        # Reactions also see copies of events already applied: after a rebuild the projection
        # may be ahead of what the live consumer reacted to, and a reaction's derived ids make
        # deciding again harmless.
        return self.reactions is not None and self.reactions.handles(meta.type)

    async def apply(
        self,
        conn: AsyncConnection,
        batches: Mapping[int, Sequence[Record]],
        *,
        careful: bool = False,
    ) -> list[str]:
        """Apply records (per partition, consecutive) and store each partition's next offset.

        `careful` applies each event in its own savepoint and parks one whose handler fails,
        instead of failing the batch: the path taken after a batch failed once. Returns the
        types of the events applied, to be counted once the transaction commits.
        """
        records = [(r, _meta(r)) for partition in sorted(batches) for r in batches[partition]]
        uow = UnitOfWork(conn, self.tables, self.projection, self.metrics, replay=self.replay)
        sequences = await self.load_sequences(
            conn, {m.ticket_id for _, m in records if m.ticket_id}
        )
        handles = {m.type: self.handles_type(m.type) for _, m in records}
        handled = [m.event_id for _, m in records if handles[m.type] and not m.unreadable]
        fresh = set() if careful else await claim_keys(conn, self.tables, handled)
        applied: list[AnyEvent] = []
        reactable: list[AnyEvent] = []
        for record, meta in records:
            if not handles[meta.type]:
                self._observe(sequences, meta, handled=False)
                continue
            if meta.unreadable:
                await self._park(conn, record, "failed", f"unreadable headers: {meta.unreadable}")
                continue
            if careful:
                applied += await self._apply_carefully(uow, sequences, record, meta)
                continue
            if meta.event_id not in fresh:
                self.metrics.duplicates_skipped.inc()
                # A copy of an event applied before still takes its place in the sequence.
                self._observe(sequences, meta, handled=False)
                if self._reacts_to(meta):
                    reactable.append(
                        decode(
                            record.value or b"", record.partition, record.offset, type_=meta.type
                        )
                    )
                continue
            fresh.discard(meta.event_id)  # a second copy in this same batch is a duplicate too
            if not self._observe(sequences, meta, handled=True):
                await self._hold(conn, record, meta, sequences)
                continue
            event = decode(record.value or b"", record.partition, record.offset, type_=meta.type)
            applied.append(event)
            reactable.append(event)
        if not careful:
            await self.projection.dispatch(uow, applied)
            if self.reactions is not None:
                await self.reactions.dispatch(uow, reactable)
        applied += await self.release_held(uow, sequences)
        await self.save_sequences(conn, sequences)
        await self._store_offsets(
            conn, {p: batch[-1].offset + 1 for p, batch in batches.items() if batch}
        )
        return [event.type for event in applied]

    async def _apply_carefully(
        self, uow: UnitOfWork, sequences: _Sequences, record: Record, meta: _Meta
    ) -> list[AnyEvent]:
        conn = uow.conn
        try:
            async with conn.begin_nested():
                if not await claim_keys(conn, self.tables, [meta.event_id]):
                    self.metrics.duplicates_skipped.inc()
                    self._observe(sequences, meta, handled=False)
                    if self.reactions is not None and self._reacts_to(meta):
                        copy = decode(
                            record.value or b"", record.partition, record.offset, type_=meta.type
                        )
                        await self.reactions.dispatch(uow, [copy])
                    return []
                event = decode(
                    record.value or b"", record.partition, record.offset, type_=meta.type
                )
                seen = dict(sequences.last), set(sequences.changed)
                if not self._observe(sequences, meta, handled=True):
                    raise SequenceGapError
                try:
                    await self.projection.dispatch(uow, [event])
                    if self.reactions is not None:
                        await self.reactions.dispatch(uow, [event])
                except Exception:
                    # The failed event does not advance its ticket's sequence.
                    sequences.last, sequences.changed = seen
                    raise
                return [event]
        except SequenceGapError:
            await self._hold(conn, record, meta, sequences)
            return []
        except Exception as exc:
            self._give_up_or_retry((record.partition, record.offset), exc)
            await self._park(conn, record, "failed", f"{type(exc).__name__}: {exc}")
            return []

    def _give_up_or_retry(self, key: tuple[int, int], exc: Exception) -> None:
        """Re-raise a transient failure (the caller's transaction is retried with backoff)
        until it has failed TRANSIENT_ATTEMPTS times; then, or for any other failure, return:
        the caller parks the event."""
        if is_transient(exc):
            self._attempts[key] += 1
            if self._attempts[key] < TRANSIENT_ATTEMPTS:
                raise TransientFailureError(str(exc)) from exc
        self._attempts.pop(key, None)

    # -- sequences -----------------------------------------------------------------------------

    async def load_sequences(self, conn: AsyncConnection, tickets: Iterable[str]) -> _Sequences:
        """Lock and read the last applied seq of `tickets` (ids in canonical text form).

        A ticket without a row gets one (seq 0), so that its row is locked too: whoever applies
        a ticket's events (a live batch, retry-parked, a release) holds its row until commit,
        and a gap closed by one is seen by the next (a batch that held seq 2 while a retry
        applied seq 1 would otherwise leave seq 2 held with nothing to release it).
        """
        ids = sorted(set(tickets))
        if not ids:
            return _Sequences()
        table = self.tables.ticket_sequence
        stmt = pg_insert(table).from_select(
            ["ticket_id", "last_seq"],
            sa.select(_unnest(ids, _UUIDS), _unnest([0] * len(ids), pg.ARRAY(sa.Integer))),
        )
        rows = await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.ticket_id], set_={"last_seq": table.c.last_seq}
            ).returning(sa.cast(table.c.ticket_id, sa.Text), table.c.last_seq)
        )
        return _Sequences({ticket: last for ticket, last in rows if last})

    def _observe(self, sequences: _Sequences, meta: _Meta, *, handled: bool) -> bool:
        """Check one record's place in its ticket's sequence; False: hold it (a gap).

        An event this service does not handle (or a copy of one applied before) still advances
        the sequence, but it cannot be told from a republished copy, so it never holds.
        """
        ticket_id, seq = meta.ticket_id, meta.seq
        if ticket_id is None or seq is None:
            return True
        expected = sequences.last.get(ticket_id, 0) + 1
        if seq > expected:
            self.metrics.sequence_gaps.inc()
            log.error(
                "ticket event out of sequence",
                extra={"ticket_id": ticket_id, "seq": seq, "expected": expected, "held": handled},
            )
            if handled:
                return False  # held until the gap fills
        if handled and seq < expected:
            # Already applied under another id: a bug upstream, applied and alerted.
            self.metrics.sequence_gaps.inc()
            log.error("ticket event repeats a seq", extra={"ticket_id": ticket_id, "seq": seq})
        sequences.last[ticket_id] = max(seq, expected - 1)
        sequences.changed.add(ticket_id)
        return True

    async def save_sequences(self, conn: AsyncConnection, sequences: _Sequences) -> None:
        """Store the batch's last seqs (never lowering one)."""
        if not sequences.changed:
            return
        table = self.tables.ticket_sequence
        changed = sorted(sequences.changed)
        stmt = pg_insert(table).from_select(
            ["ticket_id", "last_seq"],
            sa.select(
                _unnest(changed, _UUIDS),
                _unnest([sequences.last[t] for t in changed], pg.ARRAY(sa.Integer)),
            ),
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.ticket_id],
                set_={"last_seq": sa.func.greatest(table.c.last_seq, stmt.excluded.last_seq)},
            )
        )

    # -- parking ---------------------------------------------------------------------------------

    async def _park(self, conn: AsyncConnection, record: Record, reason: str, error: str) -> None:
        meta = _meta(record)
        parked = self.tables.parked_events
        # A record without a readable id is parked under one derived from its place.
        place = f"{record.topic}/{record.partition}/{record.offset}"
        await conn.execute(
            pg_insert(parked)
            .values(
                event_id=meta.event_id or derive_event_id(place, "unreadable"),
                consumer=self.consumer_name,
                partition=record.partition,
                offset=record.offset,
                type=meta.type or "?",
                ticket_id=meta.ticket_id,
                seq=meta.seq,
                reason=reason,
                error=error[:2000],
                value=record.value or b"",
            )
            .on_conflict_do_nothing()
        )
        if reason == "failed":
            self.metrics.handler_errors.labels(meta.type or "?").inc()
            log.error(
                "event parked: %s: %s",
                "its headers cannot be read" if meta.unreadable else "its handler failed",
                error[:500],
                extra={"event_id": str(meta.event_id), "error": error[:500]},
            )

    async def _hold(
        self, conn: AsyncConnection, record: Record, meta: _Meta, sequences: _Sequences
    ) -> None:
        # Not applied, so not processed: the release applies it from the parked row.
        await self._unclaim(conn, meta.event_id)
        assert meta.ticket_id is not None  # only a ticket event is ever held
        expected = sequences.last.get(meta.ticket_id, 0) + 1
        await self._park(conn, record, "held", f"waiting for seq {expected}")

    async def release_held(self, uow: UnitOfWork, sequences: _Sequences) -> list[AnyEvent]:
        """Apply held events whose predecessor has now been applied, in seq order."""
        if not sequences.changed:
            return []
        parked = self.tables.parked_events
        rows = (
            await uow.conn.execute(
                sa.select(
                    parked.c.event_id,
                    sa.cast(parked.c.ticket_id, sa.Text).label("ticket_id"),
                    parked.c.seq,
                    parked.c.type,
                    parked.c.value,
                )
                .where(
                    parked.c.reason == "held",
                    parked.c.ticket_id
                    == sa.any_(sa.bindparam("held", sorted(sequences.changed), type_=_UUIDS)),
                )
                .order_by(parked.c.ticket_id, parked.c.seq)
            )
        ).all()
        released: list[AnyEvent] = []
        for row in rows:
            if row.seq != sequences.last.get(row.ticket_id, 0) + 1:
                continue
            try:
                async with uow.conn.begin_nested():
                    event = decode(row.value)
                    fresh = bool(await claim(uow.conn, self.tables, [row.event_id]))
                    if fresh:
                        await self.projection.dispatch(uow, [event])
                    if self.reactions is not None:
                        await self.reactions.dispatch(uow, [event])
            except Exception as exc:
                # Parked like any failing event: its successors stay held behind it. A released
                # event has no place in this batch: it is counted under its id (partition -1).
                self._give_up_or_retry((-1, row.event_id.int), exc)
                await self._fail_parked(uow.conn, row.event_id, row.type, exc)
                continue
            if fresh:
                released.append(event)
            sequences.last[row.ticket_id] = row.seq
            await uow.conn.execute(parked.delete().where(parked.c.event_id == row.event_id))
            log.info("held event released", extra={"event_id": str(row.event_id)})
        return released

    async def _fail_parked(
        self, conn: AsyncConnection, event_id: UUID, type_: str, exc: Exception
    ) -> None:
        """Mark a parked row as failed (a held event whose handler failed on release)."""
        parked = self.tables.parked_events
        error = f"{type(exc).__name__}: {exc}"
        await conn.execute(
            parked.update()
            .where(parked.c.event_id == event_id)
            .values(reason="failed", error=error[:2000])
        )
        self.metrics.handler_errors.labels(type_).inc()
        log.error(
            "event parked: its handler failed",
            extra={"event_id": str(event_id), "error": error[:500]},
        )

    async def apply_own(self, conn: AsyncConnection, values: Sequence[bytes]) -> list[str]:
        """Apply events this service decided and has not yet published (its outbox), as if they
        came from the stream: claimed by id, in each ticket's sequence, no reactions, no offsets.

        A rebuild's swap folds them in, so that the swapped-in projection is not older than what
        the service already acted on; their copies from Kafka are then dropped by id. An event
        that would open a sequence gap is left for the stream to bring.
        """
        events = [decode(value) for value in values]
        metas = [
            _Meta(
                e.type,
                str(e.envelope.event_id),
                str(e.envelope.ticket_id) if e.envelope.ticket_id else None,
                e.envelope.seq,
            )
            for e in events
        ]
        uow = UnitOfWork(conn, self.tables, self.projection, self.metrics)
        sequences = await self.load_sequences(conn, {m.ticket_id for m in metas if m.ticket_id})
        fresh = await claim_keys(
            conn, self.tables, [m.event_id for m in metas if self.projection.handles(m.type)]
        )
        applied: list[AnyEvent] = []
        for event, meta in zip(events, metas, strict=True):
            handled = meta.event_id in fresh
            fresh.discard(meta.event_id)
            if not self._observe(sequences, meta, handled=handled):
                await self._unclaim(conn, meta.event_id)
                continue
            if handled:
                applied.append(event)
        await self.projection.dispatch(uow, applied)
        applied += await self.release_held(uow, sequences)
        await self.save_sequences(conn, sequences)
        return [event.type for event in applied]

    async def _unclaim(self, conn: AsyncConnection, event_id: str) -> None:
        processed = self.tables.processed_events
        await conn.execute(processed.delete().where(processed.c.event_id == event_id))

    # -- offsets ---------------------------------------------------------------------------------

    async def _store_offsets(self, conn: AsyncConnection, next_offsets: Mapping[int, int]) -> None:
        if not next_offsets:
            return
        table = self.tables.consumer_offsets
        partitions = sorted(next_offsets)
        stmt = pg_insert(table).from_select(
            ["consumer", "topic", "partition", "next_offset"],
            sa.select(
                sa.literal(self.consumer_name),
                sa.literal(self.topic),
                _unnest(partitions, pg.ARRAY(sa.Integer)),
                _unnest([next_offsets[p] for p in partitions], pg.ARRAY(sa.BigInteger)),
            ),
        )
        # GREATEST: a replica that lost the partition mid-batch must never move it backwards.
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.consumer, table.c.topic, table.c.partition],
                set_={
                    "next_offset": sa.func.greatest(table.c.next_offset, stmt.excluded.next_offset)
                },
            )
        )

    def count(self, applied: Iterable[str]) -> None:
        """Count applied events once their transaction committed."""
        for type_, count in collections.Counter(applied).items():
            self.metrics.events_consumed.labels(type_).inc(count)


class RebuiltError(Exception):
    """A rebuild swapped the projection in since this replica positioned itself."""


# -- the live consumer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ownership:
    """A partition this replica owns: the epoch that fences its side effects, and the instant
    up to which its projection is known to be current (its watermark)."""

    partition: int
    epoch: int
    watermark: datetime


class ConsumerRuntime(ConsumerRebalanceListener):  # type: ignore[misc]
    """A service's consumer-group member: applies batches, owns partitions, knows watermarks."""

    def __init__(
        self,
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
        poll_ms: int = 200,
        clock: Clock = utc_now,
        dedup_retention_hours: float = 168.0,
    ) -> None:
        self.name = name
        self.owner = f"{name}-{uuid4()}"
        self._engine = engine
        self._bootstrap = bootstrap
        self._topic = topic
        self._tables = tables
        self.applier = BatchApplier(name, topic, tables, projection, metrics, reactions)
        self._metrics = metrics
        self._max_records = max_records
        self._poll_ms = poll_ms
        self._clock = clock
        self._dedup_retention_hours = dedup_retention_hours
        self._consumer: AIOKafkaConsumer | None = None
        # Held while a batch is applied; a revocation waits for it.
        self._busy = asyncio.Lock()
        self._assigned: set[int] = set()
        self._positioned: set[int] = set()  # assigned and sought to the stored offset
        self._epochs: dict[int, int] = {}
        self._joined = False
        self._ever_caught_up: set[int] = set()
        self._watermarks: dict[int, datetime] = {}
        self._last_applied_at: dict[int, datetime] = {}
        self._generation: int | None = None
        self._ends: dict[int, int] = {}
        self._ends_checked = 0.0
        self._pruned_at = 0.0
        self._changed = asyncio.Condition()
        self._listeners: list[Callable[[bool], None]] = []
        #: Per owned partition, the offset of the next record to apply.
        self._positions: dict[int, int] = {}
        self._failures = 0
        #: The topic's partition count this service's stored state assumes (set at start).
        self.partitions: int | None = None

    # -- what other parts of the service ask ------------------------------------------------

    @property
    def assigned(self) -> frozenset[int]:
        """Partitions this replica owns now."""
        return frozenset(self._assigned)

    @property
    def caught_up(self) -> frozenset[int]:
        """Owned partitions whose projection was at the head of the stream when last measured."""
        return frozenset(p for p in self._assigned if self._lag(p) == 0)

    def _lag(self, partition: int, ends: Mapping[int, int] | None = None) -> int | None:
        """Records between what was applied and the head (None: not positioned yet)."""
        position = self._positions.get(partition)
        if position is None or partition not in self._positioned:
            return None
        head = (ends or self._ends).get(partition, 0)
        if self._consumer is not None:
            head = max(head, self._consumer.highwater(TopicPartition(self._topic, partition)) or 0)
        return max(0, head - position)

    def ownerships(self) -> dict[int, Ownership]:
        """Owned, positioned partitions with their epochs and watermarks (for live loops)."""
        return {
            p: Ownership(p, self._epochs[p], self._watermarks[p])
            for p in sorted(self._assigned & self._positioned)
            if p in self._epochs and p in self._watermarks
        }

    def is_caught_up(self, tolerance: int = 0) -> bool:
        """Whether the consumer has joined its group and every owned partition is at most
        `tolerance` records behind its head, as last measured (after every fetch)."""
        return self._joined and all(
            (lag := self._lag(p)) is not None and lag <= tolerance for p in self._assigned
        )

    async def caught_up_now(self, tolerance: int = 0) -> bool:
        """`is_caught_up`, measured against the partitions' heads now (readiness asks this: a
        replica busy with a long batch has not measured its lag since the burst arrived)."""
        if self._consumer is None or not self._joined:
            return False
        owned = sorted(self._assigned)
        if owned:
            with contextlib.suppress(Exception):
                ends = await self._consumer.end_offsets(
                    [TopicPartition(self._topic, p) for p in owned]
                )
                self._ends.update({tp.partition: offset for tp, offset in ends.items()})
        return self.is_caught_up(tolerance)

    async def wait_caught_up(self) -> None:
        """Wait until `is_caught_up()` (callers bound it with `asyncio.timeout`)."""
        async with self._changed:
            await self._changed.wait_for(self.is_caught_up)

    def on_progress(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(changed)` after a batch was applied or ownership changed (True), and
        after the watermarks moved (False)."""
        self._listeners.append(listener)

    # -- rebalance listener --------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Stop applying to revoked partitions once the in-flight batch committed.

        Live loops need no waiting: a takeover bumps the partition's epoch in PostgreSQL, and a
        live transaction of this replica then no longer passes the ownership check.
        """
        async with self._busy:
            for tp in revoked:
                self._forget(tp.partition)
        await self._notify()

    def _forget(self, partition: int) -> None:
        self._assigned.discard(partition)
        self._positioned.discard(partition)
        self._positions.pop(partition, None)
        self._epochs.pop(partition, None)
        self._watermarks.pop(partition, None)
        self._ever_caught_up.discard(partition)
        with contextlib.suppress(KeyError):
            self._metrics.consumer_lag.remove(str(partition))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Take the new partitions; the consuming task seeks them before applying anything.

        aiokafka starts fetching a new assignment before this callback finishes, so a seek made
        here would race the fetcher; seeking from the task that calls getmany does not.
        """
        async with self._busy:
            self._assigned = {tp.partition for tp in assigned}
            for partition in set(self._positioned) - self._assigned:
                self._forget(partition)
            self._joined = True
        self._ends_checked = 0.0
        log.info(
            "partitions assigned",
            extra={"consumer": self.name, "partitions": sorted(self._assigned)},
        )

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled; the consumer leaves its group cleanly on cancellation."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            # One group per service and topic: replicas of one service share partitions; two
            # stacks on one broker (tests, a staging topic) never rebalance each other.
            group_id=f"helpdesk.{self.name}.{self._topic}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._max_records,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            # Inside the try: a stop (or a failure) while it connects still closes it.
            await self._consumer.start()
            self._consumer.subscribe([self._topic], listener=self)
            while True:
                await self._position_new_partitions()
                batches = await self._consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._max_records
                )
                if batches:
                    await self._apply(batches)
                await self._refresh_watermarks()
                await self._prune_dedup_marks()
        finally:
            await self._consumer.stop()
            self._consumer = None

    async def _apply(self, fetched: Mapping[TopicPartition, list[Record]]) -> None:
        assert self._consumer is not None
        async with self._busy:
            # Records fetched before their partition was sought to its stored offset (or after
            # it was revoked) come again from the stored offset: ours, or the new owner's.
            batches = {
                tp.partition: records
                for tp, records in fetched.items()
                if tp.partition in self._positioned and records
            }
            if not batches:
                return
            try:
                applied = await self._apply_once(batches, careful=False)
            except RebuiltError:
                self._reposition_all()
                return
            except Exception:
                log.exception("batch failed; applying it event by event, parking what fails")
                try:
                    applied = await self._apply_once(batches, careful=True)
                except RebuiltError:
                    self._reposition_all()
                    return
                except Exception as exc:
                    # A transient failure (or the database gone): the same records again from
                    # the stored offsets, after a backoff that grows while it lasts.
                    self._failures += 1
                    log.warning(
                        "batch failed again; it is retried from the stored offsets",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:500]},
                    )
                    for partition, records in batches.items():
                        self._consumer.seek(
                            TopicPartition(self._topic, partition), records[0].offset
                        )
                    await asyncio.sleep(min(5.0, 0.1 * 2**self._failures))
                    return
            self._failures = 0
            for partition, records in batches.items():
                self._positions[partition] = records[-1].offset + 1
                self._last_applied_at[partition] = datetime.fromtimestamp(
                    records[-1].timestamp / 1000, UTC
                )
        self.applier.count(applied)
        self._signal(changed=True)
        # Informational only: the stored offsets in PostgreSQL are what the runtime resumes from.
        with contextlib.suppress(Exception):
            await self._consumer.commit(
                {TopicPartition(self._topic, p): r[-1].offset + 1 for p, r in batches.items()}
            )

    async def _apply_once(self, batches: Mapping[int, list[Record]], *, careful: bool) -> list[str]:
        async with self._engine.begin() as conn:
            generation = await fenced_generation(conn, self._tables, self.name, exclusive=False)
            if generation != self._generation:
                raise RebuiltError
            return await self.applier.apply(conn, batches, careful=careful)

    def _reposition_all(self) -> None:
        log.warning("the projection was rebuilt: seeking every partition to its stored offset")
        self._positioned.clear()
        self._generation = None

    async def _position_new_partitions(self) -> None:
        assert self._consumer is not None
        async with self._busy:
            new = self._assigned - self._positioned
            if not new:
                return
            if self.partitions is not None and max(new) >= self.partitions:
                raise PartitionCountError(self._topic, max(new) + 1, self.partitions)
            async with self._engine.begin() as conn:
                self._generation = await fenced_generation(
                    conn, self._tables, self.name, exclusive=False
                )
                stored = await stored_offsets(conn, self._tables, self.name, self._topic)
                epochs = await take_ownership(conn, self._tables, self.name, self.owner, new)
            for partition in sorted(new):
                tp = TopicPartition(self._topic, partition)
                if partition in stored:
                    self._consumer.seek(tp, stored[partition])
                else:
                    await self._consumer.seek_to_beginning(tp)
                self._positions[partition] = await self._consumer.position(tp)
                self._ever_caught_up.discard(partition)
            self._epochs.update(epochs)
            self._positioned |= new
        self._signal(changed=True)

    async def _refresh_watermarks(self) -> None:
        """Lag per partition; the watermark is now when caught up, else the last applied record.

        "Caught up" is re-evaluated after every fetch, so a burst that arrives later lowers the
        watermark again, and a live loop waits until the projection is current past a deadline.
        """
        assert self._consumer is not None
        was_caught_up = self.is_caught_up()
        now = time.monotonic()
        partitions = sorted(self._positioned & self._assigned)
        if now - self._ends_checked >= 1.0 or not self._ever_caught_up >= set(partitions):
            tps = [TopicPartition(self._topic, p) for p in partitions]
            if tps:
                ends = await self._consumer.end_offsets(tps)
                self._ends = {tp.partition: off for tp, off in ends.items()}
            self._ends_checked = now
            await self._check_generation()
        changed = False
        at = self._clock()
        for partition in partitions:
            tp = TopicPartition(self._topic, partition)
            position = await self._consumer.position(tp)
            self._positions[partition] = position
            head = max(self._ends.get(partition, 0), self._consumer.highwater(tp) or 0)
            lag = max(0, head - position)
            self._metrics.consumer_lag.labels(str(partition)).set(lag)
            if lag == 0:
                self._watermarks[partition] = at
                if partition not in self._ever_caught_up:
                    self._ever_caught_up.add(partition)
                    changed = True
            else:
                fallback = datetime.min.replace(tzinfo=UTC)
                self._watermarks[partition] = self._last_applied_at.get(partition, fallback)
        if changed or self.is_caught_up() != was_caught_up:
            await self._notify()
        self._signal(changed=False)

    async def _check_generation(self) -> None:
        """Reposition when a rebuild swapped the projection in, even with no record to apply:
        the live loops then act on the rebuilt state from a new ownership epoch."""
        if self._generation is None:
            return
        state = self._tables.consumer_state
        with contextlib.suppress(Exception):
            async with self._engine.connect() as conn:
                generation = await conn.scalar(
                    sa.select(state.c.generation).where(state.c.consumer == self.name)
                )
            if generation is not None and generation != self._generation:
                async with self._busy:
                    self._reposition_all()

    async def _prune_dedup_marks(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < 600:
            return
        self._pruned_at = now
        processed = self._tables.processed_events
        # By the database's clock, which stamped the marks: the service's clock may be injected
        # (tests, replays) or jump, and a jump past the retention would prune every mark.
        retention = sa.func.make_interval(0, 0, 0, 0, 0, 0, self._dedup_retention_hours * 3600)
        with contextlib.suppress(Exception):
            async with self._engine.begin() as conn:
                await conn.execute(
                    processed.delete().where(processed.c.processed_at < sa.func.now() - retention)
                )

    def _signal(self, *, changed: bool) -> None:
        for listener in self._listeners:
            listener(changed)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


# -- shared statements ---------------------------------------------------------------------------


async def fenced_generation(
    conn: AsyncConnection, tables: RuntimeTables, consumer: str, *, exclusive: bool
) -> int:
    """Take the rebuild fence for this transaction and return the consumer's generation."""
    lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(sa.text(f"SELECT {lock}(:k)"), {"k": fence_key(tables.schema)})
    state = tables.consumer_state
    generation = await conn.scalar(
        sa.select(state.c.generation).where(state.c.consumer == consumer)
    )
    if generation is None:
        await conn.execute(
            pg_insert(state).values(consumer=consumer, generation=0).on_conflict_do_nothing()
        )
        return 0
    return int(generation)


async def stored_offsets(
    conn: AsyncConnection, tables: RuntimeTables, consumer: str, topic: str
) -> dict[int, int]:
    """Where the consumer resumes, per partition."""
    offsets = tables.consumer_offsets
    rows = await conn.execute(
        sa.select(offsets.c.partition, offsets.c.next_offset).where(
            offsets.c.consumer == consumer, offsets.c.topic == topic
        )
    )
    return {row.partition: row.next_offset for row in rows}


async def take_ownership(
    conn: AsyncConnection,
    tables: RuntimeTables,
    consumer: str,
    owner: str,
    partitions: Iterable[int],
) -> dict[int, int]:
    """Become the owner of `partitions`, each with a new epoch; returns the epochs.

    The update waits for a live transaction of the previous owner that holds the row (it takes
    it FOR SHARE), and every later one of the previous owner fails the epoch check.
    """
    owners = tables.partition_owners
    stmt = pg_insert(owners).values(
        [{"consumer": consumer, "partition": p, "owner": owner, "epoch": 1} for p in partitions]
    )
    rows = await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[owners.c.consumer, owners.c.partition],
            set_={"owner": stmt.excluded.owner, "epoch": owners.c.epoch + 1},
        ).returning(owners.c.partition, owners.c.epoch)
    )
    return {row.partition: row.epoch for row in rows}


async def check_partition_count(
    engine: AsyncEngine, tables: RuntimeTables, consumer: str, partitions: int
) -> None:
    """Refuse to run when the topic's partition count is not what the stored rows assume.

    Every account's events live in one partition (key = account_id); a topic with more
    partitions moves accounts to other partitions, and offsets, ownership and ordering stored
    per partition would no longer describe the stream.
    """
    state = tables.consumer_state
    async with engine.begin() as conn:
        await conn.execute(
            pg_insert(state)
            .values(consumer=consumer, generation=0, partitions=partitions)
            .on_conflict_do_nothing()
        )
        stored = await conn.scalar(
            sa.select(state.c.partitions).where(state.c.consumer == consumer)
        )
        if stored is None:
            await conn.execute(
                state.update().where(state.c.consumer == consumer).values(partitions=partitions)
            )
        elif stored != partitions:
            raise RuntimeError(
                f"{consumer}: the topic has {partitions} partitions but this service's stored "
                f"state was built for {stored}. Changing the partition count moves accounts to "
                "other partitions; rebuild the service against the new topic (make rebuild-…) "
                "after resetting its consumer_state row, or restore the partition count."
            )
