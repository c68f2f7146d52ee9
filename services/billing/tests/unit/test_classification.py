"""Classifying time entries: after-hours work by the business-hours calendar, solution design
after an incident's resolution, and the technician's marks overriding both ways."""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpdesk.billing.domain.classification import (
    ResolvedSpan,
    classify,
    is_business_time,
    stood_resolved,
)
from helpdesk.billing.domain.invoices import explanation, monthly_invoice
from helpdesk.billing.domain.rating import rate_period
from helpdesk.billing.domain.review import quarterly_review
from helpdesk.billing.domain.usage import period_usage
from services.billing.tests.unit.billing_fixtures import (
    ACCOUNT,
    T1,
    T2,
    TZ,
    at,
    entry,
    preset_hours,
    preset_plan,
    since,
)

pytestmark = pytest.mark.unit

MANAGED = since(
    preset_plan("managed_budget", monthly_fee_cents=300_000), hours=preset_hours("managed_budget")
)


def _issue_entries(*, after_hours: bool | None = None, solution_design: bool | None = None):  # type: ignore[no-untyped-def]
    """The issue's month: 165 minutes of incident work in hours, 30 minutes of incident work at
    22:30 local (not flagged), 60 minutes on an incident after its resolution."""
    return [
        entry(120, at(2026, 2, 9, 10), scope="in", ticket=T1, after_hours=None),
        entry(45, at(2026, 2, 10, 14), scope="in", ticket=T1, after_hours=None),
        entry(30, at(2026, 2, 10, 22, 30), scope="in", ticket=T1, after_hours=after_hours),
        entry(
            60, at(2026, 2, 12, 10), scope="in", ticket=T2, after_hours=None,
            solution_design=solution_design, after_resolution=True,
        ),
    ]  # fmt: skip


def test_seed_004_after_hours_and_post_resolution_work_are_billed_apart_from_the_fee() -> None:
    """Seed 004: "The following work is excluded: ... After-hours incident response ... Research
    and troubleshooting (solution design) following incident resolution".

    A $3,000 managed fee, 30 minutes of incident work at 22:30 local (not flagged) and 60
    minutes on an incident after its resolution: $3,000 + 30 min and 60 min at the preset's
    $150/h (no discount) = $3,000.00 + $75.00 + $150.00 = $3,225.00. The quarter's review counts
    the 165 minutes of in-hours incident work as covered, not 255."""
    rating = rate_period("2026-02", TZ, _issue_entries(), MANAGED)
    invoice = monthly_invoice(ACCOUNT, rating)
    assert period_usage(rating).amount_cents == 322_500
    assert invoice.total_cents == 322_500
    billed = {
        line.description: (line.quantity_minutes, line.unit_price_cents, line.amount_cents)
        for line in invoice.lines
        if line.amount_cents and line.kind != "fee"
    }
    assert billed == {
        "After-hours work (incident; worked outside business hours), 0 h 30 min": (
            30,
            15_000,
            7_500,
        ),
        "Time and materials (solution design: incident work after its resolution), 1 h": (
            60,
            15_000,
            15_000,
        ),
    }
    review = quarterly_review("2026-Q1", TZ, _issue_entries(), MANAGED)
    assert sum(use.covered_minutes for use in review.by_kind.values()) == 165
    assert review.by_kind["incident"].billed_minutes == 30
    assert review.by_kind["solution_design"].billed_cents == 15_000
    assert review.budget_cents == 3 * 300_000


def test_the_technicians_marks_override_the_classification() -> None:
    """Seed 004 "Regular communication with your Technical Account Manager is required to ensure
    that these exclusions are applied suitably and explicitly": a flag `after_hours: false` and a
    mark `solution_design: false` (incident work) keep the work in the fee."""
    entries = _issue_entries(after_hours=False, solution_design=False)
    rating = rate_period("2026-02", TZ, entries, MANAGED)
    usage = period_usage(rating)
    assert usage.amount_cents == 300_000
    (marked,) = usage.classified
    assert explanation(marked.kind, marked.kind_reason, marked.after_hours_reason) == (
        "incident: after its resolution, marked incident work by the technician"
    )
    review = quarterly_review("2026-Q1", TZ, entries, MANAGED)
    assert sum(use.covered_minutes for use in review.by_kind.values()) == 255
    # ... and the flag bills work done in hours after hours.
    flagged = entry(30, at(2026, 2, 10, 11), scope="in", after_hours=True)
    (line,) = [
        line
        for line in monthly_invoice(ACCOUNT, rate_period("2026-02", TZ, [flagged], MANAGED)).lines
        if line.kind == "after_hours"
    ]
    assert line.description == (
        "After-hours work (incident; flagged after hours by the technician), 0 h 30 min"
    )
    assert line.amount_cents == 7_500


def test_business_hours_are_the_calendar_of_the_agreement() -> None:
    """Seed 004 prices "After-hours incident response" apart: outside Mon-Fri 09:00-17:00 local,
    weekends and holidays are after hours; opening is inclusive and closing exclusive."""
    hours = preset_hours("managed_budget")
    assert is_business_time(hours, at(2026, 2, 10, 9, 0))
    assert is_business_time(hours, at(2026, 2, 10, 16, 59))
    assert not is_business_time(hours, at(2026, 2, 10, 8, 59))
    assert not is_business_time(hours, at(2026, 2, 10, 17, 0))
    assert not is_business_time(hours, at(2026, 2, 14, 11))  # a Saturday
    assert not is_business_time(hours, at(2025, 12, 25, 11))  # Christmas Day, a Thursday
    # Local wall-clock time decides across a DST change (2026-03-08 in New York).
    assert is_business_time(hours, at(2026, 3, 9, 9, 0))
    assert not is_business_time(hours, at(2026, 3, 9, 8, 59))


def test_without_business_hours_only_the_flag_makes_work_after_hours() -> None:
    kwargs = {"worked_at": at(2026, 2, 10, 23), "solution_design": None, "after_resolution": False}
    unflagged = classify(kind="incident", after_hours=None, business_hours=None, **kwargs)  # type: ignore[arg-type]
    assert (unflagged.after_hours, unflagged.after_hours_reason) == (False, None)
    flagged = classify(kind="incident", after_hours=True, business_hours=None, **kwargs)  # type: ignore[arg-type]
    assert (flagged.after_hours, flagged.after_hours_reason) == (True, "flagged")


def test_solution_design_follows_each_resolution_until_a_reopen() -> None:
    """Seed 004: "Resolving an incident means restoring service ... If solving the underlying
    problem requires more research and testing over time, that scope of work needs to be
    properly planned, managed, and budgeted for." Work while the incident stands resolved is
    solution design; a reopened cycle is incident work again until it is resolved in turn."""
    resolved, reopened, again = at(2026, 2, 10, 12), at(2026, 2, 12, 9), at(2026, 2, 13, 15)
    spans = [ResolvedSpan(resolved, reopened), ResolvedSpan(again)]
    tick = timedelta(seconds=1)
    assert not stood_resolved(resolved - tick, spans)
    assert stood_resolved(resolved, spans)
    assert stood_resolved(reopened - tick, spans)
    assert not stood_resolved(reopened, spans)
    assert stood_resolved(again + timedelta(days=30), spans)

    def kind_of(kind: str, after_resolution: bool, mark: bool | None) -> tuple[str, str]:
        what = classify(
            kind=kind,  # type: ignore[arg-type]
            worked_at=at(2026, 2, 11, 10),
            after_hours=None,
            solution_design=mark,
            after_resolution=after_resolution,
            business_hours=preset_hours("managed_budget"),
        )
        return what.kind, what.kind_reason

    assert kind_of("incident", True, None) == ("solution_design", "after_resolution")
    assert kind_of("incident", True, False) == ("incident", "marked_incident")
    assert kind_of("incident", False, True) == ("solution_design", "marked_solution_design")
    assert kind_of("incident", False, None) == ("incident", "ticket")
    # A service request stays one: it is excluded on its own account.
    assert kind_of("service_request", True, None) == ("service_request", "ticket")


def test_seed_002_after_hours_add_on_uses_the_same_classification() -> None:
    """Seed 002: "Operating hours: M-F 8:30 AM to 5:30 PM (unless the after-hours service add-on
    is purchased which is available at an extra cost)": unflagged work at 18:00 local is billed
    as after-hours work; work at 08:30 is in the plan."""
    plans = since(preset_plan("small_business_remote"), hours=preset_hours("small_business_remote"))
    entries = [
        entry(30, at(2026, 2, 10, 18), scope="in", ticket=T1, after_hours=None),
        entry(30, at(2026, 2, 10, 8, 30), scope="in", ticket=T2, after_hours=None),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2026-02", TZ, entries, plans))
    kinds = {line.kind: (line.quantity_minutes, line.amount_cents) for line in invoice.lines}
    assert kinds == {"after_hours": (30, 7_500), "in_scope": (30, 0)}
