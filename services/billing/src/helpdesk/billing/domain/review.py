"""Quarterly budget review of a managed plan (seed 004: "the Managed Support budget is reviewed
regularly and may be adjusted quarterly").

The budget is what the quarter's fees bill. Against it stands the work the fee covered, valued
as if it had been billed as time and materials at the discounted rate in force when it was done;
separately billed work (time and materials, after hours, flat fees, overage) is shown beside it,
by ticket kind. The value of covered work is a figure for the review meeting, not an invoice:
it is rounded half up once per kind.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from helpdesk.billing.domain.periods import quarter_periods, quarter_start_from
from helpdesk.billing.domain.rating import (
    MarginRevocation,
    PlanVersion,
    Rounding,
    TimeEntry,
    TopUp,
    discounted_rate,
    rate_period,
    round_half_up,
)

#: A plan reviewed every this many months has a quarterly budget (seed 004).
QUARTERLY = 3


def reviewed_quarterly(version: PlanVersion) -> bool:
    """Whether the version's plan has a budget reviewed each quarter."""
    return version.plan.review_every_months == QUARTERLY


def quarterly_budgets(plans: Sequence[PlanVersion], timezone: str) -> tuple[PlanVersion, ...]:
    """The plan versions with seed 004's "may be adjusted quarterly" applied to the fee.

    When a version changes the monthly fee of a plan reviewed quarterly (it and the version
    before it both have `review_every_months` 3), the new fee takes effect from the start of
    the next quarter in `timezone` (at once when the version starts a quarter); its other terms
    take effect when it does. A later version supersedes a fee change still pending. Any other
    version changes the fee when it takes effect. The result splits the timeline where a
    version or a deferred fee begins.
    """
    ordered = sorted(plans, key=lambda v: v.effective_at)
    fee_from = [ordered[0].effective_at] + [
        quarter_start_from(v.effective_at, timezone)
        if reviewed_quarterly(v) and reviewed_quarterly(before)
        else v.effective_at
        for before, v in itertools.pairwise(ordered)
    ]
    versions: list[PlanVersion] = []
    for start in sorted({v.effective_at for v in ordered} | set(fee_from)):
        # The latest version by `start` (of two at one instant, the later) sets the terms.
        terms = ordered[max(i for i, v in enumerate(ordered) if v.effective_at <= start)]
        # The latest version whose fee is in force by `start` decides the fee.
        fee = max(i for i, at in enumerate(fee_from) if at <= start)
        versions.append(
            replace(
                terms,
                effective_at=start,
                plan=terms.plan.model_copy(
                    update={"monthly_fee_cents": ordered[fee].plan.monthly_fee_cents}
                ),
            )
        )
    return tuple(versions)


@dataclass(frozen=True)
class KindUse:
    """One ticket kind's share of a quarter."""

    minutes: int
    #: Minutes the fee (or the allowance) covered.
    covered_minutes: int
    #: Covered minutes valued at the discounted hourly rate.
    covered_value_cents: int
    #: Minutes billed on top of the fee (overage, time and materials, after hours, flat fee).
    billed_minutes: int
    #: What that separately billed work was invoiced for (time lines and flat fees).
    billed_cents: int


@dataclass(frozen=True)
class BudgetReview:
    """Used against budget for one quarter ("YYYY-Qn")."""

    quarter: str
    currency: str
    budget_cents: int
    by_kind: Mapping[str, KindUse]

    @property
    def covered_value_cents(self) -> int:
        """Value of all covered work; above `budget_cents` the fee is too low for the use."""
        return sum(use.covered_value_cents for use in self.by_kind.values())

    @property
    def balance_cents(self) -> int:
        """Budget less the value of covered work (negative when over budget)."""
        return self.budget_cents - self.covered_value_cents


def quarterly_review(
    quarter: str,
    timezone: str,
    entries: Iterable[TimeEntry],
    plans: Sequence[PlanVersion],
    *,
    top_ups: Sequence[TopUp] = (),
    revocations: Sequence[MarginRevocation] = (),
    rounding: Rounding = "per_entry",
) -> BudgetReview:
    """The budget review of `quarter`: its three months rated as for their invoices."""
    history = list(entries)
    budget = 0
    currency = ""
    minutes: defaultdict[str, int] = defaultdict(int)
    covered: defaultdict[str, int] = defaultdict(int)
    covered_value: defaultdict[str, Fraction] = defaultdict(Fraction)
    billed: defaultdict[str, int] = defaultdict(int)
    billed_exact: defaultdict[str, Fraction] = defaultdict(Fraction)
    flat: defaultdict[str, int] = defaultdict(int)
    for period in quarter_periods(quarter):
        rating = rate_period(
            period,
            timezone,
            history,
            plans,
            top_ups=top_ups,
            revocations=revocations,
            rounding=rounding,
        )
        currency = rating.currency
        budget += sum(fee.amount_cents for fee in rating.fees)
        for piece in rating.pieces:
            minutes[piece.kind] += piece.minutes
            value = Fraction(piece.minutes, 60) * discounted_rate(
                piece.hourly_rate_cents, piece.discount_percent
            )
            if piece.treatment in ("in_scope", "included"):
                covered[piece.kind] += piece.minutes
                covered_value[piece.kind] += value
            else:
                billed[piece.kind] += piece.minutes
                if piece.time_billed:
                    billed_exact[piece.kind] += value
        for charge in rating.flat_fees:
            flat[charge.kind] += charge.amount_cents
    return BudgetReview(
        quarter=quarter,
        currency=currency,
        budget_cents=budget,
        by_kind={
            kind: KindUse(
                minutes=minutes[kind],
                covered_minutes=covered[kind],
                covered_value_cents=round_half_up(covered_value[kind]),
                billed_minutes=billed[kind],
                billed_cents=round_half_up(billed_exact[kind]) + flat[kind],
            )
            for kind in sorted(minutes)
        },
    )
