"""An account's invoice book: which invoices exist, which are due, and what a draft holds.

Pure: the service loads an `AccountBook` (its agreement versions mapped to plan versions, its
time entries, resolved tickets and final invoices) and asks it. Rules:

- a monthly invoice exists for every period from the account's first (that of its first plan
  version, or of earlier work) on; it is draft until its period plus the grace period has
  passed, then final, in period order, and never edited;
- the earliest non-final period is the *open* invoice: it carries adjustment lines for every
  final invoice whose figures changed since (late entries, a re-triage, a time-zone change),
  and for earlier periods that had no invoice when it was finalised;
- on an hourly plan, each resolved ticket gets an invoice of its own, draft until its
  resolution plus the grace period; later work on it becomes adjustments on the open invoice.

Invoice ids are derived (UUIDv5) from the account and period, or from the ticket, so a draft
keeps its id when it becomes final.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from helpdesk.billing.domain.invoices import (
    Invoice,
    InvoiceLine,
    adjustment_lines,
    monthly_invoice,
    ticket_invoice,
)
from helpdesk.billing.domain.periods import (
    next_period,
    next_quarter,
    period_bounds,
    period_of,
    quarter_bounds,
    quarter_of,
)
from helpdesk.billing.domain.rating import (
    MarginRevocation,
    PeriodRating,
    PlanVersion,
    Rounding,
    TimeEntry,
    TopUp,
    plan_at,
    rate_period,
    version_at,
)
from helpdesk.billing.domain.review import BudgetReview, quarterly_review, reviewed_quarterly
from helpdesk.shared.agreements import FairUse

_INVOICE_IDS = uuid5(NAMESPACE_URL, "https://helpdesk.local/invoice-id")


def monthly_key(period: str) -> str:
    """The book key of the monthly invoice of `period`."""
    return f"monthly:{period}"


def ticket_key(ticket_id: UUID) -> str:
    """The book key of the invoice of an hourly ticket."""
    return f"ticket:{ticket_id}"


def invoice_id(account_id: UUID, key: str) -> UUID:
    """The stable id of the invoice `key` of `account_id` (the same as draft and as final)."""
    return uuid5(_INVOICE_IDS, f"{account_id}/{key}")


@dataclass(frozen=True)
class AccountBook:
    """Everything billing knows about one account, as the pure domain takes it."""

    account_id: UUID
    timezone: str
    plans: tuple[PlanVersion, ...]
    entries: tuple[TimeEntry, ...] = ()
    top_ups: tuple[TopUp, ...] = ()
    revocations: tuple[MarginRevocation, ...] = ()
    fair_use: FairUse | None = None
    rounding: Rounding = "per_entry"
    #: Tickets resolved (and not reopened since), with the instant of their resolution.
    resolved: Mapping[UUID, datetime] = field(default_factory=dict)
    #: Final invoices by key (`monthly_key` / `ticket_key`).
    finals: Mapping[str, Invoice] = field(default_factory=dict)

    # --- periods --------------------------------------------------------------------------

    def first_period(self) -> str:
        """The first period that has an invoice: that of the first plan version, or of earlier
        work (rated under the first version)."""
        instants = [min(v.effective_at for v in self.plans)]
        instants += [e.worked_at for e in self.entries]
        return period_of(min(instants), self.timezone)

    def final_periods(self) -> list[str]:
        """Periods with a final monthly invoice, in order."""
        return sorted(inv.period for key, inv in self.finals.items() if key.startswith("monthly:"))

    def open_period(self) -> str:
        """The earliest period whose monthly invoice is not final."""
        finals = self.final_periods()
        return next_period(finals[-1]) if finals else self.first_period()

    def periods_until(self, last: str) -> list[str]:
        """Periods from the open one up to `last`, in order (empty when `last` is earlier)."""
        periods, period = [], self.open_period()
        while period <= last:
            periods.append(period)
            period = next_period(period)
        return periods

    def period_end(self, period: str) -> datetime:
        """The instant `period` ends in the account's time zone."""
        return period_bounds(period, self.timezone)[1]

    # --- invoices -------------------------------------------------------------------------

    def rating(self, period: str, plans: Sequence[PlanVersion] | None = None) -> PeriodRating:
        """`period` rated with everything known (or under `plans`, for a what-if)."""
        return rate_period(
            period,
            self.timezone,
            self.entries,
            plans or self.plans,
            top_ups=self.top_ups,
            revocations=self.revocations,
            fair_use=self.fair_use,
            rounding=self.rounding,
        )

    def hourly_tickets(self) -> list[UUID]:
        """Resolved tickets invoiced on their own: the plan at resolution is hourly, or some of
        their work was done under an hourly plan. Why the latter: that work is left off the
        monthly invoice (`per_ticket`), so a ticket resolved after a move from Hourly to a
        monthly plan would otherwise never bill it (seed 000 "Charged upon completion")."""
        hourly_work = {
            e.ticket_id for e in self.entries if plan_at(self.plans, e.worked_at).kind == "hourly"
        }
        return sorted(
            (
                t
                for t, at in self.resolved.items()
                if t in hourly_work or plan_at(self.plans, at).kind == "hourly"
            ),
            key=str,
        )

    def ticket_draft(self, ticket_id: UUID) -> Invoice:
        """The invoice of a resolved hourly ticket, with what is known now."""
        return ticket_invoice(
            self.account_id,
            ticket_id,
            self.resolved[ticket_id],
            self.timezone,
            self.entries,
            self.plans,
            revocations=self.revocations,
            rounding=self.rounding,
        )

    def adjustments(self) -> tuple[InvoiceLine, ...]:
        """Adjustment lines the open invoice carries, in a fixed order."""
        issued = [
            line for inv in self.finals.values() for line in inv.lines if line.kind == "adjustment"
        ]
        ticket_finals = {inv.ticket_id for inv in self.finals.values() if inv.ticket_id}
        monthly_issued = [line for line in issued if line.ticket_id not in ticket_finals]
        lines: list[InvoiceLine] = []
        open_period = self.open_period()
        period = self.first_period()
        while period < open_period:
            final = self.finals.get(monthly_key(period))
            recomputed = monthly_invoice(self.account_id, self.rating(period))
            # A period before the open one without an invoice was empty when its successor was
            # finalised: all of it is an adjustment now.
            base = final or Invoice(self.account_id, period, recomputed.currency, ())
            lines += adjustment_lines(base, recomputed, monthly_issued)
            period = next_period(period)
        for key in sorted(self.finals):
            final = self.finals[key]
            if final.ticket_id is None:
                continue
            if final.ticket_id in self.resolved:
                recomputed = replace(self.ticket_draft(final.ticket_id), period=final.period)
            else:  # reopened: its work so far, until it is resolved again
                recomputed = replace(
                    ticket_invoice(
                        self.account_id,
                        final.ticket_id,
                        self.period_end(final.period) - timedelta(microseconds=1),
                        self.timezone,
                        self.entries,
                        self.plans,
                        revocations=self.revocations,
                        rounding=self.rounding,
                    ),
                    period=final.period,
                )
            own = [line for line in issued if line.ticket_id == final.ticket_id]
            lines += adjustment_lines(final, recomputed, own)
        return tuple(lines)

    def monthly_draft(self, period: str) -> Invoice:
        """The monthly invoice of a non-final `period`; the open one carries the adjustments."""
        adjustments = self.adjustments() if period == self.open_period() else ()
        return monthly_invoice(self.account_id, self.rating(period), adjustments)

    def invoice(self, key: str) -> Invoice:
        """The invoice `key`: final as frozen, else its draft."""
        if key in self.finals:
            return self.finals[key]
        if key.startswith("ticket:"):
            return self.ticket_draft(UUID(key.removeprefix("ticket:")))
        return self.monthly_draft(key.removeprefix("monthly:"))

    def drafts(self, until: str) -> list[str]:
        """Keys of the draft invoices: monthly ones up to period `until`, then hourly tickets."""
        keys = [monthly_key(p) for p in self.periods_until(until)]
        keys += [ticket_key(t) for t in self.hourly_tickets() if ticket_key(t) not in self.finals]
        return keys

    # --- finalisation ---------------------------------------------------------------------

    def next_due(self, grace: timedelta) -> tuple[datetime, str]:
        """The next invoice to finalise and the instant it is due (its period's end, or the
        ticket's resolution, plus `grace`). The open monthly invoice always comes first among
        monthly ones, so monthly invoices become final in period order."""
        open_period = self.open_period()
        due = [(self.period_end(open_period) + grace, monthly_key(open_period))]
        for ticket_id in self.hourly_tickets():
            key = ticket_key(ticket_id)
            if key not in self.finals:
                due.append((self.resolved[ticket_id] + grace, key))
        return min(due)

    # --- quarterly budget reviews (seed 004) ----------------------------------------------

    def budget_review(self, quarter: str) -> BudgetReview:
        """The budget review of `quarter` with everything known."""
        return quarterly_review(
            quarter,
            self.timezone,
            self.entries,
            self.plans,
            top_ups=self.top_ups,
            revocations=self.revocations,
            rounding=self.rounding,
        )

    def account_manager(self, quarter: str) -> UUID | None:
        """The Technical Account Manager of the plan in force at `quarter`'s end (seed 004)."""
        end = quarter_bounds(quarter, self.timezone)[1]
        in_force = version_at(self.plans, end - timedelta(microseconds=1))
        return in_force.plan.technical_account_manager

    def reviews_due(
        self, reviewed: Collection[str], grace: timedelta, until: datetime
    ) -> tuple[list[str], datetime | None]:
        """Quarters whose budget review is due by `until` and not given yet, in order, and when
        the next one falls due (None: no plan of the account is reviewed quarterly).

        A quarter is reviewed when the plan in force at its end is reviewed every 3 months, once
        it has ended and its last month's grace period has passed: the review then agrees with
        that month's final invoice.
        """
        if not any(reviewed_quarterly(v) for v in self.plans):
            return [], None
        due: list[str] = []
        quarter = quarter_of(self.first_period())
        while True:
            end = quarter_bounds(quarter, self.timezone)[1]
            if end + grace > until:
                return due, end + grace
            if quarter not in reviewed and reviewed_quarterly(
                version_at(self.plans, end - timedelta(microseconds=1))
            ):
                due.append(quarter)
            quarter = next_quarter(quarter)

    def with_final(self, key: str, invoice: Invoice) -> AccountBook:
        """The book once `invoice` is final under `key`."""
        return replace(self, finals={**self.finals, key: invoice})
