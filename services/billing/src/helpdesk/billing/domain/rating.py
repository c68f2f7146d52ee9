"""Rating: time entries priced against the plan in force when the work was done.

Pure: every input is a parameter (entries, plan versions, top-ups, margin revocations, the
period and the account's time zone); nothing reads a clock.

How an entry is treated, under the plan version in force at its `worked_at`, once
`classification.classify` has said what it is (its kind: an incident worked on after its
resolution is solution design; and whether it is after hours: flagged so, or worked outside the
plan's business-hours calendar):

1. its kind is in `plan.excluded_kinds` (seed 004): billed separately, as the kind's
   pre-approved flat fee when `plan.flat_fees` names one (`flat_fee`; the fee is charged once per
   ticket and kind, in the period of the first such entry, and covers all of that ticket's work
   of that kind, after hours included), else as time and materials at the discounted rate
   (`time_and_materials`). Scope does not matter: the kind is excluded either way;
2. it is after hours and `plan.after_hours_billable` (seed 004 "after-hours incident
   response", seed 002's add-on): billed as time and materials at the discounted rate
   (`after_hours`), even when in scope, and it does not draw the included allowance (the
   allowance is for ordinary out-of-scope work during hours);
3. out of scope: on an hourly plan billed as time and materials on the ticket's own invoice
   (`time_and_materials`); on a monthly or managed plan it draws down the allowance first
   (`included`, zero price) and the rest is `overage` at the discounted rate;
4. otherwise in scope and covered (`in_scope`, zero price): free on hourly and monthly plans,
   paid for by the fee on a managed plan.

Rounding: each entry is rounded up to the increment of the plan in force at its worked_at. With
`rounding="per_ticket"` the raw minutes of a ticket are totalled per treatment and the total is
rounded up once; the rounding surplus is booked on the ticket's latest entry of that treatment,
so the allowance is still drawn down entry by entry.

Allowance: out-of-scope entries draw it down in (worked_at, entry_id) order, whatever order they
arrive in, and an entry that crosses it is split into an included and an overage part. The
allowance available to an entry is the `included_minutes` of the plan in force at its worked_at
plus the top-ups of the period effective by then, less what earlier entries used; an upgrade to a
larger allowance thus raises the cap from its instant on.

Discount: the plan's `discount_percent` at worked_at, or 0 while a partner's margin is revoked
(seed 001). Money is integer cents; see `price_cents` for the one rounding step.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal
from uuid import UUID

from helpdesk.billing.domain.classification import (
    AfterHoursReason,
    Classification,
    KindReason,
    classify,
)
from helpdesk.billing.domain.fair_use import FairUseExceedance, fair_use_exceedances
from helpdesk.billing.domain.periods import (
    local_date,
    period_bounds,
    period_dates,
    period_days,
    period_of,
    require_aware,
)
from helpdesk.shared.agreements import Calendar, FairUse, Plan, TicketKind, WorkType
from helpdesk.shared.contracts.common import Scope

Rounding = Literal["per_entry", "per_ticket"]
Treatment = Literal[
    "in_scope", "included", "overage", "time_and_materials", "after_hours", "flat_fee"
]
#: Treatments whose minutes are priced at the hourly rate less the discount.
TIME_BILLED: frozenset[Treatment] = frozenset({"overage", "time_and_materials", "after_hours"})

_MINUTES_PER_HOUR = 60
_ONE_TICK = timedelta(microseconds=1)


# --- money -------------------------------------------------------------------------------------


def round_half_up(amount: Fraction) -> int:
    """`amount` rounded to a whole number, halves away from zero (0.5 → 1, -0.5 → -1).

    Banker's rounding (Python's `round`) would bill 0.5 ¢ as 0 on one line and 2.5 ¢ as 2 on
    another; invoices round halves up, which for negative figures means away from zero.
    """
    magnitude = abs(amount)
    rounded = int(magnitude + Fraction(1, 2))
    return rounded if amount >= 0 else -rounded


def discounted_rate(hourly_rate_cents: int, discount_percent: int) -> Fraction:
    """The hourly rate less the discount, exactly (in cents per hour, not rounded)."""
    return Fraction(hourly_rate_cents * (100 - discount_percent), 100)


def price_cents(minutes: int, hourly_rate_cents: int, discount_percent: int) -> int:
    """The price of `minutes` at `hourly_rate_cents` less `discount_percent`, in whole cents.

    Computed exactly (minutes × rate × (100 − discount) / 6000) and rounded half up once, so
    the discounted rate itself is never rounded: 7 minutes at $150/h less 30 % is 1225 ¢, not
    7 × round($105/60).
    """
    exact = Fraction(minutes, _MINUTES_PER_HOUR) * discounted_rate(
        hourly_rate_cents, discount_percent
    )
    return round_half_up(exact)


def round_up(minutes: int, increment: int) -> int:
    """`minutes` rounded up to a multiple of `increment` (130 → 135 in 15-minute steps)."""
    return -(-minutes // increment) * increment


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeEntry:
    """Work booked on a ticket, as the service maps a `ticket.time_logged` event.

    `scope` and `kind` are the ticket's current ones: a later `ticket.triaged` re-rates the
    ticket by mapping its entries again. `after_hours` and `solution_design` are the
    technician's marks (None: billing classifies, see `classification`); `after_resolution`
    says the ticket stood resolved at `worked_at`, as its resolutions and reopens tell;
    `before_quote_approval` that it is out-of-scope work done before the contact approved a
    quote for it (seed 000: "For out-of-scope items we will respond with a statement of work").
    """

    entry_id: UUID
    ticket_id: UUID
    minutes: int
    work_type: WorkType
    scope: Scope
    kind: TicketKind
    after_hours: bool | None
    worked_at: datetime
    solution_design: bool | None = None
    after_resolution: bool = False
    before_quote_approval: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, int):
            raise TypeError("minutes must be an int")
        if self.minutes <= 0:
            raise ValueError("minutes must be positive")
        require_aware(self.worked_at, "worked_at")


@dataclass(frozen=True)
class PlanVersion:
    """A plan in force from `effective_at` until the next version (seed 000 upgrades)."""

    effective_at: datetime
    plan: Plan
    #: Shown on fee lines, e.g. "Starter" or "Pro".
    label: str = ""
    #: The agreement's calendar named by `plan.business_hours_calendar`: work outside it is
    #: after hours unless the technician says otherwise.
    business_hours: Calendar | None = None

    def __post_init__(self) -> None:
        require_aware(self.effective_at, "effective_at")


@dataclass(frozen=True)
class TopUp:
    """Included minutes bought mid-period (seed 000 Pro: "add 5 hours at discount").

    They count from `effective_at` to the end of its period. Without `price_cents` the price is
    the minutes at the hourly rate less the discount in force at `effective_at`.
    """

    effective_at: datetime
    minutes: int
    price_cents: int | None = None

    def __post_init__(self) -> None:
        require_aware(self.effective_at, "effective_at")
        if self.minutes <= 0:
            raise ValueError("a top-up adds a positive number of minutes")
        if self.price_cents is not None and self.price_cents < 0:
            raise ValueError("a top-up price cannot be negative")


@dataclass(frozen=True)
class MarginRevocation:
    """A partner's margin revoked over [revoked_at, restored_on) (seed 001); open-ended when
    `restored_on` is None."""

    revoked_at: datetime
    restored_on: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.revoked_at, "revoked_at")
        if self.restored_on is not None:
            require_aware(self.restored_on, "restored_on")

    def covers(self, instant: datetime) -> bool:
        """Whether the margin is revoked at `instant`."""
        return self.revoked_at <= instant and (
            self.restored_on is None or instant < self.restored_on
        )


# --- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatedPiece:
    """An entry, or the included or overage part of a split one, with its treatment and price
    terms. `minutes` are billing minutes (after rounding); the price is made per line."""

    entry_id: UUID
    ticket_id: UUID
    kind: TicketKind
    scope: Scope
    worked_at: datetime
    minutes: int
    treatment: Treatment
    hourly_rate_cents: int
    discount_percent: int
    #: Billed on the ticket's own invoice at resolution (hourly plan), not the monthly one.
    per_ticket: bool = False
    #: Why the entry has its kind (the ticket's, or solution design after a resolution...).
    kind_reason: KindReason = "ticket"
    #: Why it is after hours (flagged, or worked outside business hours); None when it is not.
    after_hours_reason: AfterHoursReason | None = None
    #: Out-of-scope work done before the contact approved a quote (`TimeEntry`).
    before_quote_approval: bool = False

    @property
    def time_billed(self) -> bool:
        """Whether these minutes are priced at the (discounted) hourly rate."""
        return self.treatment in TIME_BILLED


@dataclass(frozen=True)
class FeeShare:
    """A plan version's share of the monthly fee, prorated by local day."""

    label: str
    monthly_fee_cents: int
    days: int
    period_days: int

    @property
    def amount_cents(self) -> int:
        """fee × days / days in the month, rounded half up (exact when the plan ran all month)."""
        return round_half_up(Fraction(self.monthly_fee_cents * self.days, self.period_days))


@dataclass(frozen=True)
class RatedTopUp:
    """A top-up with its price terms."""

    top_up: TopUp
    hourly_rate_cents: int
    discount_percent: int

    @property
    def amount_cents(self) -> int:
        """The agreed price, else the minutes at the discounted rate."""
        if self.top_up.price_cents is not None:
            return self.top_up.price_cents
        return price_cents(self.top_up.minutes, self.hourly_rate_cents, self.discount_percent)


@dataclass(frozen=True)
class FlatFeeCharge:
    """A flat-fee ticket (of one kind) with work in the period."""

    ticket_id: UUID
    kind: TicketKind
    fee_cents: int
    minutes: int
    #: The period whose invoice carries the fee (that of the ticket's first flat-fee entry).
    charged_in: str
    period: str

    @property
    def amount_cents(self) -> int:
        """The fee in the period it is charged in, 0 in later ones."""
        return self.fee_cents if self.charged_in == self.period else 0


@dataclass(frozen=True)
class PeriodRating:
    """Everything a month's invoice and usage are made of."""

    period: str
    timezone: str
    currency: str
    pieces: tuple[RatedPiece, ...]
    fees: tuple[FeeShare, ...]
    top_ups: tuple[RatedTopUp, ...]
    flat_fees: tuple[FlatFeeCharge, ...]
    #: The allowance at the end of the period: the plan's included minutes plus top-ups.
    included_minutes: int
    fair_use: tuple[FairUseExceedance, ...] = field(default=())


# --- the plan in force -------------------------------------------------------------------------


def _ordered(plans: Sequence[PlanVersion]) -> list[PlanVersion]:
    if not plans:
        raise ValueError("at least one plan version is needed")
    return sorted(plans, key=lambda v: v.effective_at)


def version_at(plans: Sequence[PlanVersion], instant: datetime) -> PlanVersion:
    """The plan version in force at `instant`: the latest one effective at or before it.

    Work before the first version is rated under the first one (the agreement an account opened
    with), so no entry is ever left without a plan.
    """
    require_aware(instant)
    ordered = _ordered(plans)
    index = bisect.bisect_right([v.effective_at for v in ordered], instant) - 1
    return ordered[max(index, 0)]


def plan_at(plans: Sequence[PlanVersion], instant: datetime) -> Plan:
    """The plan in force at `instant` (see `version_at`)."""
    return version_at(plans, instant).plan


def discount_at(plan: Plan, instant: datetime, revocations: Sequence[MarginRevocation] = ()) -> int:
    """The discount for work at `instant`: 0 while a partner's margin is revoked."""
    if any(r.covers(instant) for r in revocations):
        return 0
    return plan.discount_percent


# --- rating ------------------------------------------------------------------------------------

_Class = Literal["in_scope", "allowance", "time_and_materials", "after_hours", "flat_fee"]


def classify_entry(entry: TimeEntry, plans: Sequence[PlanVersion]) -> Classification:
    """What `entry` is under the plan version in force at its worked_at (see
    `classification.classify`)."""
    return classify(
        kind=entry.kind,
        worked_at=entry.worked_at,
        after_hours=entry.after_hours,
        solution_design=entry.solution_design,
        after_resolution=entry.after_resolution,
        business_hours=version_at(plans, entry.worked_at).business_hours,
    )


def _classify(entry: TimeEntry, what: Classification, plan: Plan) -> _Class:
    if what.kind in plan.excluded_kinds:
        if plan.flat_fees is not None and what.kind in plan.flat_fees:
            return "flat_fee"
        return "time_and_materials"
    if what.after_hours and plan.after_hours_billable:
        return "after_hours"
    if entry.scope == "out":
        return "time_and_materials" if plan.kind == "hourly" else "allowance"
    return "in_scope"


def _sorted(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    # entry_id breaks ties so that two entries at the same instant draw down deterministically.
    return sorted(entries, key=lambda e: (e.worked_at, str(e.entry_id)))


def _rounded_minutes(
    entries: Sequence[TimeEntry],
    classes: Sequence[_Class],
    plans: Sequence[PlanVersion],
    rounding: Rounding,
) -> list[int]:
    """Billing minutes of each (sorted) entry under `rounding`."""
    if rounding == "per_entry":
        return [round_up(e.minutes, plan_at(plans, e.worked_at).increment_minutes) for e in entries]
    if rounding != "per_ticket":
        raise ValueError(f"unknown rounding {rounding!r}")
    minutes = [e.minutes for e in entries]
    groups: defaultdict[tuple[UUID, _Class], list[int]] = defaultdict(list)
    for index, (entry, cls) in enumerate(zip(entries, classes, strict=True)):
        groups[(entry.ticket_id, cls)].append(index)
    for indices in groups.values():
        last = indices[-1]  # entries are sorted, so this is the group's latest entry
        total = sum(entries[i].minutes for i in indices)
        increment = plan_at(plans, entries[last].worked_at).increment_minutes
        minutes[last] += round_up(total, increment) - total
    return minutes


def _rate(
    entries: Iterable[TimeEntry],
    plans: Sequence[PlanVersion],
    revocations: Sequence[MarginRevocation],
    top_ups: Sequence[TopUp],
    rounding: Rounding,
) -> list[RatedPiece]:
    """Rate `entries` (one period's, or one ticket's) into pieces, drawing the allowance."""
    ordered = _sorted(entries)
    plans_of = [plan_at(plans, e.worked_at) for e in ordered]
    whats = [classify_entry(e, plans) for e in ordered]
    classes = [_classify(e, w, p) for e, w, p in zip(ordered, whats, plans_of, strict=True)]
    minutes = _rounded_minutes(ordered, classes, plans, rounding)
    used = 0
    pieces: list[RatedPiece] = []
    for entry, what, plan, cls, billed in zip(
        ordered, whats, plans_of, classes, minutes, strict=True
    ):
        discount = discount_at(plan, entry.worked_at, revocations)
        if cls != "allowance":
            pieces.append(_piece(entry, what, plan, discount, cls, billed))
            continue
        allowance = plan.included_minutes + sum(
            t.minutes for t in top_ups if t.effective_at <= entry.worked_at
        )
        included = min(billed, max(allowance - used, 0))
        used += included
        if included:
            pieces.append(_piece(entry, what, plan, discount, "included", included))
        if billed > included:
            pieces.append(_piece(entry, what, plan, discount, "overage", billed - included))
    return pieces


def _piece(
    entry: TimeEntry,
    what: Classification,
    plan: Plan,
    discount: int,
    treatment: Treatment,
    minutes: int,
) -> RatedPiece:
    return RatedPiece(
        entry_id=entry.entry_id,
        ticket_id=entry.ticket_id,
        kind=what.kind,
        scope=entry.scope,
        worked_at=entry.worked_at,
        minutes=minutes,
        treatment=treatment,
        hourly_rate_cents=plan.hourly_rate_cents,
        discount_percent=discount,
        per_ticket=plan.kind == "hourly",
        kind_reason=what.kind_reason,
        after_hours_reason=what.after_hours_reason,
        before_quote_approval=entry.before_quote_approval,
    )


def _fee_shares(period: str, timezone: str, plans: Sequence[PlanVersion]) -> list[FeeShare]:
    """The monthly fee split by local day between the versions in force that month.

    A version takes a whole day from the local date it becomes effective (the upgrade "takes
    effect from its date"). Days before the first version are the first version's: work done
    then is rated under it (`version_at`), so its fee is due for them too (seed 000 "$500/month";
    an agreement recorded after its month's work was imported still bills that month's fee).
    Versions with the same label and fee share one line, rounded once: a new agreement version
    that leaves the fee alone (an SLA edit) must not split $500.00 into shares that round to
    $499.99.
    """
    ordered = _ordered(plans)
    days_of: dict[tuple[str, int], int] = {}
    for day in period_dates(period):
        # The version in force at the end of the local day owns the day.
        candidates = [
            i for i, v in enumerate(ordered) if local_date(v.effective_at, timezone) <= day
        ]
        owner = ordered[candidates[-1] if candidates else 0]
        key = (owner.label, owner.plan.monthly_fee_cents)
        days_of[key] = days_of.get(key, 0) + 1
    total = period_days(period)
    return [
        FeeShare(label=label, monthly_fee_cents=fee, days=days, period_days=total)
        for (label, fee), days in days_of.items()  # in order of first day (dicts keep order)
        if fee > 0
    ]


def _flat_fee_charges(
    period: str,
    timezone: str,
    pieces: Sequence[RatedPiece],
    history: Sequence[TimeEntry],
    plans: Sequence[PlanVersion],
) -> list[FlatFeeCharge]:
    minutes: defaultdict[tuple[UUID, TicketKind], int] = defaultdict(int)
    for p in pieces:
        if p.treatment == "flat_fee":
            minutes[(p.ticket_id, p.kind)] += p.minutes
    charges = []
    for (ticket_id, kind), worked in sorted(minutes.items(), key=lambda kv: str(kv[0][0])):
        first = next(
            e
            for e in history
            if e.ticket_id == ticket_id
            and (what := classify_entry(e, plans)).kind == kind
            and _classify(e, what, plan_at(plans, e.worked_at)) == "flat_fee"
        )
        fees = plan_at(plans, first.worked_at).flat_fees
        assert fees is not None
        charges.append(
            FlatFeeCharge(
                ticket_id=ticket_id,
                kind=kind,
                fee_cents=fees[kind],
                minutes=worked,
                charged_in=period_of(first.worked_at, timezone),
                period=period,
            )
        )
    return charges


def _currency(period: str, timezone: str, plans: Sequence[PlanVersion]) -> str:
    start, end = period_bounds(period, timezone)
    in_force = {version_at(plans, start).plan.currency} | {
        v.plan.currency for v in plans if start <= v.effective_at < end
    }
    if len(in_force) != 1:
        raise ValueError(f"plans of {period} mix currencies {sorted(in_force)}")
    return in_force.pop()


def rate_period(
    period: str,
    timezone: str,
    entries: Iterable[TimeEntry],
    plans: Sequence[PlanVersion],
    *,
    top_ups: Sequence[TopUp] = (),
    revocations: Sequence[MarginRevocation] = (),
    fair_use: FairUse | None = None,
    rounding: Rounding = "per_entry",
) -> PeriodRating:
    """Rate one month (`period`, "YYYY-MM", local to `timezone`) of an account.

    `entries` may be every entry of the account: the period's are those whose worked_at falls in
    its local month; earlier ones are needed for per-ticket fair use and for where a flat fee was
    charged. `plans` are the account's plan versions, `top_ups` and `revocations` its top-ups and
    margin revocations (those outside the period are ignored). Work under an hourly plan is rated
    too (for usage) but marked `per_ticket`: it is invoiced by `ticket_invoice`.
    """
    start, end = period_bounds(period, timezone)
    history = _sorted(entries)
    in_period = [e for e in history if start <= e.worked_at < end]
    period_top_ups = sorted(
        (t for t in top_ups if start <= t.effective_at < end), key=lambda t: t.effective_at
    )
    pieces = _rate(in_period, plans, revocations, period_top_ups, rounding)
    rated_top_ups = []
    for top_up in period_top_ups:
        plan = plan_at(plans, top_up.effective_at)
        rated_top_ups.append(
            RatedTopUp(
                top_up=top_up,
                hourly_rate_cents=plan.hourly_rate_cents,
                discount_percent=discount_at(plan, top_up.effective_at, revocations),
            )
        )
    last_instant = end - _ONE_TICK
    closing_plan = plan_at(plans, last_instant)
    included = (0 if closing_plan.kind == "hourly" else closing_plan.included_minutes) + sum(
        t.minutes for t in period_top_ups
    )
    return PeriodRating(
        period=period,
        timezone=timezone,
        currency=_currency(period, timezone, plans),
        pieces=tuple(pieces),
        fees=tuple(_fee_shares(period, timezone, plans)),
        top_ups=tuple(rated_top_ups),
        flat_fees=tuple(_flat_fee_charges(period, timezone, pieces, history, plans)),
        included_minutes=included,
        fair_use=tuple(
            x
            for x in fair_use_exceedances(history, fair_use, timezone)
            if start <= x.worked_at < end
        ),
    )


def rate_ticket(
    ticket_id: UUID,
    entries: Iterable[TimeEntry],
    plans: Sequence[PlanVersion],
    *,
    revocations: Sequence[MarginRevocation] = (),
    rounding: Rounding = "per_entry",
) -> tuple[RatedPiece, ...]:
    """Rate the work of one ticket done under an hourly plan (seed 000: "charged upon completion
    of service"); entries of other tickets, and work done under a monthly or managed plan (that
    is on the monthly invoice), are left out. `per_ticket` rounding totals the whole ticket."""
    own = [
        e
        for e in entries
        if e.ticket_id == ticket_id and plan_at(plans, e.worked_at).kind == "hourly"
    ]
    return tuple(_rate(own, plans, revocations, (), rounding))
