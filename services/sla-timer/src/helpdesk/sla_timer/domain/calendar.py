"""Business-calendar arithmetic: add business time to an instant, measure it between two.

A `BusinessCalendar` wraps the agreement's `Calendar` model (IANA zone, weekly intervals in local
wall-clock time, one-off and yearly holidays on local dates). Every answer is an exact, UTC-aware
instant or a `timedelta`; seconds are kept.

How local time becomes real time: each opening interval of a local date is turned into a UTC span
by resolving its start and end wall-clock times in the zone (`fold=0`, i.e. the first occurrence
of an ambiguous time and the pre-transition offset for a time that does not exist). Business time
is therefore real elapsed time: a 25-hour fall-back day open around the clock holds 1500 minutes,
a 23-hour spring-forward day 1380.

Speed: spans are built per ISO week (Monday to Sunday of the local calendar) and cached with the
week's total open time, so `add` and `between` step over whole weeks with one subtraction each
and only look at individual spans in the first and last week. A fully around-the-clock calendar
without holidays skips all of that: business time is then plain elapsed time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from helpdesk.shared.agreements import WEEKDAYS, Calendar

UTC = dt.UTC
ZERO = dt.timedelta(0)
ONE_WEEK = dt.timedelta(days=7)

#: How far ahead `add` searches for open time before giving up. Ten years of closed weeks means
#: the calendar is unusable (e.g. every open day covered by holidays), not that the answer is far.
SEARCH_HORIZON_WEEKS = 522

# Bounded caches: enough weeks for decades of tickets, few enough to stay small in memory.
_WEEK_CACHE_SIZE = 4096
_CALENDAR_CACHE_SIZE = 256


class NoOpenTimeError(ValueError):
    """The calendar has no open time within the search horizon (about ten years)."""


def require_aware(value: dt.datetime, name: str = "instant") -> dt.datetime:
    """Return `value` in UTC; raise ValueError when it is naive.

    A naive datetime has no place in SLA arithmetic: "09:00" means nothing without a zone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Week:
    """Open spans (UTC, sorted, disjoint) of one local ISO week and their total length."""

    spans: tuple[tuple[dt.datetime, dt.datetime], ...]
    total: dt.timedelta


class BusinessCalendar:
    """Arithmetic on one business calendar.

    Build one per `Calendar` (or use `BusinessCalendar.of`, which caches them): the object keeps a
    bounded cache of the weeks it has computed, which is what makes folding many tickets cheap.
    """

    __slots__ = ("_always_open", "_holiday_cache", "_intervals", "_weeks", "calendar", "zone")

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.zone: ZoneInfo = calendar.zone
        # Index by date.weekday(): 0 is Monday.
        self._intervals: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple(calendar.intervals_on(day)) for day in WEEKDAYS
        )
        self._always_open = calendar.is_24x7
        self._weeks: dict[dt.date, _Week] = {}
        self._holiday_cache: dict[dt.date, bool] = {}

    @classmethod
    def of(cls, calendar: Calendar) -> BusinessCalendar:
        """A shared `BusinessCalendar` for `calendar` (memoised by the calendar's content)."""
        key = calendar.model_dump_json()
        found = _CALENDARS.get(key)
        if found is None:
            if len(_CALENDARS) >= _CALENDAR_CACHE_SIZE:
                _CALENDARS.clear()
            found = _CALENDARS[key] = cls(calendar)
        return found

    # --- queries ---------------------------------------------------------------------------

    def is_open(self, instant: dt.datetime) -> bool:
        """Whether the calendar is open at `instant` (an interval is open at its start, closed at
        its end)."""
        at = require_aware(instant)
        if self._always_open:
            return True
        return any(start <= at < end for start, end in self._spans_from(at, weeks=1))

    def next_open(self, instant: dt.datetime) -> dt.datetime:
        """`instant` itself when open, else the next opening (UTC).

        Raises NoOpenTimeError when no open time exists within the search horizon.
        """
        at = require_aware(instant)
        if self._always_open:
            return at
        for start, end in self._spans_from(at, weeks=SEARCH_HORIZON_WEEKS):
            if end > at:
                return max(start, at)
        raise NoOpenTimeError(self._no_open_time_message(at))

    def add(self, start: dt.datetime, amount: int | dt.timedelta) -> dt.datetime:
        """The instant (UTC) at which `amount` of business time after `start` has elapsed.

        `amount` is business minutes (int) or a timedelta. Started while closed, counting begins at
        the next opening. A deadline whose last business minute ends at closing time is due at
        closing time, not at the next opening. `add(start, 0)` is `start`.

        Raises ValueError for a naive `start` or a negative amount, NoOpenTimeError when the
        calendar has no open time for about ten years after the point reached.
        """
        at = require_aware(start, "start")
        remaining = dt.timedelta(minutes=amount) if isinstance(amount, int) else amount
        if remaining < ZERO:
            raise ValueError("cannot add a negative amount of business time")
        if remaining == ZERO or self._always_open:
            return at + remaining
        monday = self._monday_of(at)
        # The first week only counts from `start`.
        week = self._week(monday)
        for span_start, span_end in week.spans:
            if span_end <= at:
                continue
            begin = max(span_start, at)
            if remaining <= span_end - begin:
                return begin + remaining
            remaining -= span_end - begin
        closed_weeks = 0
        while True:
            monday += ONE_WEEK
            week = self._week(monday)
            if week.total == ZERO:
                closed_weeks += 1
                if closed_weeks > SEARCH_HORIZON_WEEKS:
                    raise NoOpenTimeError(self._no_open_time_message(at))
                continue
            closed_weeks = 0
            if remaining > week.total:
                # Whole week consumed: one subtraction instead of walking its spans.
                remaining -= week.total
                continue
            for span_start, span_end in week.spans:
                if remaining <= span_end - span_start:
                    return span_start + remaining
                remaining -= span_end - span_start
            # Unreachable: remaining <= week.total guarantees a return above.
            raise AssertionError("business time left over after a week that covers it")

    def add_business_days(self, start: dt.datetime, days: int) -> dt.datetime:
        """The instant (UTC) `days` business days after `start`: the same local wall-clock time
        on the `days`-th next business day (docs/policies.md, seed 002).

        A business day is a local date that is not a holiday and has opening intervals. Started
        while closed (at night, on a weekend or holiday, at closing time), counting begins at
        the next opening; a count that ends exactly at an opening is due at the closing before
        it, as with `add`, so a ticket reported after hours is due when the next business day
        closes (Monday 18:00 -> Tuesday 17:30 on an 08:30-17:30 calendar). Where the
        wall-clock time is not open on the day reached (a shorter day), the deadline is the
        end of that day's last interval before it: never later than the day reached.

        Raises ValueError for a naive `start` or `days` below 1, NoOpenTimeError when the
        calendar has no open time for about ten years.
        """
        if days < 1:
            raise ValueError("a business-day target is at least one day")
        opened = self.next_open(start)
        local = opened.astimezone(self.zone)
        wall = local.hour * 60 + local.minute
        seconds = dt.timedelta(seconds=local.second, microseconds=local.microsecond)
        date = local.date()
        for _ in range(days):
            date = self._next_business_day(date, opened)
        target = self._instant(date, wall) + seconds
        spans = [
            (self._instant(date, lo), self._instant(date, hi))
            for lo, hi in self._intervals_of(date)
        ]
        if not any(lo <= target < hi for lo, hi in spans):
            # Closed at that wall-clock time: the day's last closing before it, or (before the
            # day's first opening) the business time up to that opening.
            target = max((hi for _, hi in spans if hi <= target), default=spans[0][0])
        # Normalised through `add`: an end at an opening becomes the closing before it.
        return self.add(opened, self.between(opened, target))

    def _intervals_of(self, date: dt.date) -> tuple[tuple[int, int], ...]:
        """Opening intervals of a local date (none on a holiday)."""
        return () if self._is_holiday(date) else self._intervals[date.weekday()]

    def _next_business_day(self, date: dt.date, origin: dt.datetime) -> dt.date:
        for _ in range(7 * SEARCH_HORIZON_WEEKS):
            date += dt.timedelta(days=1)
            if self._intervals_of(date):
                return date
        raise NoOpenTimeError(self._no_open_time_message(origin))

    def between(self, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        """Business time from `a` to `b` (negative when `b` is before `a`)."""
        start = require_aware(a, "a")
        end = require_aware(b, "b")
        if end < start:
            return -self.between(end, start)
        if self._always_open:
            return end - start
        first = self._monday_of(start)
        last = self._monday_of(end)
        total = ZERO
        monday = first
        while monday <= last:
            week = self._week(monday)
            if first < monday < last:
                total += week.total
            else:
                for span_start, span_end in week.spans:
                    lo = max(span_start, start)
                    hi = min(span_end, end)
                    if hi > lo:
                        total += hi - lo
            monday += ONE_WEEK
        return total

    def business_minutes(self, a: dt.datetime, b: dt.datetime) -> int:
        """Whole business minutes from `a` to `b`, rounded down (seconds are dropped)."""
        return int(self.between(a, b).total_seconds() // 60)

    # --- building weeks ---------------------------------------------------------------------

    def _monday_of(self, instant: dt.datetime) -> dt.date:
        local = instant.astimezone(self.zone).date()
        return local - dt.timedelta(days=local.weekday())

    def _spans_from(
        self, at: dt.datetime, *, weeks: int
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Spans of the week holding `at` and the `weeks - 1` weeks after it, in order."""
        monday = self._monday_of(at)
        for _ in range(weeks):
            yield from self._week(monday).spans
            monday += ONE_WEEK

    def _week(self, monday: dt.date) -> _Week:
        week = self._weeks.get(monday)
        if week is None:
            if len(self._weeks) >= _WEEK_CACHE_SIZE:
                self._weeks.clear()
            week = self._weeks[monday] = self._build_week(monday)
        return week

    def _build_week(self, monday: dt.date) -> _Week:
        spans: list[tuple[dt.datetime, dt.datetime]] = []
        for offset in range(7):
            date = monday + dt.timedelta(days=offset)
            if self._is_holiday(date):
                continue
            for start_minute, end_minute in self._intervals[date.weekday()]:
                start = self._instant(date, start_minute)
                end = self._instant(date, end_minute)
                if spans and start < spans[-1][1]:
                    # Only around a DST gap can a wall-clock time resolve before the previous
                    # span's end; never count the same real minute twice.
                    start = spans[-1][1]
                if end > start:
                    spans.append((start, end))
        total = sum((end - start for start, end in spans), ZERO)
        return _Week(spans=tuple(spans), total=total)

    def _instant(self, date: dt.date, minute: int) -> dt.datetime:
        """The UTC instant of local wall-clock `minute` after midnight of `date` (1440 = next
        midnight)."""
        day = date + dt.timedelta(days=minute // 1440)
        minute %= 1440
        local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=self.zone)
        return local.astimezone(UTC)

    def _is_holiday(self, date: dt.date) -> bool:
        found = self._holiday_cache.get(date)
        if found is None:
            if len(self._holiday_cache) >= 7 * _WEEK_CACHE_SIZE:
                self._holiday_cache.clear()
            found = self._holiday_cache[date] = self.calendar.is_holiday(date)
        return found

    def _no_open_time_message(self, at: dt.datetime) -> str:
        return (
            f"calendar ({self.calendar.timezone}) has no open time for about ten years "
            f"after {at.isoformat()}: check its weekly intervals and holidays"
        )


_CALENDARS: dict[str, BusinessCalendar] = {}
