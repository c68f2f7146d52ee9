"""Rating against the seed plans: rounding, allowance drawdown, plan changes, top-ups, margins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.billing.domain.invoices import monthly_invoice
from helpdesk.billing.domain.periods import period_bounds, period_of
from helpdesk.billing.domain.rating import (
    MarginRevocation,
    PlanVersion,
    Rounding,
    TimeEntry,
    TopUp,
    price_cents,
    rate_period,
    round_half_up,
    round_up,
)
from helpdesk.billing.domain.usage import period_usage
from services.billing.tests.unit.billing_fixtures import (
    ACCOUNT,
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

STARTER = preset_plan("cloud_platform", "starter")
PRO = preset_plan("cloud_platform", "pro")


def lines_by_kind(invoice_lines: object) -> dict[str, list[tuple[int, int, int]]]:
    """kind -> [(minutes, discount, amount)] of an invoice's lines."""
    found: dict[str, list[tuple[int, int, int]]] = {}
    for line in invoice_lines:  # type: ignore[attr-defined]
        found.setdefault(line.kind, []).append(
            (line.quantity_minutes, line.discount_percent, line.amount_cents)
        )
    return found


# --- money ---------------------------------------------------------------------------------------


def test_money_rounds_half_up_once_per_line() -> None:
    assert round_half_up(Fraction(1, 2)) == 1
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(-1, 2)) == -1
    assert round_half_up(Fraction(249, 100)) == 2
    # 7 min at $150/h less 30 %: 7 × 10500 / 60 = 1225 exactly.
    assert price_cents(7, 15_000, 30) == 1225
    # 1 min at $1.01/h: 1.6833… ¢ → 2 ¢; 3 min at $0.10/h less 50 %: 0.25 ¢ → 0 ¢.
    assert price_cents(1, 101, 0) == 2
    assert price_cents(3, 10, 50) == 0
    assert round_up(130, 15) == 135
    assert round_up(135, 15) == 135


# --- the worked example (docs/policies.md) ------------------------------------------------


def test_starter_worked_example() -> None:
    entries = [
        entry(195, at(2025, 3, 3), ticket=T1),
        entry(130, at(2025, 3, 10), ticket=T2),
        entry(90, at(2025, 3, 12), ticket=T3, scope="in"),
    ]
    rating = rate_period("2025-03", TZ, entries, since(STARTER, "Starter"))
    invoice = monthly_invoice(ACCOUNT, rating)
    assert lines_by_kind(invoice.lines) == {
        "fee": [(0, 0, 50_000)],
        "overage": [(30, 20, 6_000)],
        "included": [(300, 0, 0)],
        "in_scope": [(90, 0, 0)],
    }
    assert invoice.total_cents == 56_000
    usage = period_usage(rating)
    assert (usage.out_of_scope_minutes, usage.in_scope_minutes) == (330, 90)
    assert (usage.included_minutes, usage.included_used_minutes) == (300, 300)
    assert usage.included_remaining_minutes == 0
    assert usage.billable_minutes == 30
    assert usage.amount_cents == 56_000
    assert usage.by_kind == {"incident": 420}


def test_an_entry_crossing_the_allowance_is_split() -> None:
    first = entry(195, at(2025, 3, 3), ticket=T1)
    crossing = entry(130, at(2025, 3, 10), ticket=T2)
    rating = rate_period("2025-03", TZ, [crossing, first], since(STARTER))
    assert [(p.entry_id, p.treatment, p.minutes) for p in rating.pieces] == [
        (first.entry_id, "included", 195),
        (crossing.entry_id, "included", 105),
        (crossing.entry_id, "overage", 30),
    ]


def test_allowance_follows_worked_at_not_arrival() -> None:
    # The later-worked entry arrives first; the earlier one still draws the allowance first.
    late = entry(240, at(2025, 3, 20), ticket=T1)
    early = entry(120, at(2025, 3, 2), ticket=T2)
    rating = rate_period("2025-03", TZ, [late, early], since(STARTER))
    assert [(p.entry_id, p.treatment, p.minutes) for p in rating.pieces] == [
        (early.entry_id, "included", 120),
        (late.entry_id, "included", 180),
        (late.entry_id, "overage", 60),
    ]


_minutes = st.integers(min_value=1, max_value=400)
_entry_specs = st.lists(
    st.tuples(
        _minutes,
        st.integers(min_value=0, max_value=30 * 24 * 60 - 1),  # minute of April
        st.sampled_from(["in", "out"]),
        st.sampled_from([T1, T2, T3]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(specs=_entry_specs, data=st.data(), per_ticket=st.booleans())
def test_entries_in_any_order_rate_the_same(
    specs: list[tuple[int, int, str, object, bool]], data: st.DataObject, per_ticket: bool
) -> None:
    start, _ = period_bounds("2025-04", TZ)
    entries = [
        entry(
            minutes,
            start + timedelta(minutes=offset),
            scope="in" if scope == "in" else "out",
            ticket=ticket,  # type: ignore[arg-type]
            after_hours=after_hours,
            name=f"e{index}",
        )
        for index, (minutes, offset, scope, ticket, after_hours) in enumerate(specs)
    ]
    shuffled = data.draw(st.permutations(entries))
    rounding: Rounding = "per_ticket" if per_ticket else "per_entry"
    plans = since(STARTER)
    one = rate_period("2025-04", TZ, entries, plans, rounding=rounding)
    other = rate_period("2025-04", TZ, shuffled, plans, rounding=rounding)
    assert one == other
    assert monthly_invoice(ACCOUNT, one) == monthly_invoice(ACCOUNT, other)
    usage = period_usage(one)
    # Nothing is lost: every minute is in scope, included or billed, and rounding only adds.
    assert usage.in_scope_minutes + usage.out_of_scope_minutes >= sum(e.minutes for e in entries)
    assert usage.included_used_minutes <= usage.included_minutes == 300
    assert usage.included_used_minutes + usage.billable_minutes == usage.out_of_scope_minutes
    if usage.billable_minutes:
        assert usage.included_used_minutes == 300


def test_per_ticket_rounding_totals_the_ticket_first() -> None:
    entries = [entry(10, at(2025, 3, d), ticket=T1) for d in (3, 4, 5)] + [
        entry(20, at(2025, 3, 6), ticket=T2)
    ]
    plans = since(preset_plan("cloud_platform", "starter", included_minutes=0))
    per_entry = period_usage(rate_period("2025-03", TZ, entries, plans))
    per_ticket = period_usage(rate_period("2025-03", TZ, entries, plans, rounding="per_ticket"))
    assert per_entry.billable_minutes == 15 * 3 + 30
    assert per_ticket.billable_minutes == 30 + 30
    # The surplus of T1 lands on its latest entry.
    rating = rate_period("2025-03", TZ, entries, plans, rounding="per_ticket")
    assert [p.minutes for p in rating.pieces if p.ticket_id == T1] == [10, 10, 10]


# --- plan changes, top-ups ------------------------------------------------------------------------


def test_upgrade_mid_month_prorates_fees_by_day_and_discounts_by_worked_at() -> None:
    # April has 30 days; Pro from the 16th at 14:00 local: Starter 15 days, Pro 15 days.
    plans = [
        PlanVersion(at(2024, 1, 1, 0), STARTER, "Starter"),
        PlanVersion(at(2025, 4, 16, 14), PRO, "Pro"),
    ]
    entries = [
        entry(300, at(2025, 4, 10), ticket=T1),  # the allowance
        entry(60, at(2025, 4, 16, 8), ticket=T1),  # before the upgrade instant: 20 % off
        entry(60, at(2025, 4, 20), ticket=T2),  # after: 30 % off
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-04", TZ, entries, plans))
    fees = [(line.description, line.amount_cents) for line in invoice.lines if line.kind == "fee"]
    assert fees == [
        ("Monthly fee (Starter), 15 of 30 days", 25_000),
        ("Monthly fee (Pro), 15 of 30 days", 43_750),
    ]
    assert lines_by_kind(invoice.lines)["overage"] == [(60, 20, 12_000), (60, 30, 10_500)]
    assert invoice.total_cents == 25_000 + 43_750 + 12_000 + 10_500


def test_a_plan_in_force_all_month_bills_the_whole_fee() -> None:
    # 31 × 50000 / 31 must not drift by a cent, whatever the month length.
    for period in ("2025-02", "2024-02", "2025-03", "2025-04"):
        rating = rate_period(period, TZ, [], since(STARTER))
        assert [fee.amount_cents for fee in rating.fees] == [50_000]


def test_top_up_adds_minutes_for_the_rest_of_the_period_and_a_line() -> None:
    plans = since(PRO, "Pro")
    top_up = TopUp(effective_at=at(2025, 4, 10), minutes=300)
    entries = [
        entry(300, at(2025, 4, 5), ticket=T1),  # uses the plan's 5 h
        entry(120, at(2025, 4, 8), ticket=T2),  # before the top-up: overage
        entry(195, at(2025, 4, 12), ticket=T3),  # within the top-up
    ]
    rating = rate_period("2025-04", TZ, entries, plans, top_ups=[top_up])
    invoice = monthly_invoice(ACCOUNT, rating)
    kinds = lines_by_kind(invoice.lines)
    assert kinds["top_up"] == [(300, 30, 52_500)]  # 5 h at $105/h
    assert kinds["overage"] == [(120, 30, 21_000)]
    assert kinds["included"] == [(495, 0, 0)]
    assert invoice.total_cents == 87_500 + 52_500 + 21_000
    usage = period_usage(rating)
    assert (usage.included_minutes, usage.included_used_minutes) == (600, 495)
    assert usage.included_remaining_minutes == 105
    # A top-up of another month does nothing here.
    may = rate_period("2025-05", TZ, [], plans, top_ups=[top_up])
    assert (may.included_minutes, may.top_ups) == (300, ())


def test_top_up_with_an_agreed_price() -> None:
    top_up = TopUp(effective_at=at(2025, 4, 10), minutes=300, price_cents=40_000)
    rating = rate_period("2025-04", TZ, [], since(PRO), top_ups=[top_up])
    assert lines_by_kind(monthly_invoice(ACCOUNT, rating).lines)["top_up"] == [(300, 30, 40_000)]


# --- partner margin (seed 001) --------------------------------------------------------------------


def test_partner_discount_is_zero_while_the_margin_is_revoked() -> None:
    plans = since(preset_plan("partner_reseller", discount_percent=25))
    revoked = MarginRevocation(revoked_at=at(2025, 5, 10), restored_on=at(2025, 5, 20))
    entries = [
        entry(60, at(2025, 5, 5), ticket=T1),
        entry(60, at(2025, 5, 15), ticket=T2),
        entry(60, at(2025, 5, 20), ticket=T3),  # restored_on is excluded from the interval
        entry(60, at(2025, 5, 12), ticket=T3, scope="in"),  # in scope stays free
    ]
    invoice = monthly_invoice(
        ACCOUNT, rate_period("2025-05", TZ, entries, plans, revocations=[revoked])
    )
    kinds = lines_by_kind(invoice.lines)
    assert kinds["overage"] == [(60, 0, 15_000), (120, 25, 22_500)]
    assert kinds["in_scope"] == [(60, 0, 0)]
    assert invoice.total_cents == 37_500


def test_open_ended_revocation() -> None:
    revoked = MarginRevocation(revoked_at=at(2025, 5, 10))
    assert revoked.covers(at(2030, 1, 1))
    assert not revoked.covers(at(2025, 5, 9))


# --- periods in the account's zone ----------------------------------------------------------------


def test_entry_late_on_the_last_local_day_belongs_to_that_month() -> None:
    late = entry(195, at(2025, 1, 31, 23, 30), ticket=T1)
    assert late.worked_at.astimezone(UTC).month == 2
    assert period_of(late.worked_at, TZ) == "2025-01"
    january = rate_period("2025-01", TZ, [late], since(STARTER))
    february = rate_period("2025-02", TZ, [late], since(STARTER))
    assert sum(p.minutes for p in january.pieces) == 195
    assert february.pieces == ()
    # The same instant in a UTC account is February's.
    assert rate_period("2025-02", "UTC", [late], since(STARTER)).pieces != ()


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2025, 1, 1, 10)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        entry(15, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        PlanVersion(naive, STARTER)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_of(naive, TZ)


def test_entries_must_have_positive_whole_minutes() -> None:
    with pytest.raises(ValueError, match="positive"):
        entry(0, at(2025, 1, 1))
    with pytest.raises(TypeError):
        TimeEntry(
            entry_id=T1, ticket_id=T1, minutes=1.5,  # type: ignore[arg-type]
            work_type="remote", scope="in", kind="incident", after_hours=False,
            worked_at=at(2025, 1, 1),
        )  # fmt: skip
