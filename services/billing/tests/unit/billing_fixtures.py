"""Builders shared by the billing unit tests (plain functions, no pytest magic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from helpdesk.billing.domain.rating import PlanVersion, TimeEntry
from helpdesk.shared.agreements import (
    Calendar,
    FairUse,
    Plan,
    TicketKind,
    WorkType,
    get_preset,
)
from helpdesk.shared.contracts.common import Scope

TZ = "America/New_York"
ZONE = ZoneInfo(TZ)
ACCOUNT = UUID(int=1)
T1 = UUID(int=101)
T2 = UUID(int=102)
T3 = UUID(int=103)
_NS = UUID(int=999)


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A local wall-clock instant of the account's zone."""
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


def entry(
    minutes: int,
    worked_at: datetime,
    *,
    scope: Scope = "out",
    kind: TicketKind = "incident",
    ticket: UUID = T1,
    after_hours: bool | None = False,
    work_type: WorkType = "remote",
    name: str | None = None,
    solution_design: bool | None = None,
    after_resolution: bool = False,
) -> TimeEntry:
    """A time entry; its id is derived from its content (or `name`) so tests stay readable.

    `after_hours` is the technician's flag (False by default: an explicit "in hours"); pass
    None to let billing classify it by the plan version's business hours."""
    key = name or f"{ticket}/{worked_at.isoformat()}/{minutes}/{scope}/{kind}/{after_hours}"
    return TimeEntry(
        entry_id=uuid5(_NS, key),
        ticket_id=ticket,
        minutes=minutes,
        work_type=work_type,
        scope=scope,
        kind=kind,
        after_hours=after_hours,
        worked_at=worked_at,
        solution_design=solution_design,
        after_resolution=after_resolution,
    )


def preset_plan(preset: str, variant: str | None = None, **overrides: Any) -> Plan:
    """The plan of a preset (or of one of its variants), with fields overridden and revalidated."""
    found = get_preset(preset)
    assert found is not None
    plan = found.plan_variants[variant].plan if variant else found.agreement.plan
    return Plan.model_validate({**plan.model_dump(), **overrides})


def preset_fair_use(preset: str) -> FairUse | None:
    """The fair-use caps of a preset."""
    found = get_preset(preset)
    assert found is not None
    return found.agreement.fair_use


def since(
    plan: Plan, label: str = "", start: datetime | None = None, hours: Calendar | None = None
) -> list[PlanVersion]:
    """A single plan version in force since long before the tests' periods (`hours`: the
    business-hours calendar that classifies unflagged work)."""
    return [
        PlanVersion(
            effective_at=start or at(2024, 1, 1, 0), plan=plan, label=label, business_hours=hours
        )
    ]


def preset_hours(preset: str) -> Calendar:
    """The business-hours calendar a preset's plan names."""
    found = get_preset(preset)
    assert found is not None
    name = found.agreement.plan.business_hours_calendar
    assert name is not None
    return found.agreement.calendars[name]
