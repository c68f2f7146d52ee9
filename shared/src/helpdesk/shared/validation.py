"""The bounds every service puts on periods, quarters and instants it is given.

One place, so that intake, the SLA timer, billing and the notifier take the same inputs: an
instant lies between 1970 and a few minutes from now, a period ("YYYY-MM") or a quarter
("YYYY-Qn") in a year from 1970 to next year. Anything outside could not be placed on a
calendar in every time zone (year 1 with an offset, year 10000), and nothing this system
records happened before 1970. Digits are ASCII only (Python's `\\d` takes full-width digits)
and nothing may follow the text (`$` would accept a trailing newline).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

from helpdesk.shared.context import utc_now

#: The earliest instant the API takes: nothing this system records happened before it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: How far ahead of the server's clock an instant may lie (clock skew of the sender); whether
#: a command may lie in the future at all is decided by the command (most may not).
CLOCK_SKEW = timedelta(minutes=5)
#: How many years past the current one a period or quarter may name (planning, what-if).
YEARS_AHEAD = 1
FIRST_YEAR = EARLIEST.year


def years_pattern(first: int, last: int) -> str:
    """A regular expression group matching the four-digit years `first` to `last`."""
    parts, year = [], first
    while year <= last:
        if year % 10 == 0 and year + 9 <= last:
            parts.append(f"{year // 10}[0-9]")
            year += 10
        else:
            parts.append(str(year))
            year += 1
    return "(" + "|".join(parts) + ")"


# The OpenAPI patterns, built when the service starts: the years they name are the ones the
# server takes (a pattern built last year is stricter than the server, never looser).
_THIS_YEAR = utc_now().year
#: A period and a quarter: ASCII digits, years 1970 to next year, anchored at both ends.
PERIOD_PATTERN = rf"^{years_pattern(FIRST_YEAR, _THIS_YEAR + YEARS_AHEAD)}-(0[1-9]|1[0-2])$"
QUARTER_PATTERN = rf"^{years_pattern(FIRST_YEAR, _THIS_YEAR + YEARS_AHEAD)}-Q[1-4]$"
#: An instant as OpenAPI declares it: an RFC 3339 date-time from 1970 to this year (that it
#: may not lie more than a few minutes past now, JSON Schema cannot say).
INSTANT_PATTERN = (
    rf"^{years_pattern(FIRST_YEAR, _THIS_YEAR)}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])", re.ASCII)


def _year_in_range(year: int, now: datetime) -> None:
    last = now.astimezone(UTC).year + YEARS_AHEAD
    if not FIRST_YEAR <= year <= last:
        raise ValueError(f"the year must be between {FIRST_YEAR} and {last}")


def parse_period(text: str, now: datetime) -> tuple[int, int]:
    """(year, month) of a "YYYY-MM" period from 1970 to next year; ValueError otherwise."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise ValueError("must be a month written YYYY-MM (01 to 12), e.g. 2026-03")
    year = int(match.group(1))
    _year_in_range(year, now)
    return year, int(match.group(2))


def parse_quarter(text: str, now: datetime) -> tuple[int, int]:
    """(year, quarter) of a "YYYY-Qn" quarter from 1970 to next year; ValueError otherwise."""
    match = _QUARTER.fullmatch(text)
    if match is None:
        raise ValueError("must be a quarter written YYYY-Qn (n from 1 to 4), e.g. 2026-Q1")
    year = int(match.group(1))
    _year_in_range(year, now)
    return year, int(match.group(2))


def check_instant(value: datetime, now: datetime, *, ahead: timedelta = CLOCK_SKEW) -> datetime:
    """`value` if it lies between 1970 and `ahead` past `now`; ValueError otherwise.

    Year 1 or 9999 with an offset does not even fit a datetime once converted to UTC; either
    bound would be a poison value for every consumer of the stream.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("lies outside the years datetimes can hold") from exc
    if utc < EARLIEST:
        raise ValueError("lies before 1970-01-01T00:00:00Z")
    if utc > now + ahead:
        raise ValueError("lies in the future")
    return value


def _text_only(value: Any) -> Any:
    # JSON has no datetime: a number (`0`) would be read as seconds since 1970, a silent guess.
    if isinstance(value, datetime | str):
        return value
    raise ValueError("must be an RFC 3339 date-time string")


def _sane(value: datetime) -> datetime:
    return check_instant(value, utc_now())


#: A request's instant: an RFC 3339 string with an offset, from 1970 to a few minutes from now.
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_text_only),
    AfterValidator(_sane),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "description": "An RFC 3339 date-time with an offset, from 1970 to now.",
        }
    ),
]
#: A request's period and quarter, as plain strings with their OpenAPI pattern.
Period = Annotated[str, Field(pattern=PERIOD_PATTERN, examples=["2026-03"])]
Quarter = Annotated[str, Field(pattern=QUARTER_PATTERN, examples=["2026-Q1"])]
