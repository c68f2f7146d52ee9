"""Seed 004's exclusions classified from the stream: after-hours work by the agreement's
business-hours calendar and solution design after an incident's resolution, through intake and
billing on real Kafka and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from helpdesk.billing.domain.classification import is_business_time
from helpdesk.shared.agreements import Calendar
from services.billing.tests.integration._support import (
    Stack,
    entries_seen,
    iso,
    log,
    month_start,
    settled,
    ticket_at,
)
from services.intake.tests.integration._support import ok, run, unique

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("America/New_York")


def business_days(calendar: Calendar, first: date) -> tuple[datetime, datetime]:
    """10:00 local on the first two consecutive business days from `first` on (whatever
    holidays the calendar keeps)."""
    day = first
    while True:
        a = datetime.combine(day, time(10), ZONE)
        b = a + timedelta(days=1)
        if is_business_time(calendar, a) and is_business_time(calendar, b):
            return a, b
        day += timedelta(days=1)


async def test_seed_004_exclusions_are_classified_and_explained(stack: Stack) -> None:
    """Seed 004: "The following work is excluded: ... After-hours incident response ... Research
    and troubleshooting (solution design) following incident resolution".

    A $3,000 managed fee; 165 minutes of incident work in hours, 30 minutes at 22:30 local not
    flagged, 60 minutes on an incident after its resolution: usage $3,225.00, and the quarter's
    review counts 165 covered minutes."""
    importer = await stack.importer()
    account: dict[str, Any] = ok(
        await stack.admin.post(
            "/v1/accounts", {"name": unique("acct"), "timezone": "America/New_York"}
        ),
        201,
    )
    agreement = ok(
        await stack.admin.put(
            f"/v1/accounts/{account['id']}/agreement",
            {"preset": "managed_budget", "effective_from": iso(month_start(6)),
             "plan": {"monthly_fee_cents": 300_000}},
        )
    )  # fmt: skip
    hours = Calendar.model_validate(
        agreement["calendars"][agreement["plan"]["business_hours_calendar"]]
    )
    start = month_start(1)
    day_a, day_b = business_days(hours, date(start.year, start.month, 2))
    incident = await ticket_at(importer, account["id"], day_a - timedelta(hours=1))
    resolved = await ticket_at(importer, account["id"], day_a - timedelta(hours=1))
    await log(importer, incident, 120, day_a, at=day_a + timedelta(hours=2), after_hours=None)
    await log(importer, incident, 45, day_a + timedelta(hours=4), at=day_a + timedelta(hours=5),
              after_hours=None)  # fmt: skip
    late = day_a + timedelta(hours=12, minutes=30)  # 22:30 local
    await log(importer, incident, 30, late, at=late + timedelta(hours=1), after_hours=None)
    fix = {
        "resolution": "fix",
        "summary": "restored",
        "occurred_at": iso(day_a + timedelta(hours=2)),
    }
    ok(await run(importer, resolved, "resolve", fix))
    await log(importer, resolved, 60, day_b, at=day_b + timedelta(hours=1), after_hours=None)
    await entries_seen(stack.billing, incident, 3)
    await entries_seen(stack.billing, resolved, 1)

    billing = stack.on_billing(stack.admin)
    period = day_a.strftime("%Y-%m")
    usage = await settled(
        billing,
        f"/v1/accounts/{account['id']}/usage?period={period}",
        lambda b: b["minutes"]["by_kind"].get("solution_design") == 60,
    )
    assert usage["amount_cents"] == 322_500
    assert usage["minutes"]["by_kind"] == {"incident": 195, "solution_design": 60}
    assert sorted((c["minutes"], c["treatment"], c["reason"]) for c in usage["classified"]) == [
        (30, "after_hours", "incident; worked outside business hours"),
        (60, "time_and_materials", "solution design: incident work after its resolution"),
    ]
    invoice = next(
        i
        for i in ok(await billing.get(f"/v1/accounts/{account['id']}/invoices"))["items"]
        if i["period"] == period
    )
    assert invoice["total_cents"] == 322_500
    explained = {line["description"] for line in invoice["lines"] if line["amount_cents"]}
    assert "After-hours work (incident; worked outside business hours), 0 h 30 min" in explained
    assert (
        "Time and materials (solution design: incident work after its resolution), 1 h" in explained
    )
    quarter = f"{day_a.year}-Q{(day_a.month - 1) // 3 + 1}"
    review = ok(await billing.get(f"/v1/accounts/{account['id']}/budget-review", quarter=quarter))
    assert sum(use["covered_minutes"] for use in review["by_kind"].values()) == 165
    assert review["by_kind"]["solution_design"]["billed_cents"] == 15_000
