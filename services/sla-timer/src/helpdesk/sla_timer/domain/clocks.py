"""SLA clocks folded from a ticket's events under the agreement the ticket was opened with.

Clocks (docs/policies.md; seed 001 for escalation tiers):

- `response`: starts at `TicketOpened.reported_at`; met by the first public staff reply
  (`TicketCommented` with `public` and `by_staff`), a `TicketInfoRequested` or a resolution.
  Its target is business minutes, or business days (`Target.response_business_days`): the
  business time from the start to the same local time that many business days later
  (`BusinessCalendar.add_business_days`), which pauses then extend like any other target.
- `resolution` (the escalation threshold), one per cycle: cycle 1 starts at `reported_at`, cycle
  n (from `TicketReopened.cycle`) at the reopen instant; met by `TicketResolved`.
- `next_reply` (optional, `next_reply_minutes`): starts at each customer reply while no
  next-reply clock runs; met by the next public staff reply, info request or resolution.
- `escalation` (per tier with `response_minutes`, e.g. engineering): starts at the escalation;
  met only by that tier's own response (seed 001): a comment or info request whose
  `tier_response` is the tier (a public reply by staff of the tier, or a comment stating the
  tier responded), or the resolution. A front-line reply does not meet it.

Priority-based clocks exist only once the ticket has a priority (untriaged e-mail tickets have
none); they always count from `reported_at`. A priority change recomputes the running ones from the
start with the new target and calendar, keeping every pause; a clock met or stopped before the
change keeps the priority it had then (an earlier cycle's outcome is history). All clocks pause
while the ticket waits on the customer (info request until customer reply) or on a vendor whose
escalation target has `pause_clocks` (until `TicketVendorReturned`); overlapping pauses count once.
A reopen ends both.

Rounding: `elapsed_minutes` is rounded down and `remaining_minutes` up, so a clock with 30
seconds left still shows 1 minute left and never 0 before it is due.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from helpdesk.shared.agreements import Agreement, EscalationTier, Priority
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketCommented,
    TicketCustomerReplied,
    TicketEscalated,
    TicketInfoRequested,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    TicketTriaged,
    TicketVendorReturned,
)
from helpdesk.sla_timer.domain.calendar import ZERO, BusinessCalendar, require_aware


class ClockKind(StrEnum):
    """What a clock measures."""

    RESPONSE = "response"
    RESOLUTION = "resolution"
    NEXT_REPLY = "next_reply"
    ESCALATION = "escalation"


class ClockStatus(StrEnum):
    """A clock's state at the `as_of` instant.

    `stopped`: the ticket was closed (or, for a response clock, the clock became moot) before the
    clock was met and before it was due; it neither met nor breached its target.
    """

    RUNNING = "running"
    PAUSED = "paused"
    MET = "met"
    BREACHED = "breached"
    STOPPED = "stopped"


class PauseReason(StrEnum):
    """Why the ticket's clocks stood still."""

    CUSTOMER = "customer"
    VENDOR = "vendor"


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """One ticket event as the fold needs it: the business instant and the payload."""

    occurred_at: dt.datetime
    payload: object


@dataclass(frozen=True, slots=True)
class Pause:
    """A stretch during which the clocks did not run; `end` is None while it lasts."""

    reason: PauseReason
    start: dt.datetime
    end: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class SlaClock:
    """One clock of a ticket, evaluated at `TicketSla.as_of`.

    `due_at` is when the clock breaches and `warning_at` when it reaches the agreement's warning
    share; both are exact instants computed on the clock's calendar with every pause so far, and
    both are None while the clock is paused (its remaining time is frozen). For a clock that is
    met or stopped they are the deadlines that applied when it stopped.
    """

    kind: ClockKind
    cycle: int
    #: 1 for the first clock of its kind in the cycle, 2 for the second (next-reply, escalation).
    ordinal: int
    #: The priority whose targets apply (after VIP treatment); None for escalation clocks.
    priority: Priority | None
    tier: EscalationTier | None
    #: The target in business minutes; for a target in business days, the business time from
    #: the start to the same local time `target_business_days` business days later.
    target_minutes: int
    calendar: str
    started_at: dt.datetime
    warning_at: dt.datetime | None
    due_at: dt.datetime | None
    paused: bool
    elapsed: dt.timedelta
    remaining: dt.timedelta
    status: ClockStatus
    warned: bool
    met_at: dt.datetime | None
    breached_at: dt.datetime | None
    stopped_at: dt.datetime | None
    #: Set when the target is in business days (`Target.response_business_days`).
    target_business_days: int | None = None

    @property
    def elapsed_minutes(self) -> int:
        """Business minutes counted so far, rounded down."""
        return int(self.elapsed.total_seconds() // 60)

    @property
    def remaining_minutes(self) -> int:
        """Business minutes left before the breach, rounded up; 0 once due."""
        return max(0, math.ceil(self.remaining.total_seconds() / 60))

    @property
    def is_active(self) -> bool:
        """Running or paused: the clock still waits for the event that meets it."""
        return self.status in (ClockStatus.RUNNING, ClockStatus.PAUSED) or (
            self.status is ClockStatus.BREACHED and self.stopped_at is None
        )


@dataclass(frozen=True, slots=True)
class TicketSla:
    """Every clock of a ticket (all cycles) and its pauses, evaluated at `as_of`."""

    as_of: dt.datetime
    reported_at: dt.datetime | None
    #: The ticket's own priority, and the one whose targets apply (differs for a VIP).
    priority: Priority | None
    effective_priority: Priority | None
    vip: bool
    cycle: int
    clocks: tuple[SlaClock, ...]
    pauses: tuple[Pause, ...]
    service_class: str | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None

    def clock(self, kind: ClockKind, cycle: int = 1, ordinal: int = 1) -> SlaClock | None:
        """The clock of `kind` in `cycle` (the `ordinal`-th one), or None."""
        for candidate in self.clocks:
            if (candidate.kind, candidate.cycle, candidate.ordinal) == (kind, cycle, ordinal):
                return candidate
        return None

    @property
    def paused(self) -> bool:
        """Whether the ticket's clocks stand still at `as_of`."""
        return any(p.end is None for p in self.pauses)

    def upcoming(self) -> list[tuple[dt.datetime, str, SlaClock]]:
        """(instant, "warning" | "breach", clock) of every future timer, earliest first: the rows
        a timer table indexes."""
        rows: list[tuple[dt.datetime, str, SlaClock]] = []
        for clock in self.clocks:
            if clock.status is not ClockStatus.RUNNING:
                continue
            if clock.warning_at is not None and clock.warning_at > self.as_of:
                rows.append((clock.warning_at, "warning", clock))
            if clock.due_at is not None:
                rows.append((clock.due_at, "breach", clock))
        rows.sort(key=lambda row: row[0])
        return rows


_VIP_PROMOTION: dict[Priority, Priority] = {"P1": "P1", "P2": "P1", "P3": "P2", "P4": "P3"}


def vip_priority(priority: Priority) -> Priority:
    """The priority whose targets a VIP contact gets: the next higher one (P1 stays P1)."""
    return _VIP_PROMOTION[priority]


def as_ticket_events(
    events: Iterable[TicketEvent | tuple[dt.datetime, object]],
) -> list[TicketEvent]:
    """Normalise (occurred_at, payload) pairs to `TicketEvent`s, checking instants are aware."""
    normalised: list[TicketEvent] = []
    for event in events:
        item = event if isinstance(event, TicketEvent) else TicketEvent(event[0], event[1])
        normalised.append(TicketEvent(require_aware(item.occurred_at, "occurred_at"), item.payload))
    return normalised


def business_calendars(agreement: Agreement) -> dict[str, BusinessCalendar]:
    """A `BusinessCalendar` for each calendar of `agreement` (shared, cached instances)."""
    return {name: BusinessCalendar.of(cal) for name, cal in agreement.calendars.items()}


# --- the fold ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Spec:
    """A clock before evaluation: what it measures and when it started and stopped."""

    kind: ClockKind
    cycle: int
    ordinal: int
    started_at: dt.datetime
    tier: EscalationTier | None = None
    target_minutes: int | None = None
    calendar: str | None = None
    met_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    #: The ticket's priority when the clock stopped (None: untriaged then, or still running).
    priority: Priority | None = None


@dataclass(slots=True)
class _Facts:
    """What the fold learns from the events, before any target is applied."""

    reported_at: dt.datetime | None = None
    priority: Priority | None = None
    service_class: str | None = None
    cycle: int = 1
    specs: list[_Spec] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None


def _is_response(payload: object) -> bool:
    """A public answer by staff (asking for information is one)."""
    if isinstance(payload, TicketCommented):
        return payload.public and payload.by_staff
    return isinstance(payload, TicketInfoRequested)


def _tier_response(payload: object) -> EscalationTier | None:
    """The escalation tier whose own response `payload` is, if any (seed 001)."""
    if isinstance(payload, TicketCommented | TicketInfoRequested):
        return payload.tier_response
    return None


def _meets(spec: _Spec, payload: object) -> bool:
    """Whether `payload` meets the running clock `spec`: a resolution meets every clock; a
    public staff answer meets the response and next-reply clocks; an escalation clock only
    its own tier's response."""
    if isinstance(payload, TicketResolved):
        return True
    if spec.kind is ClockKind.RESOLUTION:
        return False
    if spec.kind is ClockKind.ESCALATION:
        return spec.tier is not None and _tier_response(payload) == spec.tier
    return _is_response(payload)


def _end_pause(facts: _Facts, reason: PauseReason | None, at: dt.datetime) -> None:
    for index, pause in enumerate(facts.pauses):
        if pause.end is None and (reason is None or pause.reason is reason):
            facts.pauses[index] = Pause(pause.reason, pause.start, max(at, pause.start))


def _start_pause(facts: _Facts, reason: PauseReason, at: dt.datetime) -> None:
    if not any(p.end is None and p.reason is reason for p in facts.pauses):
        facts.pauses.append(Pause(reason, at))


def _collect(events: Sequence[TicketEvent], agreement: Agreement, next_reply: bool) -> _Facts:
    facts = _Facts()
    escalations = agreement.escalation_targets or {}
    for event in events:
        at, payload = event.occurred_at, event.payload
        open_specs = [s for s in facts.specs if s.stopped_at is None]
        if isinstance(payload, TicketOpened):
            facts.reported_at = require_aware(payload.reported_at, "reported_at")
            facts.priority = payload.priority
            facts.service_class = payload.service_class
            facts.specs.append(_Spec(ClockKind.RESPONSE, 1, 1, facts.reported_at))
            facts.specs.append(_Spec(ClockKind.RESOLUTION, 1, 1, facts.reported_at))
        elif isinstance(payload, TicketTriaged):
            facts.priority = payload.priority
        elif (
            _is_response(payload)
            or isinstance(payload, TicketResolved)
            or _tier_response(payload) is not None
        ):
            for spec in open_specs:
                if _meets(spec, payload):
                    spec.met_at = spec.stopped_at = at
                    spec.priority = facts.priority
            if isinstance(payload, TicketInfoRequested):
                _start_pause(facts, PauseReason.CUSTOMER, at)
            if isinstance(payload, TicketResolved) and facts.resolved_at is None:
                facts.resolved_at = at
        elif isinstance(payload, TicketCustomerReplied):
            _end_pause(facts, PauseReason.CUSTOMER, at)
            if next_reply and not any(s.kind is ClockKind.NEXT_REPLY for s in open_specs):
                ordinal = 1 + sum(
                    s.kind is ClockKind.NEXT_REPLY and s.cycle == facts.cycle for s in facts.specs
                )
                facts.specs.append(_Spec(ClockKind.NEXT_REPLY, facts.cycle, ordinal, at))
        elif isinstance(payload, TicketEscalated):
            target = escalations.get(payload.tier)
            if target is None:
                continue
            if target.pause_clocks:
                _start_pause(facts, PauseReason.VENDOR, at)
            minutes = target.response_target(payload.vendor)
            if minutes is not None and target.calendar is not None:
                ordinal = 1 + sum(
                    s.kind is ClockKind.ESCALATION and s.tier == payload.tier for s in facts.specs
                )
                facts.specs.append(
                    _Spec(
                        ClockKind.ESCALATION,
                        facts.cycle,
                        ordinal,
                        at,
                        tier=payload.tier,
                        target_minutes=minutes,
                        calendar=target.calendar,
                    )
                )
        elif isinstance(payload, TicketVendorReturned):
            _end_pause(facts, PauseReason.VENDOR, at)
            # The vendor handing the ticket back is the vendor's response.
            for spec in open_specs:
                if spec.kind is ClockKind.ESCALATION and spec.tier == "vendor":
                    spec.met_at = spec.stopped_at = at
        elif isinstance(payload, TicketReopened):
            # Back in the provider's hands: nothing waits on the customer or a vendor any more.
            _end_pause(facts, None, at)
            facts.cycle = payload.cycle
            facts.resolved_at = None
            facts.closed_at = None
            facts.specs.append(_Spec(ClockKind.RESOLUTION, payload.cycle, 1, at))
        elif isinstance(payload, TicketClosed):
            facts.closed_at = at
            for spec in open_specs:
                spec.stopped_at = at
                spec.priority = facts.priority
            _end_pause(facts, None, at)
    return facts


def _merged_pauses(pauses: Iterable[Pause]) -> list[tuple[dt.datetime, dt.datetime | None]]:
    """Union of pause intervals, sorted; an open pause swallows everything after its start."""
    merged: list[tuple[dt.datetime, dt.datetime | None]] = []
    for pause in sorted(pauses, key=lambda p: p.start):
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None:
                break
            if pause.start <= last_end:
                end = None if pause.end is None else max(last_end, pause.end)
                merged[-1] = (last_start, end)
                continue
        merged.append((pause.start, pause.end))
    return merged


def _active_time(
    cal: BusinessCalendar,
    start: dt.datetime,
    end: dt.datetime,
    pauses: Sequence[tuple[dt.datetime, dt.datetime | None]],
) -> dt.timedelta:
    """Business time from `start` to `end` outside the pauses."""
    if end <= start:
        return ZERO
    total = cal.between(start, end)
    for pause_start, pause_end in pauses:
        lo = max(pause_start, start)
        hi = end if pause_end is None else min(pause_end, end)
        if hi > lo:
            total -= cal.between(lo, hi)
    return total


def _reached_at(
    cal: BusinessCalendar,
    start: dt.datetime,
    amount: dt.timedelta,
    pauses: Sequence[tuple[dt.datetime, dt.datetime | None]],
) -> dt.datetime | None:
    """When `amount` of business time outside the pauses has run after `start`; None when a
    pause that has not ended comes first."""
    cursor, remaining = start, amount
    for pause_start, pause_end in pauses:
        if pause_end is not None and pause_end <= cursor:
            continue
        if pause_start > cursor:
            candidate = cal.add(cursor, remaining)
            if candidate <= pause_start:
                return candidate
            remaining -= cal.between(cursor, pause_start)
        if pause_end is None:
            return None
        cursor = max(cursor, pause_end)
    return cal.add(cursor, remaining)


def _evaluate(
    spec: _Spec,
    *,
    priority: Priority | None,
    target: dt.timedelta,
    business_days: int | None,
    calendar_name: str,
    cal: BusinessCalendar,
    pauses: Sequence[tuple[dt.datetime, dt.datetime | None]],
    warning_share: float,
    as_of: dt.datetime,
) -> SlaClock:
    warning = dt.timedelta(seconds=round(target.total_seconds() * warning_share))
    stop = spec.stopped_at if spec.stopped_at is not None and spec.stopped_at <= as_of else None
    met = spec.met_at if spec.met_at is not None and spec.met_at <= as_of else None
    # A stopped clock's deadlines are those that applied at the stop: a pause still open then
    # is treated as ending there, so a clock met while waiting still has a due instant.
    effective_pauses = (
        [(s, stop if e is None or e > stop else e) for s, e in pauses if s < stop]
        if stop is not None
        else [(s, e if e is None or e <= as_of else None) for s, e in pauses if s <= as_of]
    )
    due_at = _reached_at(cal, spec.started_at, target, effective_pauses)
    warning_at = _reached_at(cal, spec.started_at, warning, effective_pauses)
    horizon = stop if stop is not None else as_of
    elapsed = _active_time(cal, spec.started_at, horizon, effective_pauses)
    remaining = target - elapsed
    paused = stop is None and any(e is None and s <= as_of for s, e in effective_pauses)
    breached_at: dt.datetime | None = None
    if remaining <= ZERO and due_at is None:
        # Reached the target before the pause that is still open began.
        due_at = _reached_at(cal, spec.started_at, target, [p for p in effective_pauses if p[1]])
    if stop is not None:
        # Met exactly at the due instant is in time; closed unmet at or after it is a breach.
        late = due_at is not None and (due_at < met if met is not None else due_at <= stop)
        if late:
            status, breached_at = ClockStatus.BREACHED, due_at
        else:
            status = ClockStatus.MET if met is not None else ClockStatus.STOPPED
    elif due_at is not None and due_at <= as_of:
        status, breached_at = ClockStatus.BREACHED, due_at
    else:
        status = ClockStatus.PAUSED if paused else ClockStatus.RUNNING
    if paused and status is ClockStatus.PAUSED:
        due_at = warning_at = None
    return SlaClock(
        kind=spec.kind,
        cycle=spec.cycle,
        ordinal=spec.ordinal,
        priority=priority,
        tier=spec.tier,
        target_minutes=math.ceil(target.total_seconds() / 60),
        calendar=calendar_name,
        started_at=spec.started_at,
        warning_at=warning_at,
        due_at=due_at,
        paused=paused,
        elapsed=elapsed,
        remaining=remaining,
        status=status,
        warned=warning_at is not None and warning_at <= horizon,
        met_at=met,
        breached_at=breached_at,
        stopped_at=stop,
        target_business_days=business_days,
    )


def _target_time(
    cal: BusinessCalendar, started_at: dt.datetime, minutes: int | None, days: int | None
) -> dt.timedelta | None:
    """The business time a clock started at `started_at` has: `minutes`, or the business time
    up to the same local time `days` business days later (pauses then extend it like any
    other target)."""
    if days is not None:
        return cal.between(started_at, cal.add_business_days(started_at, days))
    return None if minutes is None else dt.timedelta(minutes=minutes)


def fold_ticket(
    events: Iterable[TicketEvent | tuple[dt.datetime, object]],
    agreement: Agreement,
    as_of: dt.datetime,
    *,
    vip: bool = False,
    next_reply_minutes: int | None = None,
    calendars: Mapping[str, BusinessCalendar] | None = None,
) -> TicketSla:
    """Fold a ticket's events (in seq order) into its SLA clocks, evaluated at `as_of`.

    `agreement` is the version the ticket was opened with. Events after `as_of` are ignored, so
    the same history answers "as of" questions. `vip` gives the ticket the next-higher
    priority's targets (`vip_priority`). `next_reply_minutes` enables the next-reply clock on the
    response target's calendar. `calendars` lets a caller folding many tickets share prebuilt
    calendars (default: `business_calendars(agreement)`). Payload types the SLA does not need
    are ignored. Raises ValueError on naive instants, NoOpenTimeError on a calendar with no open
    time.
    """
    moment = require_aware(as_of, "as_of")
    history = [e for e in as_ticket_events(events) if e.occurred_at <= moment]
    facts = _collect(history, agreement, next_reply_minutes is not None)
    cals = calendars if calendars is not None else business_calendars(agreement)
    pauses = _merged_pauses(facts.pauses)
    # The vendor's own clock runs while the vendor holds the ticket: only the customer pauses it.
    vendor_pauses = _merged_pauses(p for p in facts.pauses if p.reason is not PauseReason.VENDOR)
    effective = None
    if facts.priority is not None:
        effective = vip_priority(facts.priority) if vip else facts.priority
    clocks: list[SlaClock] = []
    for spec in facts.specs:
        minutes: int | None
        days: int | None = None
        if spec.kind is ClockKind.ESCALATION:
            minutes, calendar_name, priority = spec.target_minutes, spec.calendar, None
        elif effective is None:
            # Untriaged: no priority, no target, no clock (yet).
            continue
        else:
            # A clock that stopped before a priority change keeps the priority it ran under:
            # only running deadlines are recomputed, and an earlier cycle's history (met or
            # breached) must not be rewritten by a later triage (docs/policies.md).
            if spec.priority is None:
                priority = effective
            else:
                priority = vip_priority(spec.priority) if vip else spec.priority
            target = agreement.target(priority)
            calendar_name = target.calendar
            minutes = {
                ClockKind.RESPONSE: target.response_minutes,
                ClockKind.RESOLUTION: target.resolution_minutes,
                ClockKind.NEXT_REPLY: next_reply_minutes,
            }[spec.kind]
            if spec.kind is ClockKind.RESPONSE:
                days = target.response_business_days
        if calendar_name is None:
            continue
        cal = cals[calendar_name]
        amount = _target_time(cal, spec.started_at, minutes, days)
        if amount is None:
            continue
        clocks.append(
            _evaluate(
                spec,
                priority=priority,
                target=amount,
                business_days=days,
                calendar_name=calendar_name,
                cal=cal,
                pauses=vendor_pauses if spec.tier == "vendor" else pauses,
                warning_share=agreement.warning_share,
                as_of=moment,
            )
        )
    return TicketSla(
        as_of=moment,
        reported_at=facts.reported_at,
        priority=facts.priority,
        effective_priority=effective,
        vip=vip,
        cycle=facts.cycle,
        clocks=tuple(clocks),
        pauses=tuple(facts.pauses),
        service_class=facts.service_class,
        resolved_at=facts.resolved_at,
        closed_at=facts.closed_at,
    )
