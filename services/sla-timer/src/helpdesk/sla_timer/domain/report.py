"""SLA report: met and breached counts and duration percentiles per priority and clock kind.

Durations are the clocks' business time at the moment they were met (business minutes on the
clock's calendar, pauses excluded): the quantity the target is about. Percentiles use the
nearest-rank method, so every reported value is one that actually occurred.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from helpdesk.shared.agreements import Priority
from helpdesk.sla_timer.domain.calendar import require_aware
from helpdesk.sla_timer.domain.clocks import ClockKind, ClockStatus, TicketSla


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One (priority, clock kind) row of the report; durations in whole business minutes."""

    priority: Priority
    kind: ClockKind
    met: int
    breached: int
    open: int
    p50_minutes: int | None
    p90_minutes: int | None

    @property
    def met_share(self) -> float | None:
        """Met / (met + breached), or None when no clock has an outcome yet."""
        decided = self.met + self.breached
        return None if decided == 0 else self.met / decided


def percentile(values: Sequence[int], share: float) -> int | None:
    """Nearest-rank percentile (`share` in (0, 1]) of `values`; None when empty."""
    if not values:
        return None
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def sla_report(
    tickets: Iterable[TicketSla],
    *,
    reported_from: dt.datetime | None = None,
    reported_until: dt.datetime | None = None,
) -> list[ReportLine]:
    """Report over `tickets` (those reported in [reported_from, reported_until) when given).

    A clock counts as met or breached by its status; running and paused clocks count as open. A
    clock met late is breached and its duration still counts in the percentiles. Escalation and
    next-reply clocks are reported under the ticket's effective priority. Rows are sorted by
    priority, then kind; only (priority, kind) pairs that occur are listed.
    """
    start = None if reported_from is None else require_aware(reported_from, "reported_from")
    end = None if reported_until is None else require_aware(reported_until, "reported_until")
    counts: dict[tuple[Priority, ClockKind], list[int]] = {}
    durations: dict[tuple[Priority, ClockKind], list[int]] = {}
    for ticket in tickets:
        if ticket.effective_priority is None or ticket.reported_at is None:
            continue
        if (start is not None and ticket.reported_at < start) or (
            end is not None and ticket.reported_at >= end
        ):
            continue
        for clock in ticket.clocks:
            key = (clock.priority or ticket.effective_priority, clock.kind)
            met_breached_open = counts.setdefault(key, [0, 0, 0])
            if clock.status is ClockStatus.MET:
                met_breached_open[0] += 1
            elif clock.status is ClockStatus.BREACHED:
                met_breached_open[1] += 1
            elif clock.status in (ClockStatus.RUNNING, ClockStatus.PAUSED):
                met_breached_open[2] += 1
            if clock.met_at is not None:
                durations.setdefault(key, []).append(clock.elapsed_minutes)
    lines = []
    for key in sorted(counts):
        met, breached, still_open = counts[key]
        values = durations.get(key, [])
        lines.append(
            ReportLine(
                priority=key[0],
                kind=key[1],
                met=met,
                breached=breached,
                open=still_open,
                p50_minutes=percentile(values, 0.5),
                p90_minutes=percentile(values, 0.9),
            )
        )
    return lines
