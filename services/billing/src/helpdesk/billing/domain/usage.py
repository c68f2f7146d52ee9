"""Usage of a period: the figures GET /v1/accounts/{id}/usage shows (its public shape)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from helpdesk.billing.domain.fair_use import FairUseExceedance
from helpdesk.billing.domain.invoices import monthly_lines, work_lines
from helpdesk.billing.domain.rating import PeriodRating, RatedPiece


@dataclass(frozen=True)
class Usage:
    """An account's usage in one period. Minutes are billing minutes (rounded up to the plan's
    increment), so that they add up to the invoice's quantities."""

    period: str
    currency: str
    in_scope_minutes: int
    out_of_scope_minutes: int
    by_kind: Mapping[str, int]
    included_minutes: int
    included_used_minutes: int
    #: Minutes priced at the hourly rate (overage, time and materials, after hours).
    billable_minutes: int
    #: What the period would bill if finalised now: the monthly invoice (without adjustments
    #: carried from earlier periods), plus work under an hourly plan, priced per ticket.
    amount_cents: int
    fair_use: tuple[FairUseExceedance, ...] = ()
    #: Work whose kind or after-hours standing is not simply the ticket's: solution design
    #: after a resolution, after-hours work (by the calendar or by the technician's flag).
    classified: tuple[RatedPiece, ...] = ()
    #: Out-of-scope work done before the contact approved a quote for it (seed 000): billed as
    #: the plan says, and listed so the provider can settle it with the customer.
    before_quote_approval: tuple[RatedPiece, ...] = ()

    @property
    def included_remaining_minutes(self) -> int:
        """Allowance left for the rest of the period."""
        return max(self.included_minutes - self.included_used_minutes, 0)


def period_usage(rating: PeriodRating) -> Usage:
    """Usage figures of a rated period (see `rate_period`).

    Work under an hourly plan is counted by worked_at here, although its invoice follows the
    ticket's resolution: usage says what was done in the month, and what it is worth.
    """
    by_scope: defaultdict[str, int] = defaultdict(int)
    by_kind: defaultdict[str, int] = defaultdict(int)
    for piece in rating.pieces:
        by_scope[piece.scope] += piece.minutes
        by_kind[piece.kind] += piece.minutes
    monthly = sum(line.amount_cents for line in monthly_lines(rating))
    per_ticket = sum(
        line.amount_cents
        for line in work_lines((p for p in rating.pieces if p.per_ticket), by_ticket=True)
    )
    return Usage(
        period=rating.period,
        currency=rating.currency,
        in_scope_minutes=by_scope["in"],
        out_of_scope_minutes=by_scope["out"],
        by_kind=dict(sorted(by_kind.items())),
        included_minutes=rating.included_minutes,
        included_used_minutes=sum(p.minutes for p in rating.pieces if p.treatment == "included"),
        billable_minutes=sum(p.minutes for p in rating.pieces if p.time_billed),
        amount_cents=monthly + per_ticket,
        fair_use=rating.fair_use,
        classified=tuple(
            p
            for p in rating.pieces
            if p.kind_reason != "ticket" or p.after_hours_reason is not None
        ),
        before_quote_approval=tuple(p for p in rating.pieces if p.before_quote_approval),
    )
