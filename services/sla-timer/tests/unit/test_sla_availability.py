"""Monthly availability per service class: maintenance windows, overlaps, DST months."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from helpdesk.shared.agreements import Agreement, MaintenanceWindow, get_preset
from helpdesk.shared.contracts.tickets import TicketOpened, TicketReopened, TicketResolved
from helpdesk.sla_timer.domain import (
    ClassAvailability,
    Outage,
    month_bounds,
    monthly_availability,
    outages_from_events,
)

pytestmark = pytest.mark.unit

UTC = dt.UTC
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def agreement(*windows: MaintenanceWindow) -> Agreement:
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    return preset.agreement.model_copy(update={"maintenance_windows": list(windows)})


def at(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 6, day, hour, minute, tzinfo=UTC)


def by_class(report: list[ClassAvailability]) -> dict[str, ClassAvailability]:
    return {line.service_class: line for line in report}


def test_month_bounds_follow_the_account_zone_and_dst() -> None:
    start, end = month_bounds(2025, 3, "Europe/Amsterdam")
    assert start == dt.datetime(2025, 2, 28, 23, 0, tzinfo=UTC)
    assert end == dt.datetime(2025, 3, 31, 22, 0, tzinfo=UTC)
    assert end - start == dt.timedelta(days=31) - H
    start, end = month_bounds(2025, 12, "UTC")
    assert end == dt.datetime(2026, 1, 1, tzinfo=UTC)


def test_overlapping_outages_count_once_and_maintenance_is_excluded() -> None:
    window = MaintenanceWindow(start=at(10, 1), end=at(10, 3), service_class="network")
    everyone = MaintenanceWindow(start=at(20, 0), end=at(20, 1))
    outages = [
        Outage("network", at(10, 0), at(10, 2)),  # 1 h of it inside maintenance
        Outage("network", at(10, 1, 30), at(10, 4)),  # overlaps: union 00:00-04:00
        Outage("cloud", at(20, 0), at(20, 2)),  # 1 h inside the all-classes window
        Outage("voice", at(31 - 1, 23), None),  # still down: to the end of June
    ]
    report = by_class(
        monthly_availability(
            outages, agreement(window, everyone), year=2025, month=6, timezone="UTC"
        )
    )
    network = report["network"]
    assert network.minutes_in_month == 30 * 24 * 60
    assert network.downtime == 2 * H  # 4 h union minus 2 h maintenance
    assert network.maintenance_excluded_minutes == 120
    assert network.target == 99.99
    assert network.percentage == pytest.approx(100 * (1 - 120 / 43200))
    assert network.met is False
    cloud = report["cloud"]
    assert cloud.downtime_minutes == 60
    assert cloud.met is True  # 99.86 % >= 99 %
    assert report["voice"].downtime == H
    operational = report["operational"]
    assert operational.downtime_minutes == 0
    assert operational.percentage == 100.0


def test_outages_are_clipped_to_the_month_and_as_of() -> None:
    outages = [
        Outage("cloud", dt.datetime(2025, 5, 31, 22, 0, tzinfo=UTC), at(1, 1)),
        Outage("cloud", at(30, 20), None),
    ]
    report = by_class(
        monthly_availability(
            outages, agreement(), year=2025, month=6, timezone="UTC", as_of=at(30, 21)
        )
    )
    assert report["cloud"].downtime == 2 * H


def test_unknown_class_without_target_is_reported_without_verdict() -> None:
    report = by_class(
        monthly_availability(
            [Outage("printing", at(2), at(2, 1))], agreement(), year=2025, month=6, timezone="UTC"
        )
    )
    assert report["printing"].target is None
    assert report["printing"].met is None


def test_outages_from_ticket_events_follow_resolution_cycles() -> None:
    opened = TicketOpened(
        ticket_id=uuid.uuid4(),
        number="1",
        account_id=uuid.uuid4(),
        subject="down",
        description="d",
        channel="phone",
        priority="P1",
        service_class="network",
        reported_at=at(3, 9),
    )
    resolved = TicketResolved(resolution="fix", summary="ok")
    events = [
        (at(3, 9, 5), opened),
        (at(3, 10), resolved),
        (at(4, 8), TicketReopened(reason="down again", cycle=2)),
    ]
    assert outages_from_events(events) == [
        Outage("network", at(3, 9), at(3, 10)),
        Outage("network", at(4, 8), None),
    ]
    no_class = opened.model_copy(update={"service_class": None})
    assert outages_from_events([(at(3, 9), no_class), (at(3, 10), resolved)]) == []
