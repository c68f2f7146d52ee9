"""The SLA timer's projection of the stream, and the live loop that fires its timers.

Ticket events are appended to the ticket's stored history; after each run the touched tickets
are re-folded with the pure domain (one load, fold in memory, one write) into their view row and
their timers. A rebuild stores the histories as it replays and folds each ticket once, at the
end (`refold_replayed`), with the inputs its last batch pinned. Unfired timers always follow
the latest fold; fired ones are history. The timers' own events (`sla.*`) come back through the
projection and mark their timer fired from what the event says, so a rebuild knows what already
fired. A ticket event that arrives after a breach fired and shows the clock met or stopped in
time makes the reaction `retract_disproved_breaches` retract that breach, once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.agreements import Agreement
from helpdesk.shared.consumer import AnyEvent, Projection, Reactions, UnitOfWork
from helpdesk.shared.context import Context, system_actor, utc_now
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountUpdated,
    AgreementSet,
    ContactAdded,
)
from helpdesk.shared.contracts.sla import (
    AutoCloseRequested,
    ClockFacts,
    FollowUpDue,
    SlaBreached,
    SlaBreachRetracted,
    SlaMet,
    SlaWarning,
)
from helpdesk.shared.contracts.tickets import (
    TICKET_EVENTS,
    TicketAssigned,
    TicketOpened,
    TicketTriaged,
)
from helpdesk.shared.db import bulk_upsert
from helpdesk.shared.events import Actor, Event, derive_event_id, registry
from helpdesk.shared.live import LiveContext
from helpdesk.sla_timer.adapters.store import (
    agreements_for,
    any_uuid,
    first_unfired_due,
    load_tickets,
    save_tickets,
    unretracted_breaches,
    vip_contacts,
)
from helpdesk.sla_timer.adapters.tables import (
    projection_tables,
    sla_accounts,
    sla_agreements,
    sla_contacts,
    sla_tickets,
    sla_timers,
)
from helpdesk.sla_timer.domain import follow_up_schedule
from helpdesk.sla_timer.domain.clocks import TicketEvent
from helpdesk.sla_timer.domain.history import (
    FOLDED,
    clock_view,
    decode_history,
    fold,
    history_item,
)
from helpdesk.sla_timer.domain.imports import firing
from helpdesk.sla_timer.domain.queue import NO_DEADLINE, queue_key
from helpdesk.sla_timer.domain.retractions import retractions
from helpdesk.sla_timer.domain.timers import (
    Recorded,
    Timer,
    clock_timers,
    follow_up_timers,
    nearest_deadline,
    ticket_status,
    timer_identity,
)

projection = Projection(tables=projection_tables)
reactions = Reactions()
ACTOR = system_actor("sla_timer")
#: The actor of a timer of imported history (domain/imports.py): no e-mail, webhooks marked.
IMPORTED = Actor(type="import", id="sla_timer")
#: Timers claimed per partition and transaction; the loop comes back at once for the rest.
FIRE_BATCH = 500
#: The finisher a rebuild runs for the tickets whose fold it deferred.
REFOLD = "sla.refold"
#: What a ticket is folded under: its pinned agreement and whether its contact is a VIP; None
#: while it has no agreement or no event yet (it is not folded then).
FoldInputs = tuple[Agreement, bool]


@projection.on(AccountOpened)
async def account_opened(uow: UnitOfWork, event: Event[AccountOpened]) -> None:
    """Remember the account's time zone."""
    await _save_timezone(uow.conn, event.payload.account_id, event.payload.timezone)


@projection.on(AccountUpdated)
async def account_updated(uow: UnitOfWork, event: Event[AccountUpdated]) -> None:
    """Follow the account's time zone."""
    await _save_timezone(uow.conn, event.payload.account_id, event.payload.timezone)


async def _save_timezone(conn: AsyncConnection, account_id: UUID, timezone: str) -> None:
    statement = pg_insert(sla_accounts).values(account_id=account_id, timezone=timezone)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[sla_accounts.c.account_id], set_={"timezone": timezone}
        )
    )


@projection.on(AgreementSet)
async def agreement_set(uow: UnitOfWork, event: Event[AgreementSet]) -> None:
    """Keep every agreement version: a ticket's clocks use the one it was opened with."""
    await uow.conn.execute(
        pg_insert(sla_agreements)
        .values(
            account_id=event.payload.account_id,
            version=event.payload.version,
            agreement=event.payload.agreement.model_dump(mode="json"),
        )
        .on_conflict_do_nothing()
    )


@projection.on(ContactAdded)
async def contact_added(uow: UnitOfWork, event: Event[ContactAdded]) -> None:
    """Remember whether the contact is a VIP."""
    contact = event.payload
    await uow.conn.execute(
        pg_insert(sla_contacts)
        .values(
            contact_id=contact.contact_id,
            account_id=contact.account_id,
            vip="vip" in contact.roles,
        )
        .on_conflict_do_nothing()
    )


def _new_ticket(event: Event[TicketOpened]) -> dict[str, Any]:
    opened = event.payload
    return {
        "ticket_id": opened.ticket_id,
        "account_id": opened.account_id,
        "contact_id": opened.contact_id,
        "partition": event.partition,
        "number": opened.number,
        "priority": opened.priority,
        "reported_at": opened.reported_at,
        "effective_priority": None,
        "vip": False,
        "status": "open",
        "assignee": None,
        "affected_users": opened.affected_users,
        "agreement_version": opened.agreement_version,
        "seq": 0,
        "last_occurred_at": None,
        "next_due_at": None,
        "queue_rank": 0,
        "queue_at": None,
        "imported_at": None,
        "clocks": [],
        "history": [],
    }


@projection.on_batch(*TICKET_EVENTS)
async def ticket_events(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Append to each ticket's history, then re-fold the touched tickets into rows and timers."""
    rows = await load_tickets(
        uow.conn, (e.envelope.ticket_id for e in events if e.envelope.ticket_id)
    )
    touched: set[UUID] = set()
    # Each touched ticket's history as the fold reads it: decoded once from its stored row,
    # then extended with this batch's events as they are (not re-read from their JSON). Not
    # while replaying: the fold then runs once, at the end, from the stored history.
    folding = uow.replay is None
    folded: dict[UUID, list[TicketEvent]] = {}
    for event in events:
        ticket_id = event.envelope.ticket_id
        payload = event.payload
        if isinstance(payload, TicketOpened):
            if payload.ticket_id in rows:
                continue
            rows[payload.ticket_id] = _new_ticket(event)  # type: ignore[arg-type]
            ticket_id = payload.ticket_id
        row = rows.get(ticket_id) if ticket_id is not None else None
        if row is None or ticket_id is None:
            continue
        seq = event.envelope.seq
        if seq is not None and seq <= row["seq"] and not isinstance(payload, TicketOpened):
            # Applied already: a copy whose dedup mark was gone. The history takes a seq once.
            continue
        touched.add(ticket_id)
        row["seq"] = max(row["seq"], seq or 0)
        occurred = event.envelope.occurred_at
        if event.envelope.actor.type == "import":
            since = row["imported_at"]
            recorded = event.envelope.recorded_at
            row["imported_at"] = recorded if since is None else max(since, recorded)
        last = row["last_occurred_at"]
        row["last_occurred_at"] = occurred if last is None else max(last, occurred)
        if isinstance(payload, TicketAssigned):
            row["assignee"] = payload.technician
        elif isinstance(payload, TicketTriaged):
            row["priority"] = payload.priority
        if isinstance(payload, FOLDED):
            row["history"] = [*row["history"], history_item(event.type, occurred, payload)]
            if folding:
                if ticket_id not in folded:
                    folded[ticket_id] = decode_history(row["history"][:-1])
                folded[ticket_id].append(TicketEvent(occurred.astimezone(dt.UTC), payload))
    changed = [rows[t] for t in sorted(touched)]
    inputs = await _fold_inputs(uow.conn, changed)
    if uow.replay is not None:
        uow.replay.defer(REFOLD, inputs)
        await save_tickets(uow.conn, changed)
        return
    await _save_folded(uow.conn, changed, inputs, folded)


@projection.after_replay(REFOLD)
async def refold_replayed(uow: UnitOfWork, inputs: Mapping[UUID, FoldInputs | None]) -> None:
    """Fold the tickets a replay touched, once each, with the inputs their last batch gave."""
    rows = await load_tickets(uow.conn, inputs)
    await _save_folded(uow.conn, [rows[t] for t in sorted(rows)], inputs, {})


async def _fold_inputs(
    conn: AsyncConnection, rows: list[dict[str, Any]]
) -> dict[UUID, FoldInputs | None]:
    """Each row's fold inputs as of now; pins the agreement version a row is folded under."""
    agreements = await agreements_for(
        conn, ((r["account_id"], r["agreement_version"]) for r in rows)
    )
    vips = await vip_contacts(conn, (r["contact_id"] for r in rows))
    inputs: dict[UUID, FoldInputs | None] = {}
    for row in rows:
        found = agreements.get((row["account_id"], row["agreement_version"]))
        if found is None or row["last_occurred_at"] is None:
            inputs[row["ticket_id"]] = None
            continue
        # Pinned from now on: a later agreement version does not move this ticket's targets.
        version, agreement = found
        row["agreement_version"] = version
        inputs[row["ticket_id"]] = (agreement, row["contact_id"] in vips)
    return inputs


async def _save_folded(
    conn: AsyncConnection,
    rows: list[dict[str, Any]],
    inputs: Mapping[UUID, FoldInputs | None],
    folded: dict[UUID, list[TicketEvent]],
) -> None:
    """Fold the rows, write them back, and make their unfired timers the fold's."""
    timers = _refold(rows, inputs, folded)
    await save_tickets(conn, rows)
    await _replace_unfired(conn, [r["ticket_id"] for r in rows], timers)


def _refold(
    rows: list[dict[str, Any]],
    inputs: Mapping[UUID, FoldInputs | None],
    folded: dict[UUID, list[TicketEvent]],
) -> list[dict[str, Any]]:
    """Fold each row as of its last event; update its derived columns; return its timers.

    `folded` holds the decoded history of the rows that have one in this batch already."""
    timer_rows: list[dict[str, Any]] = []
    for row in rows:
        events = folded.get(row["ticket_id"]) or decode_history(row["history"])
        row["status"] = ticket_status(events)
        given = inputs.get(row["ticket_id"])
        if given is None:
            continue
        agreement, vip_contact = given
        sla = fold(events, agreement, row["last_occurred_at"], vip_contact=vip_contact)
        row["effective_priority"] = sla.effective_priority
        row["vip"] = sla.vip
        row["clocks"] = [clock_view(c) for c in sla.clocks]
        row["next_due_at"] = nearest_deadline(sla)
        key = queue_key(
            agreement.queue_order,
            next_due_at=row["next_due_at"],
            affected_users=row["affected_users"],
            reported_at=row["reported_at"],
            ticket_id=row["ticket_id"],
        )
        row["queue_rank"] = key.rank
        row["queue_at"] = None if key.at == NO_DEADLINE else key.at
        schedule = follow_up_schedule(events, agreement.follow_up)
        timers = clock_timers(row["ticket_id"], sla)
        if row["status"] != "closed":
            timers += follow_up_timers(row["ticket_id"], schedule, row["seq"])
        timer_rows += [_timer_row(row, t) for t in timers]
    return timer_rows


def _payload_json(payload: BaseModel) -> dict[str, Any]:
    return payload.model_dump(mode="json")


def _clock_columns(payload: Recorded) -> tuple[str | None, int | None]:
    if isinstance(payload, ClockFacts):
        return payload.kind, payload.cycle
    return None, None


def _timer_row(ticket: dict[str, Any], timer: Timer) -> dict[str, Any]:
    kind, cycle = _clock_columns(timer.payload)
    fire_at, imported = firing(timer.due_at, ticket["imported_at"])
    return {
        "ticket_id": ticket["ticket_id"],
        "action": timer.action,
        "key": timer.key,
        "partition": ticket["partition"],
        "account_id": ticket["account_id"],
        "kind": kind,
        "cycle": cycle,
        "due_at": timer.due_at,
        "fire_at": fire_at,
        "imported": imported,
        "fired_at": None,
        "event_id": derive_event_id(ticket["ticket_id"], timer.purpose),
        "type": registry.type_of(timer.payload),
        "payload": _payload_json(timer.payload),
    }


async def _replace_unfired(
    conn: AsyncConnection, ticket_ids: list[UUID], timers: list[dict[str, Any]]
) -> None:
    """Unfired timers of the tickets become exactly `timers`; fired ones stay as they are."""
    if not ticket_ids:
        return
    await conn.execute(
        sla_timers.delete().where(
            sla_timers.c.ticket_id == any_uuid(ticket_ids), sla_timers.c.fired_at.is_(None)
        )
    )
    await bulk_upsert(conn, sla_timers, timers, conflict=["ticket_id", "action", "key"])


@projection.on_batch(
    SlaWarning, SlaBreached, SlaMet, FollowUpDue, AutoCloseRequested, SlaBreachRetracted
)
async def timers_fired(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Record a fired timer (or a breach's retraction) from its event alone: whether the
    ticket's later events were applied first (a rebuild) or not (live), the row is the same."""
    for event in events:
        payload: Recorded = event.payload  # type: ignore[assignment]
        action, key = timer_identity(payload)
        kind, cycle = _clock_columns(payload)
        at = event.envelope.occurred_at
        values = {
            "partition": sa.select(sla_tickets.c.partition)
            .where(sla_tickets.c.ticket_id == payload.ticket_id)
            .scalar_subquery(),
            "account_id": event.envelope.account_id,
            "kind": kind,
            "cycle": cycle,
            "due_at": at,
            "fire_at": at,
            "imported": event.envelope.actor.type == "import",
            "fired_at": at,
            "event_id": event.envelope.event_id,
            "type": event.type,
            "payload": _payload_json(payload),
        }
        statement = pg_insert(sla_timers).values(
            ticket_id=payload.ticket_id, action=action, key=key, **values
        )
        await uow.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[sla_timers.c.ticket_id, sla_timers.c.action, sla_timers.c.key],
                set_={name: statement.excluded[name] for name in values},
            )
        )


@reactions.on_batch(*FOLDED)
async def retract_disproved_breaches(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Retract each fired breach that the ticket's fold, now that these events are applied,
    shows met or stopped before its deadline (domain/retractions.py).

    Decided from state, not from one event: whichever event of a batch (or a copy of it) comes
    first finds the breach; the id derives from the breach, and the retraction's own row (written
    by `timers_fired` when it is emitted) makes every later look find nothing.
    """
    causes = {e.envelope.ticket_id: e for e in events if e.envelope.ticket_id is not None}
    fired = await unretracted_breaches(uow.conn, causes)
    if not fired:
        return
    rows = await load_tickets(uow.conn, {row.ticket_id for row in fired})
    now = utc_now()
    decided: list[AnyEvent] = []
    for row in fired:
        breach = SlaBreached.model_validate(row.payload)
        ticket = rows.get(row.ticket_id)
        if ticket is None:
            continue
        for retraction in retractions([(row.event_id, breach)], ticket["clocks"]):
            actor = IMPORTED if row.imported else ACTOR
            context = Context(actor, now, retraction.settled_at, causes[row.ticket_id])
            decided.append(
                context.event(
                    retraction,
                    account_id=row.account_id,
                    ticket_id=row.ticket_id,
                    event_id=derive_event_id(row.event_id, "retraction"),
                )
            )
    await uow.emit(decided)


# -- the live loop -------------------------------------------------------------------------------


async def fire_timers(live: LiveContext) -> dt.datetime | None:
    """Fire every timer due by now, less the allowed lateness, in the owned partitions whose
    projection is current past it.

    Each is claimed with a conditional update in a transaction that holds the partition, and the
    event recording it is emitted there (its occurred_at is the instant it was due; imported
    history waits for its import to settle and goes out with an import actor). Returns the
    next instant a timer of an owned partition fires.
    """
    again = False
    for partition in live.partitions:
        until = live.due_until(partition)
        async with live.engine.connect() as conn:
            due = list(
                (
                    await conn.execute(
                        sa.select(sla_timers.c.event_id)
                        .where(
                            sla_timers.c.partition == partition,
                            sla_timers.c.fired_at.is_(None),
                            sla_timers.c.fire_at <= until,
                        )
                        .order_by(sla_timers.c.fire_at)
                        .limit(FIRE_BATCH)
                    )
                ).scalars()
            )
        if not due:
            continue
        again = again or len(due) == FIRE_BATCH
        async with live.claim([partition]) as uow:
            claimed = await uow.conn.execute(
                sla_timers.update()
                .where(sla_timers.c.event_id == any_uuid(due), sla_timers.c.fired_at.is_(None))
                .values(fired_at=sla_timers.c.due_at, fire_at=sla_timers.c.due_at)
                .returning(sla_timers)
            )
            await uow.emit([_fired_event(row, live.now) for row in claimed])
    if again:
        return live.now
    async with live.engine.connect() as conn:
        upcoming: dt.datetime | None = await first_unfired_due(conn, live.partitions)
    return None if upcoming is None else upcoming + live.lateness


def _fired_event(row: sa.Row[Any], now: dt.datetime) -> AnyEvent:
    payload = registry.spec(row.type).model.model_validate(row.payload)
    actor = IMPORTED if row.imported else ACTOR
    context = Context(actor, recorded_at=now, occurred_at=row.due_at)
    return context.event(
        payload,
        account_id=row.account_id,
        ticket_id=row.ticket_id,
        event_id=row.event_id,
        item=f"timer:{row.ticket_id}:{row.action}:{row.key}",
    )
