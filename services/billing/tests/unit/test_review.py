"""Quarterly budget review of a managed plan (seed 004) and period helpers."""

from __future__ import annotations

import pytest

from helpdesk.billing.domain.periods import (
    next_period,
    period_bounds,
    period_days,
    quarter_of,
    quarter_periods,
)
from helpdesk.billing.domain.review import KindUse, quarterly_review
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
    with pytest.raises(ValueError, match="YYYY-MM"):
        period_bounds("2025-13", TZ)
    with pytest.raises(ValueError, match="quarter"):
        quarter_periods("2025-Q5")
