"""Classifying a time entry: after hours or not, incident work or solution design.

Seed 004 excludes from the monthly fee "After-hours incident response" and "Research and
troubleshooting (solution design) following incident resolution"; seed 002 sells after-hours
service as an add-on "at an extra cost". Billing decides both from facts it has, and the
technician's explicit mark overrides either way (docs/policies.md, seed 004):

- after hours: an entry's `after_hours` flag when the technician set it (true or false); else
  its `worked_at` lies outside the plan's business-hours calendar (closed time or a holiday).
  Without such a calendar, and without a flag, the work is not after hours;
- solution design: an entry's `solution_design` mark when set (false means "incident work");
  else work on an incident whose `worked_at` falls while the ticket stood resolved (after a
  resolution and before a reopen, or after the resolution of a reopened cycle).

Pure: the calendar is a parameter and nothing reads a clock. `worked_at` alone decides (an entry
that starts at 16:45 and runs past 17:00 is in hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from helpdesk.billing.domain.periods import require_aware
from helpdesk.shared.agreements import WEEKDAYS, Calendar, TicketKind

AfterHoursReason = Literal["flagged", "outside_business_hours"]
KindReason = Literal["ticket", "marked_solution_design", "after_resolution", "marked_incident"]


@dataclass(frozen=True)
class ResolvedSpan:
    """A ticket stood resolved over [resolved_at, reopened_at); open-ended when not reopened."""

    resolved_at: datetime
    reopened_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.resolved_at, "resolved_at")
        if self.reopened_at is not None:
            require_aware(self.reopened_at, "reopened_at")

    def covers(self, instant: datetime) -> bool:
        """Whether the ticket stood resolved at `instant`."""
        return self.resolved_at <= instant and (
            self.reopened_at is None or instant < self.reopened_at
        )


def stood_resolved(worked_at: datetime, spans: Sequence[ResolvedSpan]) -> bool:
    """Whether work at `worked_at` followed a resolution of its ticket (no reopen in between)."""
    return any(span.covers(worked_at) for span in spans)


def before_approval(worked_at: datetime, approved_at: datetime | None) -> bool:
    """Whether out-of-scope work at `worked_at` came before the contact approved a quote for
    it (seed 000's statement of work; never approved counts as before)."""
    return approved_at is None or worked_at < approved_at


def is_business_time(calendar: Calendar, instant: datetime) -> bool:
    """Whether `calendar` is open at `instant`: a weekly interval of its local day holds the
    local wall-clock time and the day is not a holiday."""
    require_aware(instant)
    local = instant.astimezone(calendar.zone)
    if calendar.is_holiday(local.date()):
        return False
    second = (local.hour * 60 + local.minute) * 60 + local.second
    return any(
        start * 60 <= second < end * 60
        for start, end in calendar.intervals_on(WEEKDAYS[local.weekday()])
    )


@dataclass(frozen=True)
class Classification:
    """What an entry is, and why (the reasons are shown on invoice lines and usage)."""

    kind: TicketKind
    kind_reason: KindReason
    after_hours: bool
    after_hours_reason: AfterHoursReason | None


def classify(
    *,
    kind: TicketKind,
    worked_at: datetime,
    after_hours: bool | None,
    solution_design: bool | None,
    after_resolution: bool,
    business_hours: Calendar | None,
) -> Classification:
    """Classify one entry of a ticket of `kind` (see the module docstring). Only incident work
    becomes solution design: a service request stays one whenever it is worked on."""
    kind_reason: KindReason = "ticket"
    effective = kind
    if kind == "incident":
        if solution_design is True:
            effective, kind_reason = "solution_design", "marked_solution_design"
        elif solution_design is False:
            kind_reason = "marked_incident" if after_resolution else "ticket"
        elif after_resolution:
            effective, kind_reason = "solution_design", "after_resolution"
    if after_hours is not None:
        reason: AfterHoursReason | None = "flagged" if after_hours else None
        return Classification(effective, kind_reason, after_hours, reason)
    outside = business_hours is not None and not is_business_time(business_hours, worked_at)
    return Classification(
        effective, kind_reason, outside, "outside_business_hours" if outside else None
    )
