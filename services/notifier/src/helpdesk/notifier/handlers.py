"""The notifier's projection: people and tickets, subscriptions, deliveries and mails.

Deliveries and mails are derived from events: one delivery row per (subscription, event) the
subscription wants and may see, one mail row per (event, mail intent), each with the event's
partition, so the live loops of that partition send them. Outcomes are events of their own
(`notification.delivered`, `.failed`, `.mail_sent`) that mark the rows done, so a rebuild
never sends again what was sent.

A subscription receives the events recorded while it exists (`created_at <= recorded_at <
deleted_at`), a rule that does not depend on the order in which a rebuild replays partitions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

import helpdesk.shared.contracts  # noqa: F401 - registers every event type handled below
from helpdesk.notifier.adapters.tables import (
    accounts,
    contacts,
    deliveries,
    mails,
    projection_tables,
    sla_clocks,
    staff,
    subscriptions,
    tickets,
)
from helpdesk.notifier.domain.digest import DIGEST_CLOCKS
from helpdesk.notifier.domain.filters import Audience, EventFacts, SubscriptionRule
from helpdesk.notifier.domain.identity import for_account, staff_id_of
from helpdesk.notifier.domain.messages import (
    MailEvent,
    TicketFacts,
    intent_document,
    mails_for,
    ticket_subject,
)
from helpdesk.shared.consumer import AnyEvent, Projection, UnitOfWork
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountUpdated,
    ContactAdded,
    StaffAdded,
)
from helpdesk.shared.contracts.notifications import (
    Delivered,
    DeliveryFailed,
    EndpointDisabled,
    MailFailed,
    MailSent,
    ReplayRequested,
    SecretRotated,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionUpdated,
)
from helpdesk.shared.contracts.sla import SlaBreached, SlaBreachRetracted, SlaMet, SlaWarning
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketOpened,
    TicketReopened,
    TicketTriaged,
)
from helpdesk.shared.db import bulk_upsert
from helpdesk.shared.events import Event, derive_event_id, registry

projection = Projection(tables=projection_tables)

# Never delivered by webhook: the notifier's own records (delivering them would feed itself)
# and API keys (every service applies those itself; a token hash has no business leaving).
_NOT_DELIVERED = ("notification.", "account.api_key_")
# Mailed to its person, but never sent to a webhook: it holds a password reset link.
_MAIL_ONLY = frozenset({"account.password_reset_requested"})
MAIL_DOMAIN = "helpdesk.local"


def delivery_id_for(subscription_id: UUID, event_id: UUID) -> UUID:
    """The stable `webhook-id` of one event delivered to one subscription."""
    return derive_event_id(event_id, f"webhook:{subscription_id}")


def replay_delivery_id(replay_id: UUID, event_id: UUID) -> UUID:
    """The `webhook-id` of one event re-sent by a replay."""
    return derive_event_id(replay_id, f"replay:{event_id}")


def webhook_body(event: AnyEvent) -> dict[str, Any]:
    """The JSON a subscriber receives: Standard Webhooks' `{type, timestamp, data}`."""
    envelope = json.loads(event.envelope.to_bytes())
    return {"type": event.type, "timestamp": envelope["occurred_at"], "data": envelope}


def rule_of(row: Any) -> SubscriptionRule:
    """The filtering part of a subscription row."""
    audience = Audience.provider() if row.account_id is None else Audience.account(row.account_id)
    return SubscriptionRule(tuple(row.event_types), audience, row.enabled)


# -- events of other services ------------------------------------------------------------------


def _foreign_models() -> list[type[BaseModel]]:
    return [
        registry.spec(type_).model
        for type_ in registry.types()
        if not type_.startswith(_NOT_DELIVERED)
    ]


@projection.on_batch(*_foreign_models())
async def foreign_events(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Keep the facts mails need, and schedule the deliveries and mails each event causes."""
    conn = uow.conn
    subs = _Subscribers((await conn.execute(sa.select(subscriptions))).all())
    rows = await _ticket_rows(conn, {e.envelope.ticket_id for e in events} - {None})
    changed: set[UUID] = set()
    staff_names = await _staff_names(conn, events)
    scheduled: dict[UUID, dict[str, Any]] = {}
    queued: dict[UUID, dict[str, Any]] = {}
    for event in events:
        touched = _follow_ticket(rows, event)
        if touched is not None:
            changed.add(touched)
        else:
            await _remember_facts(conn, event)
        document = event.envelope.document()  # the payload's JSON: filters and mail rules read it
        scheduled.update(
            (row["delivery_id"], row) for row in _deliveries_of(event, document, subs, staff_names)
        )
        ticket = rows.get(event.envelope.ticket_id) if event.envelope.ticket_id else None
        facts = _ticket_facts(ticket) if ticket is not None else None
        queued.update((row["mail_id"], row) for row in _mails_of(event, document, facts))
    # The batch's tickets, as its events left them, in one statement.
    await bulk_upsert(
        conn,
        tickets,
        [rows[t] for t in sorted(changed)],
        conflict=["ticket_id"],
        update=["priority", "cycle", "closed"],
    )
    await _upsert_scheduled(conn, list(scheduled.values()))
    await _upsert_mails(conn, list(queued.values()))


async def _staff_names(conn: AsyncConnection, events: Sequence[AnyEvent]) -> dict[str, str]:
    """The display names of the staff members who caused these events, by staff id."""
    ids = set()
    for event in events:
        staff_id = staff_id_of(event.envelope.actor.model_dump())
        with contextlib.suppress(ValueError):
            ids.add(UUID(staff_id or ""))
    if not ids:
        return {}
    found = await conn.execute(
        sa.select(staff.c.staff_id, staff.c.name).where(staff.c.staff_id.in_(ids))
    )
    return {str(row.staff_id): row.name for row in found}


async def _ticket_rows(
    conn: AsyncConnection, ticket_ids: set[UUID | None]
) -> dict[UUID, dict[str, Any]]:
    """The stored rows of these tickets, in one query."""
    found = await conn.execute(sa.select(tickets).where(tickets.c.ticket_id.in_(ticket_ids)))
    return {row.ticket_id: dict(row._mapping) for row in found}


def _ticket_facts(row: dict[str, Any]) -> TicketFacts:
    return TicketFacts(
        ticket_id=row["ticket_id"],
        number=row["number"],
        subject=row["subject"],
        account_id=row["account_id"],
        contact_id=row["contact_id"],
        priority=row["priority"],
    )


def _follow_ticket(rows: dict[UUID, dict[str, Any]], event: AnyEvent) -> UUID | None:
    """Apply a ticket event to the batch's ticket rows; the ticket it changed, if any.

    A ticket's first `ticket.opened` wins (it is the only one); an event of a ticket never
    opened here changes nothing.
    """
    payload, ticket_id = event.payload, event.envelope.ticket_id
    if isinstance(payload, TicketOpened):
        if payload.ticket_id in rows:
            return None
        rows[payload.ticket_id] = {
            "ticket_id": payload.ticket_id,
            "account_id": payload.account_id,
            "number": payload.number,
            "subject": payload.subject,
            "contact_id": payload.contact_id,
            "priority": payload.priority,
            "cycle": 1,
            "closed": False,
        }
        return payload.ticket_id
    if not isinstance(payload, TicketTriaged | TicketClosed | TicketReopened):
        return None
    row = rows.get(ticket_id) if ticket_id is not None else None
    if row is None or ticket_id is None:
        return None
    if isinstance(payload, TicketTriaged):
        row["priority"] = payload.priority
    else:
        row["closed"] = isinstance(payload, TicketClosed)
        if isinstance(payload, TicketReopened):
            row["cycle"] = payload.cycle
    return ticket_id


class _Subscribers:
    """The subscriptions of one batch, by audience: an event is only judged against the
    provider-wide ones and its own account's (with 1 000 accounts subscribed, not 1 000)."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self._provider: list[tuple[Any, SubscriptionRule]] = []
        self._by_account: dict[UUID, list[tuple[Any, SubscriptionRule]]] = {}
        for row in rows:
            entry = (row, rule_of(row))
            if row.account_id is None:
                self._provider.append(entry)
            else:
                self._by_account.setdefault(row.account_id, []).append(entry)

    def candidates(self, account_id: UUID) -> list[tuple[Any, SubscriptionRule]]:
        """The subscriptions that may want an event of `account_id`."""
        return self._provider + self._by_account.get(account_id, [])


async def _remember_facts(conn: AsyncConnection, event: AnyEvent) -> None:
    payload = event.payload
    if isinstance(payload, ContactAdded):
        await conn.execute(
            pg_insert(contacts)
            .values(
                contact_id=payload.contact_id,
                account_id=payload.account_id,
                name=payload.name,
                email=payload.email,
                roles=list(payload.roles),
            )
            .on_conflict_do_nothing()
        )
    elif isinstance(payload, StaffAdded):
        await conn.execute(
            pg_insert(staff)
            .values(
                staff_id=payload.staff_id,
                name=payload.name,
                email=payload.email,
                role=payload.role,
                partition=event.partition,
            )
            .on_conflict_do_nothing()
        )
    elif isinstance(payload, AccountOpened | AccountUpdated):
        statement = pg_insert(accounts).values(account_id=payload.account_id, name=payload.name)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[accounts.c.account_id], set_={"name": statement.excluded.name}
            )
        )
    elif isinstance(payload, ClockEvent) and payload.kind in DIGEST_CLOCKS:
        await _remember_clock(conn, payload)


#: The `sla.*` events that say something of a clock the digest lists.
ClockEvent = SlaWarning | SlaBreached | SlaMet | SlaBreachRetracted


async def _remember_clock(conn: AsyncConnection, payload: ClockEvent) -> None:
    """What one `sla.*` event says of a clock; the instants of the others are kept. A
    retraction says the breach was wrong, and when the clock was met (if it was)."""
    retracted = payload if isinstance(payload, SlaBreachRetracted) else None
    met_at = payload.met_at if isinstance(payload, SlaMet) else None
    if retracted is not None and retracted.reason == "met":
        met_at = retracted.settled_at
    statement = pg_insert(sla_clocks).values(
        ticket_id=payload.ticket_id,
        kind=payload.kind,
        cycle=payload.cycle,
        ordinal=payload.ordinal,
        priority=payload.priority,
        due_at=payload.due_at,
        warned_at=payload.warning_at if isinstance(payload, SlaWarning) else None,
        breached_at=payload.breached_at if isinstance(payload, SlaBreached) else None,
        met_at=met_at,
        retracted_at=None if retracted is None else retracted.settled_at,
    )
    kept = {
        name: sa.func.coalesce(sla_clocks.c[name], statement.excluded[name])
        for name in ("warned_at", "breached_at", "met_at", "retracted_at")
    }
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[c.name for c in sla_clocks.primary_key],
            set_={
                "priority": statement.excluded.priority,
                "due_at": statement.excluded.due_at,
                **kept,
            },
        )
    )


def _exists_at(row: Any, at: datetime) -> bool:
    return row.created_at <= at and (row.deleted_at is None or at < row.deleted_at)


def _deliveries_of(
    event: AnyEvent,
    document: dict[str, Any],
    subs: _Subscribers,
    staff_names: Mapping[str, str],
) -> list[dict[str, Any]]:
    if event.type in _MAIL_ONLY:
        return []
    envelope = event.envelope
    facts = EventFacts(event.type, envelope.account_id, document)
    wanted = [
        sub
        for sub, rule in subs.candidates(envelope.account_id)
        if _exists_at(sub, envelope.recorded_at) and rule.wants(facts)
    ]
    if not wanted:
        return []
    body = webhook_body(event)
    shown = for_account(body, staff_names)  # an account's own subscriptions get this one
    return [
        {
            "delivery_id": delivery_id_for(sub.subscription_id, envelope.event_id),
            "subscription_id": sub.subscription_id,
            "replay_id": None,
            "event_id": envelope.event_id,
            "event_type": event.type,
            "account_id": envelope.account_id,
            "ticket_id": envelope.ticket_id,
            "partition": event.partition,
            "source_offset": event.offset,
            "occurred_at": envelope.occurred_at,
            "due_at": envelope.recorded_at,
            "body": body if sub.account_id is None else shown,
            "status": "pending",
        }
        for sub in wanted
    ]


_SCHEDULE_COLUMNS = (
    "subscription_id",
    "replay_id",
    "event_id",
    "event_type",
    "account_id",
    "ticket_id",
    "partition",
    "source_offset",
    "occurred_at",
    "due_at",
    "body",
)


async def _upsert_scheduled(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await bulk_upsert(
        conn, deliveries, rows, conflict=["delivery_id"], update=list(_SCHEDULE_COLUMNS)
    )


def _mails_of(
    event: AnyEvent, document: dict[str, Any], ticket: TicketFacts | None
) -> list[dict[str, Any]]:
    envelope = event.envelope
    mail_event = MailEvent(
        event_id=envelope.event_id,
        type=event.type,
        account_id=envelope.account_id,
        occurred_at=envelope.occurred_at,
        actor_type=envelope.actor.type,
        payload=document,
    )
    rows: list[dict[str, Any]] = [
        {
            "mail_id": derive_event_id(envelope.event_id, f"mail:{intent.kind}:{intent.recipient}"),
            "event_id": envelope.event_id,
            "account_id": intent.account_id,
            "ticket_id": intent.ticket_id,
            "partition": event.partition,
            "kind": intent.kind,
            "recipient_role": intent.recipient,
            "recipient_contact_id": intent.contact_id,
            "subject": intent.subject,
            "message_id": intent.message_id,
            "intent": intent_document(intent),
            "status": "queued",
            "created_at": envelope.recorded_at,
        }
        for intent in mails_for(mail_event, ticket, domain=MAIL_DOMAIN)
    ]
    opened = event.payload
    if isinstance(opened, TicketOpened) and not rows and envelope.actor.type != "import":
        # Nobody to tell the number to (a ticket opened by staff without a contact): listed
        # anyway, so staff see the customer was not told.
        rows.append(
            {
                "mail_id": derive_event_id(envelope.event_id, "mail:ticket_opened:none"),
                "event_id": envelope.event_id,
                "account_id": opened.account_id,
                "ticket_id": opened.ticket_id,
                "partition": event.partition,
                "kind": "ticket_opened",
                "recipient_role": "ticket_contact",
                "recipient_contact_id": None,
                "subject": ticket_subject(opened.number, "Received", opened.subject),
                "message_id": None,
                "intent": None,
                "status": "no_recipient",
                "created_at": envelope.recorded_at,
            }
        )
    return rows


async def _upsert_mails(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c not in {"mail_id", "status"}]
    await bulk_upsert(conn, mails, rows, conflict=["mail_id"], update=columns)


# -- the notifier's own events -------------------------------------------------------------------


@projection.on(SubscriptionCreated)
async def subscription_created(uow: UnitOfWork, event: Event[SubscriptionCreated]) -> None:
    """A new subscription, receiving what is recorded from now on."""
    created = event.payload
    await uow.conn.execute(
        pg_insert(subscriptions)
        .values(
            subscription_id=created.subscription_id,
            account_id=created.account_id,
            url=created.url,
            event_types=created.event_types,
            enabled=created.enabled,
            description=created.description,
            created_by=created.created_by,
            secret_fingerprint=created.secret_fingerprint,
            created_at=event.envelope.recorded_at,
            updated_at=event.envelope.recorded_at,
        )
        .on_conflict_do_nothing()
    )


@projection.on(SubscriptionUpdated)
async def subscription_updated(uow: UnitOfWork, event: Event[SubscriptionUpdated]) -> None:
    """New URL, filters or enabled flag; enabling clears the reason it was disabled."""
    updated = event.payload
    values: dict[str, Any] = {
        "url": updated.url,
        "event_types": updated.event_types,
        "enabled": updated.enabled,
        "description": updated.description,
        "updated_at": event.envelope.recorded_at,
    }
    if updated.enabled:
        values["disabled_reason"] = None
    await uow.conn.execute(
        subscriptions.update()
        .where(subscriptions.c.subscription_id == updated.subscription_id)
        .values(**values)
    )


@projection.on(SubscriptionDeleted)
async def subscription_deleted(uow: UnitOfWork, event: Event[SubscriptionDeleted]) -> None:
    """A tombstone: the subscription receives nothing recorded from now on."""
    await uow.conn.execute(
        subscriptions.update()
        .where(subscriptions.c.subscription_id == event.payload.subscription_id)
        .values(enabled=False, deleted_at=event.envelope.recorded_at)
    )


@projection.on(SecretRotated)
async def secret_rotated(uow: UnitOfWork, event: Event[SecretRotated]) -> None:
    """Which secret signs now."""
    await uow.conn.execute(
        subscriptions.update()
        .where(subscriptions.c.subscription_id == event.payload.subscription_id)
        .values(secret_fingerprint=event.payload.secret_fingerprint)
    )


@projection.on(EndpointDisabled)
async def endpoint_disabled(uow: UnitOfWork, event: Event[EndpointDisabled]) -> None:
    """The endpoint gets nothing until someone enables it again."""
    await uow.conn.execute(
        subscriptions.update()
        .where(subscriptions.c.subscription_id == event.payload.subscription_id)
        .values(enabled=False, disabled_reason=event.payload.reason)
    )


@projection.on(ReplayRequested)
async def replay_requested(uow: UnitOfWork, event: Event[ReplayRequested]) -> None:
    """A new delivery for every event the subscription was due in the range."""
    replay = event.payload
    rows = (
        await uow.conn.execute(
            sa.select(deliveries).where(
                deliveries.c.subscription_id == replay.subscription_id,
                deliveries.c.replay_id.is_(None),
                deliveries.c.body.is_not(None),
                deliveries.c.occurred_at >= replay.since,
                deliveries.c.occurred_at < replay.until,
            )
        )
    ).all()
    if not rows:
        return
    copies = [
        {
            "delivery_id": replay_delivery_id(replay.replay_id, row.event_id),
            **{c: getattr(row, c) for c in _SCHEDULE_COLUMNS},
            "replay_id": replay.replay_id,
            "due_at": event.envelope.recorded_at,
            "status": "pending",
        }
        for row in rows
    ]
    await _upsert_scheduled(uow.conn, copies)


@projection.on_batch(Delivered, DeliveryFailed)
async def delivery_outcomes(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Deliveries done: accepted by the endpoint (`delivered`) or given up (`failed`)."""
    rows: dict[UUID, dict[str, Any]] = {}
    for event in events:
        done = event.payload
        assert isinstance(done, Delivered | DeliveryFailed)
        delivered = isinstance(done, Delivered)
        rows[done.delivery_id] = {
            "delivery_id": done.delivery_id,
            "subscription_id": done.subscription_id,
            "event_id": done.event_id,
            "event_type": done.event_type,
            "status": "delivered" if delivered else "failed",
            "attempts": done.attempt,
            "status_code": done.status_code,
            "finished_at": done.delivered_at if isinstance(done, Delivered) else done.failed_at,
        }
    await bulk_upsert(
        uow.conn,
        deliveries,
        list(rows.values()),
        conflict=["delivery_id"],
        update=["status", "attempts", "status_code", "finished_at"],
    )


@projection.on(MailSent)
async def mail_sent(uow: UnitOfWork, event: Event[MailSent]) -> None:
    """The mail is done."""
    sent = event.payload
    statement = pg_insert(mails).values(
        mail_id=sent.mail_id,
        event_id=sent.event_id,
        kind=sent.kind,
        message_id=sent.message_id,
        status=sent.outcome,
        sent_at=sent.sent_at,
    )
    await uow.conn.execute(
        statement.on_conflict_do_update(
            index_elements=[mails.c.mail_id],
            set_={"status": statement.excluded.status, "sent_at": statement.excluded.sent_at},
        )
    )


@projection.on(MailFailed)
async def mail_failed(uow: UnitOfWork, event: Event[MailFailed]) -> None:
    """The mail is done: given up after its last failed submission."""
    failed = event.payload
    statement = pg_insert(mails).values(
        mail_id=failed.mail_id,
        event_id=failed.event_id,
        kind=failed.kind,
        message_id=failed.message_id,
        status="failed",
    )
    await uow.conn.execute(
        statement.on_conflict_do_update(
            index_elements=[mails.c.mail_id], set_={"status": statement.excluded.status}
        )
    )
