"""Quarterly budget review of a managed plan (seed 004) and period helpers."""

from __future__ import annotations

import pytest

from helpdesk.billing.domain.periods import (
    next_period,
    next_quarter,
    period_bounds,
    period_days,
    quarter_bounds,
    quarter_of,
    quarter_periods,
    quarter_start_from,
)
from helpdesk.billing.domain.rating import PlanVersion, rate_period
from helpdesk.billing.domain.review import KindUse, quarterly_budgets, quarterly_review
from services.billing.tests.unit.billing_fixtures import (
    T1,
    T2,
    T3,
    TZ,
    at,
    entry,
    preset_plan,
    since,
)

pytestmark = pytest.mark.unit


def test_quarterly_review_of_used_against_budget_by_kind() -> None:
    plans = since(
        preset_plan(
            "managed_budget", monthly_fee_cents=400_000, flat_fees={"solution_design": 90_000}
        )
    )
    entries = [
        entry(600, at(2025, 1, 10), kind="incident", scope="in", ticket=T1),
        entry(300, at(2025, 2, 10), kind="incident", scope="in", ticket=T1),
        entry(60, at(2025, 3, 10, 22), kind="incident", scope="in", ticket=T1, after_hours=True),
        entry(120, at(2025, 2, 11), kind="service_request", ticket=T2),
        entry(240, at(2025, 3, 12), kind="solution_design", ticket=T3),
        entry(999, at(2025, 4, 1), kind="incident", scope="in", ticket=T1),  # next quarter
    ]
    review = quarterly_review("2025-Q1", TZ, entries, plans)
    assert review.budget_cents == 3 * 400_000
    assert review.by_kind == {
        "incident": KindUse(
            minutes=960, covered_minutes=900, covered_value_cents=225_000,
            billed_minutes=60, billed_cents=15_000,
        ),
        "service_request": KindUse(
            minutes=120, covered_minutes=0, covered_value_cents=0,
            billed_minutes=120, billed_cents=30_000,
        ),
        "solution_design": KindUse(
            minutes=240, covered_minutes=0, covered_value_cents=0,
            billed_minutes=240, billed_cents=90_000,
        ),
    }  # fmt: skip
    assert review.covered_value_cents == 225_000
    assert review.balance_cents == 1_200_000 - 225_000


def test_period_helpers() -> None:
    start, end = period_bounds("2025-03", TZ)
    assert (start.isoformat(), end.isoformat()) == (
        "2025-03-01T00:00:00-05:00",
        "2025-04-01T00:00:00-04:00",
    )
    assert period_days("2024-02") == 29
    assert next_period("2025-12") == "2026-01"
    assert quarter_of("2025-11") == "2025-Q4"
    assert quarter_periods("2025-Q4") == ("2025-10", "2025-11", "2025-12")
    assert next_quarter("2025-Q4") == "2026-Q1"
    assert quarter_bounds("2025-Q1", TZ) == (at(2025, 1, 1, 0), at(2025, 4, 1, 0))
    assert quarter_start_from(at(2025, 4, 1, 0), TZ) == at(2025, 4, 1, 0)
    assert quarter_start_from(at(2025, 4, 1, 0, 1), TZ) == at(2025, 7, 1, 0)
    with pytest.raises(ValueError, match="YYYY-MM"):
        period_bounds("2025-13", TZ)
    with pytest.raises(ValueError, match="quarter"):
        quarter_periods("2025-Q5")


def test_a_budget_change_takes_effect_from_the_next_quarter() -> None:
    """Seed 004: "the Managed Support budget is reviewed regularly and may be adjusted
    quarterly". A new fee agreed on 15 February bills from 1 April; the version's other terms
    (a flat fee for solution design) apply from its own date."""
    budget = preset_plan("managed_budget", monthly_fee_cents=300_000)
    raised = preset_plan(
        "managed_budget", monthly_fee_cents=350_000, flat_fees={"solution_design": 50_000}
    )
    versions = [*since(budget), PlanVersion(at(2025, 2, 15, 9), raised)]
    plans = quarterly_budgets(versions, TZ)
    assert [(v.effective_at, v.plan.monthly_fee_cents) for v in plans] == [
        (at(2024, 1, 1, 0), 300_000),
        (at(2025, 2, 15, 9), 300_000),
        (at(2025, 4, 1, 0), 350_000),
    ]
    assert plans[1].plan.flat_fees == {"solution_design": 50_000}
    fees = {
        period: sum(f.amount_cents for f in rate_period(period, TZ, [], plans).fees)
        for period in ("2025-02", "2025-03", "2025-04")
    }
    assert fees == {"2025-02": 300_000, "2025-03": 300_000, "2025-04": 350_000}
    assert quarterly_review("2025-Q1", TZ, [], plans).budget_cents == 900_000
    assert quarterly_review("2025-Q2", TZ, [], plans).budget_cents == 1_050_000


def test_budget_changes_at_a_quarter_start_or_leaving_the_plan_apply_at_once() -> None:
    budget = preset_plan("managed_budget", monthly_fee_cents=300_000)
    at_quarter = [
        *since(budget),
        PlanVersion(at(2025, 4, 1, 0), budget.model_copy(update={"monthly_fee_cents": 1})),
    ]
    assert [v.plan.monthly_fee_cents for v in quarterly_budgets(at_quarter, TZ)] == [300_000, 1]
    # Moving to a plan without quarterly reviews changes the fee on its date.
    starter = preset_plan("cloud_platform", "starter")
    moved = [*since(budget), PlanVersion(at(2025, 2, 15, 9), starter)]
    assert [v.plan for v in quarterly_budgets(moved, TZ)] == [budget, starter]
    # Two changes in one quarter: the later one is the next quarter's budget.
    twice = [
        *since(budget),
        PlanVersion(at(2025, 2, 1, 9), budget.model_copy(update={"monthly_fee_cents": 2})),
        PlanVersion(at(2025, 3, 1, 9), budget.model_copy(update={"monthly_fee_cents": 3})),
    ]
    assert [v.plan.monthly_fee_cents for v in quarterly_budgets(twice, TZ)] == [
        300_000,
        300_000,
        300_000,
        3,
    ]
