"""Loading account books from billing's rows, and final invoices to and from their JSON form."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.billing.adapters.tables import (
    billing_accounts,
    billing_agreements,
    billing_entries,
    billing_invoices,
    billing_margin_revocations,
    billing_tickets,
)
from helpdesk.billing.domain.book import AccountBook
from helpdesk.billing.domain.classification import (
    ResolvedSpan,
    before_approval,
    stood_resolved,
)
from helpdesk.billing.domain.invoices import Invoice, InvoiceLine
from helpdesk.billing.domain.rating import MarginRevocation, PlanVersion, TimeEntry, TopUp
from helpdesk.billing.domain.review import quarterly_budgets
from helpdesk.shared.agreements import Agreement
from helpdesk.shared.contracts import billing as contract

_UUIDS = pg.ARRAY(pg.UUID(as_uuid=True))


def plan_label(agreement: Agreement) -> str:
    """What fee lines call a plan: its variant ("Starter", "Pro"), else nothing."""
    variant = agreement.plan_variant
    return variant.replace("_", " ").title() if variant else ""


def contract_lines(invoice: Invoice) -> list[contract.InvoiceLine]:
    """The lines of a domain invoice in the event contract's form."""
    return [
        contract.InvoiceLine(
            kind=line.kind,
            description=line.description,
            quantity_minutes=line.quantity_minutes,
            unit_price_cents=line.unit_price_cents,
            discount_percent=line.discount_percent,
            amount_cents=line.amount_cents,
            ticket_id=line.ticket_id,
            adjusts_period=line.adjusts_period,
            adjusts_kind=line.adjusts_kind,
        )
        for line in invoice.lines
    ]


def lines_json(invoice: Invoice) -> list[dict[str, Any]]:
    """The lines as JSON (the stored and the served form)."""
    return [line.model_dump(mode="json") for line in contract_lines(invoice)]


def final_row(payload: contract.InvoiceFinalized) -> dict[str, Any]:
    """The row of a final invoice, exactly as its `billing.invoice_finalized` event says."""
    key = f"ticket:{payload.ticket_id}" if payload.ticket_id else f"monthly:{payload.period}"
    return {
        "invoice_id": payload.invoice_id,
        "account_id": payload.account_id,
        "invoice_key": key,
        "period": payload.period,
        "ticket_id": payload.ticket_id,
        "currency": payload.currency,
        "total_cents": payload.total_cents,
        "lines": [line.model_dump(mode="json") for line in payload.lines],
        "finalized_at": payload.finalized_at,
    }


def invoice_of_row(row: Any) -> Invoice:
    """A final invoice row as the domain's `Invoice`."""
    lines = []
    for raw in row.lines:
        line = contract.InvoiceLine.model_validate(raw)
        lines.append(
            InvoiceLine(
                kind=line.kind,
                description=line.description,
                quantity_minutes=line.quantity_minutes,
                unit_price_cents=line.unit_price_cents,
                discount_percent=line.discount_percent,
                amount_cents=line.amount_cents,
                ticket_id=line.ticket_id,
                adjusts_period=line.adjusts_period,
                adjusts_kind=line.adjusts_kind,
            )
        )
    return Invoice(
        account_id=row.account_id,
        period=row.period,
        currency=row.currency,
        lines=tuple(lines),
        ticket_id=row.ticket_id,
    )


def plan_version(effective_at: datetime, agreement: Agreement) -> PlanVersion:
    """An agreement version as billing rates with it: its plan, label and business hours."""
    hours = agreement.plan.business_hours_calendar
    return PlanVersion(
        effective_at=effective_at,
        plan=agreement.plan,
        label=plan_label(agreement),
        business_hours=agreement.calendars.get(hours) if hours else None,
    )


def resolved_spans(stored: Sequence[dict[str, Any]]) -> tuple[ResolvedSpan, ...]:
    """The `resolutions` column of a ticket row as the domain's spans."""
    return tuple(
        ResolvedSpan(
            resolved_at=datetime.fromisoformat(span["resolved_at"]),
            reopened_at=datetime.fromisoformat(span["reopened_at"])
            if span["reopened_at"]
            else None,
        )
        for span in stored
    )


def _in(column: Any, ids: Sequence[UUID]) -> Any:
    return column == sa.any_(sa.bindparam(None, list(ids), type_=_UUIDS))


async def load_books(conn: AsyncConnection, account_ids: Sequence[UUID]) -> dict[UUID, AccountBook]:
    """The books of `account_ids` that have an agreement (one query per table)."""
    if not account_ids:
        return {}
    accounts = {
        row.account_id: row.timezone
        for row in await conn.execute(
            sa.select(billing_accounts).where(_in(billing_accounts.c.account_id, account_ids))
        )
    }
    agreements: defaultdict[UUID, list[Any]] = defaultdict(list)
    for row in await conn.execute(
        sa.select(billing_agreements)
        .where(_in(billing_agreements.c.account_id, account_ids))
        .order_by(billing_agreements.c.account_id, billing_agreements.c.version)
    ):
        agreements[row.account_id].append(row)
    tickets: dict[UUID, Any] = {
        row.ticket_id: row
        for row in await conn.execute(
            sa.select(billing_tickets).where(_in(billing_tickets.c.account_id, account_ids))
        )
    }
    spans = {ticket_id: resolved_spans(row.resolutions) for ticket_id, row in tickets.items()}
    entries: defaultdict[UUID, list[TimeEntry]] = defaultdict(list)
    for row in await conn.execute(
        sa.select(billing_entries).where(_in(billing_entries.c.account_id, account_ids))
    ):
        ticket = tickets.get(row.ticket_id)
        # An entry that took the ticket's scope follows a re-triage; one booked explicitly
        # with another scope keeps it.
        scope = ticket.scope if ticket is not None and row.scope == row.ticket_scope else row.scope
        entries[row.account_id].append(
            TimeEntry(
                entry_id=row.entry_id,
                ticket_id=row.ticket_id,
                minutes=row.minutes,
                work_type=row.work_type,
                scope=scope,
                kind=ticket.kind if ticket is not None else row.kind,
                after_hours=row.after_hours,
                worked_at=row.worked_at,
                solution_design=row.solution_design,
                after_resolution=stood_resolved(row.worked_at, spans.get(row.ticket_id, ())),
                before_quote_approval=scope == "out"
                and before_approval(row.worked_at, ticket.quote_approved_at if ticket else None),
            )
        )
    revocations: defaultdict[UUID, list[MarginRevocation]] = defaultdict(list)
    for row in await conn.execute(
        sa.select(billing_margin_revocations)
        .where(_in(billing_margin_revocations.c.account_id, account_ids))
        .order_by(billing_margin_revocations.c.revoked_at)
    ):
        revocations[row.account_id].append(MarginRevocation(row.revoked_at, row.restore_on))
    finals: defaultdict[UUID, dict[str, Invoice]] = defaultdict(dict)
    for row in await conn.execute(
        sa.select(billing_invoices).where(_in(billing_invoices.c.account_id, account_ids))
    ):
        finals[row.account_id][row.invoice_key] = invoice_of_row(row)
    resolved: defaultdict[UUID, dict[UUID, Any]] = defaultdict(dict)
    for ticket in tickets.values():
        if ticket.resolved_at is not None:
            resolved[ticket.account_id][ticket.ticket_id] = ticket.resolved_at
    books = {}
    for account_id, timezone in accounts.items():
        versions = agreements.get(account_id)
        if not versions:
            continue
        parsed = [Agreement.model_validate(row.agreement) for row in versions]
        latest = parsed[-1]
        books[account_id] = AccountBook(
            account_id=account_id,
            timezone=timezone,
            plans=quarterly_budgets(
                [
                    plan_version(row.effective_at, a)
                    for row, a in zip(versions, parsed, strict=True)
                ],
                timezone,
            ),
            entries=tuple(entries[account_id]),
            # The plan lists every top-up bought so far: the latest version is the record.
            top_ups=tuple(
                TopUp(t.effective_at, t.minutes, t.price_cents) for t in latest.plan.top_ups
            ),
            revocations=tuple(revocations[account_id]),
            fair_use=latest.fair_use,
            rounding="per_ticket" if latest.plan.round_per_ticket else "per_entry",
            resolved=resolved[account_id],
            finals=finals[account_id],
        )
    return books


async def load_book(conn: AsyncConnection, account_id: UUID) -> AccountBook | None:
    """The book of one account, or None when it has no agreement yet."""
    return (await load_books(conn, [account_id])).get(account_id)
