"""What the SLA timer will fire for a ticket: warnings, breaches, met clocks, reminders and the
auto-close request, each at the instant it is due, with a key that names it for good.

A timer's key never changes once the thing it names exists (a clock is named by kind, cycle,
ordinal and tier; a reminder by its wait and number), so the event it fires gets one id forever
(`derive_event_id(ticket_id, f"{action}:{key}")`), however often the ticket is re-folded.

- `warning`: a clock running (or breached) whose warning instant is known.
- `breach`: a running clock at its deadline; a breached clock (overdue, or met late) at the
  deadline it missed.
- `met`: a clock met in time, at the instant it was met.
- `follow_up` / `auto_close`: the wait on the customer's schedule (`follow_up_schedule`).

A fired breach that a later fold proves wrong is recorded as fired too, under the action
`retraction` and its clock's key (`domain/retractions.py`); nothing fires it, a reaction emits it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from helpdesk.shared.contracts.common import TicketStatus
from helpdesk.shared.contracts.sla import (
    AutoCloseRequested,
    ClockFacts,
    FollowUpDue,
    SlaBreached,
    SlaBreachRetracted,
    SlaMet,
    SlaWarning,
)
from helpdesk.shared.contracts.tickets import status_after
from helpdesk.sla_timer.domain.clocks import ClockStatus, SlaClock, TicketEvent, TicketSla
from helpdesk.sla_timer.domain.follow_ups import FollowUpSchedule

Action = Literal["warning", "breach", "met", "follow_up", "auto_close", "retraction"]
TimerPayload = SlaWarning | SlaBreached | SlaMet | FollowUpDue | AutoCloseRequested
#: What a row of fired timers records: a timer's event, or the retraction of a fired breach.
Recorded = TimerPayload | SlaBreachRetracted


@dataclass(frozen=True, slots=True)
class Timer:
    """One thing to fire at `due_at`; `payload` is the event it records."""

    action: Action
    key: str
    due_at: dt.datetime
    payload: TimerPayload

    @property
    def purpose(self) -> str:
        """What the event id is derived from, together with the ticket id."""
        return f"{self.action}:{self.key}"


def clock_key(kind: str, cycle: int, ordinal: int, tier: str | None) -> str:
    """The name of a clock: kind, cycle and ordinal, and the tier of an escalation clock."""
    key = f"{kind}:{cycle}:{ordinal}"
    return key if tier is None else f"{key}:{tier}"


def wait_key(waiting_since: dt.datetime) -> str:
    """The name of a wait on the customer: the instant it began, in UTC."""
    return waiting_since.astimezone(dt.UTC).isoformat()


def timer_identity(payload: Recorded) -> tuple[Action, str]:
    """(action, key) of the timer a fired event records, read back from the event alone (so
    applying the event gives the same row whatever was applied before it)."""
    if isinstance(payload, ClockFacts):
        key = clock_key(payload.kind, payload.cycle, payload.ordinal, payload.tier)
        if isinstance(payload, SlaWarning):
            return "warning", key
        if isinstance(payload, SlaBreached):
            return "breach", key
        if isinstance(payload, SlaBreachRetracted):
            return "retraction", key
        return "met", key
    if isinstance(payload, FollowUpDue):
        return "follow_up", f"{wait_key(payload.waiting_since)}:{payload.reminder}"
    since = payload.waiting_since
    return "auto_close", "unknown" if since is None else wait_key(since)


def _facts(ticket_id: UUID, clock: SlaClock, due_at: dt.datetime) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "kind": clock.kind.value,
        "cycle": clock.cycle,
        "ordinal": clock.ordinal,
        "tier": clock.tier,
        "priority": clock.priority,
        "target_minutes": clock.target_minutes,
        "calendar": clock.calendar,
        "due_at": due_at,
    }


def clock_timers(ticket_id: UUID, sla: TicketSla) -> list[Timer]:
    """The warning, breach and met timers of every clock of `sla`."""
    timers: list[Timer] = []
    for clock in sla.clocks:
        key = clock_key(clock.kind.value, clock.cycle, clock.ordinal, clock.tier)
        deadline = clock.breached_at or clock.due_at
        if clock.status in (ClockStatus.RUNNING, ClockStatus.BREACHED) and deadline is not None:
            facts = _facts(ticket_id, clock, deadline)
            if clock.warning_at is not None:
                warning = SlaWarning(**facts, warning_at=clock.warning_at)
                timers.append(Timer("warning", key, clock.warning_at, warning))
            timers.append(
                Timer("breach", key, deadline, SlaBreached(**facts, breached_at=deadline))
            )
        elif clock.status is ClockStatus.MET and clock.met_at is not None:
            facts = _facts(ticket_id, clock, clock.due_at or clock.met_at)
            met = SlaMet(**facts, met_at=clock.met_at, elapsed_minutes=clock.elapsed_minutes)
            timers.append(Timer("met", key, clock.met_at, met))
    return timers


def follow_up_timers(
    ticket_id: UUID, schedule: FollowUpSchedule | None, ticket_seq: int
) -> list[Timer]:
    """The reminders and the auto-close request of the wait in progress (none without one).

    The auto-close request carries `ticket_seq`, the seq of the ticket's last event: intake
    ignores it when the ticket has moved on since.
    """
    if schedule is None:
        return []
    since = wait_key(schedule.waiting_since)
    count = len(schedule.follow_ups)
    timers = [
        Timer(
            "follow_up",
            f"{since}:{due.number}",
            due.due_at,
            FollowUpDue(
                ticket_id=ticket_id,
                reminder=due.number,
                max_unanswered=count,
                waiting_since=schedule.waiting_since,
                reason=schedule.reason,
            ),
        )
        for due in schedule.follow_ups
    ]
    request = AutoCloseRequested(
        ticket_id=ticket_id,
        ticket_seq=ticket_seq,
        unanswered_follow_ups=count,
        waiting_since=schedule.waiting_since,
    )
    timers.append(Timer("auto_close", since, schedule.auto_close_at, request))
    return timers


def ticket_status(events: list[TicketEvent]) -> TicketStatus:
    """Where the ticket stands after `events`: the status intake gives it too
    (`status_after`, the one rule)."""
    status: TicketStatus | None = None
    for event in events:
        status = status_after(status, event.payload)
    return status or "new"


def nearest_deadline(sla: TicketSla) -> dt.datetime | None:
    """The earliest deadline of a clock still waiting to be met (overdue ones included)."""
    deadlines = [
        clock.due_at
        for clock in sla.clocks
        if clock.due_at is not None and clock.is_active and clock.stopped_at is None
    ]
    return min(deadlines, default=None)


def nearest_deadline_of(clocks: Iterable[Mapping[str, Any]]) -> dt.datetime | None:
    """`nearest_deadline` over clock views (`clock_view`), such as the ones an audience sees."""
    deadlines = [
        dt.datetime.fromisoformat(clock["due_at"])
        for clock in clocks
        if clock["due_at"] is not None
        and clock["stopped_at"] is None
        and clock["status"] != ClockStatus.MET
    ]
    return min(deadlines, default=None)
