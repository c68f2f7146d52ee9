"""One full scenario per remaining seed preset, driven over HTTP through intake with an import
key (back-dated `reported_at` / `occurred_at`), read back from GET /v1/tickets/{id}/sla.

test_sla_timer.py covers four_tier_24x7 and small_business_remote; this module covers
cloud_platform (seed 000), partner_reseller (seed 001) and managed_budget (seed 004), plus a
daylight-saving change on a business-hours calendar. Every expected instant is worked out by hand
in the comments from the preset's calendar and targets, never by calling the domain.

All dates lie in 2026 before today and avoid the presets' yearly holidays unless a scenario
crosses one on purpose. Every clock is long past due when read, so it shows as breached with the
`due_at` it had; the assertions are about that instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.intake.tests.integration._support import (
    As,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
)
from tests.support import InProcessService, wait_for
from tests.support.stack import instant, iso, sla_view

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def clock(view: dict[str, Any], kind: str, tier: str | None = None) -> dict[str, Any]:
    return next(c for c in view["clocks"] if c["kind"] == kind and c["tier"] == tier)


def due(view: dict[str, Any], kind: str, tier: str | None = None) -> datetime:
    return instant(clock(view, kind, tier)["due_at"])


def has_clocks(view: Any) -> bool:
    return bool(view["clocks"])


async def test_cloud_platform_24x7_response_targets_and_a_triage_downgrade(
    sla: InProcessService, admin: As, importer: As
) -> None:
    # Seed 000: one 24×7 calendar; Critical (P1) 4 h, Moderate (P2) 12 h, Minimum (P3) 40 h;
    # no resolution targets. On a 24×7 calendar business time is elapsed time.
    account = await new_account(admin, {"preset": "cloud_platform"})
    reported = utc(2026, 3, 10, 8, 15)  # Tuesday 10 March 2026, 08:15 UTC

    critical = await new_ticket(importer, account["id"], priority="P1", reported_at=iso(reported))
    view = await wait_for(sla_view(sla, admin, critical["id"], has_clocks))
    # P1: 08:15 + 4 h = 12:15 UTC the same day.
    assert due(view, "response") == utc(2026, 3, 10, 12, 15)
    assert clock(view, "response")["target_minutes"] == 240
    # "Conexlink does not guarantee resolution times": a response clock and nothing else.
    assert [c["kind"] for c in view["clocks"]] == ["response"]

    minimum = await new_ticket(importer, account["id"], priority="P3", reported_at=iso(reported))
    view = await wait_for(sla_view(sla, admin, minimum["id"], has_clocks))
    # P3: 08:15 Tuesday + 40 h = 24 h to 08:15 Wednesday + 16 h = 00:15 Thursday 12 March.
    assert due(view, "response") == utc(2026, 3, 12, 0, 15)
    assert [c["kind"] for c in view["clocks"]] == ["response"]

    downgraded = await new_ticket(importer, account["id"], priority="P1", reported_at=iso(reported))
    triaged_at = utc(2026, 3, 10, 9, 15)  # an hour later the technician finds it Moderate
    ok(
        await run(
            importer,
            downgraded["id"],
            "triage",
            {"priority": "P2", "occurred_at": iso(triaged_at)},
        )
    )
    view = await wait_for(
        sla_view(sla, admin, downgraded["id"], lambda v: v["priority"] == "P2" and v["clocks"])
    )
    # The clock keeps counting from the report (08:15), now with P2's 12 h: 20:15 UTC.
    response = clock(view, "response")
    assert instant(response["started_at"]) == reported
    assert response["priority"] == "P2"
    assert response["target_minutes"] == 720
    assert due(view, "response") == utc(2026, 3, 10, 20, 15)


async def test_partner_reseller_business_days_engineering_tier_and_vendor_pause(
    sla: InProcessService, admin: As, importer: As
) -> None:
    # Seed 001: every priority 24 business hours (1440 min) on business_hours, Mon–Fri
    # 09:00–17:00 America/New_York (8 h a day, so three business days); US public holidays.
    # Escalation to engineering: its own 72 business hours (nine business days) on the
    # same calendar; escalation to a vendor pauses every clock until the vendor hands it back.
    # May 2026 is on EDT (UTC−4) throughout; its only holiday, Memorial Day, is Monday 25 May.
    account = await new_account(
        admin, {"preset": "partner_reseller", "plan": {"discount_percent": 20}}
    )
    reported = datetime(2026, 5, 8, 16, 0, tzinfo=NEW_YORK)  # Friday 8 May, 16:00 EDT
    required_on_open = {
        "partner_domain": "partner.example",
        "customer_name": "Acme",
        "customer_domain": "acme.example",
        "details": "the portal refuses logins",
        "steps_taken": "reset the password",
        "error_messages": "403",
    }
    ticket = await new_ticket(
        importer, account["id"], priority="P3", reported_at=iso(reported), fields=required_on_open
    )
    view = await wait_for(sla_view(sla, admin, ticket["id"], has_clocks))
    # Fri 16:00–17:00 = 1 h; Mon 11 = 8 h (9 h); Tue 12 = 8 h (17 h); Wed 13 from 09:00 the
    # last 7 h → Wednesday 13 May 16:00 EDT = 20:00 UTC.
    assert due(view, "response") == utc(2026, 5, 13, 20, 0)
    assert clock(view, "response")["target_minutes"] == 1440
    assert [c["kind"] for c in view["clocks"]] == ["response"]

    to_engineering = datetime(2026, 5, 11, 10, 0, tzinfo=NEW_YORK)  # Monday 11 May, 10:00 EDT
    ok(
        await run(
            importer,
            ticket["id"],
            "escalate",
            {"tier": "engineering", "occurred_at": iso(to_engineering)},
        )
    )
    view = await wait_for(
        sla_view(sla, admin, ticket["id"], lambda v: any(c["tier"] for c in v["clocks"]))
    )
    # Mon 10:00–17:00 = 7 h; 65 h left = eight full days (Tue 12 … Fri 15, Mon 18 … Thu 21,
    # 64 h) and 1 h on Friday 22 May → 10:00 EDT = 14:00 UTC: nine business days after Monday.
    assert instant(clock(view, "escalation", "engineering")["started_at"]) == to_engineering
    assert clock(view, "escalation", "engineering")["target_minutes"] == 72 * 60
    assert due(view, "escalation", "engineering") == utc(2026, 5, 22, 14, 0)
    # Escalating does not answer the customer: the response deadline stands.
    assert due(view, "response") == utc(2026, 5, 13, 20, 0)

    to_vendor = datetime(2026, 5, 12, 15, 0, tzinfo=NEW_YORK)  # Tuesday 12 May, 15:00 EDT
    back = datetime(2026, 5, 13, 10, 0, tzinfo=NEW_YORK)  # Wednesday 13 May, 10:00 EDT
    vendor = {"tier": "vendor", "occurred_at": iso(to_vendor)}
    ok(await run(importer, ticket["id"], "escalate", vendor))
    ok(await run(importer, ticket["id"], "vendor-return", {"occurred_at": iso(back)}))
    view = await wait_for(
        sla_view(sla, admin, ticket["id"], lambda v: any(p["end"] for p in v["pauses"]))
    )
    assert view["pauses"] == [
        {"reason": "vendor", "start": view["pauses"][0]["start"], "end": view["pauses"][0]["end"]}
    ]
    assert instant(view["pauses"][0]["start"]) == to_vendor
    assert instant(view["pauses"][0]["end"]) == back
    # 19 wall-clock hours with the vendor, of which business time: Tue 15:00–17:00 (2 h) and
    # Wed 09:00–10:00 (1 h) = 3 h. Every deadline moves by those 3 business hours:
    # response Wed 16:00 + 3 h = 1 h on Wednesday, 2 h on Thursday → Thu 14 May 11:00 EDT;
    assert due(view, "response") == utc(2026, 5, 14, 15, 0)
    # engineering Fri 22 10:00 + 3 h → Friday 22 May 13:00 EDT.
    assert due(view, "escalation", "engineering") == utc(2026, 5, 22, 17, 0)


async def test_only_engineering_answers_the_engineering_clock(
    sla: InProcessService, admin: As
) -> None:
    """Seed 001: "Tickets that must be forward to Engineering, are allotted a 72 business hour
    response time": a front-line "forwarded to Engineering" reply answers the partner (response
    clock met) but not the engineering clock; a public reply by Engineering staff does."""
    account = await new_account(
        admin, {"preset": "partner_reseller", "plan": {"discount_percent": 20}}
    )
    _, front_line = await staff_key(admin, "technician")
    engineer, as_engineer = await staff_key(admin, "technician", tier="engineering")
    assert engineer["tier"] == "engineering"
    fields = {
        "partner_domain": "partner.example",
        "customer_name": "Acme",
        "customer_domain": "acme.example",
        "details": "the portal refuses logins",
        "steps_taken": "reset the password",
    }
    ticket = await new_ticket(admin, account["id"], priority="P3", fields=fields)
    ok(await run(admin, ticket["id"], "escalate", {"tier": "engineering"}))
    forwarded = {"body": "forwarded to Engineering", "public": True}
    ok(await run(front_line, ticket["id"], "comments", forwarded))

    def settled(kind: str, tier: str | None = None) -> Any:
        def check(view: dict[str, Any]) -> bool:
            return any(
                c["kind"] == kind and c["tier"] == tier and c["met_at"] for c in view["clocks"]
            )

        return check

    view = await wait_for(sla_view(sla, admin, ticket["id"], settled("response")))
    assert clock(view, "escalation", "engineering")["status"] == "running"
    assert clock(view, "escalation", "engineering")["met_at"] is None
    answer = {"body": "fixed in the provider's portal", "public": True}
    ok(await run(as_engineer, ticket["id"], "comments", answer))
    view = await wait_for(sla_view(sla, admin, ticket["id"], settled("escalation", "engineering")))
    assert clock(view, "escalation", "engineering")["status"] == "met"


async def test_managed_budget_p4_across_new_years_day_and_a_weekend(
    sla: InProcessService, admin: As, importer: As
) -> None:
    # Seed 004 states no response times, so the preset has none; this contract names P4 16
    # business hours on the preset's business_hours, Mon–Fri 09:00–17:00 America/New_York
    # closed on US public holidays; no resolution targets.
    agreement = {"preset": "managed_budget", "targets": {"P4": {"response_minutes": 16 * 60}}}
    account = await new_account(admin, agreement)
    # Wednesday 31 December 2025, 15:00 EST (UTC−5).
    reported = datetime(2025, 12, 31, 15, 0, tzinfo=NEW_YORK)
    ticket = await new_ticket(importer, account["id"], priority="P4", reported_at=iso(reported))
    view = await wait_for(sla_view(sla, admin, ticket["id"], has_clocks))
    # Wed 31 Dec 15:00–17:00 = 2 h; Thu 1 Jan closed (New Year's Day); Fri 2 Jan = 8 h (10 h);
    # Sat 3 / Sun 4 closed; Mon 5 Jan the last 6 h from 09:00 → 15:00 EST = 20:00 UTC.
    assert due(view, "response") == utc(2026, 1, 5, 20, 0)
    assert clock(view, "response")["target_minutes"] == 16 * 60
    # "As quickly as feasible" is no guarantee: no resolution clock at all.
    assert [c["kind"] for c in view["clocks"]] == ["response"]


async def test_managed_budget_states_no_response_times_so_nothing_is_due(
    sla: InProcessService, admin: As, importer: As
) -> None:
    """Seed 004: 'Restoring services as quickly as feasible following an IT interruption is the
    goal of all incident response' -- no response time. A P1 incident reported in March and
    never answered has no clock: nothing due, warned or breached."""
    account = await new_account(admin, {"preset": "managed_budget"})
    reported = datetime(2026, 3, 2, 10, 0, tzinfo=NEW_YORK)  # Monday 2 March, 10:00 EST
    ticket = await new_ticket(importer, account["id"], priority="P1", reported_at=iso(reported))
    view = await wait_for(
        sla_view(sla, admin, ticket["id"], lambda v: v["effective_priority"] == "P1")
    )
    assert view["clocks"] == []


async def test_business_hours_across_the_spring_forward_in_amsterdam(
    sla: InProcessService, admin: As, importer: As
) -> None:
    """Seed 002: "Non-urgent issues we'll respond within 24 hours" is one business day of the
    operating hours: the same local time on the next business day, across a DST change.

    small_business_remote: business_hours Mon–Fri 08:30–17:30; the account keeps the calendar in
    Europe/Amsterdam, which springs forward on Sunday 29 March 2026 (02:00 CET → 03:00 CEST).
    """
    agreement = {
        "preset": "small_business_remote",
        "calendars": {"business_hours": {"timezone": "Europe/Amsterdam"}},
    }
    account = await new_account(admin, agreement)
    reported = datetime(2026, 3, 27, 10, 0, tzinfo=AMSTERDAM)  # Friday 27 March, 10:00 CET
    assert reported == utc(2026, 3, 27, 9, 0)
    ticket = await new_ticket(importer, account["id"], priority="P2", reported_at=iso(reported))
    view = await wait_for(sla_view(sla, admin, ticket["id"], has_clocks))
    # Monday 30 March 10:00 CEST = 08:00 UTC (a calendar stuck on CET would say 09:00 UTC).
    assert due(view, "response") == utc(2026, 3, 30, 8, 0)
    assert clock(view, "response")["target_business_days"] == 1
    assert clock(view, "response")["calendar"] == "business_hours"
