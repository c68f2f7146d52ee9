"""Monthly availability per service class (seed 003 § 5).

Downtime of an outage ticket runs from the customer's notification (`reported_at`) until the
service is re-established (`TicketResolved`, or `TicketClosed` when the ticket is closed without a
resolution: it stops reporting the outage then); a reopened outage is down again from the reopen to
its next resolution. An unresolved outage is down until the end of the period or the `as_of`
instant, whichever comes first. Scheduled maintenance (`agreement.maintenance_windows` of the class,
or of every class when the window names none) is excluded. Overlapping outages of one class count
once. The period is a calendar month in the account's time zone, so its length is real time (a
month with a DST change is an hour shorter or longer).

Availability = (minutes in month − downtime) / minutes in month. Downtime is exact to the second;
`downtime_minutes` rounds it up, in the customer's favour.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from helpdesk.shared.agreements import Agreement
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketOpened,
    TicketReopened,
    TicketResolved,
)
from helpdesk.shared.months import local_month_bounds
from helpdesk.sla_timer.domain.calendar import UTC, ZERO, require_aware
from helpdesk.sla_timer.domain.clocks import TicketEvent, as_ticket_events

Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True, slots=True)
class Outage:
    """A service-class outage reported by a ticket; `restored_at` is None while still down."""

    service_class: str
    started_at: dt.datetime
    restored_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ClassAvailability:
    """Availability of one service class over one month."""

    service_class: str
    period_start: dt.datetime
    period_end: dt.datetime
    downtime: dt.timedelta
    maintenance_excluded: dt.timedelta
    percentage: float
    target: float | None
    met: bool | None

    @property
    def minutes_in_month(self) -> int:
        """Real minutes of the month in the account's zone."""
        return int((self.period_end - self.period_start).total_seconds() // 60)

    @property
    def downtime_minutes(self) -> int:
        """Downtime, rounded up to the minute."""
        return math.ceil(self.downtime.total_seconds() / 60)

    @property
    def maintenance_excluded_minutes(self) -> int:
        """Outage time inside maintenance windows (not counted), rounded down."""
        return int(self.maintenance_excluded.total_seconds() // 60)


def month_bounds(year: int, month: int, timezone: str) -> Interval:
    """[start, end) in UTC of a calendar month in `timezone` (local midnight to local midnight)."""
    start, end = local_month_bounds(year, month, timezone)
    return start.astimezone(UTC), end.astimezone(UTC)


def outages_from_events(
    events: Iterable[TicketEvent | tuple[dt.datetime, object]],
) -> list[Outage]:
    """The outages one ticket reports: none without a `service_class`, one per resolution cycle."""
    outages: list[Outage] = []
    service_class: str | None = None
    down_since: dt.datetime | None = None
    for event in as_ticket_events(events):
        payload = event.payload
        if isinstance(payload, TicketOpened):
            service_class = payload.service_class
            down_since = require_aware(payload.reported_at, "reported_at")
        elif isinstance(payload, TicketResolved | TicketClosed) and down_since is not None:
            # A ticket closed unresolved (duplicate, no_response, ...) no longer reports an
            # outage: without this it stayed "down" into every later month (0 % forever).
            if service_class is not None:
                outages.append(Outage(service_class, down_since, event.occurred_at))
            down_since = None
        elif isinstance(payload, TicketReopened) and down_since is None:
            down_since = event.occurred_at
    if service_class is not None and down_since is not None:
        outages.append(Outage(service_class, down_since, None))
    return outages


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint union of [start, end) intervals (empty ones dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(a: Sequence[Interval], b: Sequence[Interval]) -> dt.timedelta:
    """Total length of the intersection of two sorted, disjoint interval lists."""
    total, i, j = ZERO, 0, 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def monthly_availability(
    outages: Iterable[Outage],
    agreement: Agreement,
    *,
    year: int,
    month: int,
    timezone: str,
    as_of: dt.datetime | None = None,
) -> list[ClassAvailability]:
    """Availability of every class with a target or an outage, for one month, sorted by class.

    `timezone` is the account's IANA zone. `as_of` caps unresolved outages (default: they run to
    the end of the month). A class without a target has `target` and `met` None.
    """
    period_start, period_end = month_bounds(year, month, timezone)
    horizon = period_end if as_of is None else min(period_end, require_aware(as_of, "as_of"))
    by_class: dict[str, list[Interval]] = {name: [] for name in agreement.availability_targets}
    for outage in outages:
        start = max(require_aware(outage.started_at, "started_at"), period_start)
        end = horizon if outage.restored_at is None else require_aware(outage.restored_at)
        end = min(end, horizon)
        by_class.setdefault(outage.service_class, []).append((start, end))
    month_length = period_end - period_start
    report: list[ClassAvailability] = []
    for service_class in sorted(by_class):
        down = union(by_class[service_class])
        maintenance = union(
            # In UTC: two instants in one ZoneInfo subtract as wall-clock times, not real time.
            (max(w.start.astimezone(UTC), period_start), min(w.end.astimezone(UTC), period_end))
            for w in agreement.maintenance_windows
            if w.service_class in (None, service_class)
        )
        raw = sum((end - start for start, end in down), ZERO)
        excluded = _overlap(down, maintenance)
        downtime = raw - excluded
        percentage = 100.0 * (month_length - downtime) / month_length
        target = agreement.availability_targets.get(service_class)
        report.append(
            ClassAvailability(
                service_class=service_class,
                period_start=period_start,
                period_end=period_end,
                downtime=downtime,
                maintenance_excluded=excluded,
                percentage=percentage,
                target=target,
                met=None if target is None else percentage >= target,
            )
        )
    return report
