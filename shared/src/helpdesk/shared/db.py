"""PostgreSQL access: one async engine per process, one schema per service.

Every service schema carries the same three runtime tables next to its projection:
`outbox` (events waiting for the relay), `consumer_offsets` (where the consumer resumes, written
in the projection's own transaction) and `processed_events` (event ids already applied, so a
redelivered event is a no-op). `ticket_sequence` remembers the last applied seq per ticket.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """The process's async engine (asyncpg).

    No pre-ping: it costs a round trip on every checkout, and a dead connection fails the
    transaction that uses it, which every caller already retries (the consumer re-applies its
    batch, the relay its round, an HTTP client its request). JSON columns are written with
    orjson (`dump_document`) and read with the standard library, which keeps every integer exact
    where orjson would turn one beyond 64 bits into a float.
    """
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=False,
        json_serializer=dump_document,
    )


def dump_document(value: Any) -> str:
    """A JSON column's text. orjson, because rebuilds write documents by the thousand and it is
    about five times faster than `json.dumps`; non-string keys become strings as there."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # An integer beyond 64 bits (a customer's custom field may hold one): JSON allows it,
        # orjson refuses it.
        return json.dumps(value)


async def bulk_upsert(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] | None = None,
    update: Sequence[str] = (),
) -> None:
    """Insert `rows` (all with the same keys) in one statement, each column bound as one array.

    The statement text does not depend on the number of rows, so SQLAlchemy compiles it once and
    PostgreSQL plans it once, and asyncpg sends each column as one binary array: a multi-row
    VALUES list binds (and compiles) one parameter per cell, which cost more than the write.
    With `conflict` (the unique columns) an existing row is kept, or updated from the new one in
    the `update` columns. The rows must not repeat a conflict key. A JSON column's None is NULL.
    """
    if not rows:
        return
    names = tuple(rows[0])
    statement, documents = _bulk_statement(table, names, tuple(conflict or ()), tuple(update))
    params = {}
    for name in names:
        values = [row[name] for row in rows]
        if name in documents:  # sent as text: an array of JSON arrays would be read as 2-D
            values = [None if value is None else dump_document(value) for value in values]
        params[f"_{name}"] = values
    await conn.execute(statement, params)


@functools.cache
def _bulk_statement(
    table: sa.Table, names: tuple[str, ...], conflict: tuple[str, ...], update: tuple[str, ...]
) -> tuple[Any, frozenset[str]]:
    columns = [table.c[name] for name in names]
    documents = frozenset(c.name for c in columns if isinstance(c.type, sa.JSON))
    for column in columns:
        if isinstance(column.type, sa.ARRAY):
            raise TypeError(f"{table.name}.{column.name}: an array column cannot be unnested")
    arrays = [
        sa.bindparam(f"_{c.name}", type_=pg.ARRAY(sa.Text if c.name in documents else c.type))
        for c in columns
    ]
    unnested = sa.func.unnest(*arrays).table_valued(*names).render_derived()
    selected = [
        sa.cast(unnested.c[c.name], c.type) if c.name in documents else unnested.c[c.name]
        for c in columns
    ]
    statement = pg.insert(table).from_select(list(names), sa.select(*selected))
    if conflict and update:
        statement = statement.on_conflict_do_update(
            index_elements=list(conflict), set_={name: statement.excluded[name] for name in update}
        )
    elif conflict:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    return statement, documents


def runtime_tables(metadata: sa.MetaData) -> RuntimeTables:
    """Declare the runtime tables in `metadata` (whose `schema` is the service's schema)."""
    return RuntimeTables(metadata)


class RuntimeTables:
    """The outbox, offset, dedup and sequence tables of one service schema."""

    def __init__(self, metadata: sa.MetaData) -> None:
        self.schema = metadata.schema
        self.outbox = sa.Table(
            "outbox",
            metadata,
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
            sa.Column("type", sa.Text, nullable=False),
            sa.Column("key", sa.LargeBinary, nullable=False),
            sa.Column("value", sa.LargeBinary, nullable=False),
            sa.Column("headers", pg.JSONB, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        )
        # Outbox rows that can never be published (larger than the topic takes, or not
        # encodable), moved aside so the rows behind them flow; listed for an operator.
        self.dead_letters = sa.Table(
            "outbox_dead_letters",
            metadata,
            sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
            sa.Column("type", sa.Text, nullable=False),
            sa.Column("key", sa.LargeBinary, nullable=False),
            sa.Column("value", sa.LargeBinary, nullable=False),
            sa.Column("headers", pg.JSONB, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("dead_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        )
        self.consumer_offsets = sa.Table(
            "consumer_offsets",
            metadata,
            sa.Column("consumer", sa.Text, primary_key=True),
            sa.Column("topic", sa.Text, primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True),
            sa.Column("next_offset", sa.BigInteger, nullable=False),
        )
        # Claimed per batch; pruned by age (a copy can only come back within seconds: the relay
        # republishes after a crash, and offsets never move backwards).
        self.processed_events = sa.Table(
            "processed_events",
            metadata,
            sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
            sa.Column(
                "processed_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
                index=True,
            ),
        )
        # Events the consumer could not apply: a handler failed (poison), or a ticket event
        # arrived before its predecessor (held until the gap fills). The partition goes on.
        self.parked_events = sa.Table(
            "parked_events",
            metadata,
            sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
            sa.Column("consumer", sa.Text, nullable=False),
            sa.Column("partition", sa.Integer, nullable=False),
            sa.Column("offset", sa.BigInteger, nullable=False),
            sa.Column("type", sa.Text, nullable=False),
            sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=True, index=True),
            sa.Column("seq", sa.Integer, nullable=True),
            sa.Column("reason", sa.Text, nullable=False),  # "failed" | "held"
            sa.Column("error", sa.Text, nullable=False),
            sa.Column("value", sa.LargeBinary, nullable=False),
            sa.Column("parked_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        )
        # Which replica owns a partition's side effects, and since when (the epoch grows with
        # every takeover): a live loop's transaction checks it, so a replica that lost a
        # partition can no longer act for it.
        self.partition_owners = sa.Table(
            "partition_owners",
            metadata,
            sa.Column("consumer", sa.Text, primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("epoch", sa.BigInteger, nullable=False),
        )
        # Per consumer: the rebuild generation (a swap bumps it and live replicas seek again)
        # and the partition count its stored rows assume.
        self.consumer_state = sa.Table(
            "consumer_state",
            metadata,
            sa.Column("consumer", sa.Text, primary_key=True),
            sa.Column("generation", sa.BigInteger, nullable=False),
            sa.Column("partitions", sa.Integer, nullable=True),
        )
        # Every service authenticates the keys intake issues, from the key events.
        self.api_keys = sa.Table(
            "api_keys",
            metadata,
            sa.Column("key_id", sa.Text, primary_key=True),
            sa.Column("role", sa.Text, nullable=False),
            sa.Column("token_hash", sa.Text, nullable=False),
            sa.Column("account_id", pg.UUID(as_uuid=True), nullable=True),
            sa.Column("contact_id", pg.UUID(as_uuid=True), nullable=True),
            sa.Column("staff_id", pg.UUID(as_uuid=True), nullable=True),
            sa.Column("visibility", sa.Text, nullable=True),
            sa.Column("scopes", pg.JSONB, nullable=False),
            sa.Column("revoked", sa.Boolean, nullable=False),
            # A session's end (a key of a sign-in); None for an API key.
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        )
        # Answers to POSTs that carried an Idempotency-Key, per caller (request state, not a
        # projection: a rebuild keeps it).
        self.idempotency_keys = sa.Table(
            "idempotency_keys",
            metadata,
            sa.Column("caller", sa.Text, primary_key=True),
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("request_hash", sa.Text, nullable=False),
            sa.Column("status_code", sa.Integer, nullable=True),
            sa.Column("headers", pg.JSONB, nullable=True),
            sa.Column("body", sa.LargeBinary, nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        )
        self.ticket_sequence = sa.Table(
            "ticket_sequence",
            metadata,
            sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
            sa.Column("last_seq", sa.Integer, nullable=False),
        )

    @property
    def replay_state(self) -> list[sa.Table]:
        """Runtime tables a rebuild builds anew next to the projection (offsets are per row)."""
        return [self.processed_events, self.ticket_sequence, self.api_keys, self.parked_events]


async def table_digest(conn: AsyncConnection, tables: Iterable[sa.Table]) -> str:
    """A SHA-256 over every row of `tables`, in primary-key order: equal digests, equal state."""
    digest = hashlib.sha256()
    for table in tables:
        order = list(table.primary_key.columns) or list(table.columns)
        rows = await conn.execute(sa.select(table).order_by(*order))
        digest.update(table.fullname.encode())
        for row in rows:
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _alembic_config(url: str, schema: str, script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    return config


class SchemaDriftError(RuntimeError):
    """A schema at the migrations' head whose tables differ from this build's metadata."""


async def migrate(url: str, metadata: sa.MetaData, script_location: Path) -> None:
    """Apply the service's Alembic migrations up to head (version table in its own schema).

    Then compare the tables with `metadata` and raise `SchemaDriftError` if they differ, naming
    each difference: until release 1 a baseline migration changes in place (docs/adr/0001), so a
    database an earlier build created is at head without this build's columns, and a service
    started on it would fail on its first insert.
    """
    schema = _schema_of(metadata)
    config = _alembic_config(url, schema, script_location)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            config.attributes["connection"] = conn

            def upgrade(sync_conn: sa.Connection) -> None:
                config.attributes["connection"] = sync_conn
                command.upgrade(config, "head")

            await conn.run_sync(upgrade)
            drift = await schema_drift(conn, metadata)
    finally:
        await engine.dispose()
    if drift:
        raise SchemaDriftError(
            f"schema {schema} differs from this build's tables: {'; '.join(drift)}. An earlier"
            " build created it, and until release 1 a baseline migration changes in place"
            " (docs/adr/0001). Recreate the database: for the local stack,"
            " `make down && rm -rf .state/dev`, then `make up`."
        )


def _schema_of(metadata: sa.MetaData) -> str:
    if metadata.schema is None:
        raise ValueError("a service's metadata names its schema")
    return metadata.schema


async def schema_drift(conn: AsyncConnection, metadata: sa.MetaData) -> list[str]:
    """How the database's tables differ from `metadata`: missing tables, missing or unknown
    columns. Types and indexes are not compared; a column the code does not know is reported
    because it may be NOT NULL, which fails every insert the code makes."""

    def compare(sync_conn: sa.Connection) -> list[str]:
        inspector = sa.inspect(sync_conn)
        schema = _schema_of(metadata)
        present = set(inspector.get_table_names(schema=schema))
        drift = []
        for table in metadata.sorted_tables:
            if table.name not in present:
                drift.append(f"table {table.name} is missing")
                continue
            found = {column["name"] for column in inspector.get_columns(table.name, schema)}
            wanted = set(table.columns.keys())
            drift += [f"{table.name}.{name} is missing" for name in sorted(wanted - found)]
            drift += [f"{table.name}.{name} is unknown" for name in sorted(found - wanted)]
        return drift

    return await conn.run_sync(compare)


async def is_migrated(conn: AsyncConnection, metadata: sa.MetaData, script_location: Path) -> bool:
    """Whether the schema's Alembic version is the scripts' head and its tables are the code's."""
    from alembic.script import ScriptDirectory

    schema = _schema_of(metadata)
    head = ScriptDirectory(str(script_location)).get_current_head()
    try:
        current = await conn.scalar(sa.text(f'SELECT version_num FROM "{schema}".alembic_version'))
    except sa.exc.DBAPIError:
        return False
    return bool(current == head) and not await schema_drift(conn, metadata)


def run_migrations_online(context: Any) -> None:
    """The body of every service's `migrations/env.py` (`context` is `alembic.context`).

    It runs on the connection `migrate` passed in through the config attributes.
    """
    config = context.config
    schema = config.attributes["schema"]
    context.configure(
        connection=config.attributes["connection"],
        version_table_schema=schema,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_baseline(metadata: sa.MetaData) -> None:
    """Create a service's schema objects in its baseline migration (see docs/adr/0001)."""
    from alembic import op

    metadata.create_all(op.get_bind())
