"""Finalisation: once per invoice after the grace period, late work as adjustments, and a
rebuild that restores final invoices from the stream byte for byte."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.billing.adapters.tables import (
    billing_budget_reviews,
    billing_invoices,
    projection_tables,
)
from helpdesk.billing.domain.periods import next_quarter, quarter_of
from helpdesk.shared.db import table_digest
from helpdesk.shared.settings import Settings
from services.billing.tests.integration._support import (
    Stack,
    account_with,
    entries_seen,
    grace_hours,
    iso,
    log,
    month_start,
    settled,
    ticket_at,
    topic_types,
)
from services.intake.tests.integration._support import As, ok, problem_fields, staff_key
from tests.support import ADMIN_TOKEN, in_process, wait_for

pytestmark = pytest.mark.integration

FINALIZED = "billing.invoice_finalized"


async def test_invoices_finalise_once_adjust_later_work_and_survive_a_rebuild(
    settings: Settings,
) -> None:
    async with in_process("intake", settings) as intake:
        with grace_hours(0):
            billing_service = in_process("billing", settings)
            billing = await billing_service.__aenter__()
        try:
            stack = Stack(intake, billing, As(intake.http, ADMIN_TOKEN))
            await _scenario(stack, settings)
        finally:
            await billing_service.__aexit__(None, None, None)


async def _finals(stack: Stack) -> list[Any]:
    async with stack.billing.runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(billing_invoices).order_by(billing_invoices.c.period))
        return list(rows)


async def _scenario(stack: Stack, settings: Settings) -> None:
    importer = await stack.importer()
    effective = month_start(3)
    agreement = {"preset": "cloud_platform", "plan_variant": "starter",
                 "effective_from": iso(effective)}  # fmt: skip
    account = await account_with(stack.admin, agreement)
    periods = [month_start(n).strftime("%Y-%m") for n in (3, 2, 1)]
    current = month_start(0).strftime("%Y-%m")

    async def three() -> list[Any] | None:
        rows = await _finals(stack)
        return rows if len(rows) == 3 else None

    finals = await wait_for(three)
    assert [r.period for r in finals] == periods
    assert all(r.total_cents == 50000 for r in finals)

    # work done two months ago arrives after that month was final
    late = month_start(2)
    ticket = await ticket_at(importer, account["id"], late + timedelta(hours=1))
    await log(
        importer, ticket, 360, late + timedelta(hours=2), at=late + timedelta(hours=3), scope="out"
    )
    await entries_seen(stack.billing, ticket, 1)
    billing = stack.on_billing(stack.admin)
    url = f"/v1/accounts/{account['id']}/invoices"

    def adjusted(body: Any) -> bool:
        open_ = next(i for i in body["items"] if i["period"] == current)
        return any(line["kind"] == "adjustment" for line in open_["lines"])

    body = await settled(billing, url, adjusted)
    by_period = {i["period"]: i for i in body["items"]}
    assert [by_period[p]["status"] for p in periods] == ["final"] * 3
    assert by_period[periods[1]]["total_cents"] == 50000  # never edited
    open_ = by_period[current]
    assert open_["status"] == "draft"
    adjustments = [x for x in open_["lines"] if x["kind"] == "adjustment"]
    assert {
        (x["adjusts_period"], x["quantity_minutes"], x["amount_cents"]) for x in adjustments
    } == {
        (periods[1], 300, 0),
        (periods[1], 60, 12000),
    }
    assert open_["total_cents"] == 50000 + 12000

    # exactly once: one event per final invoice on the stream, whatever the loop did since
    async def on_topic() -> list[str] | None:
        types = await topic_types(settings.kafka_bootstrap, settings.topic, settings.partitions)
        return types if types.count(FINALIZED) >= 3 else None

    types = await wait_for(on_topic)
    assert types.count(FINALIZED) == 3
    print(f"\n{types.count(FINALIZED)} invoice_finalized events for 3 due periods")

    # a rebuild restores the final invoices from the stream, and every draft figure
    views = {i["id"]: ok(await billing.get(f"/v1/invoices/{i['id']}")) for i in body["items"]}
    usage = f"/v1/accounts/{account['id']}/usage?period={periods[1]}"
    before_usage = ok(await billing.get(usage))
    runtime = stack.billing.runtime
    async with runtime.engine.connect() as conn:
        before = await table_digest(conn, projection_tables)
    await runtime.rebuild()
    async with runtime.engine.connect() as conn:
        after = await table_digest(conn, projection_tables)
    assert after == before
    assert {k: ok(await billing.get(f"/v1/invoices/{k}")) for k in views} == views
    assert ok(await billing.get(usage)) == before_usage
    assert len(await _finals(stack)) == 3


REVIEWED = "billing.budget_reviewed"


async def test_quarterly_budget_reviews_are_given_once_and_a_new_budget_waits_a_quarter(
    settings: Settings,
) -> None:
    """Seed 004: "the Managed Support budget is reviewed regularly and may be adjusted
    quarterly" and "Regular reviews with your Technical Account Manager": each ended quarter gets
    one `billing.budget_reviewed` event, and a fee changed mid-quarter bills from the next."""
    async with in_process("intake", settings) as intake:
        with grace_hours(0):
            billing_service = in_process("billing", settings)
            billing = await billing_service.__aenter__()
        try:
            stack = Stack(intake, billing, As(intake.http, ADMIN_TOKEN))
            await _reviews(stack, settings)
        finally:
            await billing_service.__aexit__(None, None, None)


async def _reviews(stack: Stack, settings: Settings) -> None:
    effective = month_start(6)
    tam, _ = await staff_key(stack.admin, "manager")
    plan = {"monthly_fee_cents": 300_000, "technical_account_manager": tam["id"]}
    agreement = {"preset": "managed_budget", "effective_from": iso(effective), "plan": plan}
    account = await account_with(stack.admin, agreement)
    stranger = {**agreement, "plan": {"technical_account_manager": str(uuid.uuid4())}}
    url = f"/v1/accounts/{account['id']}/agreement"
    assert problem_fields(await stack.admin.put(url, stranger)) == [
        "plan.technical_account_manager"
    ]
    current = quarter_of(month_start(0).strftime("%Y-%m"))
    expected, quarter = [], quarter_of(effective.strftime("%Y-%m"))
    while quarter != current:
        expected.append(quarter)
        quarter = next_quarter(quarter)

    async def given() -> list[Any] | None:
        async with stack.billing.runtime.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(billing_budget_reviews).order_by(billing_budget_reviews.c.quarter)
                )
            )
        return rows if len(rows) == len(expected) else None

    rows = await wait_for(given)
    assert [r.quarter for r in rows] == expected
    assert {r.review["budget_cents"] for r in rows} == {900_000}
    # The notifier mails each review to the plan's Technical Account Manager too.
    assert {r.review["technical_account_manager"] for r in rows} == {tam["id"]}
    # Given at once, the earlier quarters only catch up: the latest one is the news mailed.
    assert [r.review["catching_up"] for r in rows] == [True] * (len(rows) - 1) + [False]

    async def on_topic() -> list[str] | None:
        types = await topic_types(settings.kafka_bootstrap, settings.topic, settings.partitions)
        return types if types.count(REVIEWED) >= len(expected) else None

    assert (await wait_for(on_topic)).count(REVIEWED) == len(expected)

    # A new budget agreed now bills from the next quarter's start.
    ok(await stack.admin.put(
        f"/v1/accounts/{account['id']}/agreement",
        {**agreement, "effective_from": None,
         "plan": {"monthly_fee_cents": 350_000, "technical_account_manager": tam["id"]}},
    ))  # fmt: skip
    url = f"/v1/accounts/{account['id']}/budget-review?quarter={current}"
    review = await settled(
        stack.on_billing(stack.admin), url, lambda b: b["next_budget_cents"] == 1_050_000
    )
    assert review["budget_cents"] == 900_000

    # A rebuild restores the reviews from their events and gives none again.
    runtime = stack.billing.runtime
    async with runtime.engine.connect() as conn:
        before = await table_digest(conn, projection_tables)
    await runtime.rebuild()
    async with runtime.engine.connect() as conn:
        assert await table_digest(conn, projection_tables) == before
    types = await topic_types(settings.kafka_bootstrap, settings.topic, settings.partitions)
    assert types.count(REVIEWED) == len(expected)
