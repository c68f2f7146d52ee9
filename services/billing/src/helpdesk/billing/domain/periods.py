"""Billing periods: calendar months in the account's own time zone.

A period is written "YYYY-MM" and means the local calendar month of the account's IANA time
zone, so an entry worked at 23:30 on 31 January in New York belongs to January although it is
already February in UTC. Quarters ("YYYY-Qn") group three such months for budget reviews.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from helpdesk.shared.months import PERIOD_PATTERN, local_month_bounds

_PERIOD = re.compile(PERIOD_PATTERN)
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


def require_aware(instant: datetime, name: str = "instant") -> datetime:
    """Return `instant`, or raise ValueError when it carries no UTC offset.

    A naive datetime has no place in billing: which month (and which invoice) it falls in
    depends on the offset, so guessing one would move money between periods.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {instant.isoformat()}")
    return instant


def _parse(period: str) -> tuple[int, int]:
    match = _PERIOD.match(period)
    if match is None:
        raise ValueError("period must be YYYY-MM")
    return int(match[1]), int(match[2])


def period_bounds(period: str, timezone: str) -> tuple[datetime, datetime]:
    """The [start, end) instants of month `period` ("YYYY-MM") in `timezone`."""
    return local_month_bounds(*_parse(period), timezone)


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date of `instant` on the wall clocks of `timezone`."""
    return require_aware(instant).astimezone(ZoneInfo(timezone)).date()


def period_of(instant: datetime, timezone: str) -> str:
    """The period ("YYYY-MM") that `instant` falls in, in `timezone`'s local calendar."""
    day = local_date(instant, timezone)
    return f"{day.year:04d}-{day.month:02d}"


def period_days(period: str) -> int:
    """Number of calendar days in `period` (28 to 31)."""
    year, month = _parse(period)
    return calendar.monthrange(year, month)[1]


def period_dates(period: str) -> list[date]:
    """Every local date of `period`, in order."""
    year, month = _parse(period)
    return [date(year, month, day) for day in range(1, period_days(period) + 1)]


def next_period(period: str) -> str:
    """The month after `period` (where adjustments to a final invoice of `period` go at the
    earliest)."""
    year, month = _parse(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def quarter_of(period: str) -> str:
    """The quarter ("YYYY-Qn") that `period` belongs to."""
    year, month = _parse(period)
    return f"{year:04d}-Q{(month - 1) // 3 + 1}"


def quarter_periods(quarter: str) -> tuple[str, str, str]:
    """The three periods of `quarter` ("YYYY-Qn"), in order."""
    match = _QUARTER.match(quarter)
    if match is None:
        raise ValueError("quarter must be YYYY-Qn with n in 1..4")
    year, first = int(match[1]), (int(match[2]) - 1) * 3 + 1
    return (
        f"{year:04d}-{first:02d}",
        f"{year:04d}-{first + 1:02d}",
        f"{year:04d}-{first + 2:02d}",
    )


def quarter_bounds(quarter: str, timezone: str) -> tuple[datetime, datetime]:
    """The [start, end) instants of `quarter` ("YYYY-Qn") in `timezone`."""
    first, _, last = quarter_periods(quarter)
    return period_bounds(first, timezone)[0], period_bounds(last, timezone)[1]


def next_quarter(quarter: str) -> str:
    """The quarter after `quarter`."""
    return quarter_of(next_period(quarter_periods(quarter)[2]))


def quarter_start_from(instant: datetime, timezone: str) -> datetime:
    """`instant` itself when a quarter starts there (local midnight of 1 January, April, July
    or October in `timezone`), else the start of the next quarter."""
    quarter = quarter_of(period_of(instant, timezone))
    start, end = quarter_bounds(quarter, timezone)
    return instant if instant == start else end
