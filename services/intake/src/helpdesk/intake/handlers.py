"""Intake's projection: the read models of accounts, agreements, contacts, staff and tickets.

The same handlers run when intake applies its own events inside a command's transaction and
when a rebuild replays the stream, so both paths reach the same rows. Nothing here reads the
clock: every time comes from the events.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import (
    accounts,
    agreements,
    contacts,
    projection_tables,
    runtime,
    staff,
    tickets,
)
from helpdesk.intake.domain import partner
from helpdesk.intake.domain.tickets import Ticket, fold, start
from helpdesk.shared.auth import key_handlers
from helpdesk.shared.consumer import Delivery, Projection
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountStatusChanged,
    AccountUpdated,
    AgreementSet,
    ContactAdded,
    StaffAdded,
)
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketFlaggedPartnerResolvable, TicketOpened

# Intake records key events itself (commands and the auto-close consumer both emit through
# this projection), so it carries the key handlers every service gets.
projection = Projection(handlers=dict(key_handlers(runtime)), tables=list(projection_tables))


@projection.on("account.opened")
async def account_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """A new account row."""
    opened = delivery.event.payload
    assert isinstance(opened, AccountOpened)
    await conn.execute(
        pg_insert(accounts)
        .values(
            id=opened.account_id,
            number=opened.number,
            name=opened.name,
            timezone=opened.timezone,
            status=opened.status,
        )
        .on_conflict_do_nothing()
    )


@projection.on("account.updated")
async def account_updated(conn: AsyncConnection, delivery: Delivery) -> None:
    """New name or time zone."""
    updated = delivery.event.payload
    assert isinstance(updated, AccountUpdated)
    await conn.execute(
        accounts.update()
        .where(accounts.c.id == updated.account_id)
        .values(name=updated.name, timezone=updated.timezone)
    )


@projection.on("account.status_changed")
async def account_status_changed(conn: AsyncConnection, delivery: Delivery) -> None:
    """active | on_hold | expired."""
    changed = delivery.event.payload
    assert isinstance(changed, AccountStatusChanged)
    await conn.execute(
        accounts.update().where(accounts.c.id == changed.account_id).values(status=changed.status)
    )


@projection.on("agreement.set")
async def agreement_set(conn: AsyncConnection, delivery: Delivery) -> None:
    """A new agreement version becomes the account's current one."""
    agreement = delivery.event.payload
    assert isinstance(agreement, AgreementSet)
    await conn.execute(
        pg_insert(agreements)
        .values(
            account_id=agreement.account_id,
            version=agreement.version,
            agreement=agreement.agreement,
            set_at=delivery.event.envelope.occurred_at,
        )
        .on_conflict_do_nothing()
    )
    await conn.execute(
        accounts.update()
        .where(accounts.c.id == agreement.account_id)
        .values(agreement_version=agreement.version)
    )


@projection.on("contact.added")
async def contact_added(conn: AsyncConnection, delivery: Delivery) -> None:
    """A contact of an account."""
    contact = delivery.event.payload
    assert isinstance(contact, ContactAdded)
    await conn.execute(
        pg_insert(contacts)
        .values(
            id=contact.contact_id,
            account_id=contact.account_id,
            name=contact.name,
            email=contact.email.lower(),
            roles=list(contact.roles),
            visibility=contact.visibility,
        )
        .on_conflict_do_nothing()
    )


@projection.on("account.staff_added")
async def staff_added(conn: AsyncConnection, delivery: Delivery) -> None:
    """A staff member of the provider."""
    member = delivery.event.payload
    assert isinstance(member, StaffAdded)
    await conn.execute(
        pg_insert(staff)
        .values(id=member.staff_id, name=member.name, email=member.email.lower(), role=member.role)
        .on_conflict_do_nothing()
    )


@projection.on(
    "account.partner_warning_issued",
    "account.partner_margin_revoked",
    "account.partner_margin_extended",
)
async def partner_standing_changed(conn: AsyncConnection, delivery: Delivery) -> None:
    """Fold a partner warning or margin change into the account's standing."""
    account_id = delivery.event.envelope.account_id
    standing = await load_standing(conn, account_id)
    folded = partner.fold(standing, delivery.event.payload, delivery.event.envelope.occurred_at)
    await save_standing(conn, account_id, folded)


@projection.on("ticket.opened")
async def ticket_opened(conn: AsyncConnection, delivery: Delivery) -> None:
    """A new ticket row."""
    opened = delivery.event.payload
    assert isinstance(opened, TicketOpened)
    envelope = delivery.event.envelope
    ticket = start(opened, envelope.seq or 1, envelope.occurred_at)
    await conn.execute(pg_insert(tickets).values(**_columns(ticket)).on_conflict_do_nothing())


@projection.on(
    "ticket.triaged",
    "ticket.assigned",
    "ticket.commented",
    "ticket.info_requested",
    "ticket.customer_replied",
    "ticket.escalated",
    "ticket.vendor_returned",
    "ticket.time_logged",
    "ticket.resolved",
    "ticket.confirmed",
    "ticket.closed",
    "ticket.reopened",
    "ticket.flagged_partner_resolvable",
)
async def ticket_changed(conn: AsyncConnection, delivery: Delivery) -> None:
    """Fold one more event into the ticket row."""
    envelope = delivery.event.envelope
    state = await conn.scalar(sa.select(tickets.c.state).where(tickets.c.id == envelope.ticket_id))
    if state is None:
        return  # its ticket.opened is missing: the sequence check has alerted already
    ticket = fold(
        Ticket.from_view(state), delivery.event.payload, envelope.seq or 0, envelope.occurred_at
    )
    await conn.execute(tickets.update().where(tickets.c.id == ticket.id).values(**_columns(ticket)))
    if isinstance(delivery.event.payload, TicketFlaggedPartnerResolvable):
        standing = await load_standing(conn, ticket.account_id)
        await save_standing(
            conn, ticket.account_id, partner.flagged(standing, envelope.occurred_at)
        )


@projection.on("sla.auto_close_requested")
async def auto_close_requested(conn: AsyncConnection, delivery: Delivery) -> None:
    """The SLA timer's follow-ups went unanswered: close the ticket (reason no_response).

    A no-op when the ticket moved on since the request (and so on a rebuild, where the event
    store already holds the closure).
    """
    from helpdesk.intake import commands  # here: commands imports this module

    request = delivery.event.payload
    assert isinstance(request, AutoCloseRequested)
    await commands.auto_close(conn, request.ticket_id, request.ticket_seq)


def _columns(ticket: Ticket) -> dict[str, object]:
    return {
        "id": ticket.id,
        "number": ticket.number,
        "account_id": ticket.account_id,
        "contact_id": ticket.contact_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "assignee": ticket.assignee,
        "subject": ticket.subject,
        "description": ticket.description,
        "seq": ticket.seq,
        "state": ticket.view(),
    }


async def load_standing(conn: AsyncConnection, account_id: object) -> partner.PartnerStanding:
    """An account's partner standing."""
    raw = await conn.scalar(sa.select(accounts.c.partner).where(accounts.c.id == account_id))
    return partner.PartnerStanding.from_json(raw or {})


async def save_standing(
    conn: AsyncConnection, account_id: object, standing: partner.PartnerStanding
) -> None:
    """Store an account's partner standing."""
    await conn.execute(
        accounts.update().where(accounts.c.id == account_id).values(partner=standing.to_json())
    )
