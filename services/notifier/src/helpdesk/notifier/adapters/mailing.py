"""The mail live loop: claim queued mails of owned partitions, send over SMTP, record it.

Per partition and tick: queued mails due by the watermark are leased (`mail_leases`) in a
claimed transaction, their recipients resolved from the contacts and staff the projection
keeps, and sent outside any transaction; then `notification.mail_sent` is emitted (its id
derived from the mail's), which marks the row sent. A failed submission is retried after
`mail_retry_seconds`; the same Message-ID lets a receiver recognise a resend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.mail import Mailer, Recipient
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import contacts, mail_leases, mails, staff
from helpdesk.notifier.domain.messages import MailIntent, intent_from_document
from helpdesk.shared.context import Clock, Context, system_actor
from helpdesk.shared.contracts.notifications import MailSent
from helpdesk.shared.events import derive_event_id
from helpdesk.shared.live import LiveContext

log = logging.getLogger(__name__)

BATCH = 50
LEASE = timedelta(minutes=2)
_CONTACT_ROLE = {"key_contacts": "key_contact", "billing_contacts": "billing"}


async def recipients_of(conn: AsyncConnection, intent: MailIntent) -> list[Recipient]:
    """The addresses an intent's recipient role stands for, now."""
    if intent.recipient == "ticket_contact":
        if intent.contact_id is None:
            return []
        query = sa.select(contacts.c.name, contacts.c.email).where(
            contacts.c.contact_id == intent.contact_id
        )
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


class MailDeliveries:
    """The live loop sending mails (one per notifier replica)."""

    def __init__(self, settings: NotifierSettings, clock: Clock) -> None:
        self._settings = settings
        self._mailer = Mailer(settings.smtp)
        self._clock = clock

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
        async with live.claim([partition]) as uow:
            await _lease(uow.conn, ids, now + LEASE, only_if_free_at=now)
            leased = (
                await uow.conn.execute(
                    sa.select(mails).where(
                        mails.c.mail_id.in_(ids),
                        mails.c.status == "queued",
                        _leased_until() == now + LEASE,
                    )
                )
            ).all()
        for row in leased:
            await self._send_one(live, partition, row)

    async def _send_one(self, live: LiveContext, partition: int, row: Any) -> None:
        intent = intent_from_document(row.intent)
        async with live.engine.connect() as conn:
            recipients = await recipients_of(conn, intent)
        try:
            await self._mailer.send(intent, recipients, date=self._clock())
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail %s not sent, retrying later: %s", row.mail_id, exc)
            retry_at = self._clock() + timedelta(seconds=self._settings.mail_retry_seconds)
            async with live.claim([partition]) as uow:
                await _lease(uow.conn, [row.mail_id], retry_at)
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
            sent, account_id=row.account_id, event_id=derive_event_id(row.mail_id, "sent")
        )
        async with live.claim([partition]) as uow:
            await uow.emit([event])

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


def _leased_until() -> Any:
    """A mail's lease or back-off instant (NULL when it has none)."""
    return (
        sa.select(mail_leases.c.not_before)
        .where(mail_leases.c.mail_id == mails.c.mail_id)
        .scalar_subquery()
    )


async def _lease(
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
