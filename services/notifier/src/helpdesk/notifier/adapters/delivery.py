"""The webhook live loop: claim due deliveries of owned partitions, send, record the outcome.

Per partition and tick: read the due deliveries (pending, the subscription enabled, due by the
partition's watermark, not leased, and no earlier delivery of the same ticket to the same
endpoint still pending: a ticket's events arrive in order), lease them in a claimed
transaction, POST them outside any transaction (`webhook-id` = the delivery id, stable across
attempts), then, in a transaction that holds each delivery's lease (a lease is taken only if
the delivery is free and no attempt was recorded since it was read), log each attempt and emit
`notification.delivered`, schedule the retry, or emit `notification.failed` /
`notification.endpoint_disabled` as `retry.decide` says. Recording under the lease rather than
the partition means a replica that loses the partition mid-send still records its requests,
so the new owner does not repeat them. The endpoint's failure clock is kept in
`endpoint_state`, which a rebuild does not reset.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import (
    attempts,
    deliveries,
    delivery_state,
    endpoint_state,
    subscription_secrets,
    subscriptions,
)
from helpdesk.notifier.adapters.webhooks import AttemptRecord, WebhookMessage, WebhookSender
from helpdesk.notifier.domain.retry import Decision, Verdict, decide
from helpdesk.notifier.domain.signing import SigningSecrets
from helpdesk.shared.consumer import UnitOfWork
from helpdesk.shared.context import Clock, Context, system_actor
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT
from helpdesk.shared.contracts.notifications import Delivered, DeliveryFailed, EndpointDisabled
from helpdesk.shared.events import derive_event_id
from helpdesk.shared.live import LiveContext

BATCH = 100
CONCURRENCY = 16
PARTITIONS_AT_ONCE = 4


@dataclass(frozen=True)
class DueDelivery:
    """A leased delivery and what sending it needs."""

    delivery_id: UUID
    subscription_id: UUID
    subscription_account: UUID | None
    event_id: UUID
    event_type: str
    account_id: UUID
    url: str
    body: bytes
    attempts: int  # made before this one


def _sendable() -> Any:
    """Pending deliveries of live subscriptions, not blocked by an earlier one of the ticket."""
    earlier = deliveries.alias("earlier")
    return (
        sa.select(
            deliveries.c.delivery_id,
            deliveries.c.subscription_id,
            deliveries.c.event_id,
            deliveries.c.event_type,
            deliveries.c.account_id,
            deliveries.c.body,
            subscriptions.c.url,
            subscriptions.c.account_id.label("subscription_account"),
            sa.func.coalesce(delivery_state.c.attempts, 0).label("attempts"),
            sa.func.coalesce(delivery_state.c.next_attempt_at, deliveries.c.due_at).label("due"),
            delivery_state.c.claimed_until,
        )
        .join(
            subscriptions,
            sa.and_(
                subscriptions.c.subscription_id == deliveries.c.subscription_id,
                subscriptions.c.enabled,
                subscriptions.c.deleted_at.is_(None),
            ),
        )
        .outerjoin(delivery_state, delivery_state.c.delivery_id == deliveries.c.delivery_id)
        .where(
            deliveries.c.status == "pending",
            deliveries.c.body.is_not(None),
            ~sa.exists().where(
                earlier.c.subscription_id == deliveries.c.subscription_id,
                earlier.c.ticket_id == deliveries.c.ticket_id,
                earlier.c.status == "pending",
                earlier.c.replay_id.is_not_distinct_from(deliveries.c.replay_id),
                earlier.c.source_offset < deliveries.c.source_offset,
            ),
        )
    )


class WebhookDeliveries:
    """The live loop delivering webhooks (one per notifier replica)."""

    def __init__(self, settings: NotifierSettings, clock: Clock) -> None:
        self._settings = settings
        self._policy = settings.retry_policy
        self._clock = clock
        self._lease = timedelta(seconds=settings.webhook_timeout_seconds * 2 + 30)
        # One connection pool for the replica's life, and one cap on requests in flight over
        # every partition; partitions are worked on side by side, so one partition's database
        # round trips overlap another's requests.
        self._sender: WebhookSender | None = None
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._partitions = asyncio.Semaphore(PARTITIONS_AT_ONCE)

    async def __call__(self, live: LiveContext) -> datetime | None:
        """One tick over every owned partition; returns when the next delivery is due."""
        outcomes = await asyncio.gather(
            *(self._deliver_partition(live, p) for p in live.partitions), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the others finished: their outcomes are recorded
        return await self._next_due(live)

    async def aclose(self) -> None:
        """Close the connection pool, once the loop has stopped."""
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    def _webhook_sender(self) -> WebhookSender:
        if self._sender is None:
            self._sender = WebhookSender(
                allow=self._settings.allow_list,
                timeout=self._settings.webhook_timeout_seconds,
                clock=self._clock,
            )
        return self._sender

    async def _deliver_partition(self, live: LiveContext, partition: int) -> None:
        async with self._partitions:
            await self._deliver_batch(live, partition)

    async def _deliver_batch(self, live: LiveContext, partition: int) -> None:
        now = self._clock()
        query = (
            _sendable()
            .where(
                deliveries.c.partition == partition,
                sa.func.coalesce(delivery_state.c.next_attempt_at, deliveries.c.due_at)
                <= live.watermark(partition),
                sa.or_(
                    delivery_state.c.claimed_until.is_(None),
                    delivery_state.c.claimed_until <= now,
                ),
            )
            .order_by(deliveries.c.due_at, deliveries.c.source_offset)
            .limit(BATCH)
        )
        async with live.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        until = now + self._lease
        async with live.claim([partition]) as uow:
            leased = await self._lease_rows(uow.conn, rows, now, until)
        if not leased:
            return
        records = await self._send_all(live, leased)
        # The lease, not the partition, guards the outcome: a replica that lost the partition
        # while its requests were out still records what they did, so that the new owner does
        # not send them again once the lease runs out.
        async with live.engine.begin() as conn:
            uow = UnitOfWork(conn, live.tables, live.projection, live.metrics)
            await self._record_all(uow, leased, records, until)

    async def _lease_rows(
        self, conn: AsyncConnection, rows: Sequence[Any], now: datetime, until: datetime
    ) -> list[DueDelivery]:
        # `attempts` carries the count read with the row: the lease is taken only if the
        # delivery is free and no attempt was recorded since (else another tick sent it).
        statement = pg_insert(delivery_state)
        claimed = await conn.execute(
            statement.values(
                [
                    {"delivery_id": r.delivery_id, "attempts": r.attempts, "claimed_until": until}
                    for r in rows
                ]
            )
            .on_conflict_do_update(
                index_elements=[delivery_state.c.delivery_id],
                set_={"claimed_until": until},
                where=sa.and_(
                    sa.or_(
                        delivery_state.c.claimed_until.is_(None),
                        delivery_state.c.claimed_until <= now,
                    ),
                    delivery_state.c.attempts == statement.excluded.attempts,
                ),
            )
            .returning(delivery_state.c.delivery_id, delivery_state.c.attempts)
        )
        made = {row.delivery_id: int(row.attempts) for row in claimed}
        return [
            DueDelivery(
                delivery_id=row.delivery_id,
                subscription_id=row.subscription_id,
                subscription_account=row.subscription_account,
                event_id=row.event_id,
                event_type=row.event_type,
                account_id=row.account_id,
                url=row.url,
                body=json.dumps(row.body, separators=(",", ":")).encode(),
                attempts=made[row.delivery_id],
            )
            for row in rows
            if row.delivery_id in made
        ]

    async def _send_all(
        self, live: LiveContext, leased: Sequence[DueDelivery]
    ) -> list[AttemptRecord]:
        ids = sorted({d.subscription_id for d in leased})
        async with live.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(subscription_secrets).where(
                        subscription_secrets.c.subscription_id.in_(ids)
                    )
                )
            ).all()
        signing = {
            row.subscription_id: SigningSecrets(row.current, row.previous, row.previous_expires_at)
            for row in stored
        }
        sender = self._webhook_sender()

        async def send(due: DueDelivery) -> AttemptRecord:
            async with self._gate:
                secrets = signing[due.subscription_id].active(self._clock())
                message = WebhookMessage(str(due.delivery_id), due.url, due.body)
                return await sender.send(message, secrets)

        return list(await asyncio.gather(*(send(due) for due in leased)))

    async def _record_all(
        self,
        uow: UnitOfWork,
        leased: Sequence[DueDelivery],
        records: Sequence[AttemptRecord],
        until: datetime,
    ) -> None:
        """Log the attempts of the deliveries still leased by this tick, and their outcomes, in
        a handful of statements whatever the batch size."""
        conn = uow.conn
        held = set(
            await conn.scalars(
                sa.select(delivery_state.c.delivery_id)
                .where(
                    delivery_state.c.delivery_id.in_([d.delivery_id for d in leased]),
                    delivery_state.c.claimed_until == until,
                )
                .order_by(delivery_state.c.delivery_id)
                .with_for_update()
            )
        )
        # A lease that ran out: another tick may have leased and sent that delivery again.
        done = [(d, r) for d, r in zip(leased, records, strict=True) if d.delivery_id in held]
        if not done:
            return
        endpoints = sorted({d.subscription_id for d, _ in done})
        rows = await conn.execute(
            sa.select(endpoint_state.c.subscription_id, endpoint_state.c.failing_since)
            .where(endpoint_state.c.subscription_id.in_(endpoints))
            .order_by(endpoint_state.c.subscription_id)
            .with_for_update()
        )
        failing: dict[UUID, datetime | None] = dict.fromkeys(endpoints)
        failing.update({row.subscription_id: row.failing_since for row in rows})
        now = self._clock()
        logged: list[dict[str, Any]] = []
        states: list[dict[str, Any]] = []
        events: list[Any] = []
        for due, record in done:
            attempt = due.attempts + 1
            decision = decide(
                record.outcome,
                attempt=attempt,
                now=now,
                first_failure_at=failing[due.subscription_id],
                jitter_draw=random.random(),  # noqa: S311 - jitter, not security
                policy=self._policy,
            )
            # A disabled endpoint starts a fresh clock when someone enables it again.
            failing[due.subscription_id] = (
                None if decision.verdict == Verdict.DISABLE_ENDPOINT else decision.first_failure_at
            )
            logged.append(
                {
                    "subscription_id": due.subscription_id,
                    "delivery_id": due.delivery_id,
                    "event_id": due.event_id,
                    "event_type": due.event_type,
                    "attempt": attempt,
                    "started_at": record.started_at,
                    "latency_ms": record.latency_ms,
                    "status_code": record.status_code,
                    "response_excerpt": record.response_excerpt,
                    "error": record.error,
                    "verdict": str(decision.verdict),
                    "next_attempt_at": decision.next_attempt_at,
                }
            )
            states.append(
                {
                    "delivery_id": due.delivery_id,
                    "attempts": attempt,
                    "next_attempt_at": decision.next_attempt_at or now,
                    "claimed_until": None,
                }
            )
            events += self._outcome_events(due, record, decision, attempt, now)
        await conn.execute(attempts.insert(), logged)
        endpoint_rows = [{"subscription_id": k, "failing_since": failing[k]} for k in endpoints]
        statement = pg_insert(endpoint_state)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[endpoint_state.c.subscription_id],
                set_={"failing_since": statement.excluded.failing_since},
            ),
            endpoint_rows,
        )
        await _save_states(conn, states)
        await uow.emit(events)

    def _outcome_events(
        self,
        due: DueDelivery,
        record: AttemptRecord,
        decision: Decision,
        attempt: int,
        now: datetime,
    ) -> list[Any]:
        context = Context(system_actor("notifier"), now, now)
        if decision.verdict == Verdict.DELIVERED:
            assert record.status_code is not None
            delivered = Delivered(
                delivery_id=due.delivery_id,
                subscription_id=due.subscription_id,
                event_id=due.event_id,
                event_type=due.event_type,
                attempt=attempt,
                status_code=record.status_code,
                latency_ms=record.latency_ms,
                delivered_at=record.started_at,
            )
            event_id = derive_event_id(due.delivery_id, "delivered")
            return [
                context.event(
                    delivered, account_id=due.account_id, event_id=event_id, item=due.delivery_id
                )
            ]
        if decision.verdict == Verdict.GIVE_UP:
            failed = DeliveryFailed(
                delivery_id=due.delivery_id,
                subscription_id=due.subscription_id,
                event_id=due.event_id,
                event_type=due.event_type,
                attempt=attempt,
                status_code=record.status_code,
                reason=decision.reason[:500],
                failed_at=now,
            )
            event_id = derive_event_id(due.delivery_id, "failed")
            return [
                context.event(
                    failed, account_id=due.account_id, event_id=event_id, item=due.delivery_id
                )
            ]
        if decision.verdict == Verdict.DISABLE_ENDPOINT:
            disabled = EndpointDisabled(
                subscription_id=due.subscription_id,
                delivery_id=due.delivery_id,
                reason=decision.reason[:500],
                failing_since=decision.first_failure_at,
                disabled_at=now,
            )
            event_id = derive_event_id(due.delivery_id, f"endpoint_disabled:{attempt}")
            account = due.subscription_account or PROVIDER_ACCOUNT
            return [
                context.event(disabled, account_id=account, event_id=event_id, item=due.delivery_id)
            ]
        return []

    async def _next_due(self, live: LiveContext) -> datetime | None:
        now = self._clock()
        due = sa.func.coalesce(delivery_state.c.next_attempt_at, deliveries.c.due_at)
        leased = sa.case(
            (delivery_state.c.claimed_until > now, delivery_state.c.claimed_until), else_=due
        )
        query = _sendable().where(deliveries.c.partition.in_(live.partitions))
        inner = query.with_only_columns(sa.func.greatest(due, leased).label("at")).subquery()
        async with live.engine.connect() as conn:
            at: datetime | None = await conn.scalar(sa.select(sa.func.min(inner.c.at)))
        return at


async def _save_states(conn: AsyncConnection, states: list[dict[str, Any]]) -> None:
    """The retry state after an attempt, for many deliveries in one statement."""
    values = sa.values(
        sa.column("delivery_id", delivery_state.c.delivery_id.type),
        sa.column("attempts", sa.Integer),
        sa.column("next_attempt_at", delivery_state.c.next_attempt_at.type),
        name="recorded",
    ).data([(s["delivery_id"], s["attempts"], s["next_attempt_at"]) for s in states])
    await conn.execute(
        delivery_state.update()
        .where(delivery_state.c.delivery_id == values.c.delivery_id)
        .values(
            attempts=values.c.attempts,
            next_attempt_at=values.c.next_attempt_at,
            claimed_until=None,
        )
    )
