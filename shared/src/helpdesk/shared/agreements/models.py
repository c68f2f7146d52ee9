"""Pydantic models of the agreement contract.

Intake validates a PUT body against `Agreement` and stores it in an `agreement.*` event; the SLA
timer, billing and the notifier read it back from that event. The models are therefore the wire
contract: field names are the API's, money is integer cents, durations are integer minutes and
every datetime carries an offset. Everything here is pure: no I/O and no clock reads (ZoneInfo
reads the time-zone database once per key and caches it, which is data, not state).

Integers and booleans are strict, so `"15000"` or `true` is refused where cents or minutes are
expected rather than silently coerced: a wrong type in a price should be an error, not a guess.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import datetime as dt
import functools
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# --- vocabulary -------------------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: Indexed like `datetime.date.weekday()`: WEEKDAYS[0] is Monday.
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Priority = Literal["P1", "P2", "P3", "P4"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")

TicketKind = Literal["incident", "service_request", "solution_design"]
WorkType = Literal["remote", "onsite"]
PlanKind = Literal["hourly", "monthly", "managed"]
EscalationTier = Literal["engineering", "vendor", "management"]
#: How the work queue orders open tickets (see `Agreement.queue_order`).
QueueOrder = Literal["deadline", "multi_user_first"]

# Upper bounds keep every number inside a PostgreSQL bigint and inside reason: ten years of
# minutes is longer than any SLA target or follow-up, ten billion dollars more than any fee.
MAX_MINUTES = 10 * 366 * 24 * 60
MAX_CENTS = 10**12

Minutes = Annotated[int, Field(strict=True, ge=0, le=MAX_MINUTES)]
PositiveMinutes = Annotated[int, Field(strict=True, ge=1, le=MAX_MINUTES)]
Cents = Annotated[int, Field(strict=True, ge=0, le=MAX_CENTS)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100)]
#: Calendar names may start with a digit ("24x7") and are shown to people, so allow a little more.
CalendarName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: Machine identifiers (service classes, scope categories, ticket field names).
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Label = Annotated[str, Field(min_length=1, max_length=200)]

_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_START_RE = re.compile(rf"^{_HHMM}$")
# "24:00" is the only way to say "until midnight" in a day-local interval; 24×7 needs it.
_END_RE = re.compile(rf"^({_HHMM}|24:00)$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_CLOCK_RE = re.compile(r"^(\d{2}):(\d{2})$")


# Checked by hand rather than with Field(pattern=...) so that the reason a client reads is
# "not a time of day as HH:MM" instead of a regular expression; the schema keeps the pattern.
def _check_start(value: str) -> str:
    if not _START_RE.match(value):
        raise PydanticCustomError(
            "clock_time",
            "'{value}' is not a time of day as HH:MM (00:00 to 23:59)",
            {"value": value},
        )
    return value


def _check_end(value: str) -> str:
    if not _END_RE.match(value):
        raise PydanticCustomError(
            "clock_time",
            "'{value}' is not a time of day as HH:MM (00:00 to 24:00)",
            {"value": value},
        )
    return value


def _check_currency(value: str) -> str:
    if not _CURRENCY_RE.match(value):
        raise PydanticCustomError(
            "currency_code",
            "'{value}' is not an ISO 4217 currency code (three capital letters, e.g. USD)",
            {"value": value},
        )
    return value


ClockStart = Annotated[
    str,
    AfterValidator(_check_start),
    Field(json_schema_extra={"pattern": _START_RE.pattern}, examples=["08:30"]),
]
ClockEnd = Annotated[
    str,
    AfterValidator(_check_end),
    Field(json_schema_extra={"pattern": _END_RE.pattern}, examples=["17:30", "24:00"]),
]
Currency = Annotated[
    str,
    AfterValidator(_check_currency),
    Field(json_schema_extra={"pattern": _CURRENCY_RE.pattern}, examples=["USD", "EUR"]),
]


def clock_minutes(value: str) -> int:
    """Minutes after local midnight of an "HH:MM" wall-clock time ("24:00" gives 1440)."""
    match = _CLOCK_RE.match(value)
    if match is None:
        raise ValueError(f"not an HH:MM time: {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def _fail(title: str, loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> None:
    """Raise a ValidationError at `loc` (relative to the model being validated).

    A plain ValueError from a model validator is reported at the model itself; raising a
    ValidationError instead lets a cross-field rule name the exact field (pydantic prefixes the
    parent path when the model is nested), which is what a problem+json client needs.
    """
    raise ValidationError.from_exception_data(
        title,
        [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)],
    )


def _first_duplicate(items: Sequence[str]) -> int | None:
    """Index of the first element already seen earlier in `items`, or None."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            return index
        seen.add(item)
    return None


class ContractModel(BaseModel):
    """Base of every agreement model: immutable, and unknown fields are refused.

    `extra="forbid"` matters for a contract read by four services: a misspelt field
    ("resolution_minute") must be an error at PUT time, not an ignored setting at breach time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- calendars --------------------------------------------------------------------------------


class WeeklyInterval(ContractModel):
    """One opening interval on a weekday, in the calendar's local wall-clock time.

    An interval cannot cross midnight: write 22:00–24:00 on one day and 00:00–02:00 on the next.
    """

    day: Weekday
    start: ClockStart
    end: ClockEnd

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: str, info: ValidationInfo) -> str:
        start = info.data.get("start")
        if start is not None and clock_minutes(end) <= clock_minutes(start):
            raise PydanticCustomError(
                "interval_order",
                "end {end} must be later than start {start}",
                {"end": end, "start": start},
            )
        return end

    @property
    def start_minute(self) -> int:
        """Minutes after local midnight at which the interval opens."""
        return clock_minutes(self.start)

    @property
    def end_minute(self) -> int:
        """Minutes after local midnight at which the interval closes (1440 for "24:00")."""
        return clock_minutes(self.end)


class OneOffHoliday(ContractModel):
    """A closed day on one date, e.g. a moving feast or an observed substitute day."""

    date: dt.date
    name: Label | None = None


class YearlyHoliday(ContractModel):
    """A closed day on the same month and day every year.

    29 February is accepted and closes the calendar in leap years only. A yearly holiday falls on
    its date even on a weekend; add the observed weekday as a one-off holiday where it moves.
    """

    month: Annotated[int, Field(strict=True, ge=1, le=12)]
    day: Annotated[int, Field(strict=True, ge=1, le=31)]
    yearly: Literal[True] = True
    name: Label | None = None

    @field_validator("day")
    @classmethod
    def _day_exists(cls, day: int, info: ValidationInfo) -> int:
        month = info.data.get("month")
        # 2000 is a leap year, so 29 February passes and 30 February does not.
        if month is not None and day > _stdlib_calendar.monthrange(2000, month)[1]:
            raise PydanticCustomError(
                "invalid_holiday_date",
                "month {month} has no day {day}",
                {"month": month, "day": day},
            )
        return day

    def occurs_on(self, date: dt.date) -> bool:
        """Whether this holiday closes the calendar on `date`."""
        return date.month == self.month and date.day == self.day


def _holiday_tag(value: Any) -> str:
    """Pick the holiday form from its keys: `{date}` or `{month, day, yearly}`."""
    if isinstance(value, YearlyHoliday):
        return "yearly_holiday"
    if isinstance(value, dict) and ({"month", "day", "yearly"} & value.keys()):
        return "yearly_holiday"
    # Everything else (including non-dicts) goes to the one-off form, whose errors are the
    # clearest: "date: Field required" or "Input should be a valid dictionary".
    return "one_off_holiday"


class RemovedHoliday(ContractModel):
    """A day the calendar stays open although it is a holiday: one `date`, or every holiday of
    the calendar's country called `name` (e.g. "Columbus Day", as `resolved_holidays` spells
    it). Exactly one of the two."""

    date: dt.date | None = None
    name: Label | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.date is None) == (self.name is None):
            _fail(
                "RemovedHoliday",
                ("date",),
                "date_or_name",
                "name either a date or a holiday name to remove, not both or neither",
                None,
            )
        return self


#: Union tags pydantic puts into error locations; `agreement_errors` hides them from clients.
UNION_TAGS: frozenset[str] = frozenset({"one_off_holiday", "yearly_holiday"})

Holiday = Annotated[
    Annotated[OneOffHoliday, Tag("one_off_holiday")]
    | Annotated[YearlyHoliday, Tag("yearly_holiday")],
    Discriminator(_holiday_tag),
]


# Keys of the tz database that name no place: `localtime` and `posixrules` are whatever the
# host is set to, `Factory` is a placeholder zone, and the posix/ and right/ trees are copies
# (right/ counts leap seconds). A calendar must mean the same on every host.
_PLACELESS_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.cache
def place_time_zones() -> tuple[str, ...]:
    """Every zone `known_time_zone` takes, sorted: the `enum` of a time zone in OpenAPI."""
    return tuple(
        sorted(
            zone
            for zone in _iana_zones()
            if zone not in _PLACELESS_ZONES and not zone.startswith(("posix/", "right/"))
        )
    )


def known_time_zone(timezone: str) -> str:
    """`timezone` if it is an IANA zone of a place (e.g. Europe/Amsterdam, UTC), else an error."""
    if (
        timezone in _PLACELESS_ZONES
        or timezone.startswith(("posix/", "right/"))
        or timezone not in _iana_zones()
    ):
        raise PydanticCustomError(
            "unknown_timezone",
            "'{timezone}' is not an IANA time zone of a place",
            {"timezone": timezone},
        )
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError, OSError):
        # ZoneInfoNotFoundError is a KeyError; malformed keys raise ValueError; a key naming
        # a directory of the tz database ("America") raises an OSError on some platforms.
        raise PydanticCustomError(
            "unknown_timezone", "'{timezone}' is not an IANA time zone", {"timezone": timezone}
        ) from None
    return timezone


def _holidays_library() -> Any:
    # Imported on first use: it takes half a second, and only calendars naming a country need it.
    import holidays

    return holidays


def supported_countries() -> list[str]:
    """The country codes a calendar (or an account) may name, sorted: what OpenAPI lists."""
    return sorted(_supported_countries())


@functools.cache
def _supported_countries() -> Mapping[str, frozenset[str]]:
    """ISO 3166-1 alpha-2 codes the holidays library knows, each with its subdivision codes."""
    return {
        code: frozenset(subdivisions)
        for code, subdivisions in _holidays_library().list_supported_countries().items()
        if len(code) == 2
    }


@functools.lru_cache(maxsize=1024)
def country_holidays(
    country: str, subdivision: str | None, year: int
) -> Mapping[dt.date, tuple[str, ...]]:
    """The public holidays of `country` (and `subdivision`) in `year`, each date with its
    names, observed days included as the library observes them (US: a Saturday holiday is
    observed on the Friday before, a Sunday one on the Monday after).

    Pure and deterministic for a given version of the `holidays` library (pinned in uv.lock):
    its rules are data, like the tz database. Cached per (country, subdivision, year).
    """
    found = _holidays_library().country_holidays(
        country, subdiv=subdivision, years=year, observed=True
    )
    return MappingProxyType(
        {date: tuple(found.get_list(date)) for date in sorted(found) if date.year == year}
    )


def known_country(country: str) -> str:
    """`country` if the holidays library knows it as an ISO 3166-1 alpha-2 code, else an error."""
    if country not in _supported_countries():
        raise PydanticCustomError(
            "unknown_country",
            "'{country}' is not an ISO 3166-1 alpha-2 country code the holidays library "
            "knows (e.g. US, GB, DE)",
            {"country": country},
        )
    return country


class Calendar(ContractModel):
    """A business calendar: IANA time zone, weekly opening intervals and holidays.

    A 24×7 calendar is weekly 00:00–24:00 on every day. Adjacent intervals (09:00–12:00 and
    12:00–17:00) are allowed and mean continuous opening; overlapping ones are refused because
    they would make "how much business time lies between A and B" ambiguous.

    Holidays are the public holidays of `country` (and `subdivision`) as the maintained
    `holidays` library has them, observed days included, plus the dates in `holidays`, less
    `removed_holidays` (a removal wins over both). Without a country only `holidays` count.
    """

    timezone: Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Amsterdam"])]
    weekly: Annotated[list[WeeklyInterval], Field(max_length=7 * 48)]
    #: ISO 3166-1 alpha-2 code whose public holidays close the calendar (None: no country's).
    country: Annotated[str, Field(examples=["US"])] | None = None
    #: The country's subdivision (ISO 3166-2 suffix, e.g. "NY"), adding its own holidays.
    subdivision: Annotated[str, Field(max_length=16, examples=["NY"])] | None = None
    #: Days closed on top of the country's holidays.
    holidays: Annotated[list[Holiday], Field(max_length=2000)] = Field(default_factory=list)
    #: Holidays the calendar stays open on after all.
    removed_holidays: Annotated[list[RemovedHoliday], Field(max_length=2000)] = Field(
        default_factory=list
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        return known_time_zone(timezone)

    @field_validator("country")
    @classmethod
    def _known_country(cls, country: str | None) -> str | None:
        return None if country is None else known_country(country)

    @model_validator(mode="after")
    def _known_subdivision(self) -> Self:
        if self.subdivision is None:
            return self
        if self.country is None:
            _fail(
                "Calendar",
                ("subdivision",),
                "country_required",
                "a subdivision needs a country",
                self.subdivision,
            )
        elif self.subdivision not in _supported_countries()[self.country]:
            known = ", ".join(sorted(_supported_countries()[self.country])) or "none"
            _fail(
                "Calendar",
                ("subdivision",),
                "unknown_subdivision",
                f"'{self.subdivision}' is not a subdivision of {self.country} (known: {known})",
                self.subdivision,
            )
        return self

    @field_validator("weekly")
    @classmethod
    def _open_and_disjoint(cls, weekly: list[WeeklyInterval]) -> list[WeeklyInterval]:
        if not weekly:
            raise PydanticCustomError(
                "no_open_time", "a calendar needs at least one weekly opening interval"
            )
        for day in WEEKDAYS:
            # Sort by key: two identical intervals must not fall back to comparing models.
            spans = sorted(
                (i for i in weekly if i.day == day), key=lambda i: (i.start_minute, i.end_minute)
            )
            for prev, cur in itertools.pairwise(spans):
                if cur.start_minute < prev.end_minute:
                    raise PydanticCustomError(
                        "overlapping_intervals",
                        "{day} {start}-{end} overlaps {day} {prev_start}-{prev_end}",
                        {
                            "day": day,
                            "start": cur.start,
                            "end": cur.end,
                            "prev_start": prev.start,
                            "prev_end": prev.end,
                        },
                    )
        return weekly

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return ZoneInfo(self.timezone)

    def intervals_on(self, day: Weekday) -> list[tuple[int, int]]:
        """Opening intervals of `day` as sorted (start_minute, end_minute) pairs."""
        return sorted((i.start_minute, i.end_minute) for i in self.weekly if i.day == day)

    def is_holiday(self, date: dt.date) -> bool:
        """Whether `date` (a local date of this calendar) is a holiday."""
        return bool(self.holiday_names(date))

    def holiday_names(self, date: dt.date) -> list[str]:
        """Names of the holidays that close the calendar on `date` (empty: not a holiday).

        An added holiday without a name is called "Holiday"."""
        if any(removed.date == date for removed in self.removed_holidays):
            return []
        names: list[str] = []
        if self.country is not None:
            removed = {r.name for r in self.removed_holidays if r.name is not None}
            found = country_holidays(self.country, self.subdivision, date.year).get(date, ())
            names += [name for name in found if name not in removed]
        for holiday in self.holidays:
            if isinstance(holiday, OneOffHoliday):
                on_date = holiday.date == date
            else:
                on_date = holiday.occurs_on(date)
            if on_date:
                names.append(holiday.name or "Holiday")
        return names

    def holidays_between(self, first: dt.date, last: dt.date) -> list[tuple[dt.date, str]]:
        """Every holiday from `first` to `last` inclusive, in date order, as (date, names
        joined with "; "): what the calendar resolved to, for a provider to check."""
        days: list[tuple[dt.date, str]] = []
        date = first
        while date <= last:
            names = self.holiday_names(date)
            if names:
                days.append((date, "; ".join(dict.fromkeys(names))))
            date += dt.timedelta(days=1)
        return days

    @property
    def is_24x7(self) -> bool:
        """Open around the clock every day of the year (no holidays)."""
        return (
            not self.holidays
            and self.country is None
            and all(self.intervals_on(day) == [(0, 1440)] for day in WEEKDAYS)
        )


# --- SLA targets ------------------------------------------------------------------------------


class Target(ContractModel):
    """Response and resolution targets of one priority, on the business calendar `calendar`.

    The response target is in one of two units, exactly one of which is given:
    `response_minutes` (business minutes) or `response_business_days` (business days: the same
    local time on the n-th next business day, e.g. seed 002's "within 24 hours" of an office
    closed at night; see `helpdesk.sla_timer.domain.calendar.BusinessCalendar.add_business_days`).

    `resolution_minutes` is the escalation threshold of seed 003 (management is told on breach).
    `null` means "no resolution target" (seed 000: "does not guarantee resolution times"): the
    SLA timer then runs only the response clock. A null `response_minutes` likewise means no
    response target (seed 004 states none): no clock runs, so nothing is due, warned or
    breached; the ticket's own history still tells when it was answered.
    """

    label: Label | None = None
    response_minutes: PositiveMinutes | None = None
    #: The response target in business days, instead of `response_minutes`.
    response_business_days: Annotated[int, Field(strict=True, ge=1, le=3660)] | None = None
    resolution_minutes: PositiveMinutes | None = None
    calendar: CalendarName
    #: Optional "next reply" target: after each customer reply, the next public staff reply is
    #: due within this many business minutes (None: no such clock).
    next_reply_minutes: PositiveMinutes | None = None

    @field_validator("resolution_minutes")
    @classmethod
    def _resolution_not_before_response(cls, value: int | None, info: ValidationInfo) -> int | None:
        response = info.data.get("response_minutes")
        # Both clocks start at reported_at on the same calendar; resolving implies responding.
        if value is not None and response is not None and value < response:
            raise PydanticCustomError(
                "resolution_before_response",
                "resolution_minutes ({resolution}) must not be less than response_minutes "
                "({response})",
                {"resolution": value, "response": response},
            )
        return value

    @model_validator(mode="after")
    def _one_response_unit(self) -> Self:
        # Neither is a target without a response clock (a policy that states no response time).
        given = (self.response_minutes is not None) + (self.response_business_days is not None)
        if given > 1:
            _fail(
                "Target",
                ("response_minutes",),
                "response_unit",
                "give at most one of response_minutes and response_business_days",
                None,
            )
        return self


class Targets(ContractModel):
    """A target for each of the four priorities; every one is required.

    All four are required so that a triage to any priority always has a clock: a seed with fewer
    severities maps several priorities onto the same figures (see the presets).
    """

    P1: Target
    P2: Target
    P3: Target
    P4: Target

    def for_priority(self, priority: Priority) -> Target:
        """The target of `priority`."""
        target: Target = getattr(self, priority)
        return target

    def items(self) -> list[tuple[Priority, Target]]:
        """(priority, target) pairs in priority order."""
        return [(p, self.for_priority(p)) for p in PRIORITIES]


class EscalationTarget(ContractModel):
    """What an escalation to one tier does to the clocks (seed 001).

    `response_minutes` starts a response clock at the escalation on `calendar` (seed 001:
    engineering answers within 72 business hours). `pause_clocks` stops the ticket's own
    response and resolution clocks while the tier holds the ticket (seed 001: the vendor's times
    apply, the provider's clock does not run). `vendors` gives named vendors' own response
    times on `calendar` (seed 001: "subject to that specific vendors response times"): an
    escalation naming one of them runs its clock instead of `response_minutes`, not paused by
    the vendor's own hold, and met by the vendor's return, a comment stating the tier responded,
    or the resolution.
    """

    response_minutes: PositiveMinutes | None = None
    vendors: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=200)], PositiveMinutes],
        Field(max_length=100),
    ] = Field(default_factory=dict)
    calendar: CalendarName | None = None
    pause_clocks: Annotated[bool, Field(strict=True)] = False

    def response_target(self, vendor: str | None) -> int | None:
        """The response minutes of an escalation naming `vendor` (or none)."""
        if vendor is not None and vendor in self.vendors:
            return self.vendors[vendor]
        return self.response_minutes

    @model_validator(mode="after")
    def _calendar_for_response(self) -> Self:
        if (self.response_minutes is not None or self.vendors) and self.calendar is None:
            _fail(
                "EscalationTarget",
                ("calendar",),
                "calendar_required",
                "a response target needs a calendar",
                None,
            )
        return self


# --- follow-ups, billing, fair use ------------------------------------------------------------


def _default_follow_ups() -> list[int]:
    # One reminder a day for three days: seed 003 closes after "repeated inquiries (3+)".
    return [1440, 2880, 4320]


class FollowUp(ContractModel):
    """Reminders while a ticket waits on the customer.

    `after_minutes` are offsets (wall-clock minutes) from the moment the ticket started waiting
    at which reminder 1, 2, ... goes out. Once `max_unanswered` reminders have gone unanswered the
    ticket closes with reason `no_response`; the schedule must list at least that many.
    """

    after_minutes: Annotated[list[PositiveMinutes], Field(min_length=1, max_length=50)] = Field(
        default_factory=_default_follow_ups
    )
    max_unanswered: Annotated[int, Field(strict=True, ge=1, le=50)] = 3

    @field_validator("after_minutes")
    @classmethod
    def _increasing(cls, offsets: list[int]) -> list[int]:
        for earlier, later in itertools.pairwise(offsets):
            if later <= earlier:
                raise PydanticCustomError(
                    "not_increasing", "follow-up offsets must be strictly increasing"
                )
        return offsets

    @model_validator(mode="after")
    def _scheduled(self) -> Self:
        # A model validator, not a field one: the default max_unanswered (3) must be checked
        # against a shorter schedule too.
        if self.max_unanswered > len(self.after_minutes):
            _fail(
                "FollowUp",
                ("max_unanswered",),
                "too_few_follow_ups",
                f"max_unanswered ({self.max_unanswered}) exceeds the {len(self.after_minutes)} "
                "scheduled follow-ups",
                self.max_unanswered,
            )
        return self


class AllowanceTopUp(ContractModel):
    """Seed 000: more included minutes bought mid-period ("5 more hours at the plan's
    discount"). They count from `effective_at` to the end of that period; `price_cents` is
    what the customer pays (None: the minutes at the discounted rate in force then)."""

    effective_at: AwareDatetime
    minutes: PositiveMinutes
    price_cents: Cents | None = None


class Plan(ContractModel):
    """The billing plan. Money is integer cents in `currency`; durations integer minutes.

    Meaning, as billing applies it:
    - every time entry is rounded up to `increment_minutes`;
    - `hourly`: out-of-scope work is billed at `hourly_rate_cents` less `discount_percent`, per
      ticket when the ticket is resolved; in-scope work is free;
    - `monthly`: `monthly_fee_cents` each month; out-of-scope minutes draw down
      `included_minutes` first, the rest is billed at the discounted rate at the end of the month;
    - `managed`: `monthly_fee_cents` covers all work on tickets of kinds not in `excluded_kinds`,
      remote or on-site; tickets of an excluded kind are billed at `flat_fees[kind]` when one is
      agreed, else as time and materials at the discounted rate; out-of-scope work as `monthly`;
    - `after_hours_billable`: after-hours entries are billed at the discounted rate even where
      the plan would otherwise cover them. An entry is after hours when the technician flags it
      so, or, unflagged, when its `worked_at` lies outside `business_hours_calendar` (a
      calendar of the agreement; none: only the flag counts);
    - on any plan, an incident's entry worked while the ticket stood resolved is solution
      design, unless the technician marks it as incident work (seed 004 "Research and
      troubleshooting (solution design) following incident resolution").
    """

    kind: PlanKind
    currency: Currency
    hourly_rate_cents: Cents = 0
    increment_minutes: Annotated[int, Field(strict=True, ge=1, le=1440)] = 15
    monthly_fee_cents: Cents = 0
    discount_percent: Annotated[int, Field(strict=True, ge=0, le=100)] = 0
    included_minutes: Minutes = 0
    excluded_kinds: list[TicketKind] = Field(default_factory=list)
    flat_fees: dict[TicketKind, Cents] | None = None
    after_hours_billable: Annotated[bool, Field(strict=True)] = False
    #: The calendar (a key of the agreement's `calendars`) whose closed time is after hours.
    business_hours_calendar: CalendarName | None = None
    #: Seed 000 Pro: "Designated engineer assigned to your account".
    designated_engineer: Annotated[bool, Field(strict=True)] = False
    #: How often the plan is reviewed with the customer (seed 004: quarterly = 3; 000 Pro: 1).
    review_every_months: Annotated[int, Field(strict=True, ge=1, le=60)] | None = None
    #: The staff member who reviews the plan with the customer (seed 004: "Regular reviews with
    #: your Technical Account Manager"); mailed each budget review with the billing contacts.
    technical_account_manager: UUID | None = None
    #: Allowance top-ups bought so far (each counts in its own period only).
    top_ups: Annotated[list[AllowanceTopUp], Field(max_length=1000)] = Field(default_factory=list)
    #: Round the total of a ticket's entries up to the increment, instead of each entry.
    round_per_ticket: Annotated[bool, Field(strict=True)] = False

    @field_validator("excluded_kinds")
    @classmethod
    def _unique_kinds(cls, kinds: list[TicketKind]) -> list[TicketKind]:
        if _first_duplicate(kinds) is not None:
            raise PydanticCustomError("duplicate", "each ticket kind may be excluded once")
        return kinds

    @model_validator(mode="after")
    def _hourly_has_rate(self) -> Self:
        # An hourly plan at $0/h would bill nothing without anyone noticing.
        if self.kind == "hourly" and self.hourly_rate_cents == 0:
            _fail(
                "Plan",
                ("hourly_rate_cents",),
                "rate_required",
                "an hourly plan needs an hourly rate above 0",
                0,
            )
        return self


def _all_work_types() -> list[WorkType]:
    return ["remote", "onsite"]


class FairUse(ContractModel):
    """Fair-use caps. Exceeding one raises an event; time is never dropped."""

    per_day_minutes: PositiveMinutes | None = None
    per_ticket_minutes: PositiveMinutes | None = None
    #: Which work counts towards the caps (seed 002 caps remote service only).
    work_types: Annotated[list[WorkType], Field(min_length=1)] = Field(
        default_factory=_all_work_types
    )

    @field_validator("work_types")
    @classmethod
    def _unique_work_types(cls, types: list[WorkType]) -> list[WorkType]:
        if _first_duplicate(types) is not None:
            raise PydanticCustomError("duplicate", "each work type may be listed once")
        return types

    @model_validator(mode="after")
    def _has_a_cap(self) -> Self:
        if self.per_day_minutes is None and self.per_ticket_minutes is None:
            _fail(
                "FairUse",
                ("per_day_minutes",),
                "cap_required",
                "fair use needs per_day_minutes or per_ticket_minutes (or set fair_use to null)",
                None,
            )
        return self


# --- scope, required fields, availability, partners -------------------------------------------


class ScopeCatalogue(ContractModel):
    """Categories for triage. `in_scope`: covered at no charge. `out_of_scope`: done at a charge
    per the plan. `unsupported`: the provider declines them (seed 000 "We Do Not Support", seed 002
    exclusions, seed 003 § 4.3.2). A category belongs to at most one list."""

    in_scope: Annotated[list[Slug], Field(max_length=500)] = Field(default_factory=list)
    out_of_scope: Annotated[list[Slug], Field(max_length=500)] = Field(default_factory=list)
    unsupported: Annotated[list[Slug], Field(max_length=500)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_category_once(self) -> Self:
        seen: dict[str, str] = {}
        for list_name in ("in_scope", "out_of_scope", "unsupported"):
            categories: list[str] = getattr(self, list_name)
            for index, category in enumerate(categories):
                if category in seen:
                    _fail(
                        "ScopeCatalogue",
                        (list_name, index),
                        "duplicate_category",
                        f"category '{category}' is already listed in {seen[category]}",
                        category,
                    )
                seen[category] = list_name
        return self

    def scope_of(self, category: str) -> Literal["in", "out", "unsupported"] | None:
        """Where `category` is listed, or None when the catalogue does not mention it."""
        if category in self.in_scope:
            return "in"
        if category in self.out_of_scope:
            return "out"
        if category in self.unsupported:
            return "unsupported"
        return None


def _check_unique_fields(fields: list[str]) -> list[str]:
    index = _first_duplicate(fields)
    if index is not None:
        raise PydanticCustomError(
            "duplicate", "field '{field}' is listed twice", {"field": fields[index]}
        )
    return fields


FieldNames = Annotated[list[Slug], Field(max_length=100), AfterValidator(_check_unique_fields)]


class RequiredFields(ContractModel):
    """Ticket fields that must be present: a top-level ticket field (e.g. `affected_users`) or a
    key of the ticket's `fields` object. Checked when a ticket is opened, and on escalation."""

    on_open: FieldNames = Field(default_factory=list)
    on_escalate: FieldNames = Field(default_factory=list)


class MaintenanceWindow(ContractModel):
    """Scheduled maintenance: downtime inside it does not count against availability (seed 003
    § 5.2). Without `service_class` it applies to every class."""

    start: AwareDatetime
    end: AwareDatetime
    service_class: Slug | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: dt.datetime, info: ValidationInfo) -> dt.datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise PydanticCustomError(
                "window_order",
                "end {end} must be later than start {start}",
                {"end": end.isoformat(), "start": start.isoformat()},
            )
        return end


class PartnerRules(ContractModel):
    """Seed 001: a partner whose escalations should have been solved at the partner level is
    warned, then loses its margin until such escalations stop and for `margin_restore_days` after.

    "Excessive" is `excessive_escalation_threshold` or more such escalations within `window_days`;
    the first `warnings_before_penalty` times that happens the partner is only warned.
    """

    excessive_escalation_threshold: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    window_days: Annotated[int, Field(strict=True, ge=1, le=3660)]
    warnings_before_penalty: Annotated[int, Field(strict=True, ge=0, le=100)] = 1
    #: "not less than 6 months thereafter": 184 days covers the longest six calendar months
    #: (July to December); 183 would restore a day early then.
    margin_restore_days: Annotated[int, Field(strict=True, ge=0, le=3660)] = 184
    #: "Unless signed up for a LogicCloud IT partner end-user support plan": a partner with the
    #: plan has end-user support in scope (`resolve_agreement` moves `END_USER_CATEGORIES` from
    #: unsupported to in_scope) and is exempt from the excessive-escalation rule.
    end_user_support_plan: Annotated[bool, Field(strict=True)] = False


# --- the agreement ----------------------------------------------------------------------------


class Agreement(ContractModel):
    """An account's agreement (one version of it): what intake stores in `agreement.*` events.

    `preset` records which preset it started from and `plan_variant` which of the preset's plans;
    neither is checked against the current preset list here, because rebuilds replay old events
    forever and a renamed preset must not make history unreadable. `resolve_agreement` checks
    them when an agreement is written.
    """

    preset: Annotated[str, Field(max_length=64)] | None = None
    plan_variant: Annotated[str, Field(max_length=64)] | None = None
    #: When this version takes effect for billing (seed 000: an upgrade "from its date"); None
    #: means when it was set. SLA clocks always use the version a ticket was opened with.
    effective_from: AwareDatetime | None = None
    #: Seed 003 VIP contacts: "next_higher_priority" gives their tickets the targets of the
    #: next-higher priority (P2 → P1 figures; P1 stays P1).
    vip_treatment: Literal["none", "next_higher_priority"] = "none"
    #: The work queue's order of this account's open tickets: "deadline", nearest deadline
    #: first (then more affected users, then first come first served); "multi_user_first"
    #: (seed 002: "first come first serve, but problems impacting more than one user are given
    #: priority"), tickets affecting more than one user first, each group first come first
    #: served.
    queue_order: QueueOrder = "deadline"
    calendars: Annotated[dict[CalendarName, Calendar], Field(min_length=1, max_length=32)]
    targets: Targets
    warning_share: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.75
    #: Reminders and the close after unanswered ones; None (the default): no reminders and no
    #: automatic close. Only seed 003 describes closing unanswered tickets.
    follow_up: FollowUp | None = None
    plan: Plan
    fair_use: FairUse | None = None
    scope_catalogue: ScopeCatalogue = Field(default_factory=ScopeCatalogue)
    required_fields: RequiredFields = Field(default_factory=RequiredFields)
    maintenance_windows: Annotated[list[MaintenanceWindow], Field(max_length=10_000)] = Field(
        default_factory=list
    )
    availability_targets: Annotated[dict[Slug, Percent], Field(max_length=100)] = Field(
        default_factory=dict
    )
    escalation_targets: dict[EscalationTier, EscalationTarget] | None = None
    partner_rules: PartnerRules | None = None

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        errors = list(self._dangling_references())
        if errors:
            raise ValidationError.from_exception_data("Agreement", errors)
        return self

    def _dangling_references(self) -> Iterable[InitErrorDetails]:
        """Every name used in one part of the agreement that another part must define."""
        known = ", ".join(sorted(self.calendars))
        for priority, target in self.targets.items():
            if target.calendar not in self.calendars:
                yield _unknown_calendar(("targets", priority, "calendar"), target.calendar, known)
        for tier, escalation in (self.escalation_targets or {}).items():
            if escalation.calendar is not None and escalation.calendar not in self.calendars:
                yield _unknown_calendar(
                    ("escalation_targets", tier, "calendar"), escalation.calendar, known
                )
        hours = self.plan.business_hours_calendar
        if hours is not None and hours not in self.calendars:
            yield _unknown_calendar(("plan", "business_hours_calendar"), hours, known)
        for index, window in enumerate(self.maintenance_windows):
            if (
                window.service_class is not None
                and window.service_class not in self.availability_targets
            ):
                yield InitErrorDetails(
                    type=PydanticCustomError(
                        "unknown_service_class",
                        "no availability target for service class '{name}'",
                        {"name": window.service_class},
                    ),
                    loc=("maintenance_windows", index, "service_class"),
                    input=window.service_class,
                )

    def target(self, priority: Priority) -> Target:
        """The SLA target of `priority`."""
        return self.targets.for_priority(priority)

    def calendar_for(self, priority: Priority) -> Calendar:
        """The business calendar on which `priority`'s clocks run."""
        return self.calendars[self.target(priority).calendar]


def _unknown_calendar(loc: tuple[str | int, ...], name: str, known: str) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(
            "unknown_calendar",
            "no calendar named '{name}' in calendars (known: {known})",
            {"name": name, "known": known},
        ),
        loc=loc,
        input=name,
    )
