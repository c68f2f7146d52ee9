"""Billing periods: calendar months in the account's own time zone."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_bounds(period: str, timezone: str) -> tuple[datetime, datetime]:
    """The [start, end) instants of month `period` ("YYYY-MM") in `timezone`."""
    match = _PERIOD.match(period)
    if match is None:
        raise ValueError("period must be YYYY-MM")
    year, month = int(match[1]), int(match[2])
    zone = ZoneInfo(timezone)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, end
