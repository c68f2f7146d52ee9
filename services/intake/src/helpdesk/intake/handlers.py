"""Intake's projection: the read models of accounts, agreements, contacts, staff and tickets;
and its one reaction, the SLA timer's auto-close request.

The same handlers run when intake applies its own events inside a command's transaction and
when a rebuild replays the stream, so both paths reach the same rows. Nothing here reads the
clock: every time comes from the events.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert

from helpdesk.intake.adapters.repositories import load_standing, save_standing
from helpdesk.intake.adapters.tables import (
    accounts,
    agreements,
    contacts,
    projection_tables,
    runtime,
    staff,
    tickets,
)
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import tickets as tickets_service
from helpdesk.intake.domain import partner
from helpdesk.intake.domain.names import name_key
from helpdesk.intake.domain.tickets import Ticket, fold, start
from helpdesk.shared.auth import key_projection
from helpdesk.shared.consumer import AnyEvent, Projection, Reactions, UnitOfWork
from helpdesk.shared.context import utc_now
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountStatusChanged,
    AccountUpdated,
    AgreementSet,
    ContactAdded,
    PartnerMarginExtended,
    PartnerMarginRevoked,
    PartnerWarningIssued,
    StaffAdded,
)
from helpdesk.shared.contracts.billing import FairUseExceeded
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import (
    TICKET_EVENTS,
    TicketFlaggedPartnerResolvable,
    TicketOpened,
)
from helpdesk.shared.db import bulk_upsert
from helpdesk.shared.events import Event

# Intake records key events itself (commands emit through this projection), so it carries the
# key projection every service gets.
projection = Projection(tables=projection_tables)
projection.include(key_projection(runtime))
reactions = Reactions()


@projection.on(AccountOpened)
async def account_opened(uow: UnitOfWork, event: Event[AccountOpened]) -> None:
    """A new account row."""
    opened = event.payload
    await uow.conn.execute(
        pg_insert(accounts)
        .values(
            id=opened.account_id,
            number=opened.number,
            name=opened.name,
            name_key=name_key(opened.name),
            timezone=opened.timezone,
            country=opened.country,
            status=opened.status,
        )
        .on_conflict_do_nothing()
    )


@projection.on(AccountUpdated)
async def account_updated(uow: UnitOfWork, event: Event[AccountUpdated]) -> None:
    """New name, time zone or country."""
    updated = event.payload
    await uow.conn.execute(
        accounts.update()
        .where(accounts.c.id == updated.account_id)
        .values(
            name=updated.name,
            name_key=name_key(updated.name),
            timezone=updated.timezone,
            country=updated.country,
        )
    )


@projection.on(AccountStatusChanged)
async def account_status_changed(uow: UnitOfWork, event: Event[AccountStatusChanged]) -> None:
    """active | on_hold | expired."""
    changed = event.payload
    await uow.conn.execute(
        accounts.update().where(accounts.c.id == changed.account_id).values(status=changed.status)
    )


@projection.on(AgreementSet)
async def agreement_set(uow: UnitOfWork, event: Event[AgreementSet]) -> None:
    """A new agreement version becomes the account's current one."""
    agreement = event.payload
    await uow.conn.execute(
        pg_insert(agreements)
        .values(
            account_id=agreement.account_id,
            version=agreement.version,
            agreement=agreement.agreement.model_dump(mode="json"),
            set_at=event.envelope.occurred_at,
        )
        .on_conflict_do_nothing()
    )
    await uow.conn.execute(
        accounts.update()
        .where(accounts.c.id == agreement.account_id)
        .values(agreement_version=agreement.version)
    )


@projection.on(ContactAdded)
async def contact_added(uow: UnitOfWork, event: Event[ContactAdded]) -> None:
    """A contact of an account."""
    contact = event.payload
    await uow.conn.execute(
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


@projection.on(StaffAdded)
async def staff_added(uow: UnitOfWork, event: Event[StaffAdded]) -> None:
    """A staff member of the provider."""
    member = event.payload
    await uow.conn.execute(
        pg_insert(staff)
        .values(
            id=member.staff_id,
            name=member.name,
            email=member.email.lower(),
            role=member.role,
            tier=member.tier,
        )
        .on_conflict_do_nothing()
    )


@projection.on_batch(PartnerWarningIssued, PartnerMarginRevoked, PartnerMarginExtended)
async def partner_standing_changed(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Fold a partner warning or margin change into the account's standing."""
    for event in events:
        account_id = event.envelope.account_id
        standing = await load_standing(uow.conn, account_id)
        folded = partner.fold(standing, event.payload, event.envelope.occurred_at)
        await save_standing(uow.conn, account_id, folded)


@projection.on_batch(*TICKET_EVENTS)
async def tickets_changed(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Fold a run of ticket events into the ticket rows: one load, one write."""
    ids = sorted({e.envelope.ticket_id for e in events if e.envelope.ticket_id is not None})
    rows = await uow.conn.execute(
        sa.select(tickets.c.state).where(
            tickets.c.id == sa.any_(sa.bindparam("ids", ids, type_=_UUIDS))
        )
    )
    known = {ticket.id: ticket for ticket in (Ticket.from_view(row.state) for row in rows)}
    changed: dict[object, Ticket] = {}
    for event in events:
        envelope = event.envelope
        if isinstance(event.payload, TicketOpened):
            if envelope.ticket_id not in known:
                known[event.payload.ticket_id] = changed[event.payload.ticket_id] = start(
                    event.payload, envelope.seq or 1, envelope.occurred_at
                )
            continue
        ticket = known.get(envelope.ticket_id) if envelope.ticket_id else None
        if ticket is None:
            continue  # its ticket.opened is missing: the sequence check has held it
        ticket = fold(ticket, event.payload, envelope.seq or 0, envelope.occurred_at)
        known[ticket.id] = changed[ticket.id] = ticket
        if isinstance(event.payload, TicketFlaggedPartnerResolvable):
            standing = await load_standing(uow.conn, ticket.account_id)
            await save_standing(
                uow.conn, ticket.account_id, partner.flagged(standing, envelope.occurred_at)
            )
    await bulk_upsert(
        uow.conn,
        tickets,
        [_columns(t) for t in changed.values()],
        conflict=["id"],
        update=[c.name for c in tickets.columns if c.name != "id"],
    )


@reactions.on(AutoCloseRequested)
async def auto_close_requested(uow: UnitOfWork, event: Event[AutoCloseRequested]) -> None:
    """The SLA timer's follow-ups went unanswered: close the ticket (reason no_response)."""
    await tickets_service.auto_close(PostgresUnitOfWork(uow), event, utc_now())


@reactions.on(FairUseExceeded)
async def fair_use_exceeded(uow: UnitOfWork, event: Event[FairUseExceeded]) -> None:
    """Billing found fair use exceeded: a public note on the ticket tells the contact."""
    await tickets_service.note_fair_use(PostgresUnitOfWork(uow), event, utc_now())


_UUIDS = pg.ARRAY(pg.UUID(as_uuid=True))


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
