"""Audit of the SLA timer against the seed policies (quoted from the seed texts; docs/policies.md).

Every expected instant below is worked out by hand from the policy text and the preset's
documented figures (not from the code); the comment above each assertion shows the arithmetic.
Seeds: 000 cloud platform (24x7, 4 h / 12 h / 40 h), 001 partner (24 business hours, engineering
72 business hours, vendor pauses), 002 small business (Mon-Fri 08:30-17:30, urgent 1 h, others
24 h, excluding holidays), 003 four tiers (24x7, response / escalation threshold, VIP, 3+
unanswered inquiries, availability), 004 managed budget (preset defaults).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from helpdesk.shared.agreements import Agreement, Priority, resolve_agreement
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketEscalated,
    TicketReopened,
    TicketResolved,
    TicketTriaged,
    TicketVendorReturned,
)
from helpdesk.sla_timer.domain import (
    ClockKind,
    ClockStatus,
    SlaClock,
    TicketSla,
    fold_ticket,
    follow_up_schedule,
    monthly_availability,
    outages_from_events,
)
from tests.support.tickets import customer, info, opened, preset, reply

pytestmark = pytest.mark.unit

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
AMS = ZoneInfo("Europe/Amsterdam")
TOKYO = ZoneInfo("Asia/Tokyo")
LA = ZoneInfo("America/Los_Angeles")
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def triaged(priority: Priority, previous: Priority | None) -> TicketTriaged:
    return TicketTriaged(priority=priority, previous_priority=previous, kind="incident", scope="in")


def clock(sla: TicketSla, kind: ClockKind, cycle: int = 1) -> SlaClock:
    found = sla.clock(kind, cycle=cycle)
    assert found is not None, f"no {kind} clock in cycle {cycle}"
    return found


def at_ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY)


# --- seed 001: 24 business hours across both DST changes in the customer's zone -----------------


def test_001_spring_forward_weekend_keeps_wall_clock_business_hours() -> None:
    # Preset: Mon-Fri 09:00-17:00 America/New_York, 24 business hours = 1440 min.
    # NY springs forward Sunday 8 March 2026. Reported Friday 6 March 16:00 EST:
    # Fri 16-17 = 1 h; Mon 9 = 8 h (9); Tue 10 = 8 h (17); Wed 11 from 09:00 + 7 h = 16:00 EDT
    # (= 20:00 UTC; a calendar stuck on EST would give 21:00 UTC).
    # Warning at 75 % = 18 h: 17 h by Tuesday evening, +1 h -> Wed 10:00 EDT.
    reported = at_ny(2026, 3, 6, 16, 0)
    sla = fold_ticket([(reported, opened(reported))], preset("partner_reseller"), reported)
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == dt.datetime(2026, 3, 11, 20, 0, tzinfo=UTC)
    assert response.warning_at == dt.datetime(2026, 3, 11, 14, 0, tzinfo=UTC)


def test_001_fall_back_weekend_keeps_wall_clock_business_hours() -> None:
    # NY falls back Sunday 1 November 2026. Reported Friday 30 October 16:00 EDT (20:00 UTC):
    # Fri 1 h; Mon 2 Nov 8 h; Tue 3 8 h; Wed 4 09:00 + 7 h = 16:00 EST = 21:00 UTC.
    reported = at_ny(2026, 10, 30, 16, 0)
    sla = fold_ticket([(reported, opened(reported))], preset("partner_reseller"), reported)
    assert clock(sla, ClockKind.RESPONSE).due_at == dt.datetime(2026, 11, 4, 21, 0, tzinfo=UTC)


def test_001_engineering_72_business_hours_cross_christmas_and_new_year() -> None:
    # Engineering: 72 business hours = 9 days of 8 h, holidays 25 Dec and 1 Jan closed.
    # Escalated Monday 21 Dec 2026 10:00 EST: Mon 7 h; Tue 22, Wed 23, Thu 24 = 24 h (31);
    # Fri 25 closed; Mon 28 .. Thu 31 = 32 h (63); Fri 1 Jan closed; Mon 4 Jan 8 h (71);
    # Tue 5 Jan 09:00 + 1 h = 10:00 EST = 15:00 UTC.
    reported = at_ny(2026, 12, 21, 9, 0)
    escalated = at_ny(2026, 12, 21, 10, 0)
    events = [(reported, opened(reported)), (escalated, TicketEscalated(tier="engineering"))]
    sla = fold_ticket(events, preset("partner_reseller"), escalated)
    engineering = clock(sla, ClockKind.ESCALATION)
    assert engineering.target_minutes == 72 * 60
    assert engineering.due_at == dt.datetime(2027, 1, 5, 15, 0, tzinfo=UTC)


def test_001_vendor_pause_spanning_the_end_of_the_business_day() -> None:
    # Reported Monday 1 June 2026 09:00 EDT; to the vendor at 15:00 (6 h = 360 min counted);
    # back Tuesday 11:00. The pause holds Mon 15-17 and Tue 09-11 of business time.
    # 1440 - 360 = 1080 min left from Tue 11:00: Tue 6 h (18 - 6 = 12 h left), Wed 8 h (4 h
    # left), Thu 09:00 + 4 h = Thu 4 June 13:00 EDT = 17:00 UTC.
    # Warning at 18 h counted: 6 h Mon + 6 h Tue = 12 h, Wed 09:00 + 6 h = 15:00 EDT.
    reported = at_ny(2026, 6, 1, 9, 0)
    events = [
        (reported, opened(reported)),
        (at_ny(2026, 6, 1, 15, 0), TicketEscalated(tier="vendor")),
        (at_ny(2026, 6, 2, 11, 0), TicketVendorReturned()),
    ]
    agreement = preset("partner_reseller")
    during = clock(fold_ticket(events[:2], agreement, at_ny(2026, 6, 2, 10, 0)), ClockKind.RESPONSE)
    assert during.status is ClockStatus.PAUSED
    assert during.due_at is None
    assert (during.elapsed_minutes, during.remaining_minutes) == (360, 1080)
    after = clock(fold_ticket(events, agreement, at_ny(2026, 6, 2, 11, 0)), ClockKind.RESPONSE)
    assert after.status is ClockStatus.RUNNING
    assert after.due_at == dt.datetime(2026, 6, 4, 17, 0, tzinfo=UTC)
    assert after.warning_at == at_ny(2026, 6, 3, 15, 0)
    assert after.elapsed_minutes == 360


def test_001_seconds_are_carried_to_the_next_business_day() -> None:
    # Reported Monday 1 June 2026 09:00:40 EDT. 24 business hours: Mon 7:59:20, Tue 8:00
    # (15:59:20), Wed 8:00 (23:59:20), 40 s left -> Thursday 09:00:40 (not Wed 17:00:40).
    # At Mon 10:00:00: 59 min 20 s counted -> elapsed 59 (down), remaining 1381 (up).
    reported = at_ny(2026, 6, 1, 9, 0) + dt.timedelta(seconds=40)
    sla = fold_ticket(
        [(reported, opened(reported))], preset("partner_reseller"), at_ny(2026, 6, 1, 10, 0)
    )
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == at_ny(2026, 6, 4, 9, 0) + dt.timedelta(seconds=40)
    assert (response.elapsed_minutes, response.remaining_minutes) == (59, 1381)


# --- seed 002: operating hours Mon-Fri 08:30-17:30, excluding holidays ------------------------


def test_002_urgent_crossing_a_holiday_and_a_weekend() -> None:
    # Urgent = 1 h of operating time. Thursday 24 Dec 2026 17:00 EST: 17:00-17:30 = 30 min;
    # Fri 25 Dec (holiday), Sat, Sun closed; Mon 28 Dec 08:30 + 30 min = 09:00 EST = 14:00 UTC.
    # Warning at 45 min: 30 on Thursday + 15 -> Mon 08:45 EST.
    reported = at_ny(2026, 12, 24, 17, 0)
    sla = fold_ticket(
        [(reported, opened(reported, "P1"))], preset("small_business_remote"), reported
    )
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == dt.datetime(2026, 12, 28, 14, 0, tzinfo=UTC)
    assert response.warning_at == at_ny(2026, 12, 28, 8, 45)


def test_002_non_urgent_crossing_independence_day() -> None:
    """Seed 002: "Non-urgent issues we'll respond within 24 hours" with "Operating hours: M-F
    8:30 AM to 5:30 PM ... excluding holidays" is one business day: Thursday 3 July 2025 10:00
    EDT -> Friday 4 July is a holiday, then the weekend -> Monday 7 July 10:00 EDT."""
    reported = at_ny(2025, 7, 3, 10, 0)
    sla = fold_ticket(
        [(reported, opened(reported, "P3"))], preset("small_business_remote"), reported
    )
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == at_ny(2025, 7, 7, 10, 0)
    assert response.target_business_days == 1
    # Thursday 10:00-17:30 and Monday 08:30-10:00: one business day of 9 hours.
    assert response.target_minutes == 540


@pytest.mark.parametrize(
    ("reported", "due"),
    [
        # Monday 09:00 -> Tuesday 09:00; Friday 16:00 -> Monday 16:00.
        (at_ny(2026, 3, 2, 9, 0), at_ny(2026, 3, 3, 9, 0)),
        (at_ny(2026, 3, 6, 16, 0), at_ny(2026, 3, 9, 16, 0)),
        # Reported while closed: one business day from the next opening, i.e. by the close of
        # the next business day (Monday 18:00 -> Tuesday 17:30; Saturday -> Monday 17:30).
        (at_ny(2026, 3, 2, 18, 0), at_ny(2026, 3, 3, 17, 30)),
        (at_ny(2026, 3, 7, 11, 0), at_ny(2026, 3, 9, 17, 30)),
        # Christmas Day 2026 is a Friday and a holiday: Thursday 24 December 15:00 -> Monday 28.
        (at_ny(2026, 12, 24, 15, 0), at_ny(2026, 12, 28, 15, 0)),
    ],
)
def test_002_non_urgent_is_due_the_next_business_day_at_the_same_time(
    reported: dt.datetime, due: dt.datetime
) -> None:
    """Seed 002: "Non-urgent issues we'll respond within 24 hours" -- read as one business day
    of the operating hours (M-F 8:30 AM to 5:30 PM), not 1440 business minutes."""
    sla = fold_ticket(
        [(reported, opened(reported, "P3"))], preset("small_business_remote"), reported
    )
    assert clock(sla, ClockKind.RESPONSE).due_at == due


def test_002_a_pause_extends_a_business_day_target() -> None:
    """Seed 002: "Non-urgent issues we'll respond within 24 hours": Monday 09:00 is due Tuesday
    09:00 (one business day); an hour the clocks stand still (a vendor holding the ticket,
    Monday 10:00-11:00, where the agreement pauses for vendors) moves it to Tuesday 10:00."""
    reported = at_ny(2026, 3, 2, 9, 0)
    agreement = resolve_agreement(
        "small_business_remote", {"escalation_targets": {"vendor": {"pause_clocks": True}}}
    )
    sla = fold_ticket(
        [
            (reported, opened(reported, "P3")),
            (at_ny(2026, 3, 2, 10, 0), TicketEscalated(tier="vendor")),
            (at_ny(2026, 3, 2, 11, 0), TicketVendorReturned()),
        ],
        agreement,
        at_ny(2026, 3, 2, 12, 0),
    )
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == at_ny(2026, 3, 3, 10, 0)
    assert response.elapsed_minutes == 120


def test_002_timestamps_in_another_zone_than_the_calendar() -> None:
    # Reported 06:10 Saturday 7 June 2025 in Tokyo = 21:10 UTC Friday = 17:10 EDT Friday: the
    # worked example: 20 min Friday + 40 min Monday from 08:30 -> Monday 9 June 09:10 EDT.
    # as_of given in Los Angeles: Monday 06:00 PDT = 09:00 EDT -> 20 + 30 = 50 min counted.
    reported = dt.datetime(2025, 6, 7, 6, 10, tzinfo=TOKYO)
    as_of = dt.datetime(2025, 6, 9, 6, 0, tzinfo=LA)
    sla = fold_ticket([(reported, opened(reported, "P1"))], preset("small_business_remote"), as_of)
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == at_ny(2025, 6, 9, 9, 10)
    assert (response.elapsed_minutes, response.remaining_minutes) == (50, 10)


def _urgent_due(agreement: Agreement, reported: dt.datetime) -> dt.datetime | None:
    sla = fold_ticket([(reported, opened(reported, "P1"))], agreement, reported)
    return clock(sla, ClockKind.RESPONSE).due_at


def test_002_thanksgiving_is_closed() -> None:
    """Seed 002: 'Operating hours: M-F 8:30 AM to 5:30 PM ... and excluding holidays'.

    Urgent (1 h) reported Wednesday 25 November 2026 at 17:00 EST, the day before Thanksgiving:
    17:00-17:30 = 30 min; Thursday 26 (Thanksgiving) closed; Friday 27 08:30 + 30 min = 09:00
    EST = 14:00 UTC."""
    due = _urgent_due(preset("small_business_remote"), at_ny(2026, 11, 25, 17, 0))
    assert due == dt.datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def test_002_a_saturday_holiday_is_observed_on_the_friday() -> None:
    """Seed 002: '... excluding holidays'. 4 July 2026 is a Saturday; the US observes it on
    Friday 3 July. Urgent reported Thursday 2 July 17:00 EDT: 30 min Thursday; Friday 3 July
    (observed), Saturday, Sunday closed; Monday 6 July 08:30 + 30 min = 09:00 EDT = 13:00 UTC."""
    agreement = preset("small_business_remote")
    assert agreement.calendars["business_hours"].holiday_names(dt.date(2026, 7, 3)) == [
        "Independence Day (observed)"
    ]
    due = _urgent_due(agreement, at_ny(2026, 7, 2, 17, 0))
    assert due == dt.datetime(2026, 7, 6, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reported", "due"),
    [
        # Added one-off: Christmas Eve, Thursday 24 December 2026. Wed 23 Dec 17:00 EST: 30 min;
        # Thu 24 (added) and Fri 25 (Christmas) closed; Mon 28 09:00 EST = 14:00 UTC.
        (at_ny(2026, 12, 23, 17, 0), dt.datetime(2026, 12, 28, 14, 0, tzinfo=UTC)),
        # Removed by name: Columbus Day, Monday 12 October 2026, is open. Fri 9 Oct 17:00 EDT:
        # 30 min; Mon 12 08:30 + 30 min = 09:00 EDT = 13:00 UTC (Tuesday 13:00 UTC if closed).
        (at_ny(2026, 10, 9, 17, 0), dt.datetime(2026, 10, 12, 13, 0, tzinfo=UTC)),
        # Removed by date: Veterans Day, Wednesday 11 November 2026, is open. Tue 10 Nov 17:00
        # EST: 30 min; Wed 11 08:30 + 30 min = 09:00 EST = 14:00 UTC.
        (at_ny(2026, 11, 10, 17, 0), dt.datetime(2026, 11, 11, 14, 0, tzinfo=UTC)),
        # Subdivision NY adds Lincoln's Birthday, Thursday 12 February 2026. Wed 11 Feb 17:00
        # EST: 30 min; Thu 12 closed; Fri 13 09:00 EST = 14:00 UTC.
        (at_ny(2026, 2, 11, 17, 0), dt.datetime(2026, 2, 13, 14, 0, tzinfo=UTC)),
    ],
)
def test_002_an_office_adds_and_removes_holidays(reported: dt.datetime, due: dt.datetime) -> None:
    """Seed 002: '... excluding holidays': which holidays is the office's to say. It closes on
    Christmas Eve, opens on Columbus Day and Veterans Day, and keeps New York's holidays."""
    agreement = resolve_agreement(
        "small_business_remote",
        {
            "calendars": {
                "business_hours": {
                    "subdivision": "NY",
                    "holidays": [{"date": "2026-12-24", "name": "Christmas Eve"}],
                    "removed_holidays": [{"name": "Columbus Day"}, {"date": "2026-11-11"}],
                }
            }
        },
    )
    assert _urgent_due(agreement, reported) == due


def test_002_without_the_removal_columbus_day_is_closed() -> None:
    """The counterpart of the removal above: the preset closes on Columbus Day, Monday 12
    October 2026 (a US public holiday): Fri 9 Oct 17:00 EDT -> Tuesday 13 Oct 09:00 EDT."""
    due = _urgent_due(preset("small_business_remote"), at_ny(2026, 10, 9, 17, 0))
    assert due == dt.datetime(2026, 10, 13, 13, 0, tzinfo=UTC)


# --- seed 000 / 003: 24x7 is real elapsed time, whatever the zone -----------------------------


@pytest.mark.parametrize(
    ("reported", "due"),
    [
        # Amsterdam springs forward 29 March 2026: Sat 12:00 CET + 24 h of real time is
        # Sun 13:00 CEST on the wall clock.
        (dt.datetime(2026, 3, 28, 12, 0, tzinfo=AMS), dt.datetime(2026, 3, 29, 13, 0, tzinfo=AMS)),
        # Falls back 25 October 2026: Sat 12:00 CEST + 24 h is Sun 11:00 CET.
        (
            dt.datetime(2026, 10, 24, 12, 0, tzinfo=AMS),
            dt.datetime(2026, 10, 25, 11, 0, tzinfo=AMS),
        ),
    ],
)
def test_003_24x7_calendar_in_a_dst_zone_counts_real_hours(
    reported: dt.datetime, due: dt.datetime
) -> None:
    # Seed 003 P3: response 24 h; the account keeps its 24x7 calendar in Europe/Amsterdam.
    agreement = resolve_agreement(
        "four_tier_24x7", {"calendars": {"24x7": {"timezone": "Europe/Amsterdam"}}}
    )
    sla = fold_ticket([(reported, opened(reported, "P3"))], agreement, reported)
    assert clock(sla, ClockKind.RESPONSE).due_at == due


def test_000_critical_four_hours_from_a_report_in_another_zone() -> None:
    # Critical 4 h on 24x7: Sunday 8 March 2026 01:30 PST is 09:30 UTC (LA springs forward at
    # 02:00 that day) -> due 13:30 UTC = 06:30 PDT. No resolution target ("does not guarantee").
    reported = dt.datetime(2026, 3, 8, 1, 30, tzinfo=LA)
    sla = fold_ticket([(reported, opened(reported, "P1"))], preset("cloud_platform"), reported)
    response = clock(sla, ClockKind.RESPONSE)
    assert response.due_at == dt.datetime(2026, 3, 8, 13, 30, tzinfo=UTC)
    assert response.due_at.astimezone(LA) == dt.datetime(2026, 3, 8, 6, 30, tzinfo=LA)
    assert sla.clock(ClockKind.RESOLUTION) is None


def test_003_escalation_threshold_warns_at_75_percent_and_breaches_at_100() -> None:
    # P4: escalation threshold 96 h; warning at 72 h; breached when unresolved at 96 h.
    reported = dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    sla = fold_ticket([(reported, opened(reported, "P4"))], preset("four_tier_24x7"), reported)
    resolution = clock(sla, ClockKind.RESOLUTION)
    assert resolution.warning_at == reported + 72 * H
    assert resolution.due_at == reported + 96 * H
    later = fold_ticket(
        [(reported, opened(reported, "P4"))], preset("four_tier_24x7"), reported + 96 * H
    )
    breached = clock(later, ClockKind.RESOLUTION)
    assert breached.status is ClockStatus.BREACHED
    assert breached.breached_at == reported + 96 * H


def test_003_customer_pause_spanning_the_end_of_an_office_day() -> None:
    # Seed 003 P2 (response 2 h, escalation 4 h) on an account calendar Mon-Fri 09:00-17:00
    # Europe/Amsterdam. Reported Mon 1 June 2026 15:00 CEST; info request 16:00 (response met
    # after 60 min; resolution has 60 min counted); customer answers Tue 10:00. The pause held
    # Mon 16-17 and Tue 09-10. 180 min left from Tue 10:00 -> Tue 13:00 CEST = 11:00 UTC.
    # Warning at 180 min counted = 120 after the reply -> Tue 12:00 CEST.
    office = {
        "timezone": "Europe/Amsterdam",
        "weekly": [
            {"day": d, "start": "09:00", "end": "17:00"}
            for d in ("mon", "tue", "wed", "thu", "fri")
        ],
    }
    agreement = resolve_agreement(
        "four_tier_24x7",
        {
            "calendars": {"office": office},
            "targets": {p: {"calendar": "office"} for p in ("P1", "P2", "P3", "P4")},
        },
    )
    reported = dt.datetime(2026, 6, 1, 15, 0, tzinfo=AMS)
    events = [
        (reported, opened(reported, "P2")),
        (reported + H, info()),
        (dt.datetime(2026, 6, 2, 10, 0, tzinfo=AMS), customer()),
    ]
    sla = fold_ticket(events, agreement, dt.datetime(2026, 6, 2, 10, 0, tzinfo=AMS))
    response = clock(sla, ClockKind.RESPONSE)
    assert response.status is ClockStatus.MET
    assert response.elapsed_minutes == 60
    resolution = clock(sla, ClockKind.RESOLUTION)
    assert resolution.due_at == dt.datetime(2026, 6, 2, 11, 0, tzinfo=UTC)
    assert resolution.warning_at == dt.datetime(2026, 6, 2, 12, 0, tzinfo=AMS)
    assert resolution.elapsed_minutes == 60


# --- priority changes ---------------------------------------------------------------------------


def test_004_states_no_response_targets_so_no_clock_runs() -> None:
    """Seed 004: 'Restoring services as quickly as feasible following an IT interruption is the
    goal of all incident response' -- a goal, not a response time. The preset has no targets:
    no clock runs, so nothing is ever due, warned or breached (and nothing is mailed)."""
    reported = at_ny(2026, 6, 1, 9, 0)
    events = [(reported, opened(reported, "P1")), (reported + 3 * DAY, reply())]
    for as_of in (reported, reported + 2 * DAY, reported + 4 * DAY):
        sla = fold_ticket(events, preset("managed_budget"), as_of)
        assert sla.clocks == ()


def test_004_upgrade_after_triage_recomputes_from_reported_at_on_business_hours() -> None:
    # Preset 004 with the response targets a contract names (the seed states none):
    # Mon-Fri 09:00-17:00 NY; P4 16 business hours, P2 4 business hours.
    # Reported Fri 29 May 2026 16:00 EDT as P4: Fri 1 h, Mon 8 h, Tue 09:00 + 7 h = 16:00 EDT.
    # Triaged to P2 on Monday 09:30: 4 h from Friday 16:00 = Fri 1 h + Mon 3 h = Mon 12:00 EDT;
    # counted so far 60 + 30 = 90 min, 150 left.
    reported = at_ny(2026, 5, 29, 16, 0)
    agreement = resolve_agreement(
        "managed_budget",
        {"targets": {"P2": {"response_minutes": 4 * 60}, "P4": {"response_minutes": 16 * 60}}},
    )
    first = fold_ticket([(reported, opened(reported, "P4"))], agreement, reported)
    assert clock(first, ClockKind.RESPONSE).due_at == at_ny(2026, 6, 2, 16, 0)
    triage_at = at_ny(2026, 6, 1, 9, 30)
    events = [(reported, opened(reported, "P4")), (triage_at, triaged("P2", "P4"))]
    response = clock(fold_ticket(events, agreement, triage_at), ClockKind.RESPONSE)
    assert response.priority == "P2"
    assert response.due_at == at_ny(2026, 6, 1, 12, 0)
    assert (response.elapsed_minutes, response.remaining_minutes) == (90, 150)


def test_003_upgrade_in_a_reopened_cycle_keeps_the_history_of_the_earlier_cycle() -> None:
    # POLICIES: "Reopen starts a new resolution cycle and keeps the history of earlier cycles."
    # P3 (response 24 h, escalation 48 h) reported Tue 2 June 2026 09:00 UTC, answered 09:30,
    # resolved 15:00 (6 h, within 48 h), closed, reopened Wed 09:00, upgraded to P1 at 09:10.
    # Cycle 1 was met as P3 and stays met; cycle 2 runs on P1: 2 h from the reopen -> 11:00.
    reported = dt.datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    reopened_at = reported + DAY
    events = [
        (reported, opened(reported, "P3")),
        (reported + 30 * M, reply()),
        (reported + 6 * H, TicketResolved(resolution="fix", summary="done")),
        (reported + 7 * H, TicketClosed(reason="confirmed")),
        (reopened_at, TicketReopened(reason="still broken", cycle=2)),
        (reopened_at + 10 * M, triaged("P1", "P3")),
    ]
    sla = fold_ticket(events, preset("four_tier_24x7"), reopened_at + 20 * M)
    first = clock(sla, ClockKind.RESOLUTION, cycle=1)
    assert first.status is ClockStatus.MET
    assert first.priority == "P3"
    assert first.target_minutes == 48 * 60
    assert first.breached_at is None
    response = clock(sla, ClockKind.RESPONSE)
    assert response.status is ClockStatus.MET
    assert response.target_minutes == 24 * 60
    second = clock(sla, ClockKind.RESOLUTION, cycle=2)
    assert second.priority == "P1"
    assert second.due_at == reopened_at + 2 * H


def test_003_upgrade_after_the_response_was_given_does_not_turn_it_into_a_breach() -> None:
    # Reported P4 (response 48 h) Tue 09:00 UTC; public answer at 10:30 (met, 90 min); upgraded
    # to P1 at 11:00. The response deadline no longer runs, so there is nothing to recompute:
    # it stays met under P4. The running escalation threshold is recomputed: P1 2 h from 09:00
    # -> 11:00, reached at the upgrade instant -> breached at 11:00.
    reported = dt.datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    events = [
        (reported, opened(reported, "P4")),
        (reported + 90 * M, reply()),
        (reported + 2 * H, triaged("P1", "P4")),
    ]
    sla = fold_ticket(events, preset("four_tier_24x7"), reported + 2 * H)
    response = clock(sla, ClockKind.RESPONSE)
    assert response.status is ClockStatus.MET
    assert response.priority == "P4"
    assert response.met_at == reported + 90 * M
    resolution = clock(sla, ClockKind.RESOLUTION)
    assert resolution.priority == "P1"
    assert resolution.due_at == reported + 2 * H
    assert resolution.status is ClockStatus.BREACHED


def test_003_vip_upgrade_uses_the_next_higher_priority_from_reported_at() -> None:
    # VIP: "escalated support responses" -> next-higher priority's figures. P4 VIP -> P3
    # (24 h / 48 h); triaged to P3 -> P2 figures (2 h / 4 h), from reported_at.
    reported = dt.datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    events = [(reported, opened(reported, "P4")), (reported + H, triaged("P3", "P4"))]
    sla = fold_ticket(events, preset("four_tier_24x7"), reported + H, vip=True)
    assert sla.effective_priority == "P2"
    assert clock(sla, ClockKind.RESPONSE).due_at == reported + 2 * H
    assert clock(sla, ClockKind.RESOLUTION).due_at == reported + 4 * H


# --- follow-ups (seed 003 § 4.2.2) -------------------------------------------------------------


def test_003_three_unanswered_follow_ups_then_auto_close_and_a_reply_cancels() -> None:
    # Preset: reminders 1, 2 and 3 days after the wait began; after the third goes unanswered
    # (one more day) the ticket is closed `no_response`. A customer reply ends the wait.
    policy = preset("four_tier_24x7").follow_up
    # Across the NY spring-forward; in UTC, since same-zone aware datetimes add wall-clock time.
    resolved_at = dt.datetime(2026, 3, 7, 12, 0, tzinfo=NY).astimezone(UTC)
    schedule = follow_up_schedule(
        [(resolved_at, TicketResolved(resolution="fix", summary="s"))], policy
    )
    assert schedule is not None
    assert schedule.reason == "confirmation"
    # Offsets are elapsed minutes: 24 h after Sat 12:00 EST is Sun 13:00 EDT.
    assert schedule.follow_ups[0].due_at == dt.datetime(2026, 3, 8, 13, 0, tzinfo=NY)
    assert [f.due_at - resolved_at for f in schedule.follow_ups] == [DAY, 2 * DAY, 3 * DAY]
    assert schedule.auto_close_at - resolved_at == 4 * DAY
    assert schedule.sent_by(resolved_at + 3 * DAY) == 3
    assert not schedule.auto_close_due(resolved_at + 3 * DAY)
    answered = follow_up_schedule(
        [
            (resolved_at, TicketResolved(resolution="fix", summary="s")),
            (resolved_at + DAY, customer()),
        ],
        policy,
    )
    assert answered is None


# --- availability (seed 003 § 5) ----------------------------------------------------------------


def test_003_outage_closed_without_resolution_stops_counting_at_the_closure() -> None:
    # § 5.2: downtime runs from the customer's notification until service is re-established. A
    # network outage ticket reported 10 March 2026 08:00 UTC and closed as a duplicate at 10:00
    # stops reporting an outage then: 120 min of downtime in March, none in April (the code
    # kept it "down" forever: every later month at 0 %).
    reported = dt.datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    events = [
        (reported, opened(reported, "P1", service_class="network")),
        (reported + 2 * H, TicketClosed(reason="duplicate")),
    ]
    outages = outages_from_events(events)
    assert [(o.started_at, o.restored_at) for o in outages] == [(reported, reported + 2 * H)]
    agreement = preset("four_tier_24x7")
    march = {
        a.service_class: a
        for a in monthly_availability(outages, agreement, year=2026, month=3, timezone="UTC")
    }
    assert march["network"].downtime_minutes == 120
    april = {
        a.service_class: a
        for a in monthly_availability(outages, agreement, year=2026, month=4, timezone="UTC")
    }
    assert april["network"].downtime_minutes == 0
    assert april["network"].met is True


def test_003_reopened_outage_is_down_again_until_resolved() -> None:
    # Cloud outage in New York: reported 1 March 2026 10:00 EST, resolved 11:00 (60 min),
    # reopened 2 March 09:00, resolved 09:30 (30 min). March in New York has 31 days less the
    # spring-forward hour: 44580 min. 90 min down -> 100 * (44580 - 90) / 44580 < 99.99 %,
    # but > 99 % (the cloud target) -> met.
    start = dt.datetime(2026, 3, 1, 10, 0, tzinfo=NY)
    events = [
        (start, opened(start, "P1", service_class="cloud")),
        (start + H, TicketResolved(resolution="fix", summary="s")),
        (dt.datetime(2026, 3, 2, 9, 0, tzinfo=NY), TicketReopened(reason="again", cycle=2)),
        (dt.datetime(2026, 3, 2, 9, 30, tzinfo=NY), TicketResolved(resolution="fix", summary="s")),
    ]
    report = {
        a.service_class: a
        for a in monthly_availability(
            outages_from_events(events),
            preset("four_tier_24x7"),
            year=2026,
            month=3,
            timezone="America/New_York",
        )
    }
    cloud = report["cloud"]
    assert cloud.minutes_in_month == 31 * 1440 - 60
    assert cloud.downtime_minutes == 90
    assert cloud.percentage == pytest.approx(100 * (44580 - 90) / 44580)
    assert cloud.met is True
