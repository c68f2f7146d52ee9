"""Billing's HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Query

from helpdesk.billing.adapters.tables import billing_accounts, billing_tickets
from helpdesk.billing.domain.periods import period_bounds
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1")


@router.get("/accounts/{account_id}/usage")
async def usage(
    account_id: UUID,
    runtime: Runtime,
    caller: Caller,
    period: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
) -> dict[str, Any]:
    """An account's usage in one month (its local calendar month)."""
    if not caller.can_see_account(account_id):
        raise Problem(404, "Not Found", "No such account.")
    async with runtime.engine.connect() as conn:
        timezone = await conn.scalar(
            sa.select(billing_accounts.c.timezone).where(
                billing_accounts.c.account_id == account_id
            )
        )
        if timezone is None:
            raise Problem(404, "Not Found", "No such account.")
        start, end = period_bounds(period, timezone)
        opened = await conn.scalar(
            sa.select(sa.func.count()).where(
                billing_tickets.c.account_id == account_id,
                billing_tickets.c.reported_at >= start,
                billing_tickets.c.reported_at < end,
            )
        )
    return {
        "account_id": account_id,
        "period": period,
        "currency": "USD",
        "tickets_opened": opened,
        "minutes": {"in_scope": 0, "out_of_scope": 0, "by_kind": {}},
        "included_minutes": 0,
        "included_used_minutes": 0,
        "billable_minutes": 0,
        "amount_cents": 0,
    }
