"""The notifier's HTTP routes: webhook subscriptions, their deliveries, and ticket mails."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import (
    attempts,
    deliveries,
    mails,
    replay_requests,
    subscription_secrets,
    subscriptions,
    tickets,
)
from helpdesk.notifier.adapters.webhooks import WebhookMessage, WebhookSender, system_resolver
from helpdesk.notifier.domain.filters import FILTER_PATTERN, InvalidFilterError, validate_filter
from helpdesk.notifier.domain.signing import SigningSecrets, new_secret
from helpdesk.notifier.domain.ssrf import TargetRejectedError, check_addresses, check_url
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import Context, new_id
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT
from helpdesk.shared.contracts.notifications import (
    ReplayRequested,
    SecretRotated,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionUpdated,
)
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.events import Actor
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.validation import Instant
from helpdesk.shared.web import Problem, problem_doc

MANAGING_STAFF = frozenset({"admin", "manager"})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: An http(s) URL with a host and no credentials, as declared (`_checked_url` checks it, and
#: where the host resolves).
URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$"
#: An event type, a `namespace.*` wildcard or `*` (declared; `_filters` checks it).
EventFilter = Annotated[str, Field(json_schema_extra={"pattern": FILTER_PATTERN})]


class SubscriptionCreate(_Body):
    """POST /v1/subscriptions."""

    url: str = Field(min_length=1, max_length=2000, json_schema_extra={"pattern": URL_PATTERN})
    event_types: list[EventFilter] = Field(min_length=1, max_length=100)
    enabled: bool = True
    description: str = Field(default="", max_length=500)
    account_id: UUID | None = None  # staff: None = provider-wide; a contact: its own account


class SubscriptionPatch(_Body):
    """PATCH /v1/subscriptions/{id}: only the fields given change."""

    url: str | None = Field(
        default=None, min_length=1, max_length=2000, json_schema_extra={"pattern": URL_PATTERN}
    )
    event_types: list[EventFilter] | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class ReplayRequest(_Body):
    """POST /v1/subscriptions/{id}/replay: events that occurred in [from, to), both RFC 3339
    instants between 1970 and now (`helpdesk.shared.validation.Instant`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    since: Instant = Field(alias="from")
    until: Instant = Field(alias="to")


def fingerprint(secret: str) -> str:
    """The first 16 hex digits of a secret's SHA-256 (what the stream carries)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _actor(caller: Principal) -> Actor:
    if caller.role == "contact":
        return Actor(type="contact", id=caller.key_id)
    return Actor(type="admin" if caller.role == "admin" else "staff", id=caller.key_id)


def _context(runtime: ServiceRuntime, caller: Principal) -> Context:
    now = runtime.clock()
    return Context(_actor(caller), now, now)


def _invalid(field: str, reason: str) -> Problem:
    return Problem(
        422, "Invalid request", f"{field}: {reason}", errors=[{"field": field, "reason": reason}]
    )


def _filters(patterns: list[str]) -> list[str]:
    try:
        return sorted({validate_filter(p) for p in patterns})
    except InvalidFilterError as exc:
        raise _invalid("event_types", str(exc)) from exc


async def _checked_url(url: str, settings: NotifierSettings) -> str:
    """The URL, if the SSRF guard allows it (a host name must resolve to allowed addresses)."""
    allow = settings.allow_list
    try:
        target = check_url(url, allow)
        if target.address is None:
            try:
                async with asyncio.timeout(5):
                    addresses = await system_resolver(target.host, target.port)
            except (OSError, TimeoutError) as exc:
                raise TargetRejectedError(f"{target.host} does not resolve") from exc
            check_addresses(target.host, addresses, allow)
    except TargetRejectedError as exc:
        raise _invalid("url", str(exc)) from exc
    return url.strip()


def _audience_for_create(caller: Principal, wanted: UUID | None) -> UUID | None:
    """The account a new subscription is for (None: provider-wide), or 403."""
    if caller.role in MANAGING_STAFF:
        return wanted
    if caller.role == "contact" and caller.account_id is not None:
        if caller.visibility != "account":
            raise Problem(
                403, "Forbidden", "Only a contact who sees the whole account may subscribe."
            )
        if wanted is not None and wanted != caller.account_id:
            raise Problem(404, "Not Found", "No such account.")
        return caller.account_id
    raise Problem(403, "Forbidden", "Subscriptions are for admins, managers and contacts.")


def _may_see(caller: Principal, row: Any) -> bool:
    if caller.is_staff:
        return True
    return (
        caller.role == "contact"
        and caller.visibility == "account"
        and row.account_id is not None
        and row.account_id == caller.account_id
    )


def _may_manage(caller: Principal, row: Any) -> bool:
    return caller.role in MANAGING_STAFF or (caller.role == "contact" and _may_see(caller, row))


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.subscription_id,
        "account_id": row.account_id,
        "url": row.url,
        "event_types": list(row.event_types),
        "enabled": row.enabled,
        "description": row.description,
        "disabled_reason": row.disabled_reason,
        "secret_fingerprint": row.secret_fingerprint,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def _load(
    runtime: ServiceRuntime,
    caller: Principal,
    subscription_id: UUID,
    conn: AsyncConnection | None = None,
) -> Any:
    """The subscription if the caller may see it, else 404. A route that has just written it
    reads it on `conn`, its own transaction: under an Idempotency-Key that transaction is not
    committed before the answer is stored (docs/adr/0004)."""
    query = sa.select(subscriptions).where(
        subscriptions.c.subscription_id == subscription_id,
        subscriptions.c.deleted_at.is_(None),
    )
    if conn is not None:
        row = (await conn.execute(query)).first()
    else:
        async with runtime.engine.connect() as own:
            row = (await own.execute(query)).first()
    if row is None or not _may_see(caller, row):
        raise Problem(404, "Not Found", "No such subscription.")
    return row


async def _managed(runtime: ServiceRuntime, caller: Principal, subscription_id: UUID) -> Any:
    row = await _load(runtime, caller, subscription_id)
    if not _may_manage(caller, row):
        raise Problem(403, "Forbidden", "Only admins, managers and the account may change it.")
    return row


def _stream_account(row: Any) -> UUID:
    """Subscription events are keyed by its account, so its changes stay in order."""
    return row.account_id if row.account_id is not None else PROVIDER_ACCOUNT


def _attempt_view(row: Any) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "started_at": row.started_at,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "response_excerpt": row.response_excerpt,
        "error": row.error,
        "verdict": row.verdict,
        "next_attempt_at": row.next_attempt_at,
    }


def build_router(settings: NotifierSettings) -> APIRouter:
    """The notifier's routes, configured by its settings."""
    router = APIRouter(prefix="/v1")

    async def _within_replay_limit(
        conn: AsyncConnection, subscription_id: UUID, replay_id: UUID, now: datetime
    ) -> None:
        """Record a replay of the subscription, or answer 429 when it had its hour's share.

        Concurrent replays of one subscription are counted one after the other (the
        subscription's row is locked until the transaction ends)."""
        await conn.execute(
            sa.select(subscriptions.c.subscription_id)
            .where(subscriptions.c.subscription_id == subscription_id)
            .with_for_update()
        )
        hour_ago = now - timedelta(hours=1)
        recent = (
            (
                await conn.execute(
                    sa.select(replay_requests.c.requested_at)
                    .where(
                        replay_requests.c.subscription_id == subscription_id,
                        replay_requests.c.requested_at > hour_ago,
                    )
                    .order_by(replay_requests.c.requested_at)
                )
            )
            .scalars()
            .all()
        )
        if len(recent) >= settings.replays_per_hour:
            wait = recent[len(recent) - settings.replays_per_hour] + timedelta(hours=1) - now
            seconds = max(1, math.ceil(wait.total_seconds()))
            raise Problem(
                429,
                "Too Many Requests",
                f"A subscription may be replayed {settings.replays_per_hour} times an hour; "
                f"retry in {seconds} s.",
                errors=[{"field": "subscription_id", "reason": "replayed too often"}],
                headers={"Retry-After": str(seconds)},
            )
        await conn.execute(
            sa.delete(replay_requests).where(
                replay_requests.c.subscription_id == subscription_id,
                replay_requests.c.requested_at <= hour_ago,
            )
        )
        await conn.execute(
            replay_requests.insert().values(
                replay_id=replay_id, subscription_id=subscription_id, requested_at=now
            )
        )

    @router.post("/subscriptions", status_code=201)
    async def create_subscription(
        body: SubscriptionCreate, runtime: Runtime, caller: Caller
    ) -> dict[str, Any]:
        """Subscribe a URL; the answer shows the `whsec_` secret, once."""
        account_id = _audience_for_create(caller, body.account_id)
        event_types = _filters(body.event_types)
        url = await _checked_url(body.url, settings)
        secret = new_secret(secrets.token_bytes(32))
        subscription_id = new_id()
        created = SubscriptionCreated(
            subscription_id=subscription_id,
            account_id=account_id,
            url=url,
            event_types=event_types,
            enabled=body.enabled,
            description=body.description,
            created_by=caller.key_id,
            secret_fingerprint=fingerprint(secret),
        )
        async with runtime.unit_of_work() as uow:
            await uow.conn.execute(
                subscription_secrets.insert().values(
                    subscription_id=subscription_id, current=secret
                )
            )
            await uow.emit(
                [
                    _context(runtime, caller).event(
                        created, account_id=account_id or PROVIDER_ACCOUNT
                    )
                ]
            )
            row = await _load(runtime, caller, subscription_id, uow.conn)
        return {**_view(row), "secret": secret}

    @router.get("/subscriptions")
    async def list_subscriptions(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
        """The subscriptions the caller may see."""
        query = sa.select(subscriptions).where(subscriptions.c.deleted_at.is_(None))
        if not caller.is_staff:
            if caller.visibility != "account" or caller.account_id is None:
                return []
            query = query.where(subscriptions.c.account_id == caller.account_id)
        async with runtime.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(subscriptions.c.created_at))).all()
        return [_view(row) for row in rows]

    @router.get("/subscriptions/{subscription_id}")
    async def get_subscription(
        subscription_id: UUID, runtime: Runtime, caller: Caller
    ) -> dict[str, Any]:
        """One subscription."""
        return _view(await _load(runtime, caller, subscription_id))

    @router.patch("/subscriptions/{subscription_id}")
    async def update_subscription(
        subscription_id: UUID, body: SubscriptionPatch, runtime: Runtime, caller: Caller
    ) -> dict[str, Any]:
        """Change the URL, filters, description or enabled flag (enabling resumes delivery)."""
        row = await _managed(runtime, caller, subscription_id)
        url = await _checked_url(body.url, settings) if body.url is not None else row.url
        updated = SubscriptionUpdated(
            subscription_id=subscription_id,
            url=url,
            event_types=_filters(body.event_types)
            if body.event_types is not None
            else list(row.event_types),
            enabled=body.enabled if body.enabled is not None else row.enabled,
            description=body.description if body.description is not None else row.description,
        )
        async with runtime.unit_of_work() as uow:
            await uow.emit(
                [_context(runtime, caller).event(updated, account_id=_stream_account(row))]
            )
            return _view(await _load(runtime, caller, subscription_id, uow.conn))

    @router.delete("/subscriptions/{subscription_id}", status_code=204)
    async def delete_subscription(
        subscription_id: UUID, runtime: Runtime, caller: Caller
    ) -> Response:
        """Stop the subscription; what is still pending for it is not sent."""
        row = await _managed(runtime, caller, subscription_id)
        async with runtime.unit_of_work() as uow:
            await uow.conn.execute(
                subscription_secrets.delete().where(
                    subscription_secrets.c.subscription_id == subscription_id
                )
            )
            deleted = SubscriptionDeleted(subscription_id=subscription_id)
            await uow.emit(
                [_context(runtime, caller).event(deleted, account_id=_stream_account(row))]
            )
        return Response(status_code=204)

    @router.post("/subscriptions/{subscription_id}/rotate-secret")
    async def rotate_secret(
        subscription_id: UUID, runtime: Runtime, caller: Caller
    ) -> dict[str, Any]:
        """A new secret, shown once; the old one keeps signing during the overlap."""
        row = await _managed(runtime, caller, subscription_id)
        now = runtime.clock()
        overlap = timedelta(hours=settings.rotation_overlap_hours)
        secret = new_secret(secrets.token_bytes(32))
        async with runtime.unit_of_work() as uow:
            stored = (
                await uow.conn.execute(
                    sa.select(subscription_secrets)
                    .where(subscription_secrets.c.subscription_id == subscription_id)
                    .with_for_update()
                )
            ).one()
            rotated = SigningSecrets(stored.current).rotate(secret, now, overlap)
            await uow.conn.execute(
                subscription_secrets.update()
                .where(subscription_secrets.c.subscription_id == subscription_id)
                .values(
                    current=rotated.current,
                    previous=rotated.previous,
                    previous_expires_at=rotated.previous_expires_at,
                )
            )
            event = SecretRotated(
                subscription_id=subscription_id,
                secret_fingerprint=fingerprint(secret),
                previous_expires_at=rotated.previous_expires_at,
            )
            await uow.emit(
                [_context(runtime, caller).event(event, account_id=_stream_account(row))]
            )
        return {
            "id": subscription_id,
            "secret": secret,
            "previous_expires_at": rotated.previous_expires_at,
        }

    @router.get("/subscriptions/{subscription_id}/deliveries")
    async def list_deliveries(
        subscription_id: UUID,
        runtime: Runtime,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The latest deliveries, newest first, each with every attempt made."""
        await _load(runtime, caller, subscription_id)
        async with runtime.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        deliveries.c.delivery_id,
                        deliveries.c.event_id,
                        deliveries.c.event_type,
                        deliveries.c.replay_id,
                        deliveries.c.status,
                        deliveries.c.occurred_at,
                        deliveries.c.finished_at,
                    )
                    .where(deliveries.c.subscription_id == subscription_id)
                    .order_by(deliveries.c.due_at.desc().nulls_last(), deliveries.c.delivery_id)
                    .limit(limit)
                )
            ).all()
            tried = (
                await conn.execute(
                    sa.select(attempts)
                    .where(attempts.c.subscription_id == subscription_id)
                    .order_by(attempts.c.id)
                )
            ).all()
        by_delivery: dict[UUID, list[Any]] = {}
        for attempt in tried:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        known = {row.delivery_id for row in rows}
        # Test pings have attempts but no delivery row.
        pings = [
            {
                "id": delivery_id,
                "event_id": None,
                "event_type": made[0].event_type,
                "replay_id": None,
                "status": "delivered" if made[-1].verdict == "delivered" else "failed",
                "attempts": [_attempt_view(a) for a in made],
            }
            for delivery_id, made in by_delivery.items()
            if delivery_id not in known
        ]
        listed = [
            {
                "id": row.delivery_id,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "replay_id": row.replay_id,
                "status": row.status,
                "occurred_at": row.occurred_at,
                "finished_at": row.finished_at,
                "attempts": [_attempt_view(a) for a in by_delivery.get(row.delivery_id, [])],
            }
            for row in rows
        ]
        return pings[::-1] + listed

    @router.post(
        "/subscriptions/{subscription_id}/replay",
        status_code=202,
        responses={429: problem_doc("Replayed too often this hour; Retry-After says when")},
    )
    async def replay(
        subscription_id: UUID, body: ReplayRequest, runtime: Runtime, caller: Caller
    ) -> dict[str, Any]:
        """Send again the events of [from, to) the subscription was due, as new deliveries."""
        row = await _managed(runtime, caller, subscription_id)
        if body.since >= body.until:
            raise _invalid("to", "must be after from")
        replay_id = new_id()
        requested = ReplayRequested(
            replay_id=replay_id,
            subscription_id=subscription_id,
            since=body.since,
            until=body.until,
        )
        async with runtime.unit_of_work() as uow:
            await _within_replay_limit(uow.conn, subscription_id, replay_id, runtime.clock())
            await uow.emit(
                [_context(runtime, caller).event(requested, account_id=_stream_account(row))]
            )
            count = await uow.conn.scalar(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.replay_id == replay_id)
            )
        return {"replay_id": replay_id, "deliveries": int(count or 0)}

    @router.post("/subscriptions/{subscription_id}/test")
    async def test_ping(subscription_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
        """Deliver a `notification.test` ping now; the answer is the attempt."""
        row = await _managed(runtime, caller, subscription_id)
        now = runtime.clock()
        async with runtime.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(subscription_secrets).where(
                        subscription_secrets.c.subscription_id == subscription_id
                    )
                )
            ).one()
        signing = SigningSecrets(stored.current, stored.previous, stored.previous_expires_at)
        ping_id = new_id()
        body = {
            "type": "notification.test",
            "timestamp": now.isoformat(),
            "data": {"subscription_id": str(subscription_id), "ping_id": str(ping_id)},
        }
        message = WebhookMessage(str(ping_id), row.url, json.dumps(body).encode())
        async with WebhookSender(
            allow=settings.allow_list,
            timeout=settings.webhook_timeout_seconds,
            clock=runtime.clock,
        ) as sender:
            record = await sender.send(message, signing.active(now))
        verdict = "delivered" if record.succeeded else "failed"
        async with runtime.transaction() as conn:
            await conn.execute(
                pg_insert(attempts).values(
                    subscription_id=subscription_id,
                    delivery_id=ping_id,
                    event_id=None,
                    event_type="notification.test",
                    attempt=1,
                    started_at=record.started_at,
                    latency_ms=record.latency_ms,
                    status_code=record.status_code,
                    response_excerpt=record.response_excerpt,
                    error=record.error,
                    verdict=verdict,
                )
            )
        return {
            "id": ping_id,
            "status": verdict,
            "status_code": record.status_code,
            "latency_ms": record.latency_ms,
            "response_excerpt": record.response_excerpt,
            "error": record.error,
        }

    @router.get("/tickets/{ticket_id}/notifications")
    async def ticket_notifications(
        ticket_id: UUID, runtime: Runtime, caller: Caller
    ) -> list[dict[str, Any]]:
        """The e-mails the notifier owes (or sent) about one ticket, oldest first."""
        async with runtime.engine.connect() as conn:
            ticket = (
                await conn.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id))
            ).first()
            rows = (
                await conn.execute(
                    sa.select(mails)
                    .where(mails.c.ticket_id == ticket_id)
                    .order_by(mails.c.created_at, mails.c.mail_id)
                )
            ).all()
        if ticket is None or not caller.can_see_ticket(ticket.account_id, ticket.contact_id):
            raise Problem(404, "Not Found", "No such ticket.")
        return [
            {
                "id": row.mail_id,
                "event_id": row.event_id,
                "kind": row.kind,
                "recipient": row.recipient_role,
                "recipient_contact_id": row.recipient_contact_id,
                "subject": row.subject,
                "status": row.status,
                "created_at": row.created_at,
                "sent_at": row.sent_at,
            }
            for row in rows
            # Mails to managers are not the customer's business.
            if caller.is_staff or row.recipient_role != "managers"
        ]

    return router
