"""Billing's HTTP routes: usage, invoices (JSON and CSV), budget review, what-if.

Who may look: staff, and contacts of the account who have the `billing` role. Another
account's ids answer 404; a contact of the account without the role gets 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.billing.adapters.books import lines_json, load_book
from helpdesk.billing.adapters.tables import (
    billing_accounts,
    billing_agreements,
    billing_contacts,
    billing_entries,
    billing_invoices,
    billing_tickets,
)
from helpdesk.billing.domain.book import (
    AccountBook,
    invoice_id,
    monthly_key,
    ticket_key,
)
from helpdesk.billing.domain.invoices import Invoice, explanation, invoice_csv, monthly_invoice
from helpdesk.billing.domain.periods import (
    next_period,
    next_quarter,
    period_bounds,
    period_of,
    quarter_periods,
)
from helpdesk.billing.domain.rating import PlanVersion, version_at
from helpdesk.billing.domain.usage import Usage, period_usage
from helpdesk.shared.agreements import Plan, agreement_errors, get_preset, list_presets
from helpdesk.shared.auth import Principal
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.validation import Period, Quarter
from helpdesk.shared.web import Problem, checked_period, checked_quarter

router = APIRouter(prefix="/v1")


def _invalid(field: str, reason: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        f"{field}: {reason}",
        errors=[{"field": field, "reason": reason}],
    )


_NOT_FOUND = Problem(404, "Not Found", "No such account.")


async def _authorize(conn: AsyncConnection, caller: Principal, account_id: UUID) -> str:
    """The account's time zone, if `caller` may see its billing; else 404 or 403."""
    if not caller.can_see_account(account_id):
        raise _NOT_FOUND
    timezone = await conn.scalar(
        sa.select(billing_accounts.c.timezone).where(billing_accounts.c.account_id == account_id)
    )
    if timezone is None:
        raise _NOT_FOUND
    if not caller.is_staff:
        roles = await conn.scalar(
            sa.select(billing_contacts.c.roles).where(
                billing_contacts.c.contact_id == caller.contact_id,
                billing_contacts.c.account_id == account_id,
            )
        )
        if "billing" not in (roles or []):
            raise Problem(403, "Forbidden", "Billing needs a contact with the billing role.")
    return str(timezone)


# --- usage ---------------------------------------------------------------------------------------


def _usage_view(usage: Usage) -> dict[str, Any]:
    return {
        "currency": usage.currency,
        "minutes": {
            "in_scope": usage.in_scope_minutes,
            "out_of_scope": usage.out_of_scope_minutes,
            "by_kind": dict(usage.by_kind),
        },
        "included_minutes": usage.included_minutes,
        "included_used_minutes": usage.included_used_minutes,
        "included_remaining_minutes": usage.included_remaining_minutes,
        "billable_minutes": usage.billable_minutes,
        "amount_cents": usage.amount_cents,
        "fair_use": [
            {
                "cap": x.cap,
                "key": x.key,
                "limit_minutes": x.limit_minutes,
                "used_minutes": x.used_minutes,
                "excess_minutes": x.excess_minutes,
                "ticket_id": str(x.ticket_id),
                "entry_id": str(x.entry_id),
                "worked_at": x.worked_at.isoformat(),
                "day": x.day.isoformat() if x.day else None,
            }
            for x in usage.fair_use
        ],
        # Why work is billed apart from the ticket's kind or hours (seed 004, seed 002 add-on).
        "classified": [
            {
                "entry_id": str(p.entry_id),
                "ticket_id": str(p.ticket_id),
                "worked_at": p.worked_at.isoformat(),
                "minutes": p.minutes,
                "kind": p.kind,
                "treatment": p.treatment,
                "reason": explanation(p.kind, p.kind_reason, p.after_hours_reason),
            }
            for p in usage.classified
        ],
        # Seed 000: out-of-scope work done before the contact approved a quote for it.
        "before_quote_approval": [
            {
                "entry_id": str(p.entry_id),
                "ticket_id": str(p.ticket_id),
                "worked_at": p.worked_at.isoformat(),
                "minutes": p.minutes,
                "treatment": p.treatment,
            }
            for p in usage.before_quote_approval
        ],
    }


@router.get("/accounts/{account_id}/usage")
async def usage(
    account_id: UUID, runtime: Runtime, caller: Caller, period: Annotated[Period, Query()]
) -> dict[str, Any]:
    """An account's usage in one month (its local calendar month), priced as it would bill."""
    checked_period(period, runtime.clock())
    async with runtime.engine.connect() as conn:
        timezone = await _authorize(conn, caller, account_id)
        start, end = period_bounds(period, timezone)
        opened = await conn.scalar(
            sa.select(sa.func.count()).where(
                billing_tickets.c.account_id == account_id,
                billing_tickets.c.reported_at >= start,
                billing_tickets.c.reported_at < end,
            )
        )
        book = await load_book(conn, account_id)
    figures: dict[str, Any]
    if book is None:  # no agreement yet: nothing is priced
        figures = {
            "currency": "USD",
            "minutes": {"in_scope": 0, "out_of_scope": 0, "by_kind": {}},
            "included_minutes": 0,
            "included_used_minutes": 0,
            "included_remaining_minutes": 0,
            "billable_minutes": 0,
            "amount_cents": 0,
            "fair_use": [],
            "classified": [],
        }
    else:
        figures = _usage_view(period_usage(book.rating(period)))
    return {
        "account_id": str(account_id),
        "period": period,
        "tickets_opened": opened,
        **figures,
    }


# --- invoices ------------------------------------------------------------------------------------


def _view(
    book_account: UUID, key: str, invoice: Invoice, finalized_at: datetime | None
) -> dict[str, Any]:
    finalized = finalized_at.isoformat() if finalized_at else None
    return {
        "id": str(invoice_id(book_account, key)),
        "account_id": str(invoice.account_id),
        "period": invoice.period,
        "ticket_id": str(invoice.ticket_id) if invoice.ticket_id else None,
        "status": "final" if finalized_at else "draft",
        "currency": invoice.currency,
        "lines": lines_json(invoice),
        "total_cents": invoice.total_cents,
        "finalized_at": finalized,
        # The same instant under the spelling the API brief uses.
        "finalised_at": finalized,
    }


async def _finals(conn: AsyncConnection, account_id: UUID) -> dict[str, datetime]:
    rows = await conn.execute(
        sa.select(billing_invoices.c.invoice_key, billing_invoices.c.finalized_at).where(
            billing_invoices.c.account_id == account_id
        )
    )
    return {row.invoice_key: row.finalized_at for row in rows}


def _drafts(book: AccountBook, now: datetime) -> list[str]:
    # Drafts run up to the current month (or the month of the latest work, if later).
    last = max(
        [
            period_of(now, book.timezone),
            *(period_of(e.worked_at, book.timezone) for e in book.entries),
        ]
    )
    return book.drafts(last)


@router.get("/accounts/{account_id}/invoices")
async def account_invoices(account_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """The account's invoices, final and draft, by period."""
    async with runtime.engine.connect() as conn:
        await _authorize(conn, caller, account_id)
        book = await load_book(conn, account_id)
        finals = await _finals(conn, account_id)
    if book is None:
        return {"items": []}
    keys = sorted(book.finals) + _drafts(book, runtime.clock())
    views = [_view(account_id, k, book.invoice(k), finals.get(k)) for k in keys]
    views.sort(key=lambda v: (v["period"], v["ticket_id"] or ""))
    return {"items": views}


async def _candidate_accounts(
    conn: AsyncConnection, caller: Principal
) -> Sequence[tuple[UUID, str, datetime | None, datetime | None]]:
    first_agreement = (
        sa.select(sa.func.min(billing_agreements.c.effective_at))
        .where(billing_agreements.c.account_id == billing_accounts.c.account_id)
        .scalar_subquery()
    )
    first_work = (
        sa.select(sa.func.min(billing_entries.c.worked_at))
        .where(billing_entries.c.account_id == billing_accounts.c.account_id)
        .scalar_subquery()
    )
    query = sa.select(
        billing_accounts.c.account_id, billing_accounts.c.timezone, first_agreement, first_work
    )
    if not caller.is_staff:
        query = query.where(billing_accounts.c.account_id == caller.account_id)
    return [tuple(row) for row in await conn.execute(query)]


async def _locate(
    conn: AsyncConnection, caller: Principal, wanted: UUID, now: datetime
) -> tuple[UUID, str] | None:
    """The account and key of invoice `wanted`: a final row, else a derived draft id."""
    row = (
        await conn.execute(
            sa.select(billing_invoices.c.account_id, billing_invoices.c.invoice_key).where(
                billing_invoices.c.invoice_id == wanted
            )
        )
    ).first()
    if row is not None:
        return row.account_id, row.invoice_key
    # Draft ids are derived, not stored: derive the candidates of the accounts the caller sees.
    for account_id, timezone, first_agreement, first_work in await _candidate_accounts(
        conn, caller
    ):
        if first_agreement is None:
            continue
        first = min(t for t in (first_agreement, first_work) if t is not None)
        period, last = period_of(first, timezone), period_of(max(now, first), timezone)
        while period <= last:
            if invoice_id(account_id, monthly_key(period)) == wanted:
                return account_id, monthly_key(period)
            period = next_period(period)
    query = sa.select(billing_tickets.c.ticket_id, billing_tickets.c.account_id).where(
        billing_tickets.c.resolved_at.is_not(None)
    )
    if not caller.is_staff:
        query = query.where(billing_tickets.c.account_id == caller.account_id)
    for ticket in await conn.execute(query):
        if invoice_id(ticket.account_id, ticket_key(ticket.ticket_id)) == wanted:
            return ticket.account_id, ticket_key(ticket.ticket_id)
    return None


async def _invoice(
    runtime: Runtime, caller: Caller, wanted: UUID
) -> tuple[AccountBook, str, datetime | None]:
    missing = Problem(404, "Not Found", "No such invoice.")
    now = runtime.clock()
    async with runtime.engine.connect() as conn:
        located = await _locate(conn, caller, wanted, now)
        if located is None:
            raise missing
        account_id, key = located
        try:
            await _authorize(conn, caller, account_id)
        except Problem as problem:
            raise missing if problem.status == 404 else problem from None
        book = await load_book(conn, account_id)
        finals = await _finals(conn, account_id)
    if book is None or (key not in finals and key not in _drafts(book, now)):
        raise missing
    return book, key, finals.get(key)


@router.get(
    "/invoices/{invoice_id}.csv",
    response_class=Response,
    responses={
        200: {
            "description": "The invoice as CSV: one row per line, then the total.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def invoice_as_csv(invoice_id: UUID, runtime: Runtime, caller: Caller) -> Response:
    """The invoice as CSV for accounting import."""
    book, key, _ = await _invoice(runtime, caller, invoice_id)
    body = invoice_csv(book.invoice(key), str(invoice_id))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="invoice-{invoice_id}.csv"'},
    )


@router.get("/invoices/{invoice_id}")
async def get_invoice(invoice_id: UUID, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """One invoice: final as frozen, or the draft as it stands."""
    book, key, finalized_at = await _invoice(runtime, caller, invoice_id)
    return _view(book.account_id, key, book.invoice(key), finalized_at)


# --- budget review and what-if -------------------------------------------------------------------


@router.get("/accounts/{account_id}/budget-review")
async def budget_review(
    account_id: UUID, runtime: Runtime, caller: Caller, quarter: Annotated[Quarter, Query()]
) -> dict[str, Any]:
    """A quarter's use against the budget its fees bought (seed 004's quarterly review)."""
    checked_quarter(quarter, runtime.clock())
    async with runtime.engine.connect() as conn:
        await _authorize(conn, caller, account_id)
        book = await load_book(conn, account_id)
    if book is None:
        raise Problem(409, "Conflict", "The account has no agreement yet.")
    review = book.budget_review(quarter)
    return {
        "account_id": str(account_id),
        "quarter": review.quarter,
        "periods": list(quarter_periods(quarter)),
        "currency": review.currency,
        "budget_cents": review.budget_cents,
        "covered_value_cents": review.covered_value_cents,
        "balance_cents": review.balance_cents,
        # What the next quarter's fees come to as agreed so far: a budget change takes effect
        # from a quarter's start (seed 004 "may be adjusted quarterly").
        "next_budget_cents": book.budget_review(next_quarter(quarter)).budget_cents,
        "by_kind": {
            kind: {
                "minutes": use.minutes,
                "covered_minutes": use.covered_minutes,
                "covered_value_cents": use.covered_value_cents,
                "billed_minutes": use.billed_minutes,
                "billed_cents": use.billed_cents,
            }
            for kind, use in review.by_kind.items()
        },
    }


#: The name of a preset (OpenAPI lists them).
PresetName = Annotated[
    str, Field(json_schema_extra={"enum": [preset.name for preset in list_presets()]})
]


class WhatIf(BaseModel):
    """POST /v1/accounts/{id}/invoices/what-if: a period priced under another plan."""

    model_config = ConfigDict(extra="forbid")

    period: Period
    #: A plan object, or the name of a preset (with `plan_variant` for one of its variants).
    plan: dict[str, Any] | PresetName
    plan_variant: str | None = None


def _what_if_plan(body: WhatIf) -> Plan:
    if isinstance(body.plan, dict):
        try:
            return Plan.model_validate(body.plan)
        except ValidationError as exc:
            errors = [
                {"field": f"plan.{e['field']}" if e["field"] else "plan", "reason": e["reason"]}
                for e in agreement_errors(exc)
            ]
            raise Problem(422, "Unprocessable Content", "invalid plan", errors=errors) from None
    preset = get_preset(body.plan)
    if preset is None:
        raise _invalid("plan", f"unknown preset '{body.plan}'")
    if body.plan_variant is None:
        return preset.agreement.plan
    variant = preset.plan_variants.get(body.plan_variant)
    if variant is None:
        known = ", ".join(preset.plan_variants) or "none"
        raise _invalid("plan_variant", f"preset '{body.plan}' has no such variant ({known})")
    return variant.plan


@router.post("/accounts/{account_id}/invoices/what-if")
async def what_if(
    account_id: UUID, body: WhatIf, runtime: Runtime, caller: Caller
) -> dict[str, Any]:
    """The monthly invoice and usage `period` would have under another plan; nothing stored."""
    period = body.period
    checked_period(period, runtime.clock())
    plan = _what_if_plan(body)
    async with runtime.engine.connect() as conn:
        await _authorize(conn, caller, account_id)
        book = await load_book(conn, account_id)
    if book is None:
        raise Problem(409, "Conflict", "The account has no agreement yet.")
    start, _ = period_bounds(period, book.timezone)
    # The account's own business hours classify after-hours work under the other plan too.
    hours = version_at(book.plans, start).business_hours if plan.business_hours_calendar else None
    rating = book.rating(
        period, plans=[PlanVersion(effective_at=start, plan=plan, business_hours=hours)]
    )
    invoice = monthly_invoice(account_id, rating)
    return {
        "account_id": str(account_id),
        "period": period,
        "plan": plan.model_dump(mode="json"),
        "currency": invoice.currency,
        "lines": lines_json(invoice),
        "total_cents": invoice.total_cents,
        "usage": _usage_view(period_usage(rating)),
    }
