"""The echo service: a small service for runtime tests, built on the real runtime.

Its projection records every ticket.opened (foreign) and every echo it decided (own), and its
reaction answers each ticket.opened with one own event whose id derives from the cause. A
subject in `Echo.poisoned` makes the projection fail on that event (a handler bug).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert

from helpdesk.shared.consumer import Projection, Reactions, UnitOfWork
from helpdesk.shared.context import Context, system_actor, utc_now
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.db import runtime_tables, table_digest
from helpdesk.shared.events import Event
from helpdesk.shared.service import ServiceRuntime, ServiceSpec
from helpdesk.shared.settings import Settings
from tests.support import wait_for


@dataclass
class Echo:
    """The test service: its spec, its row table and a switch that makes one event poison."""

    spec: ServiceSpec
    rows: sa.Table
    poisoned: set[str] = field(default_factory=set)


def echo_service(name: str) -> Echo:
    """A service with a projection (foreign and own events) and a reaction."""
    metadata = sa.MetaData(schema=name)
    tables = runtime_tables(metadata)
    rows = sa.Table(
        "echo_rows",
        metadata,
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    projection = Projection(tables=[rows])
    reactions = Reactions()
    echo = Echo(
        ServiceSpec(
            name=name,
            title=name,
            metadata=metadata,
            tables=tables,
            projection=projection,
            reactions=reactions,
            migrations=Path(__file__).parent,
            routers=[],
        ),
        rows,
    )

    async def row(uow: UnitOfWork, event: Event[Any], ticket_id: uuid.UUID, kind: str) -> None:
        await uow.conn.execute(
            pg_insert(rows)
            .values(
                event_id=event.envelope.event_id,
                ticket_id=ticket_id,
                kind=kind,
                occurred_at=event.envelope.occurred_at,
            )
            .on_conflict_do_nothing()
        )

    @projection.on(TicketOpened)
    async def opened(uow: UnitOfWork, event: Event[TicketOpened]) -> None:
        if event.payload.subject in echo.poisoned:
            raise ValueError(f"cannot handle {event.payload.subject!r}")
        await row(uow, event, event.payload.ticket_id, "opened")

    @projection.on(AutoCloseRequested)
    async def echoed(uow: UnitOfWork, event: Event[AutoCloseRequested]) -> None:
        await row(uow, event, event.payload.ticket_id, "echo")

    @reactions.on(TicketOpened)
    async def answer(uow: UnitOfWork, event: Event[TicketOpened]) -> None:
        ctx = Context.caused_by(event, system_actor(name), utc_now())
        decided = AutoCloseRequested(
            ticket_id=event.payload.ticket_id, ticket_seq=1, unanswered_follow_ups=0
        )
        await uow.emit([ctx.event(decided, account_id=event.envelope.account_id, purpose="echo")])

    return echo


async def create_schema(settings: Settings, echo: Echo) -> None:
    """What a migration would do for the echo service."""
    runtime = ServiceRuntime(echo.spec, settings)
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{echo.spec.schema}"'))
            await conn.run_sync(echo.spec.metadata.create_all)
    finally:
        await runtime.engine.dispose()


@contextlib.asynccontextmanager
async def running(echo: Echo, settings: Settings) -> AsyncIterator[ServiceRuntime]:
    """A replica of the echo service in this process, caught up."""
    runtime = ServiceRuntime(echo.spec, settings)
    await runtime.start()
    try:
        await wait_for(_caught_up(runtime), timeout=60)
        yield runtime
    finally:
        await runtime.stop()


def _caught_up(runtime: ServiceRuntime) -> Any:
    async def probe() -> bool:
        return runtime.consumer.is_caught_up()

    return probe


async def count_rows(runtime: ServiceRuntime, table: sa.Table, **where: Any) -> int:
    async with runtime.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int(await conn.scalar(query) or 0)


async def digest(runtime: ServiceRuntime) -> str:
    async with runtime.engine.connect() as conn:
        return await table_digest(conn, runtime.projection.tables)


def fresh_name() -> str:
    return f"echo_{uuid.uuid4().hex[:8]}"
