"""The shared bounds on periods, quarters and instants (issue 21, point 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from helpdesk.shared.validation import check_instant, parse_period, parse_quarter

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_a_period_is_an_ascii_month_from_1970_to_next_year() -> None:
    assert parse_period("2026-03", NOW) == (2026, 3)
    assert parse_period("1970-01", NOW) == (1970, 1)
    assert parse_period("2027-12", NOW) == (2027, 12)
    for bad in (
        "2026-13",
        "2026-3",
        "26-03",
        "2026-03-01",
        "0000-01",
        "0001-01",
        "1969-12",
        "2028-01",
        "9999-12",
        "２０２６-03",  # full-width digits, which `\d` would take
        "2026-03\n",  # a trailing newline, which `$` would take
        " 2026-03",
    ):
        with pytest.raises(ValueError, match=r"YYYY-MM|the year"):
            parse_period(bad, NOW)


def test_a_quarter_is_an_ascii_quarter_from_1970_to_next_year() -> None:
    assert parse_quarter("2026-Q4", NOW) == (2026, 4)
    for bad in ("2026-Q5", "2026-Q0", "1969-Q4", "2028-Q1", "２０２６-Q1", "2026-Q1\n", "2026-q1"):
        with pytest.raises(ValueError, match=r"YYYY-Qn|the year"):
            parse_quarter(bad, NOW)


def test_an_instant_lies_between_1970_and_a_few_minutes_from_now() -> None:
    assert check_instant(NOW, NOW) == NOW
    assert check_instant(datetime(1970, 1, 1, tzinfo=UTC), NOW)
    assert check_instant(NOW + timedelta(minutes=4), NOW)
    plus_14 = timezone(timedelta(hours=14))
    for bad in (
        datetime(1, 1, 1, tzinfo=plus_14),  # does not fit a datetime in UTC
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        NOW + timedelta(minutes=6),
        datetime(2026, 1, 1),  # noqa: DTZ001 - naive, on purpose
    ):
        with pytest.raises(ValueError, match=r"outside|before|future|offset"):
            check_instant(bad, NOW)
