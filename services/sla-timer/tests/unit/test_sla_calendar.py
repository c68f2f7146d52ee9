"""Business-calendar arithmetic: worked examples, DST, holidays in local dates, properties."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.shared.agreements import WEEKDAYS, Calendar, get_preset
from helpdesk.sla_timer.domain import BusinessCalendar, NoOpenTimeError

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")
AKL = ZoneInfo("Pacific/Auckland")
TOKYO = ZoneInfo("Asia/Tokyo")
MIN = dt.timedelta(minutes=1)


def calendar(
    timezone: str,
    days: tuple[str, ...] = WEEKDAYS[:5],
    hours: tuple[tuple[str, str], ...] = (("09:00", "17:00"),),
    holidays: list[dict[str, Any]] | None = None,
) -> BusinessCalendar:
    weekly = [{"day": d, "start": s, "end": e} for d in days for s, e in hours]
    return BusinessCalendar(
        Calendar.model_validate(
            {"timezone": timezone, "weekly": weekly, "holidays": holidays or []}
        )
    )


def around_the_clock(
    timezone: str, holidays: list[dict[str, Any]] | None = None
) -> BusinessCalendar:
    return calendar(timezone, WEEKDAYS, (("00:00", "24:00"),), holidays)


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


# --- worked examples (docs/policies.md) -----------------------------------------------------


def test_small_business_urgent_reported_friday_evening_is_due_monday() -> None:
    agreement = get_preset("small_business_remote")
    assert agreement is not None
    cal = BusinessCalendar(agreement.agreement.calendars["business_hours"])
    friday = local(NY, 2025, 6, 6, 17, 10)
    assert cal.add(friday, 60) == local(NY, 2025, 6, 9, 9, 30).astimezone(dt.UTC) - 20 * MIN


def test_mon_fri_0830_1730_friday_1710_plus_one_hour_is_monday_0910() -> None:
    cal = calendar("America/New_York", hours=(("08:30", "17:30"),))
    due = cal.add(local(NY, 2025, 6, 6, 17, 10), 60)
    assert due.astimezone(NY) == local(NY, 2025, 6, 9, 9, 10)
    assert due.tzinfo is dt.UTC


def test_four_tier_24x7_preset_is_plain_elapsed_time() -> None:
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    cal = BusinessCalendar(preset.agreement.calendars["24x7"])
    tuesday = dt.datetime(2025, 6, 3, 9, 0, tzinfo=dt.UTC)
    assert cal.add(tuesday, 120) == dt.datetime(2025, 6, 3, 11, 0, tzinfo=dt.UTC)
    assert cal.add(tuesday, 240) == dt.datetime(2025, 6, 3, 13, 0, tzinfo=dt.UTC)


# --- closing time, closed starts, split shifts ----------------------------------------------------


def test_deadline_ending_at_closing_time_is_due_at_closing_time() -> None:
    cal = calendar("America/New_York")
    due = cal.add(local(NY, 2025, 6, 4, 16, 0), 60)
    assert due.astimezone(NY) == local(NY, 2025, 6, 4, 17, 0)


def test_friday_deadline_at_closing_time_does_not_move_to_monday() -> None:
    cal = calendar("America/New_York")
    due = cal.add(local(NY, 2025, 6, 2, 9, 0), 5 * 8 * 60)
    assert due.astimezone(NY) == local(NY, 2025, 6, 6, 17, 0)


def test_clock_started_while_closed_counts_from_next_opening() -> None:
    cal = calendar("America/New_York")
    saturday = local(NY, 2025, 6, 7, 11, 0)
    assert cal.add(saturday, 30).astimezone(NY) == local(NY, 2025, 6, 9, 9, 30)
    assert cal.between(saturday, local(NY, 2025, 6, 9, 9, 30)) == 30 * MIN
    assert cal.next_open(saturday).astimezone(NY) == local(NY, 2025, 6, 9, 9, 0)
    assert not cal.is_open(saturday)
    early = local(NY, 2025, 6, 10, 6, 0)
    assert cal.add(early, 1).astimezone(NY) == local(NY, 2025, 6, 10, 9, 1)


def test_lunch_break_is_skipped() -> None:
    cal = calendar("Europe/Amsterdam", hours=(("08:00", "12:00"), ("13:00", "17:00")))
    due = cal.add(local(AMS, 2025, 6, 4, 11, 30), 60)
    assert due.astimezone(AMS) == local(AMS, 2025, 6, 4, 13, 30)
    assert cal.between(local(AMS, 2025, 6, 4, 7, 0), local(AMS, 2025, 6, 4, 18, 0)) == 8 * 60 * MIN
    # The morning shift ends exactly at 12:00: due then, not after lunch.
    assert cal.add(local(AMS, 2025, 6, 4, 11, 0), 60).astimezone(AMS) == local(
        AMS, 2025, 6, 4, 12, 0
    )
    assert cal.is_open(local(AMS, 2025, 6, 4, 12, 59)) is False


def test_seconds_are_kept() -> None:
    cal = calendar("America/New_York")
    start = local(NY, 2025, 6, 4, 16, 59) + dt.timedelta(seconds=30)
    due = cal.add(start, 1)
    assert due.astimezone(NY) == local(NY, 2025, 6, 5, 9, 0) + dt.timedelta(seconds=30)
    assert cal.business_minutes(start, due) == 1


def test_month_and_year_end() -> None:
    cal = calendar("America/New_York", holidays=[{"month": 1, "day": 1, "yearly": True}])
    # Wed 31 Dec 2025 16:00 + 2 h: Thu 1 Jan is a holiday -> Fri 2 Jan 10:00.
    due = cal.add(local(NY, 2025, 12, 31, 16, 0), 120)
    assert due.astimezone(NY) == local(NY, 2026, 1, 2, 10, 0)
    # Friday 31 Oct 16:30 + 1 h -> Monday 3 Nov 09:30 (across the month and the fall-back).
    assert cal.add(local(NY, 2025, 10, 31, 16, 30), 60).astimezone(NY) == local(
        NY, 2025, 11, 3, 9, 30
    )


# --- DST ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("America/New_York", (2025, 3, 9), (2025, 11, 2)),
        ("Europe/Amsterdam", (2025, 3, 30), (2025, 10, 26)),
    ],
)
def test_24x7_days_of_dst_changes_hold_real_time(
    zone: str, spring: tuple[int, int, int], fall: tuple[int, int, int]
) -> None:
    tz = ZoneInfo(zone)
    cal = around_the_clock(zone)
    spring_day = local(tz, *spring)
    fall_day = local(tz, *fall)
    assert cal.between(spring_day, local(tz, *spring) + dt.timedelta(days=1)) == 1380 * MIN
    assert cal.between(fall_day, local(tz, *fall) + dt.timedelta(days=1)) == 1500 * MIN
    # Adding a local day's worth lands one hour later / earlier on the wall clock.
    assert cal.add(spring_day, 1440).astimezone(tz).hour == 1
    assert cal.add(fall_day, 1440).astimezone(tz) == local(tz, *fall, 23, 0)


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("America/New_York", (2025, 3, 9), (2025, 11, 2)),
        ("Europe/Amsterdam", (2025, 3, 30), (2025, 10, 26)),
    ],
)
def test_24x7_with_a_holiday_still_counts_real_time(
    zone: str, spring: tuple[int, int, int], fall: tuple[int, int, int]
) -> None:
    # A holiday far away disables the plain-elapsed fast path: the span path must agree.
    tz = ZoneInfo(zone)
    cal = around_the_clock(zone, holidays=[{"date": "2031-01-01"}])
    for day in (spring, fall):
        # In UTC: same-zone aware datetimes subtract as wall-clock times.
        start = local(tz, *day).astimezone(dt.UTC)
        end = local(tz, day[0], day[1], day[2] + 1).astimezone(dt.UTC)
        assert cal.between(start, end) == end - start
        assert cal.add(start, int((end - start).total_seconds() // 60)) == end


@pytest.mark.parametrize(
    ("zone", "friday", "monday"),
    [
        ("America/New_York", (2025, 3, 7), (2025, 3, 10)),
        ("America/New_York", (2025, 10, 31), (2025, 11, 3)),
        ("Europe/Amsterdam", (2025, 3, 28), (2025, 3, 31)),
        ("Europe/Amsterdam", (2025, 10, 24), (2025, 10, 27)),
    ],
)
def test_business_hours_across_a_dst_weekend_keep_wall_clock_hours(
    zone: str, friday: tuple[int, int, int], monday: tuple[int, int, int]
) -> None:
    tz = ZoneInfo(zone)
    cal = calendar(zone)
    start = local(tz, *friday, 16, 0)
    assert cal.add(start, 120).astimezone(tz) == local(tz, *monday, 10, 0)
    assert cal.between(start, local(tz, *monday, 10, 0)) == 120 * MIN


def test_interval_through_the_spring_gap_counts_only_real_time() -> None:
    # Open 01:00-04:00 every day; on 9 March 2025 02:00-03:00 does not exist in New York.
    cal = calendar("America/New_York", WEEKDAYS, (("01:00", "04:00"),))
    day = (2025, 3, 9)
    assert cal.between(local(NY, *day), local(NY, 2025, 3, 10)) == 120 * MIN
    assert cal.between(local(NY, 2025, 11, 2), local(NY, 2025, 11, 3)) == 240 * MIN


# --- holidays in local dates ------------------------------------------------------------------


def test_holiday_closes_the_local_date_in_auckland() -> None:
    # 6 February (Waitangi Day) Auckland is 5 February 11:00 UTC onwards.
    cal = calendar("Pacific/Auckland", holidays=[{"month": 2, "day": 6, "yearly": True}])
    wednesday = local(AKL, 2025, 2, 5, 16, 0)
    assert cal.add(wednesday, 120).astimezone(AKL) == local(AKL, 2025, 2, 7, 10, 0)
    assert not cal.is_open(local(AKL, 2025, 2, 6, 10, 0))
    # On the UTC date 6 Feb, Auckland is already on 7 Feb (open).
    assert cal.is_open(dt.datetime(2025, 2, 6, 21, 0, tzinfo=dt.UTC))


def test_holiday_closes_the_local_date_in_tokyo() -> None:
    cal = calendar("Asia/Tokyo", holidays=[{"date": "2025-11-03"}])
    # Monday 3 Nov 2025 09:30 Tokyo is Monday 00:30 UTC and Sunday in New York.
    assert not cal.is_open(dt.datetime(2025, 11, 3, 0, 30, tzinfo=dt.UTC))
    due = cal.add(local(TOKYO, 2025, 10, 31, 16, 0), 120)
    assert due.astimezone(TOKYO) == local(TOKYO, 2025, 11, 4, 10, 0)


def test_calendar_with_no_open_time_raises_instead_of_hanging() -> None:
    holidays = [{"month": m, "day": d, "yearly": True} for m in range(1, 13) for d in range(1, 29)]
    holidays += [
        {"month": m, "day": d, "yearly": True}
        for m in (1, 3, 5, 7, 8, 10, 12)
        for d in (29, 30, 31)
    ]
    holidays += [{"month": m, "day": d, "yearly": True} for m in (4, 6, 9, 11) for d in (29, 30)]
    holidays += [{"month": 2, "day": 29, "yearly": True}]
    cal = calendar("Europe/Amsterdam", holidays=holidays)
    begun = time.perf_counter()
    with pytest.raises(NoOpenTimeError):
        cal.add(local(AMS, 2025, 1, 1), 60)
    with pytest.raises(NoOpenTimeError):
        cal.next_open(local(AMS, 2025, 1, 1))
    assert time.perf_counter() - begun < 5


def test_naive_datetimes_are_refused() -> None:
    cal = calendar("UTC")
    naive = dt.datetime(2025, 1, 1, 9, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add(naive, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.between(naive, naive)


def test_forty_business_hours_for_many_tickets_is_fast() -> None:
    cal = calendar("America/New_York", holidays=[{"month": 7, "day": 4, "yearly": True}])
    start = local(NY, 2025, 6, 2, 8, 0)
    begun = time.perf_counter()
    for i in range(20_000):
        cal.add(start + dt.timedelta(minutes=7 * i), 2400)
    assert time.perf_counter() - begun < 5
    # Far targets step over whole weeks.
    assert cal.add(start, 40 * 60 * 52).year == 2026


# --- properties ----------------------------------------------------------------------------------

CALENDARS = [
    calendar(
        "America/New_York",
        hours=(("08:30", "17:30"),),
        holidays=[{"month": 7, "day": 4, "yearly": True}, {"date": "2025-11-27"}],
    ),
    calendar(
        "Europe/Amsterdam",
        hours=(("08:00", "12:00"), ("13:00", "17:00")),
        holidays=[{"month": 12, "day": 25, "yearly": True}],
    ),
    calendar("Pacific/Auckland", WEEKDAYS, (("00:00", "03:00"), ("22:00", "24:00"))),
    around_the_clock("America/New_York", holidays=[{"month": 1, "day": 1, "yearly": True}]),
    around_the_clock("UTC"),
]

instants = st.datetimes(
    min_value=dt.datetime(2024, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
calendars = st.sampled_from(CALENDARS)
amounts = st.integers(min_value=0, max_value=60 * 24 * 30)


@settings(max_examples=200, deadline=None)
@given(cal=calendars, start=instants, minutes=amounts)
def test_between_inverts_add(cal: BusinessCalendar, start: dt.datetime, minutes: int) -> None:
    assert cal.between(start, cal.add(start, minutes)) == minutes * MIN


@settings(max_examples=200, deadline=None)
@given(cal=calendars, start=instants, a=amounts, b=amounts)
def test_add_is_monotone(cal: BusinessCalendar, start: dt.datetime, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert cal.add(start, low) <= cal.add(start, high)


@settings(max_examples=200, deadline=None)
@given(cal=calendars, start=instants, later=instants, minutes=amounts)
def test_add_is_monotone_in_start(
    cal: BusinessCalendar, start: dt.datetime, later: dt.datetime, minutes: int
) -> None:
    first, second = sorted((start, later))
    assert cal.add(first, minutes) <= cal.add(second, minutes)


@settings(max_examples=200, deadline=None)
@given(cal=calendars, start=instants, minutes=st.integers(min_value=1, max_value=5000))
def test_deadline_is_never_in_closed_time_after_its_last_minute(
    cal: BusinessCalendar, start: dt.datetime, minutes: int
) -> None:
    due = cal.add(start, minutes)
    # The minute before the deadline was open: the deadline ends open time (it may be closing).
    assert cal.is_open(due - dt.timedelta(seconds=1))
    # And a closed stretch after `start` is skipped: counting starts at the next opening.
    opening = cal.next_open(start)
    assert cal.add(start, minutes) == cal.add(opening, minutes)
    assert cal.between(start, opening) == dt.timedelta(0)


@settings(max_examples=200, deadline=None)
@given(cal=calendars, a=instants, b=instants, c=instants)
def test_between_is_additive(
    cal: BusinessCalendar, a: dt.datetime, b: dt.datetime, c: dt.datetime
) -> None:
    x, y, z = sorted((a, b, c))
    assert cal.between(x, z) == cal.between(x, y) + cal.between(y, z)
    assert cal.between(z, x) == -cal.between(x, z)
    assert dt.timedelta(0) <= cal.between(x, z) <= z - x


# --- business days (Target.response_business_days) -----------------------------------------


def office() -> BusinessCalendar:
    """Seed 002's "Operating hours: M-F 8:30 AM to 5:30 PM", with Monday 25 May 2026 closed."""
    return calendar(
        "America/New_York",
        hours=(("08:30", "17:30"),),
        holidays=[{"date": "2026-05-25", "name": "Memorial Day"}],
    )


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        # "Non-urgent issues we'll respond within 24 hours": the same time the next business day.
        (local(NY, 2026, 5, 18, 9, 0), 1, local(NY, 2026, 5, 19, 9, 0)),
        (local(NY, 2026, 5, 15, 16, 0), 1, local(NY, 2026, 5, 18, 16, 0)),
        (local(NY, 2026, 5, 18, 9, 0), 3, local(NY, 2026, 5, 21, 9, 0)),
        # The last minute before closing is open; a count from an opening ends at the closing
        # of the day it starts (the same business time as the next day's opening).
        (local(NY, 2026, 5, 18, 17, 29), 1, local(NY, 2026, 5, 19, 17, 29)),
        (local(NY, 2026, 5, 18, 8, 30), 1, local(NY, 2026, 5, 18, 17, 30)),
        # Closed (at closing time, at night, before opening, at the weekend): one business day
        # from the next opening, i.e. due when the next business day closes.
        (local(NY, 2026, 5, 18, 17, 30), 1, local(NY, 2026, 5, 19, 17, 30)),
        (local(NY, 2026, 5, 18, 23, 0), 1, local(NY, 2026, 5, 19, 17, 30)),
        (local(NY, 2026, 5, 19, 6, 0), 1, local(NY, 2026, 5, 19, 17, 30)),
        (local(NY, 2026, 5, 16, 12, 0), 1, local(NY, 2026, 5, 18, 17, 30)),
        (local(NY, 2026, 5, 16, 12, 0), 2, local(NY, 2026, 5, 19, 17, 30)),
        # A holiday is no business day: Friday 22 May 16:00 -> Tuesday 26 May 16:00; a ticket
        # on the holiday itself is due when Tuesday closes.
        (local(NY, 2026, 5, 22, 16, 0), 1, local(NY, 2026, 5, 26, 16, 0)),
        (local(NY, 2026, 5, 25, 10, 0), 1, local(NY, 2026, 5, 26, 17, 30)),
    ],
)
def test_business_days_land_on_the_same_local_time(
    start: dt.datetime, days: int, due: dt.datetime
) -> None:
    """Seed 002: "Non-urgent issues we'll respond within 24 hours" as business days: Monday
    09:00 -> Tuesday 09:00; Friday 16:00 -> Monday 16:00."""
    assert office().add_business_days(start, days) == due.astimezone(dt.UTC)


def test_business_days_keep_the_wall_clock_across_dst_and_seconds() -> None:
    """New York springs forward on Sunday 8 March 2026: Friday 16:00:30 EST (21:00:30 UTC) is
    due Monday 16:00:30 EDT (20:00:30 UTC), the same local time, not 72 hours later."""
    start = dt.datetime(2026, 3, 6, 16, 0, 30, tzinfo=NY)
    due = office().add_business_days(start, 1)
    assert due == dt.datetime(2026, 3, 9, 20, 0, 30, tzinfo=dt.UTC)


def test_business_days_on_a_shorter_day_end_at_its_closing() -> None:
    """A day that closes before the start's wall-clock time: the deadline is its closing, not
    the day after (Thursday 15:00 on a calendar whose Friday closes at 12:00 -> Friday 12:00)."""
    short_friday = BusinessCalendar(
        Calendar.model_validate(
            {
                "timezone": "America/New_York",
                "weekly": [
                    *({"day": d, "start": "08:30", "end": "17:30"} for d in WEEKDAYS[:4]),
                    {"day": "fri", "start": "08:30", "end": "12:00"},
                ],
            }
        )
    )
    start = local(NY, 2026, 5, 21, 15, 0)
    assert short_friday.add_business_days(start, 1) == local(NY, 2026, 5, 22, 12, 0).astimezone(
        dt.UTC
    )


def test_business_days_refuse_zero_and_naive_instants() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        office().add_business_days(local(NY, 2026, 5, 18, 9, 0), 0)
    with pytest.raises(ValueError, match="naive"):
        office().add_business_days(dt.datetime(2026, 5, 18, 9, 0), 1)  # noqa: DTZ001
