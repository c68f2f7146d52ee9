"""The managers' daily digest live loop: once a day, each manager gets the tickets at risk or
breached (seed 003: tickets are monitored daily by management).

Managers are the provider's staff with the role `manager`; their rows carry the provider's
partition, so the replica owning it sends the digests, once its watermark has passed the
digest's instant (`digest_due`: `digest_hour` local time in `digest_timezone`). Each
manager's digest of a day has a mail id derived from the manager and the day: it is leased in
a claimed transaction (`mail_leases`), sent outside any transaction, and recorded with
`notification.mail_sent` (or, after the last failed submission, `notification.mail_failed`),
which the projection keeps as the mail's row, so neither a restart, a second replica nor a
rebuild sends it again. A day with nothing at risk sends nothing: its digests are leased
until the next day's instant instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.notifier.adapters.mail import Mailer, Recipient
from helpdesk.notifier.adapters.mailing import (
    LEASE,
    FailedMail,
    SubmissionFailures,
    lease_mails,
    record_sent,
)
from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.adapters.tables import (
    accounts,
    mail_leases,
    mails,
    sla_clocks,
    staff,
    tickets,
)
from helpdesk.notifier.domain.digest import ClockState, digest_due, digest_items, next_digest
from helpdesk.notifier.domain.messages import DigestItem, MailIntent, daily_digest
from helpdesk.shared.context import Context, system_actor
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT
from helpdesk.shared.contracts.notifications import MailSent
from helpdesk.shared.events import derive_event_id
from helpdesk.shared.live import LiveContext


def digest_id(day: date) -> UUID:
    """The id standing for `day`'s digest (the `event_id` of its `mail_sent` events)."""
    return derive_event_id(PROVIDER_ACCOUNT, f"digest:{day.isoformat()}")


def digest_mail_id(staff_id: UUID, day: date) -> UUID:
    """The mail id of one manager's digest of `day`."""
    return derive_event_id(staff_id, f"digest:{day.isoformat()}")


@dataclass(frozen=True)
class OwedDigest:
    """A manager's digest of the day, not sent (nor given up) yet."""

    mail_id: UUID
    recipient: Recipient
    not_before: datetime | None  # its lease or back-off, if any


async def digest_states(conn: AsyncConnection) -> list[ClockState]:
    """The response and resolution clocks of open tickets' current cycle that were warned about
    or breached."""
    query = (
        sa.select(
            tickets.c.number,
            tickets.c.subject,
            sa.func.coalesce(accounts.c.name, "").label("account_name"),
            sa.func.coalesce(sla_clocks.c.priority, tickets.c.priority).label("priority"),
            sla_clocks.c.kind,
            sla_clocks.c.due_at,
            sla_clocks.c.warned_at.is_not(None).label("warned"),
            sla_clocks.c.breached_at.is_not(None).label("breached"),
            sla_clocks.c.met_at.is_not(None).label("met"),
            sla_clocks.c.retracted_at.is_not(None).label("retracted"),
            tickets.c.closed,
        )
        .select_from(
            sla_clocks.join(
                tickets,
                sa.and_(
                    tickets.c.ticket_id == sla_clocks.c.ticket_id,
                    tickets.c.cycle == sla_clocks.c.cycle,
                ),
            ).outerjoin(accounts, accounts.c.account_id == tickets.c.account_id)
        )
        .where(
            sa.not_(tickets.c.closed),
            sa.or_(sla_clocks.c.warned_at.is_not(None), sla_clocks.c.breached_at.is_not(None)),
        )
    )
    return [
        ClockState(
            number=row.number,
            subject=row.subject,
            account_name=row.account_name,
            priority=row.priority,
            clock=row.kind,
            due_at=row.due_at,
            warned=row.warned,
            breached=row.breached,
            met=row.met,
            ticket_closed=row.closed,
            retracted=row.retracted,
        )
        for row in await conn.execute(query)
    ]


class DailyDigests:
    """The live loop sending the managers' daily digest (one per notifier replica)."""

    def __init__(self, settings: NotifierSettings, failures: SubmissionFailures) -> None:
        self._settings = settings
        self._zone = settings.digest_zone
        self._mailer = Mailer(settings.smtp)
        self._failures = failures

    async def __call__(self, live: LiveContext) -> datetime | None:
        """Send the day's digests owed on owned partitions; returns when to look again."""
        hour = self._settings.digest_hour
        day, at = digest_due(live.now, hour, self._zone)
        wake = next_digest(day, hour, self._zone)
        for partition in live.partitions:
            owed = await self._owed(live, partition, day)
            if not owed:
                continue
            if live.watermark(partition) < at:
                wake = min(wake, at)  # the projection is not current up to the digest yet
                continue
            ready = [o for o in owed if o.not_before is None or o.not_before <= live.now]
            if ready:
                await self._send(live, partition, day, ready)
            later = [o.not_before for o in owed if o.not_before and o.not_before > live.now]
            wake = min([wake, *later])
        return wake

    async def _owed(self, live: LiveContext, partition: int, day: date) -> list[OwedDigest]:
        async with live.engine.connect() as conn:
            managers = (
                await conn.execute(
                    sa.select(staff.c.staff_id, staff.c.name, staff.c.email).where(
                        staff.c.role == "manager", staff.c.partition == partition
                    )
                )
            ).all()
            if not managers:
                return []
            ids = {digest_mail_id(m.staff_id, day): m for m in managers}
            done = set(
                await conn.scalars(
                    sa.select(mails.c.mail_id).where(
                        mails.c.mail_id.in_(ids), mails.c.status != "queued"
                    )
                )
            )
            leased = await conn.execute(
                sa.select(mail_leases.c.mail_id, mail_leases.c.not_before).where(
                    mail_leases.c.mail_id.in_(ids)
                )
            )
            leases = {row.mail_id: row.not_before for row in leased}
        return [
            OwedDigest(mail_id, Recipient(row.email, row.name), leases.get(mail_id))
            for mail_id, row in sorted(ids.items(), key=lambda item: item[1].email)
            if mail_id not in done
        ]

    async def _send(
        self, live: LiveContext, partition: int, day: date, ready: Sequence[OwedDigest]
    ) -> None:
        now = live.now
        until = now + LEASE
        async with live.claim([partition]) as uow:
            ids = [o.mail_id for o in ready]
            await lease_mails(uow.conn, ids, until, only_if_free_at=now)
            leased = set(
                await uow.conn.scalars(
                    sa.select(mail_leases.c.mail_id).where(
                        mail_leases.c.mail_id.in_(ids), mail_leases.c.not_before == until
                    )
                )
            )
        if not leased:
            return
        async with live.engine.connect() as conn:
            items: list[DigestItem] = digest_items(await digest_states(conn))
        intent = daily_digest(day, items, domain=self._settings.mail_domain)
        if intent is None:
            # Nothing at risk: nobody is mailed today, and nobody is asked again until tomorrow.
            tomorrow = next_digest(day, self._settings.digest_hour, self._zone)
            async with live.claim([partition]) as uow:
                await lease_mails(uow.conn, sorted(leased), tomorrow)
            return
        for owed in ready:
            if owed.mail_id in leased:
                await self._send_one(live, partition, day, intent, owed, until)

    async def _send_one(
        self,
        live: LiveContext,
        partition: int,
        day: date,
        intent: MailIntent,
        owed: OwedDigest,
        until: datetime,
    ) -> None:
        try:
            await self._mailer.send(intent, [owed.recipient], date=live.now)
        except (aiosmtplib.SMTPException, OSError) as exc:
            failed = FailedMail(owed.mail_id, digest_id(day), PROVIDER_ACCOUNT, intent)
            async with live.claim([partition]) as uow:
                await self._failures.record(uow, failed, exc)
            return
        sent_at = live.now
        sent = MailSent(
            mail_id=owed.mail_id,
            event_id=digest_id(day),
            kind=intent.kind,
            message_id=intent.message_id,
            recipients=1,
            sent_at=sent_at,
        )
        event = Context(system_actor("notifier"), sent_at, sent_at).event(
            sent,
            account_id=PROVIDER_ACCOUNT,
            event_id=derive_event_id(owed.mail_id, "sent"),
            item=owed.mail_id,
        )
        await record_sent(live, owed.mail_id, until, event)
