"""E-mail intake (seed 003, 3.2 and 7.2): a message opens a ticket or continues one.

The sender must be a contact; the contact becomes the ticket contact. A message that a trusted
receiving relay (`HELPDESK_EMAIL_TRUSTED_RELAYS`) found forged (its `Authentication-Results`
say `dmarc=fail`, or `spf=fail` without a passing DKIM signature) is refused before anything
else: neither threaded into the contact's ticket nor opened in their name, only recorded with the
relay's verdict for staff to see (domain/mail_authentication.py). A subject carrying the
number of a ticket the contact may see (`[HD-100001] ...`, as the notifier sends it) threads
the message as a customer reply, reopening a closed ticket first; anything else opens a new
ticket without a priority, so a technician reviews it before a priority is set. Every message
and its outcome is recorded in `inbound_messages`, refusals included.

Attachments are not stored: their names, types and sizes are (in a note at the end of the text,
and in the ticket's `fields.attachments` when the message opens one), for the first
`MAX_LISTED_ATTACHMENTS` whose names fit `ATTACHMENT_LIST_BYTES`; the others are only counted
(`fields.attachments_not_listed`), so that no message, however many files it carries, makes an
event too large for the stream. The message as a whole is limited to `HELPDESK_EMAIL_MAX_BYTES`
(25 MiB) over SMTP and HTTP. Subject and text are cut to the API's limits, the attachment note
kept. NUL characters are removed from every part of a message, since PostgreSQL cannot store
them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Literal, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import accounts, contacts, inbound_messages
from helpdesk.intake.adapters.tables import tickets as ticket_rows
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import tickets
from helpdesk.intake.application.commands import MAX_FIELDS_BYTES, MAX_TEXT, TicketCreate
from helpdesk.intake.application.context import command_context
from helpdesk.intake.domain.email import (
    AttachmentList,
    InboundEmail,
    list_attachments,
    parse_message,
    ticket_number_in,
)
from helpdesk.intake.domain.email import without_quoted_reply as reply_text
from helpdesk.intake.domain.mail_authentication import authentication_failure
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import utc_now
from helpdesk.shared.service import ServiceRuntime

log = logging.getLogger(__name__)

Outcome = Literal["opened", "replied", "refused"]
# The public API's limits on a ticket (commands.TicketCreate); a longer e-mail is cut, not
# refused, because the sender cannot be asked to fix it.
MAX_SUBJECT = 500
#: Attachments named on the ticket, and the bytes their JSON metadata may take in its fields
#: (half of what `fields` may hold); the rest are counted.
MAX_LISTED_ATTACHMENTS = 20
ATTACHMENT_LIST_BYTES = MAX_FIELDS_BYTES // 2
NO_SUBJECT = "(no subject)"
NO_TEXT = "(no text)"


async def receive_email(runtime: ServiceRuntime, raw: bytes) -> dict[str, Any]:
    """Act on one inbound message and record what became of it.

    Answers `{outcome: opened|replied|refused, ticket_id?, ticket_number?, reason?}`, plus
    `duplicate: true` when this Message-ID was acted on before (a retried delivery), in which
    case nothing is done again. Raises `UnreadableEmailError` for bytes that are no message; a
    refusal (`ApplicationError`) or any other error means nothing was recorded, and the sender
    should retry.
    """
    email = parse_message(raw)
    trusted = {relay.strip().rstrip(".").lower() for relay in runtime.settings.email_trusted_relays}
    async with runtime.unit_of_work() as uow:
        return await _receive(PostgresUnitOfWork(uow), email, trusted)


async def _receive(
    uow: PostgresUnitOfWork, email: InboundEmail, trusted_relays: Collection[str]
) -> dict[str, Any]:
    conn = uow.conn
    forged = authentication_failure(email.authentication_results, trusted_relays)
    if forged is not None:
        # Before the redelivery check too: a forged copy must not learn a real message's
        # outcome (ticket number) by reusing its Message-ID.
        return await _refuse(conn, email, f"the sender failed authentication: {forged}")
    if email.message_id is not None:
        # Serialise deliveries of one message (Message-ID and sender), so two concurrent
        # retries cannot both open a ticket; the lock ends with the transaction.
        delivery = f"{email.sender}\n{email.message_id}"
        await conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(delivery, 0)))
        )
        earlier = await _earlier_outcome(conn, email)
        if earlier is not None:
            return earlier
    if email.auto_submitted:
        # An out-of-office or bounce must neither open tickets nor reopen them, and answering
        # it could start a mail loop with another auto-responder.
        return await _refuse(conn, email, "automatic reply (Auto-Submitted or Precedence)")
    contact = (
        await conn.execute(sa.select(contacts).where(contacts.c.email == email.sender))
    ).first()
    if contact is None:
        return await _refuse(conn, email, "the sender is not a contact of any account")
    status = await conn.scalar(
        sa.select(accounts.c.status).where(accounts.c.id == contact.account_id)
    )
    if status != "active":
        # On hold or expired accounts take no new tickets (seed 003, 4.2.2), and their tickets
        # were closed for that reason: an e-mail must not reopen them.
        return await _refuse(conn, email, f"the account is {status}")
    principal = Principal(
        key_id=f"email:{contact.id}",
        role="contact",
        account_id=contact.account_id,
        contact_id=contact.id,
        visibility=cast(Literal["own", "account"], contact.visibility),
    )
    ctx = command_context(principal, None, utc_now())
    ticket_id = await _thread(conn, principal, email)
    attachments = attachments_of(email)
    if ticket_id is not None:
        body = with_note(reply_text(email.body), attachments) or NO_TEXT
        ticket = await tickets.email_reply(uow, principal, ticket_id, body, ctx)
        return await _record(conn, email, "replied", ticket.id, ticket.number)
    command = TicketCreate(
        account_id=contact.account_id,
        contact_id=contact.id,
        subject=email.subject[:MAX_SUBJECT] or NO_SUBJECT,
        description=with_note(email.body, attachments),
        channel="email",
        # No priority: e-mail tickets are reviewed before a priority is set (seed 003, 7.2).
        priority=None,
        fields=attachments.fields(),
    )
    opened = await tickets.open_ticket(uow, principal, command, ctx)
    return await _record(conn, email, "opened", opened.id, opened.number)


def attachments_of(email: InboundEmail) -> AttachmentList:
    """The message's attachments as the ticket names them."""
    return list_attachments(email.attachments, MAX_LISTED_ATTACHMENTS, ATTACHMENT_LIST_BYTES)


def with_note(text: str, attachments: AttachmentList) -> str:
    """`text` cut to the API's limit so that the attachment note after it is kept whole."""
    note = attachments.note()
    return text[: MAX_TEXT - len(note)] + note


async def _thread(conn: AsyncConnection, principal: Principal, email: InboundEmail) -> UUID | None:
    """The ticket the message continues: numbered in the subject and visible to the sender."""
    number = ticket_number_in(email.subject)
    if number is None:
        return None
    row = (
        await conn.execute(
            sa.select(ticket_rows.c.id, ticket_rows.c.account_id, ticket_rows.c.contact_id).where(
                ticket_rows.c.number == number
            )
        )
    ).first()
    # Someone else's ticket number (another account, or a colleague's ticket the sender may
    # not see) opens a new ticket instead: the sender learns nothing about that ticket.
    if row is None or not principal.can_see_ticket(row.account_id, row.contact_id):
        return None
    ticket_id: UUID = row.id
    return ticket_id


async def _earlier_outcome(conn: AsyncConnection, email: InboundEmail) -> dict[str, Any] | None:
    """What became of this message before: the same Message-ID from the same sender.

    Message-IDs are chosen by the sender's software: another sender's message that reuses one
    (by accident or on purpose) is a different message, and must not learn its outcome.
    """
    row = (
        await conn.execute(
            sa.select(
                inbound_messages.c.outcome, inbound_messages.c.ticket_id, ticket_rows.c.number
            )
            .select_from(
                inbound_messages.outerjoin(
                    ticket_rows, ticket_rows.c.id == inbound_messages.c.ticket_id
                )
            )
            .where(
                inbound_messages.c.message_id == email.message_id,
                inbound_messages.c.sender == email.sender,
                inbound_messages.c.outcome.in_(["opened", "replied"]),
            )
            .order_by(inbound_messages.c.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return {
        "outcome": row.outcome,
        "ticket_id": str(row.ticket_id),
        "ticket_number": row.number,
        "duplicate": True,
    }


async def _refuse(conn: AsyncConnection, email: InboundEmail, reason: str) -> dict[str, Any]:
    log.info("inbound e-mail from %s refused: %s", email.sender, reason)
    return await _record(conn, email, "refused", None, None, reason)


async def _record(
    conn: AsyncConnection,
    email: InboundEmail,
    outcome: Outcome,
    ticket_id: UUID | None,
    ticket_number: str | None,
    reason: str | None = None,
) -> dict[str, Any]:
    await conn.execute(
        inbound_messages.insert().values(
            message_id=email.message_id,
            received_at=utc_now(),
            sender=email.sender,
            subject=email.subject,
            outcome=outcome,
            reason=reason,
            ticket_id=ticket_id,
        )
    )
    answer: dict[str, Any] = {"outcome": outcome}
    if ticket_id is not None:
        answer["ticket_id"] = str(ticket_id)
        answer["ticket_number"] = ticket_number
    if reason is not None:
        answer["reason"] = reason
    return answer


def inbound_view(row: Any) -> dict[str, Any]:
    """A recorded inbound message as the API lists it."""
    return {
        "id": row.id,
        "message_id": row.message_id,
        "received_at": row.received_at.isoformat(),
        "sender": row.sender,
        "subject": row.subject,
        "outcome": row.outcome,
        "reason": row.reason,
        "ticket_id": str(row.ticket_id) if row.ticket_id else None,
    }
