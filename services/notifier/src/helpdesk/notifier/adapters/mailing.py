"""The mail live loop: claim queued mails of owned partitions, send over SMTP, record it.

Per partition and tick: queued mails due by the watermark are leased (`mail_leases`) in a
claimed transaction, their recipients resolved from the contacts and staff the projection
keeps, and sent outside any transaction; then `notification.mail_sent` is emitted (its id
derived from the mail's) while the lease is still held, which marks the row sent. A failed
submission is counted (`helpdesk_mail_failures`) and retried with exponential back-off
(`MailRetryPolicy`); after the last attempt the mail is given up with
`notification.mail_failed`. The same Message-ID lets a
receiver recognise a resend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import aiosmtplib
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.mail import Mailer, MailRenderer, Recipient
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import contacts, mail_leases, mails, staff
from helpdesk.notifier.domain.messages import MailIntent, intent_from_document
from helpdesk.notifier.domain.retry import MailRetryPolicy, next_mail_attempt
from helpdesk.shared.consumer import UnitOfWork
from helpdesk.shared.context import Clock, Context, system_actor
from helpdesk.shared.contracts.notifications import MailFailed, MailSent
from helpdesk.shared.events import derive_event_id
from helpdesk.shared.live import LiveContext

log = logging.getLogger(__name__)

BATCH = 50
LEASE = timedelta(minutes=2)
_CONTACT_ROLE = {"key_contacts": "key_contact", "billing_contacts": "billing"}


async def recipients_of(conn: AsyncConnection, intent: MailIntent) -> list[Recipient]:
    """The addresses an intent's recipient role stands for, now."""
    if intent.recipient == "person":
        return [Recipient(email=str(intent.context["event"]["email"]))]
    if intent.recipient == "ticket_contact":
        if intent.contact_id is None:
            return []
        query = sa.select(contacts.c.name, contacts.c.email).where(
            contacts.c.contact_id == intent.contact_id
        )
    elif intent.recipient == "account_manager":
        query = sa.select(staff.c.name, staff.c.email).where(staff.c.staff_id == intent.staff_id)
    elif intent.recipient == "managers":
        query = (
            sa.select(staff.c.name, staff.c.email)
            .where(staff.c.role == "manager")
            .order_by(staff.c.email)
        )
    else:
        role = _CONTACT_ROLE[intent.recipient]
        query = (
            sa.select(contacts.c.name, contacts.c.email)
            .where(contacts.c.account_id == intent.account_id, contacts.c.roles.any(role))
            .order_by(contacts.c.email)
        )
    return [Recipient(email=row.email, name=row.name) for row in (await conn.execute(query))]


@dataclass(frozen=True)
class FailedMail:
    """A mail whose submission just failed, and what its outcome event names."""

    mail_id: UUID
    event_id: UUID
    account_id: UUID
    intent: MailIntent


class SubmissionFailures:
    """Failed SMTP submissions: counted, backed off, and given up by the retry policy.

    The failures so far and the first failure's instant are kept with the mail's lease, so a
    restart does not reset them; giving up is `notification.mail_failed`, which marks the mail
    done like `notification.mail_sent` does.
    """

    def __init__(self, policy: MailRetryPolicy, clock: Clock, registry: CollectorRegistry) -> None:
        self._policy = policy
        self._clock = clock
        self.counter = Counter(
            "helpdesk_mail_failures",
            "Failed SMTP submissions, by what followed: retry (backed off) or give_up.",
            ["verdict"],
            registry=registry,
        )
        for verdict in ("retry", "give_up"):
            self.counter.labels(verdict)  # both series exist from the start, at 0

    async def record(self, uow: UnitOfWork, mail: FailedMail, error: BaseException) -> None:
        """Back the mail off after a failed submission, or give it up, in the claim `uow`."""
        now = self._clock()
        state = (
            await uow.conn.execute(
                sa.select(mail_leases.c.failures, mail_leases.c.first_failed_at)
                .where(mail_leases.c.mail_id == mail.mail_id)
                .with_for_update()
            )
        ).first()
        attempt = (state.failures if state else 0) + 1
        first_failed_at = (state.first_failed_at if state else None) or now
        retry_at = next_mail_attempt(
            self._policy, attempt=attempt, first_failed_at=first_failed_at, now=now
        )
        reason = f"{type(error).__name__}: {error}"[:500]
        statement = pg_insert(mail_leases).values(
            mail_id=mail.mail_id,
            not_before=retry_at or now,
            failures=attempt,
            first_failed_at=first_failed_at,
        )
        await uow.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[mail_leases.c.mail_id],
                set_={
                    c: statement.excluded[c] for c in ("not_before", "failures", "first_failed_at")
                },
            )
        )
        if retry_at is not None:
            log.warning(
                "mail %s not sent (failure %d), retrying at %s: %s",
                mail.mail_id,
                attempt,
                retry_at,
                reason,
            )
            self.counter.labels("retry").inc()
            return
        log.error("mail %s given up after %d failed submissions: %s", mail.mail_id, attempt, reason)
        self.counter.labels("give_up").inc()
        failed = MailFailed(
            mail_id=mail.mail_id,
            event_id=mail.event_id,
            kind=mail.intent.kind,
            message_id=mail.intent.message_id,
            attempts=attempt,
            reason=reason,
            first_failed_at=first_failed_at,
            failed_at=now,
        )
        context = Context(system_actor("notifier"), now, now)
        event_id = derive_event_id(mail.mail_id, "failed")
        await uow.emit(
            [
                context.event(
                    failed, account_id=mail.account_id, event_id=event_id, item=mail.mail_id
                )
            ]
        )


class MailDeliveries:
    """The live loop sending mails (one per notifier replica)."""

    def __init__(
        self, settings: NotifierSettings, clock: Clock, failures: SubmissionFailures
    ) -> None:
        self._settings = settings
        renderer = MailRenderer(globals_={"portal_url": settings.portal_url.rstrip("/")})
        self._mailer = Mailer(settings.smtp, renderer)
        self._clock = clock
        self._failures = failures

    async def __call__(self, live: LiveContext) -> datetime | None:
        """One tick over every owned partition; returns when the next mail is due."""
        for partition in live.partitions:
            await self._send_partition(live, partition)
        return await self._next_due(live)

    async def _send_partition(self, live: LiveContext, partition: int) -> None:
        now = self._clock()
        ready = sa.or_(_leased_until().is_(None), _leased_until() <= now)
        async with live.engine.connect() as conn:
            ids = (
                await conn.scalars(
                    sa.select(mails.c.mail_id)
                    .where(
                        mails.c.partition == partition,
                        mails.c.status == "queued",
                        mails.c.created_at <= live.watermark(partition),
                        ready,
                    )
                    .order_by(mails.c.created_at)
                    .limit(BATCH)
                )
            ).all()
        if not ids:
            return
        until = now + LEASE
        async with live.claim([partition]) as uow:
            await lease_mails(uow.conn, ids, until, only_if_free_at=now)
            leased = (
                await uow.conn.execute(
                    sa.select(mails).where(
                        mails.c.mail_id.in_(ids),
                        mails.c.status == "queued",
                        _leased_until() == until,
                    )
                )
            ).all()
        for row in leased:
            await self._send_one(live, partition, row, until)

    async def _send_one(self, live: LiveContext, partition: int, row: Any, until: datetime) -> None:
        intent = intent_from_document(row.intent)
        async with live.engine.connect() as conn:
            recipients = await recipients_of(conn, intent)
        try:
            await self._mailer.send(intent, recipients, date=self._clock())
        except (aiosmtplib.SMTPException, OSError) as exc:
            async with live.claim([partition]) as uow:
                await self._failures.record(
                    uow, FailedMail(row.mail_id, row.event_id, row.account_id, intent), exc
                )
            return
        now = self._clock()
        sent = MailSent(
            mail_id=row.mail_id,
            event_id=row.event_id,
            kind=intent.kind,
            message_id=intent.message_id,
            recipients=len(recipients),
            outcome="sent" if recipients else "no_recipient",
            sent_at=now,
        )
        context = Context(system_actor("notifier"), now, now)
        event = context.event(
            sent,
            account_id=row.account_id,
            event_id=derive_event_id(row.mail_id, "sent"),
            item=row.mail_id,
        )
        await record_sent(live, row.mail_id, until, event)

    async def _next_due(self, live: LiveContext) -> datetime | None:
        at = sa.func.greatest(
            mails.c.created_at, sa.func.coalesce(_leased_until(), mails.c.created_at)
        )
        async with live.engine.connect() as conn:
            value: datetime | None = await conn.scalar(
                sa.select(sa.func.min(at)).where(
                    mails.c.partition.in_(live.partitions), mails.c.status == "queued"
                )
            )
        return value


async def record_sent(live: LiveContext, mail_id: UUID, until: datetime, sent: Any) -> None:
    """Emit `sent` (a `notification.mail_sent`) if this tick still holds the mail's lease.

    The lease, not the partition, guards it: a replica that lost the partition while the mail
    was out still records it, so the new owner does not send it again.
    """
    async with live.engine.begin() as conn:
        held = await conn.scalar(
            sa.select(mail_leases.c.mail_id)
            .where(mail_leases.c.mail_id == mail_id, mail_leases.c.not_before == until)
            .with_for_update()
        )
        if held is not None:
            await UnitOfWork(conn, live.tables, live.projection, live.metrics).emit([sent])


def _leased_until() -> Any:
    """A mail's lease or back-off instant (NULL when it has none)."""
    return (
        sa.select(mail_leases.c.not_before)
        .where(mail_leases.c.mail_id == mails.c.mail_id)
        .scalar_subquery()
    )


async def lease_mails(
    conn: AsyncConnection,
    ids: Sequence[Any],
    until: datetime,
    *,
    only_if_free_at: datetime | None = None,
) -> None:
    """Lease (or back off) mails until `until`; with `only_if_free_at`, only those free then."""
    stmt = pg_insert(mail_leases).values([{"mail_id": i, "not_before": until} for i in ids])
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[mail_leases.c.mail_id],
            set_={"not_before": stmt.excluded.not_before},
            where=(
                mail_leases.c.not_before <= only_if_free_at if only_if_free_at is not None else None
            ),
        )
    )
