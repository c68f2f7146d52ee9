"""Fair use (seed 002): caps per local day and per ticket raise exceedances, never drop time."""

from __future__ import annotations

from datetime import date

import pytest

from helpdesk.billing.domain.fair_use import fair_use_exceedances
from helpdesk.billing.domain.rating import rate_period
from helpdesk.billing.domain.usage import period_usage
from helpdesk.shared.agreements import FairUse
from services.billing.tests.unit.billing_fixtures import (
    T1,
    T2,
    T3,
    TZ,
    at,
    entry,
    preset_fair_use,
    preset_plan,
    since,
)

pytestmark = pytest.mark.unit

CAPS = preset_fair_use("small_business_remote")
PLAN = since(preset_plan("small_business_remote"))


def test_preset_caps_are_thirty_minutes_of_remote_work() -> None:
    assert FairUse(per_day_minutes=30, per_ticket_minutes=30, work_types=["remote"]) == CAPS


def test_per_day_cap_in_local_date() -> None:
    entries = [
        entry(20, at(2025, 2, 3, 9), scope="in", ticket=T1),
        entry(15, at(2025, 2, 3, 23, 30), scope="in", ticket=T2),  # 4 Feb in UTC
        entry(10, at(2025, 2, 4, 9), scope="in", ticket=T3),
    ]
    (found,) = fair_use_exceedances(entries, CAPS, TZ)
    assert (found.cap, found.day, found.used_minutes, found.excess_minutes) == (
        "per_day",
        date(2025, 2, 3),
        35,
        5,
    )
    assert found.entry_id == entries[1].entry_id
    assert found.key == "per_day:2025-02-03"
    # In UTC the late entry is on the 4th, with 25 minutes: no cap is exceeded.
    assert fair_use_exceedances(entries, CAPS, "UTC") == ()


def test_per_ticket_cap_over_days_and_time_is_kept() -> None:
    entries = [
        entry(20, at(2025, 2, 3), scope="in", ticket=T1),
        entry(10, at(2025, 2, 4), scope="in", ticket=T1),  # exactly 30: fine
        entry(5, at(2025, 2, 5), scope="in", ticket=T1),  # 35: exceeded
        entry(5, at(2025, 2, 6), scope="in", ticket=T1),  # still over: no second record
        entry(120, at(2025, 2, 7), scope="in", ticket=T2, work_type="onsite"),  # not counted
    ]
    found = fair_use_exceedances(list(reversed(entries)), CAPS, TZ)
    assert [(x.cap, x.ticket_id, x.used_minutes, x.entry_id) for x in found] == [
        ("per_ticket", T1, 35, entries[2].entry_id)
    ]
    assert found[0].key == f"per_ticket:{T1}"
    rating = rate_period("2025-02", TZ, entries, PLAN, fair_use=CAPS)
    assert rating.fair_use == found
    usage = period_usage(rating)
    assert usage.fair_use == found
    assert usage.in_scope_minutes == 30 + 15 * 3 + 120  # nothing dropped (rounded up to 15s)


def test_one_entry_can_cross_both_caps() -> None:
    entries = [entry(45, at(2025, 2, 3), scope="in")]
    assert [x.cap for x in fair_use_exceedances(entries, CAPS, TZ)] == ["per_day", "per_ticket"]


def test_period_reports_only_its_own_exceedances() -> None:
    entries = [
        entry(25, at(2025, 1, 30), scope="in", ticket=T1),
        entry(10, at(2025, 2, 2), scope="in", ticket=T1),  # the ticket crosses in February
    ]
    january = rate_period("2025-01", TZ, entries, PLAN, fair_use=CAPS)
    february = rate_period("2025-02", TZ, entries, PLAN, fair_use=CAPS)
    assert january.fair_use == ()
    assert [x.cap for x in february.fair_use] == ["per_ticket"]


def test_no_caps_no_exceedances() -> None:
    assert fair_use_exceedances([entry(600, at(2025, 2, 3))], None, TZ) == ()
