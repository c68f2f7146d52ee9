"""The SLA timer's HTTP routes (tenant-scoped: another account's ids answer 404)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Any, Literal
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Body, Query
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.agreements import Agreement, agreement_errors, resolve_agreement
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts import audience
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.validation import Period
from helpdesk.shared.web import Problem, checked_period
from helpdesk.sla_timer.adapters.store import agreements_for, vip_contacts
from helpdesk.sla_timer.adapters.tables import sla_accounts, sla_tickets
from helpdesk.sla_timer.domain import (
    TicketSla,
    month_bounds,
    monthly_availability,
    outages_from_events,
    sla_report,
)
from helpdesk.sla_timer.domain.history import clock_view, decode_history, fold, pauses_view
from helpdesk.sla_timer.domain.timers import nearest_deadline_of

router = APIRouter(prefix="/v1")
NOT_FOUND = "No such ticket."
Priority = Literal["P1", "P2", "P3", "P4"]


def _not_found(what: str = NOT_FOUND) -> Problem:
    return Problem(404, "Not Found", what)


@router.get("/tickets/{ticket_id}/sla")
async def ticket_sla(ticket_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """The SLA view of one ticket: every clock (all cycles) as of now, and its pauses. A contact
    sees what `helpdesk.shared.contracts.audience` makes public: the response, next-reply and
    resolution clocks without warning thresholds, no escalation clocks, no VIP or effective
    priority."""
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(sla_tickets).where(sla_tickets.c.ticket_id == ticket_id))
        ).first()
        if row is None or not caller.can_see_ticket(row.account_id, row.contact_id):
            raise _not_found()
        agreements = await agreements_for(conn, [(row.account_id, row.agreement_version)])
        vips = await vip_contacts(conn, [row.contact_id])
    view: dict[str, Any] = {
        "ticket_id": row.ticket_id,
        "number": row.number,
        "priority": row.priority,
        "effective_priority": row.effective_priority,
        "vip": row.vip,
        "status": row.status,
        "reported_at": row.reported_at,
        "clocks": [],
        "pauses": [],
    }
    found = agreements.get((row.account_id, row.agreement_version))
    if found is not None:
        sla = fold(
            decode_history(row.history),
            found[1],
            max(runtime.clock(), row.last_occurred_at or row.reported_at),
            vip_contact=row.contact_id in vips,
        )
        view["clocks"] = [clock_view(c) for c in sla.clocks]
        view["pauses"] = pauses_view(sla)
    if caller.is_staff:
        return view
    shown = {k: v for k, v in view.items() if k not in audience.STAFF_ONLY_SLA_FIELDS}
    return {**shown, "clocks": audience.public_clocks(view["clocks"])}


# -- the queue -------------------------------------------------------------------------------

_INFINITY: sa.ColumnElement[dt.datetime] = sa.literal_column(
    "'infinity'::timestamptz", type_=sa.DateTime(timezone=True)
)
_AT = sa.func.coalesce(sla_tickets.c.queue_at, _INFINITY)
_USERS = -sa.func.coalesce(sla_tickets.c.affected_users, 0)
#: The queue key of domain/queue.py, part by part.
_ORDER = (sla_tickets.c.queue_rank, _AT, _USERS, sla_tickets.c.reported_at, sla_tickets.c.ticket_id)


def _cursor_of(row: sa.Row[Any]) -> str:
    at = None if row.queue_at is None else row.queue_at.isoformat()
    raw = [
        row.queue_rank,
        at,
        row.affected_users or 0,
        row.reported_at.isoformat(),
        str(row.ticket_id),
    ]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _after(cursor: str) -> Any:
    try:
        rank, at, users, reported, ticket = json.loads(base64.urlsafe_b64decode(cursor + "=="))
        at_value = _INFINITY if at is None else sa.literal(dt.datetime.fromisoformat(at))
        bound = sa.tuple_(
            sa.literal(int(rank)),
            at_value,
            sa.literal(-int(users)),
            sa.literal(dt.datetime.fromisoformat(reported)),
            sa.literal(UUID(ticket)),
        )
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Problem(
            422,
            "Invalid cursor",
            errors=[{"field": "cursor", "reason": "not a cursor from this API"}],
        ) from exc
    return sa.tuple_(*_ORDER) > bound


@router.get("/queue")
async def queue(
    runtime: Runtime,
    caller: Caller,
    account_id: UUID | None = None,
    technician: str | None = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Open tickets in the order their agreement's `queue_order` gives (domain/queue.py):
    nearest deadline first by default, tickets affecting more than one user first under
    `multi_user_first`; `next_cursor` pages on. Contacts see their account's (or their own)
    tickets."""
    query = (
        sa.select(sla_tickets)
        .where(sla_tickets.c.status.not_in(["resolved", "closed"]))
        .order_by(*_ORDER)
        .limit(limit + 1)
    )
    if not caller.is_staff and account_id is not None and account_id != caller.account_id:
        return {"items": [], "next_cursor": None}
    query = caller.visible_tickets(query, sla_tickets.c.account_id, sla_tickets.c.contact_id)
    if account_id is not None:
        query = query.where(sla_tickets.c.account_id == account_id)
    if technician is not None:
        query = query.where(sla_tickets.c.assignee == technician)
    if priority is not None:
        query = query.where(sla_tickets.c.priority == priority)
    if cursor:
        query = query.where(_after(cursor))
    async with runtime.engine.connect() as conn:
        rows = list(await conn.execute(query))
    page = rows[:limit]
    items = [
        {
            "ticket_id": row.ticket_id,
            "number": row.number,
            "account_id": row.account_id,
            "contact_id": row.contact_id,
            "status": row.status,
            "priority": row.priority,
            "effective_priority": row.effective_priority,
            "assignee": row.assignee,
            "affected_users": row.affected_users,
            "reported_at": row.reported_at,
            "next_due_at": row.next_due_at,
        }
        for row in page
    ]
    if not caller.is_staff:
        # A contact's next deadline is that of the clocks they see (helpdesk.shared.contracts.
        # audience), never an escalation's; the row's clocks are folded as `next_due_at` is.
        hidden = audience.STAFF_ONLY_SLA_FIELDS
        items = [
            {k: v for k, v in item.items() if k not in hidden}
            | {"next_due_at": nearest_deadline_of(audience.public_clocks(row.clocks))}
            for item, row in zip(items, page, strict=True)
        ]
    return {"items": items, "next_cursor": _cursor_of(page[-1]) if len(rows) > limit else None}


# -- reports ------------------------------------------------------------------------------------


async def _account_timezone(conn: AsyncConnection, caller: Principal, account_id: UUID) -> str:
    if not caller.can_see_account(account_id):
        raise _not_found("No such account.")
    timezone: str | None = await conn.scalar(
        sa.select(sla_accounts.c.timezone).where(sla_accounts.c.account_id == account_id)
    )
    if timezone is None:
        raise _not_found("No such account.")
    return timezone


async def _folded(
    conn: AsyncConnection,
    account_id: UUID,
    start: dt.datetime,
    end: dt.datetime,
    as_of: dt.datetime,
    agreement: Agreement | None = None,
) -> list[TicketSla]:
    """The account's tickets reported in [start, end), folded as of `as_of` under the version
    each was opened with (or under `agreement`, for a what-if)."""
    rows = list(
        await conn.execute(
            sa.select(sla_tickets).where(
                sla_tickets.c.account_id == account_id,
                sla_tickets.c.reported_at >= start,
                sla_tickets.c.reported_at < end,
            )
        )
    )
    agreements = await agreements_for(conn, ((r.account_id, r.agreement_version) for r in rows))
    vips = await vip_contacts(conn, (r.contact_id for r in rows))
    folded = []
    for row in rows:
        found = agreements.get((row.account_id, row.agreement_version))
        chosen = agreement or (found[1] if found is not None else None)
        if chosen is None:
            continue
        moment = max(as_of, row.last_occurred_at or row.reported_at)
        events = decode_history(row.history)
        folded.append(fold(events, chosen, moment, vip_contact=row.contact_id in vips))
    return folded


def _report(
    account_id: UUID, period: str, timezone: str, tickets: list[TicketSla]
) -> dict[str, Any]:
    lines = sla_report(tickets)
    return {
        "account_id": account_id,
        "period": period,
        "timezone": timezone,
        "tickets": len(tickets),
        "lines": [
            {
                "priority": line.priority,
                "kind": line.kind.value,
                "met": line.met,
                "breached": line.breached,
                "open": line.open,
                "met_share": line.met_share,
                "p50_minutes": line.p50_minutes,
                "p90_minutes": line.p90_minutes,
            }
            for line in lines
        ],
    }


@router.get("/accounts/{account_id}/sla-report")
async def report(
    account_id: UUID, period: Annotated[Period, Query()], runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """Met and breached clocks per priority and kind, with p50/p90 business minutes, of the
    tickets reported in the month (in the account's time zone)."""
    year, month = checked_period(period, runtime.clock())
    async with runtime.engine.connect() as conn:
        timezone = await _account_timezone(conn, caller, account_id)
        start, end = month_bounds(year, month, timezone)
        tickets = await _folded(conn, account_id, start, end, runtime.clock())
    return _report(account_id, period, timezone, tickets)


@router.post("/accounts/{account_id}/sla-report/what-if")
async def what_if(
    account_id: UUID,
    runtime: Runtime,
    caller: Caller,
    period: Annotated[Period, Body()],
    agreement: Annotated[str | dict[str, Any], Body()],
) -> dict[str, Any]:
    """The month's report recomputed under another agreement (a preset name or an agreement
    document, with or without `preset`); nothing is stored."""
    year, month = checked_period(period, runtime.clock())
    try:
        if isinstance(agreement, str):
            chosen = resolve_agreement(agreement)
        else:
            chosen = resolve_agreement(None, agreement)
    except ValidationError as exc:
        errors = [
            {"field": f"agreement.{e['field']}".rstrip("."), "reason": e["reason"]}
            for e in agreement_errors(exc)
        ]
        raise Problem(422, "Invalid agreement", errors=errors) from exc
    async with runtime.engine.connect() as conn:
        timezone = await _account_timezone(conn, caller, account_id)
        start, end = month_bounds(year, month, timezone)
        tickets = await _folded(conn, account_id, start, end, runtime.clock(), chosen)
    body = _report(account_id, period, timezone, tickets)
    body["agreement"] = {"preset": chosen.preset}
    return body


@router.get("/accounts/{account_id}/availability")
async def availability(
    account_id: UUID, period: Annotated[Period, Query()], runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """Availability of each service class in the month, under the account's current agreement:
    outage minutes (scheduled maintenance excluded), percentage, target and whether it was met."""
    year, month = checked_period(period, runtime.clock())
    now = runtime.clock()
    async with runtime.engine.connect() as conn:
        timezone = await _account_timezone(conn, caller, account_id)
        start, end = month_bounds(year, month, timezone)
        current = (await agreements_for(conn, [(account_id, None)])).get((account_id, None))
        rows = await conn.execute(
            sa.select(sla_tickets.c.history).where(
                sla_tickets.c.account_id == account_id, sla_tickets.c.reported_at < end
            )
        )
        outages = [o for row in rows for o in outages_from_events(decode_history(row.history))]
    if current is None:
        classes = []
    else:
        classes = monthly_availability(
            outages, current[1], year=year, month=month, timezone=timezone, as_of=now
        )
    return {
        "account_id": account_id,
        "period": period,
        "timezone": timezone,
        "period_start": start,
        "period_end": end,
        "classes": [
            {
                "service_class": c.service_class,
                "minutes": c.minutes_in_month,
                "downtime_minutes": c.downtime_minutes,
                "maintenance_excluded_minutes": c.maintenance_excluded_minutes,
                "percentage": round(c.percentage, 4),
                "target": c.target,
                "met": c.met,
            }
            for c in classes
        ],
    }
