"""Reads and writes of the SLA timer's tables that handlers, the live loop and routes share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.agreements import Agreement
from helpdesk.shared.db import bulk_upsert
from helpdesk.sla_timer.adapters.tables import (
    sla_agreements,
    sla_contacts,
    sla_tickets,
    sla_timers,
)

_UUIDS = pg.ARRAY(pg.UUID(as_uuid=True))
_INTS = pg.ARRAY(sa.Integer)


def any_uuid(values: Iterable[UUID]) -> Any:
    """`= ANY(:array)` over one bound array of uuids: one statement whatever the length."""
    return sa.any_(sa.bindparam(None, sorted(set(values)), type_=_UUIDS))


async def first_unfired_due(conn: AsyncConnection, partitions: Iterable[int]) -> Any:
    """The earliest firing instant of an unfired timer of `partitions` (None: nothing pending).

    One probe of `sla_timers_due` per partition: a `min` over `partition = ANY(...)` scans the
    whole table instead (50 ms at 400 000 timers, on every tick of the firing loop).
    """
    wanted = (
        sa.func.unnest(sa.bindparam("partitions", sorted(set(partitions)), type_=_INTS))
        .table_valued("p")
        .render_derived()
    )
    first = (
        sa.select(sla_timers.c.fire_at)
        .where(sla_timers.c.partition == wanted.c.p, sla_timers.c.fired_at.is_(None))
        .order_by(sla_timers.c.fire_at)
        .limit(1)
        .scalar_subquery()
    )
    return await conn.scalar(sa.select(sa.func.min(first)).select_from(wanted))


async def unretracted_breaches(conn: AsyncConnection, ticket_ids: Iterable[UUID]) -> list[Any]:
    """The fired breach rows of these tickets that no retraction row answers (one query)."""
    wanted = sorted(set(ticket_ids))
    if not wanted:
        return []
    retraction = sla_timers.alias("retraction")
    answered = sa.exists().where(
        retraction.c.ticket_id == sla_timers.c.ticket_id,
        retraction.c.action == "retraction",
        retraction.c.key == sla_timers.c.key,
    )
    rows = await conn.execute(
        sa.select(sla_timers).where(
            sla_timers.c.ticket_id == any_uuid(wanted),
            sla_timers.c.action == "breach",
            sla_timers.c.fired_at.is_not(None),
            ~answered,
        )
    )
    return list(rows)


# Agreement versions never change once set, so a parsed one can be kept for the process.
_parsed: dict[tuple[UUID, int], Agreement] = {}
_PARSED_MAX = 4096


def parse_agreement(account_id: UUID, version: int, document: dict[str, Any]) -> Agreement:
    """The agreement of a stored version (parsed once per process)."""
    key = (account_id, version)
    agreement = _parsed.get(key)
    if agreement is None:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        agreement = _parsed[key] = Agreement.model_validate(document)
    return agreement


async def load_tickets(conn: AsyncConnection, ids: Iterable[UUID]) -> dict[UUID, dict[str, Any]]:
    """Ticket rows by id, as mutable dicts (one `= ANY` query)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.select(sla_tickets).where(sla_tickets.c.ticket_id == any_uuid(wanted))
    )
    return {row.ticket_id: dict(row._mapping) for row in rows}


async def save_tickets(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace ticket rows (one statement per few thousand rows)."""
    columns = [c.name for c in sla_tickets.columns if c.name != "ticket_id"]
    await bulk_upsert(conn, sla_tickets, rows, conflict=["ticket_id"], update=columns)


async def agreements_for(
    conn: AsyncConnection, wanted: Iterable[tuple[UUID, int | None]]
) -> dict[tuple[UUID, int | None], tuple[int, Agreement]]:
    """For each (account, version) the stored version and its agreement; version None means the
    account's latest. Pairs without a stored agreement are left out."""
    pairs = set(wanted)
    accounts = sorted({account for account, _ in pairs})
    if not accounts:
        return {}
    rows = await conn.execute(
        sa.select(sla_agreements).where(sla_agreements.c.account_id == any_uuid(accounts))
    )
    by_account: dict[UUID, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_account.setdefault(row.account_id, {})[row.version] = row.agreement
    found: dict[tuple[UUID, int | None], tuple[int, Agreement]] = {}
    for account, version in pairs:
        versions = by_account.get(account, {})
        chosen = max(versions, default=None) if version is None else version
        if chosen is not None and chosen in versions:
            found[(account, version)] = (chosen, parse_agreement(account, chosen, versions[chosen]))
    return found


async def vip_contacts(conn: AsyncConnection, ids: Iterable[UUID | None]) -> set[UUID]:
    """Which of the contacts are VIPs."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return set()
    rows = await conn.execute(
        sa.select(sla_contacts.c.contact_id).where(
            sla_contacts.c.contact_id == any_uuid(wanted), sla_contacts.c.vip
        )
    )
    return set(rows.scalars())
