"""Follow-up reminders and the auto-close request while a ticket waits on the customer (seed 003
§ 4.2.2: a ticket closes when the customer does not answer 3+ inquiries).

A ticket waits on the customer after `TicketInfoRequested` (reason `info_requested`) or after
`TicketResolved` until the customer confirms (reason `confirmation`). The wait ends with any
customer reply or state change: `TicketCustomerReplied`, `TicketConfirmed`, `TicketClosed`,
`TicketReopened`, a vendor escalation, or a new wait (a resolution while waiting for information,
another information request) which starts its own schedule.

Offsets are wall-clock minutes (real elapsed time, not business time) from the start of the wait:
follow-up k is due at `waiting_since + after_minutes[k]` for k < max_unanswered; the auto-close
request is due at `after_minutes[max_unanswered]` when the list has that entry, else one more
step after the last follow-up (the last gap, or the first offset when there was one follow-up).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from helpdesk.shared.agreements import FollowUp
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketConfirmed,
    TicketCustomerReplied,
    TicketEscalated,
    TicketInfoRequested,
    TicketReopened,
    TicketResolved,
)
from helpdesk.sla_timer.domain.calendar import require_aware
from helpdesk.sla_timer.domain.clocks import TicketEvent, as_ticket_events

WaitReason = Literal["info_requested", "confirmation"]


@dataclass(frozen=True, slots=True)
class FollowUpDue:
    """Follow-up `index` (0-based, as in `after_minutes`) is due at `due_at`."""

    index: int
    due_at: dt.datetime

    @property
    def number(self) -> int:
        """1-based number of the follow-up, as people count them."""
        return self.index + 1


@dataclass(frozen=True, slots=True)
class FollowUpSchedule:
    """The reminders of one wait on the customer and when the auto-close request is due."""

    reason: WaitReason
    waiting_since: dt.datetime
    follow_ups: tuple[FollowUpDue, ...]
    auto_close_at: dt.datetime

    def next_follow_up(self, as_of: dt.datetime) -> FollowUpDue | None:
        """The first follow-up due after `as_of`, or None when all are due by then."""
        moment = require_aware(as_of, "as_of")
        return next((f for f in self.follow_ups if f.due_at > moment), None)

    def sent_by(self, as_of: dt.datetime) -> int:
        """How many follow-ups are due at or before `as_of` (all unanswered, since the wait
        lasts)."""
        moment = require_aware(as_of, "as_of")
        return sum(f.due_at <= moment for f in self.follow_ups)

    def auto_close_due(self, as_of: dt.datetime) -> bool:
        """Whether the auto-close request is due at `as_of`."""
        return self.auto_close_at <= require_aware(as_of, "as_of")


def auto_close_offset(policy: FollowUp) -> int:
    """Minutes after the start of the wait at which the auto-close request is due."""
    offsets = policy.after_minutes
    count = policy.max_unanswered
    if len(offsets) > count:
        return offsets[count]
    last = offsets[count - 1]
    step = offsets[0] if count == 1 else last - offsets[count - 2]
    return last + step


def schedule_from(
    waiting_since: dt.datetime, policy: FollowUp, reason: WaitReason = "info_requested"
) -> FollowUpSchedule:
    """The schedule of a wait that started at `waiting_since` under `policy`."""
    start = require_aware(waiting_since, "waiting_since")
    follow_ups = tuple(
        FollowUpDue(index, start + dt.timedelta(minutes=minutes))
        for index, minutes in enumerate(policy.after_minutes[: policy.max_unanswered])
    )
    return FollowUpSchedule(
        reason=reason,
        waiting_since=start,
        follow_ups=follow_ups,
        auto_close_at=start + dt.timedelta(minutes=auto_close_offset(policy)),
    )


def follow_up_schedule(
    events: Iterable[TicketEvent | tuple[dt.datetime, object]],
    policy: FollowUp | None,
    as_of: dt.datetime | None = None,
) -> FollowUpSchedule | None:
    """The schedule of the wait on the customer in progress after `events` (up to `as_of` when
    given), or None when the ticket is not waiting on the customer or the agreement has no
    follow-ups."""
    if policy is None:
        return None
    moment = None if as_of is None else require_aware(as_of, "as_of")
    waiting: tuple[WaitReason, dt.datetime] | None = None
    for event in as_ticket_events(events):
        if moment is not None and event.occurred_at > moment:
            break
        payload = event.payload
        if isinstance(payload, TicketInfoRequested):
            waiting = ("info_requested", event.occurred_at)
        elif isinstance(payload, TicketResolved):
            waiting = ("confirmation", event.occurred_at)
        elif isinstance(
            payload, TicketCustomerReplied | TicketConfirmed | TicketClosed | TicketReopened
        ) or (isinstance(payload, TicketEscalated) and payload.tier == "vendor"):
            waiting = None
    if waiting is None:
        return None
    reason, since = waiting
    return schedule_from(since, policy, reason)
