"""Billing's projection of the stream, its fair-use reaction, its finalisation loop and its
quarterly budget reviews.

The projection stores rows as the events say (accounts, agreement versions, contacts, tickets,
time entries, margin revocations) and, from billing's own events, the fair-use exceedances and
final invoices. Usage and draft invoices are computed from those rows on read (domain/book.py),
so every figure is reproducible by a rebuild; a final invoice is only ever restored from its
`billing.invoice_finalized` event, never recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.billing.adapters.books import contract_lines, final_row, load_books
from helpdesk.billing.adapters.tables import (
    billing_accounts,
    billing_agreements,
    billing_budget_reviews,
    billing_contacts,
    billing_entries,
    billing_fair_use_events,
    billing_invoices,
    billing_margin_revocations,
    billing_partner_warnings,
    billing_tickets,
    projection_tables,
)
from helpdesk.billing.domain.book import AccountBook, invoice_id
from helpdesk.billing.domain.fair_use import fair_use_exceedances
from helpdesk.billing.domain.periods import next_quarter, quarter_periods
from helpdesk.shared.agreements import Agreement
from helpdesk.shared.consumer import AnyEvent, Projection, Reactions, UnitOfWork
from helpdesk.shared.context import Context, system_actor, utc_now
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountUpdated,
    AgreementSet,
    ContactAdded,
    PartnerMarginExtended,
    PartnerMarginRevoked,
    PartnerWarningIssued,
)
from helpdesk.shared.contracts.billing import (
    BudgetReviewed,
    FairUseExceeded,
    InvoiceFinalized,
    KindReview,
)
from helpdesk.shared.contracts.tickets import (
    TicketOpened,
    TicketQuoteApproved,
    TicketReopened,
    TicketResolved,
    TicketTimeLogged,
    TicketTriaged,
)
from helpdesk.shared.db import bulk_upsert
from helpdesk.shared.events import Event, derive_event_id
from helpdesk.shared.live import LiveContext, LiveLoop

projection = Projection(tables=projection_tables)
reactions = Reactions()
ACTOR = system_actor("billing")


class BillingSettings(BaseSettings):
    """Billing's own settings (HELPDESK_BILLING_* environment variables)."""

    model_config = SettingsConfigDict(env_prefix="HELPDESK_BILLING_", extra="ignore")

    #: How long a monthly invoice stays draft after its period ends (and an hourly ticket's
    #: invoice after its resolution), so late entries still land on it.
    grace_hours: float = 72.0

    @property
    def grace(self) -> timedelta:
        """The grace period."""
        return timedelta(hours=self.grace_hours)


# --- accounts, agreements, contacts, partner standing ------------------------------------------


@projection.on(AccountOpened)
async def account_opened(uow: UnitOfWork, event: Event[AccountOpened]) -> None:
    """Remember the account's time zone (billing periods are its local months) and partition."""
    opened = event.payload
    stmt = pg_insert(billing_accounts).values(
        account_id=opened.account_id, timezone=opened.timezone, partition=event.partition
    )
    await uow.conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[billing_accounts.c.account_id],
            set_={"timezone": stmt.excluded.timezone},
        )
    )


@projection.on(AccountUpdated)
async def account_updated(uow: UnitOfWork, event: Event[AccountUpdated]) -> None:
    """A new time zone moves the month boundaries of every period not yet final."""
    await uow.conn.execute(
        sa.update(billing_accounts)
        .where(billing_accounts.c.account_id == event.payload.account_id)
        .values(timezone=event.payload.timezone)
    )


@projection.on(AgreementSet)
async def agreement_set(uow: UnitOfWork, event: Event[AgreementSet]) -> None:
    """Keep every agreement version with the instant it takes effect for billing."""
    agreement = Agreement.model_validate(event.payload.agreement)
    effective_at = agreement.effective_from or event.envelope.occurred_at
    await uow.conn.execute(
        pg_insert(billing_agreements)
        .values(
            account_id=event.payload.account_id,
            version=event.payload.version,
            effective_at=effective_at,
            agreement=event.payload.agreement.model_dump(mode="json"),
        )
        .on_conflict_do_nothing()
    )


@projection.on(ContactAdded)
async def contact_added(uow: UnitOfWork, event: Event[ContactAdded]) -> None:
    """Contacts and their roles: only `billing` contacts see an account's money."""
    added = event.payload
    await uow.conn.execute(
        pg_insert(billing_contacts)
        .values(contact_id=added.contact_id, account_id=added.account_id, roles=added.roles)
        .on_conflict_do_nothing()
    )


@projection.on(PartnerWarningIssued)
async def partner_warned(uow: UnitOfWork, event: Event[PartnerWarningIssued]) -> None:
    """A partner warning (seed 001): no price effect yet, kept for the account's record."""
    await uow.conn.execute(
        pg_insert(billing_partner_warnings)
        .values(
            account_id=event.payload.account_id,
            warned_at=event.envelope.occurred_at,
            flagged_in_window=event.payload.flagged_in_window,
            window_days=event.payload.window_days,
        )
        .on_conflict_do_nothing()
    )


@projection.on(PartnerMarginRevoked)
async def margin_revoked(uow: UnitOfWork, event: Event[PartnerMarginRevoked]) -> None:
    """Seed 001: no partner discount from the revocation until `restore_on`."""
    await uow.conn.execute(
        pg_insert(billing_margin_revocations)
        .values(
            account_id=event.payload.account_id,
            revoked_at=event.envelope.occurred_at,
            restore_on=event.payload.restore_on,
        )
        .on_conflict_do_update(
            index_elements=[
                billing_margin_revocations.c.account_id,
                billing_margin_revocations.c.revoked_at,
            ],
            set_={"restore_on": event.payload.restore_on},
        )
    )


@projection.on(PartnerMarginExtended)
async def margin_extended(uow: UnitOfWork, event: Event[PartnerMarginExtended]) -> None:
    """A further flagged ticket pushes the current revocation's end back."""
    table = billing_margin_revocations
    latest = (
        sa.select(sa.func.max(table.c.revoked_at))
        .where(table.c.account_id == event.payload.account_id)
        .scalar_subquery()
    )
    await uow.conn.execute(
        sa.update(table)
        .where(table.c.account_id == event.payload.account_id, table.c.revoked_at == latest)
        .values(restore_on=event.payload.restore_on)
    )


# --- tickets and time ----------------------------------------------------------------------------


@projection.on_batch(
    TicketOpened,
    TicketTriaged,
    TicketTimeLogged,
    TicketResolved,
    TicketReopened,
    TicketQuoteApproved,
)
async def tickets(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Fold a run of ticket events: tickets (kind, scope, resolution) and their time entries.

    A time entry is stored once by its `entry_id`, whatever copies of it arrive.
    """
    ids = sorted({e.envelope.ticket_id for e in events if e.envelope.ticket_id}, key=str)
    rows: dict[UUID, dict[str, Any]] = {
        row.ticket_id: dict(row._mapping)
        for row in await uow.conn.execute(
            sa.select(billing_tickets).where(billing_tickets.c.ticket_id.in_(ids))
        )
    }
    changed: set[UUID] = set()
    entries: dict[UUID, dict[str, Any]] = {}
    for event in events:
        payload, ticket_id = event.payload, event.envelope.ticket_id
        if isinstance(payload, TicketOpened):
            if payload.ticket_id not in rows:
                rows[payload.ticket_id] = {
                    "ticket_id": payload.ticket_id,
                    "account_id": payload.account_id,
                    "number": payload.number,
                    "kind": payload.kind,
                    "scope": payload.scope,
                    "category": payload.category,
                    "reported_at": payload.reported_at,
                    "resolved_at": None,
                    "resolutions": [],
                    "quote_approved_at": None,
                    "partition": event.partition,
                }
                changed.add(payload.ticket_id)
            continue
        ticket = rows.get(ticket_id) if ticket_id else None
        if ticket_id is None or ticket is None:
            continue  # a ticket billing never saw opened (a stream started mid-way)
        if isinstance(payload, TicketTriaged):
            ticket.update(kind=payload.kind, scope=payload.scope, category=payload.category)
        elif isinstance(payload, TicketResolved):
            resolved_at = event.envelope.occurred_at
            ticket["resolved_at"] = resolved_at
            spans = list(ticket["resolutions"])
            if not spans or spans[-1]["reopened_at"] is not None:
                spans.append({"resolved_at": resolved_at.isoformat(), "reopened_at": None})
            ticket["resolutions"] = spans
        elif isinstance(payload, TicketQuoteApproved):
            approved = event.envelope.occurred_at
            earlier = ticket["quote_approved_at"]
            ticket["quote_approved_at"] = approved if earlier is None else min(earlier, approved)
        elif isinstance(payload, TicketReopened):
            ticket["resolved_at"] = None
            spans = list(ticket["resolutions"])
            if spans and spans[-1]["reopened_at"] is None:
                reopened_at = event.envelope.occurred_at.isoformat()
                spans[-1] = {**spans[-1], "reopened_at": reopened_at}
            ticket["resolutions"] = spans
        elif isinstance(payload, TicketTimeLogged):
            entries.setdefault(
                payload.entry_id,
                {
                    "entry_id": payload.entry_id,
                    "ticket_id": ticket_id,
                    "account_id": event.envelope.account_id,
                    "minutes": payload.minutes,
                    "work_type": payload.work_type,
                    "scope": payload.scope,
                    "ticket_scope": ticket["scope"],
                    "kind": payload.kind,
                    "after_hours": payload.after_hours,
                    "solution_design": payload.solution_design,
                    "worked_at": payload.worked_at,
                    "logged_at": event.envelope.occurred_at,
                },
            )
            continue
        changed.add(ticket_id)
    await bulk_upsert(
        uow.conn,
        billing_tickets,
        [rows[t] for t in sorted(changed, key=str)],
        conflict=["ticket_id"],
        update=["kind", "scope", "category", "resolved_at", "resolutions", "quote_approved_at"],
    )
    await bulk_upsert(uow.conn, billing_entries, list(entries.values()), conflict=["entry_id"])


# --- fair use ------------------------------------------------------------------------------------


@reactions.on_batch(TicketTimeLogged)
async def fair_use(uow: UnitOfWork, events: Sequence[AnyEvent]) -> None:
    """Raise `billing.fair_use_exceeded` once per cap and day or ticket (seed 002).

    The whole history of the account is checked, so an entry arriving out of worked_at order
    is counted where it belongs; the id derives from the cap's key, so it is raised once.
    """
    causes = {e.envelope.account_id: e for e in events}
    books = await load_books(uow.conn, sorted(causes, key=str))
    for account_id, book in books.items():
        if book.fair_use is None:
            continue
        raised = set(
            await uow.conn.scalars(
                sa.select(billing_fair_use_events.c.key).where(
                    billing_fair_use_events.c.account_id == account_id
                )
            )
        )
        ctx = Context.caused_by(causes[account_id], ACTOR, utc_now())
        decided = []
        for found in fair_use_exceedances(book.entries, book.fair_use, book.timezone):
            if found.key in raised:
                continue
            payload = FairUseExceeded(
                account_id=account_id,
                cap=found.cap,
                key=found.key,
                limit_minutes=found.limit_minutes,
                used_minutes=found.used_minutes,
                ticket_id=found.ticket_id,
                entry_id=found.entry_id,
                worked_at=found.worked_at,
                day=found.day,
                imported=causes[account_id].envelope.actor.type == "import",
            )
            decided.append(
                ctx.event(
                    payload,
                    account_id=account_id,
                    ticket_id=found.ticket_id,
                    event_id=derive_event_id(account_id, f"fair_use:{found.key}"),
                )
            )
        await uow.emit(decided)


@projection.on(FairUseExceeded)
async def fair_use_exceeded(uow: UnitOfWork, event: Event[FairUseExceeded]) -> None:
    """Billing's own record of a raised exceedance (so it is raised once, also after a rebuild)."""
    p = event.payload
    await uow.conn.execute(
        pg_insert(billing_fair_use_events)
        .values(
            account_id=p.account_id,
            key=p.key,
            event_id=event.envelope.event_id,
            cap=p.cap,
            limit_minutes=p.limit_minutes,
            used_minutes=p.used_minutes,
            ticket_id=p.ticket_id,
            entry_id=p.entry_id,
            worked_at=p.worked_at,
            day=p.day,
        )
        .on_conflict_do_nothing()
    )


# --- finalisation --------------------------------------------------------------------------------


@projection.on(InvoiceFinalized)
async def invoice_finalized(uow: UnitOfWork, event: Event[InvoiceFinalized]) -> None:
    """A final invoice, exactly as its event froze it (a rebuild restores it from here)."""
    await uow.conn.execute(
        pg_insert(billing_invoices).values(final_row(event.payload)).on_conflict_do_nothing()
    )


def finalisation_event_id(book: AccountBook, key: str) -> UUID:
    """The id of the event that finalises invoice `key`: once per invoice, on any replica."""
    if key.startswith("ticket:"):
        return derive_event_id(key.removeprefix("ticket:"), "invoice")
    return derive_event_id(book.account_id, f"invoice:{key.removeprefix('monthly:')}")


async def _partition_books(conn: AsyncConnection, partition: int) -> dict[UUID, AccountBook]:
    """The books of the accounts whose events live in `partition`."""
    account_ids = list(
        await conn.scalars(
            sa.select(billing_accounts.c.account_id).where(
                billing_accounts.c.partition == partition
            )
        )
    )
    return await load_books(conn, account_ids)


def finaliser(settings: BillingSettings) -> LiveLoop:
    """The live loop that makes invoices final once their grace period has passed."""
    grace = settings.grace

    async def finalise(live: LiveContext) -> datetime | None:
        next_due: datetime | None = None
        for partition in live.partitions:
            watermark = live.watermark(partition)
            async with live.engine.connect() as conn:
                books = await _partition_books(conn, partition)
            ready: list[tuple[AccountBook, str]] = []
            for account_id in sorted(books, key=str):
                book = books[account_id]
                due_at, key = book.next_due(grace)
                # Finalise in due order, each on the book as the previous one left it.
                while due_at <= watermark:
                    ready.append((book, key))
                    book = book.with_final(key, book.invoice(key))
                    due_at, key = book.next_due(grace)
                next_due = due_at if next_due is None else min(next_due, due_at)
            if ready:
                async with live.claim([partition]) as uow:
                    for book, key in ready:
                        await _finalise(uow, book, key, live.now)
        return next_due

    return finalise


async def _finalise(uow: UnitOfWork, book: AccountBook, key: str, now: datetime) -> None:
    invoice = book.invoice(key)
    payload = InvoiceFinalized(
        invoice_id=invoice_id(book.account_id, key),
        account_id=book.account_id,
        period=invoice.period,
        ticket_id=invoice.ticket_id,
        currency=invoice.currency,
        total_cents=invoice.total_cents,
        lines=contract_lines(invoice),
        finalized_at=now,
    )
    claimed = await uow.conn.scalar(
        pg_insert(billing_invoices)
        .values(final_row(payload))
        .on_conflict_do_nothing()
        .returning(billing_invoices.c.invoice_id)
    )
    if claimed is None:
        return  # final already (another replica, or before a restart)
    ctx = Context(ACTOR, now, now)
    await uow.emit(
        [
            ctx.event(
                payload,
                account_id=book.account_id,
                event_id=finalisation_event_id(book, key),
                item=f"invoice:{book.account_id}:{key}",
            )
        ]
    )


# --- quarterly budget reviews (seed 004) ---------------------------------------------------------


def _review_row(payload: BudgetReviewed, event_id: UUID) -> dict[str, Any]:
    return {
        "account_id": payload.account_id,
        "quarter": payload.quarter,
        "event_id": event_id,
        "review": payload.model_dump(mode="json"),
        "reviewed_at": payload.reviewed_at,
    }


@projection.on(BudgetReviewed)
async def budget_reviewed(uow: UnitOfWork, event: Event[BudgetReviewed]) -> None:
    """A quarter's review as its event gave it: one per account and quarter, also after a
    rebuild."""
    row = _review_row(event.payload, event.envelope.event_id)
    await uow.conn.execute(pg_insert(billing_budget_reviews).values(row).on_conflict_do_nothing())


def review_payload(
    book: AccountBook, quarter: str, now: datetime, *, catching_up: bool = False
) -> BudgetReviewed:
    """The `billing.budget_reviewed` payload of `quarter`, with what the book knows now."""
    review = book.budget_review(quarter)
    return BudgetReviewed(
        account_id=book.account_id,
        quarter=quarter,
        periods=list(quarter_periods(quarter)),
        currency=review.currency,
        budget_cents=review.budget_cents,
        covered_value_cents=review.covered_value_cents,
        balance_cents=review.balance_cents,
        next_budget_cents=book.budget_review(next_quarter(quarter)).budget_cents,
        by_kind={
            kind: KindReview(
                minutes=use.minutes,
                covered_minutes=use.covered_minutes,
                covered_value_cents=use.covered_value_cents,
                billed_minutes=use.billed_minutes,
                billed_cents=use.billed_cents,
            )
            for kind, use in review.by_kind.items()
        },
        reviewed_at=now,
        catching_up=catching_up,
        technical_account_manager=book.account_manager(quarter),
    )


def reviewer(settings: BillingSettings) -> LiveLoop:
    """The live loop that gives each quarterly-reviewed account its budget review once the
    quarter and its last month's grace period are over (seed 004)."""
    grace = settings.grace

    async def review(live: LiveContext) -> datetime | None:
        next_due: datetime | None = None
        for partition in live.partitions:
            watermark = live.watermark(partition)
            async with live.engine.connect() as conn:
                books = await _partition_books(conn, partition)
                reviewed: dict[UUID, set[str]] = {}
                for row in await conn.execute(
                    sa.select(
                        billing_budget_reviews.c.account_id, billing_budget_reviews.c.quarter
                    ).where(billing_budget_reviews.c.account_id.in_(list(books)))
                ):
                    reviewed.setdefault(row.account_id, set()).add(row.quarter)
            ready: list[BudgetReviewed] = []
            for account_id in sorted(books, key=str):
                book = books[account_id]
                due, later = book.reviews_due(reviewed.get(account_id, set()), grace, watermark)
                # Only the latest due quarter is news; earlier ones are given to catch up.
                ready += [
                    review_payload(book, quarter, live.now, catching_up=quarter != due[-1])
                    for quarter in due
                ]
                if later is not None:
                    next_due = later if next_due is None else min(next_due, later)
            if ready:
                async with live.claim([partition]) as uow:
                    for payload in ready:
                        await _give_review(uow, payload, live.now)
        return next_due

    return review


async def _give_review(uow: UnitOfWork, payload: BudgetReviewed, now: datetime) -> None:
    event_id = derive_event_id(payload.account_id, f"budget_review:{payload.quarter}")
    claimed = await uow.conn.scalar(
        pg_insert(billing_budget_reviews)
        .values(_review_row(payload, event_id))
        .on_conflict_do_nothing()
        .returning(billing_budget_reviews.c.quarter)
    )
    if claimed is None:
        return  # given already (another replica, or before a restart)
    ctx = Context(ACTOR, now, now)
    item = f"budget_review:{payload.account_id}:{payload.quarter}"
    await uow.emit(
        [ctx.event(payload, account_id=payload.account_id, event_id=event_id, item=item)]
    )
