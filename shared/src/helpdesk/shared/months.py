"""Calendar months on an account's wall clock: the one definition billing periods and SLA
reports share (pure: no clock reads)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

#: A month written "YYYY-MM" (a billing period, a report month).
PERIOD_PATTERN = r"^(\d{4})-(0[1-9]|1[0-2])$"


def local_month_bounds(year: int, month: int, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in `timezone`: local midnight of its first day to local
    midnight of the next month's first day (so a DST change inside it is counted in full)."""
    zone = ZoneInfo(timezone)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, end
