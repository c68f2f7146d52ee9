"""Invoices per plan preset, per-ticket invoices, adjustments after a final invoice, CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

import pytest

from helpdesk.billing.domain.invoices import (
    CSV_COLUMNS,
    Invoice,
    InvoiceLine,
    adjustment_lines,
    invoice_csv,
    monthly_invoice,
    ticket_invoice,
)
from helpdesk.billing.domain.periods import next_period
from helpdesk.billing.domain.rating import PlanVersion, TimeEntry, rate_period
from helpdesk.billing.domain.usage import period_usage
from services.billing.tests.unit.billing_fixtures import (
    ACCOUNT,
    T1,
    T2,
    T3,
    TZ,
    at,
    entry,
    preset_plan,
    since,
)

pytestmark = pytest.mark.unit

STARTER = preset_plan("cloud_platform", "starter")
HOURLY = preset_plan("cloud_platform", "hourly")


def summary(lines: tuple[InvoiceLine, ...]) -> list[tuple[str, object, int, int, int]]:
    return [
        (line.kind, line.ticket_id, line.quantity_minutes, line.discount_percent, line.amount_cents)
        for line in lines
    ]


# --- hourly (seed 000): one invoice per resolved ticket -------------------------------------------


def test_hourly_plan_bills_a_ticket_when_it_is_resolved() -> None:
    entries = [
        entry(130, at(2025, 3, 10), ticket=T1),
        entry(60, at(2025, 3, 11), ticket=T1, scope="in"),
        entry(45, at(2025, 3, 11), ticket=T2),  # another ticket, not on this invoice
    ]
    # Resolved at 23:30 local on 31 March: already April in UTC, but March's invoice.
    invoice = ticket_invoice(ACCOUNT, T1, at(2025, 3, 31, 23, 30), TZ, entries, since(HOURLY))
    assert invoice.period == "2025-03"
    assert invoice.ticket_id == T1
    assert summary(invoice.lines) == [
        ("time_and_materials", T1, 135, 0, 33_750),
        ("in_scope", T1, 60, 0, 0),
    ]
    assert invoice.total_cents == 33_750
    # Nothing of it is on the monthly invoice; usage still shows the month's work and value.
    rating = rate_period("2025-03", TZ, entries, since(HOURLY))
    assert monthly_invoice(ACCOUNT, rating).lines == ()
    usage = period_usage(rating)
    assert (usage.out_of_scope_minutes, usage.billable_minutes) == (180, 180)
    assert usage.amount_cents == 33_750 + 11_250


def test_hourly_per_ticket_rounding_option() -> None:
    entries = [entry(10, at(2025, 3, d), ticket=T1) for d in (3, 10, 17)]
    per_entry = ticket_invoice(ACCOUNT, T1, at(2025, 3, 20), TZ, entries, since(HOURLY))
    per_ticket = ticket_invoice(
        ACCOUNT, T1, at(2025, 3, 20), TZ, entries, since(HOURLY), rounding="per_ticket"
    )
    assert per_entry.total_cents == 11_250  # 3 × 15 min
    assert per_ticket.total_cents == 7_500  # 30 min


def test_hourly_ticket_invoice_leaves_out_work_under_a_monthly_plan() -> None:
    plans = [PlanVersion(at(2024, 1, 1), HOURLY), PlanVersion(at(2025, 3, 15), STARTER)]
    entries = [entry(60, at(2025, 3, 10), ticket=T1), entry(60, at(2025, 3, 20), ticket=T1)]
    invoice = ticket_invoice(ACCOUNT, T1, at(2025, 3, 25), TZ, entries, plans)
    assert summary(invoice.lines) == [("time_and_materials", T1, 60, 0, 15_000)]
    monthly = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, plans))
    assert [line.kind for line in monthly.lines] == ["fee", "included"]


# --- Pro (seed 000) ------------------------------------------------------------------------------


def test_pro_plan_month() -> None:
    pro = preset_plan("cloud_platform", "pro")
    entries = [entry(405, at(2025, 6, 2), ticket=T1), entry(30, at(2025, 6, 3), scope="in")]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-06", TZ, entries, since(pro, "Pro")))
    assert summary(invoice.lines) == [
        ("fee", None, 0, 0, 87_500),
        ("overage", None, 105, 30, 18_375),
        ("included", None, 300, 0, 0),
        ("in_scope", None, 30, 0, 0),
    ]
    assert invoice.lines[0].description == "Monthly fee (Pro)"


# --- managed budget (seed 004) -------------------------------------------------------------------


def managed(**overrides: Any) -> list[PlanVersion]:
    return since(preset_plan("managed_budget", monthly_fee_cents=400_000, **overrides))


def test_managed_covers_incidents_and_bills_exclusions_as_time_and_materials() -> None:
    entries = [
        entry(120, at(2025, 2, 3), kind="incident", scope="in", ticket=T1, work_type="onsite"),
        entry(45, at(2025, 2, 4, 22), kind="incident", scope="in", ticket=T1, after_hours=True),
        entry(100, at(2025, 2, 5), kind="service_request", scope="in", ticket=T2),
        entry(200, at(2025, 2, 6), kind="solution_design", scope="out", ticket=T3),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, managed()))
    assert summary(invoice.lines) == [
        ("fee", None, 0, 0, 400_000),
        ("time_and_materials", T2, 105, 0, 26_250),
        ("time_and_materials", T3, 210, 0, 52_500),
        ("after_hours", T1, 45, 0, 11_250),
        ("in_scope", None, 120, 0, 0),
    ]
    assert invoice.lines[1].description == "Time and materials (service request), 1 h 45 min"
    assert invoice.total_cents == 400_000 + 26_250 + 52_500 + 11_250


def test_managed_flat_fee_is_charged_once_per_ticket() -> None:
    plans = managed(flat_fees={"solution_design": 90_000})
    entries = [
        entry(200, at(2025, 2, 6), kind="solution_design", ticket=T3),
        entry(60, at(2025, 2, 7, 21), kind="solution_design", ticket=T3, after_hours=True),
        entry(90, at(2025, 3, 3), kind="solution_design", ticket=T3),
        entry(30, at(2025, 3, 4), kind="service_request", ticket=T2),  # no flat fee: T&M
    ]
    february = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, plans))
    assert summary(february.lines) == [
        ("fee", None, 0, 0, 400_000),
        ("flat_fee", T3, 270, 0, 90_000),
    ]
    march = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, plans))
    assert summary(march.lines) == [
        ("fee", None, 0, 0, 400_000),
        ("time_and_materials", T2, 30, 0, 7_500),
        ("flat_fee", T3, 90, 0, 0),
    ]
    assert march.lines[2].description.endswith("(invoiced in 2025-02)")


def test_managed_discount_applies_to_excluded_work() -> None:
    entries = [entry(60, at(2025, 2, 5), kind="service_request", ticket=T2)]
    invoice = monthly_invoice(
        ACCOUNT, rate_period("2025-02", TZ, entries, managed(discount_percent=10))
    )
    assert summary(invoice.lines)[1] == ("time_and_materials", T2, 60, 10, 13_500)


# --- small business (seed 002): after hours is an add-on ------------------------------------------


def test_small_business_bills_after_hours_work_only() -> None:
    plans = since(preset_plan("small_business_remote"))
    entries = [
        entry(25, at(2025, 2, 3), scope="in", ticket=T1),
        entry(20, at(2025, 2, 3, 19), scope="in", ticket=T2, after_hours=True),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, plans))
    assert summary(invoice.lines) == [
        ("after_hours", T2, 30, 0, 7_500),
        ("in_scope", None, 30, 0, 0),
    ]


# --- adjustments after a final invoice -----------------------------------------------------------

EXAMPLE = [
    entry(195, at(2025, 3, 3), ticket=T1),
    entry(130, at(2025, 3, 10), ticket=T2),
    entry(90, at(2025, 3, 12), ticket=T3, scope="in"),
]


def march(entries: list[TimeEntry]) -> Invoice:
    return monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, since(STARTER)))


def test_late_entry_becomes_an_adjustment_on_the_next_invoice() -> None:
    final = march(EXAMPLE)
    late = entry(60, at(2025, 3, 28), ticket=T2)
    adjustments = adjustment_lines(final, march([*EXAMPLE, late]))
    assert summary(adjustments) == [("adjustment", None, 60, 20, 12_000)]
    (line,) = adjustments
    assert (line.adjusts_period, line.adjusts_kind, line.unit_price_cents) == (
        "2025-03",
        "overage",
        15_000,
    )
    assert line.description.startswith("Adjustment to 2025-03: Out-of-scope work")
    april = monthly_invoice(
        ACCOUNT, rate_period(next_period("2025-03"), TZ, [], since(STARTER)), adjustments
    )
    assert april.total_cents == 50_000 + 12_000
    # Once issued, the same recomputation yields nothing more; a further change only its delta.
    assert adjustment_lines(final, march([*EXAMPLE, late]), adjustments) == ()
    later = entry(30, at(2025, 3, 29), ticket=T3, scope="in")
    more = adjustment_lines(final, march([*EXAMPLE, late, later]), adjustments)
    assert summary(more) == [("adjustment", None, 30, 0, 0)]


def test_retriage_to_in_scope_credits_the_customer() -> None:
    final = march(EXAMPLE)
    # T2 is re-triaged in scope: its 135 minutes move from out of scope to in scope.
    retriaged = [replace(e, scope="in") if e.ticket_id == T2 else e for e in EXAMPLE]
    adjustments = adjustment_lines(final, march(retriaged))
    assert sorted(summary(adjustments), key=str) == sorted(
        [
            ("adjustment", None, -30, 20, -6_000),
            ("adjustment", None, -105, 0, 0),
            ("adjustment", None, 135, 0, 0),
        ],
        key=str,
    )
    assert sum(line.amount_cents for line in adjustments) == -6_000


def test_adjustments_ignore_lines_the_final_invoice_carried_for_earlier_periods() -> None:
    carried = InvoiceLine(
        kind="adjustment", description="Adjustment to 2025-02", quantity_minutes=15,
        unit_price_cents=15_000, discount_percent=20, amount_cents=3_000,
        adjusts_period="2025-02", adjusts_kind="overage",
    )  # fmt: skip
    final = replace(march(EXAMPLE), lines=(*march(EXAMPLE).lines, carried))
    assert adjustment_lines(final, march(EXAMPLE)) == ()


def test_adjustments_compare_only_the_same_invoice() -> None:
    final = march(EXAMPLE)
    with pytest.raises(ValueError, match="same invoice"):
        adjustment_lines(final, replace(final, period="2025-04"))


# --- CSV -----------------------------------------------------------------------------------------


def test_invoice_csv_for_accounting_import() -> None:
    text = invoice_csv(march(EXAMPLE), invoice_id="INV-1")
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["line"], r["kind"], r["amount_cents"], r["amount"]) for r in rows] == [
        ("1", "fee", "50000", "500.00"),
        ("2", "overage", "6000", "60.00"),
        ("3", "included", "0", "0.00"),
        ("4", "in_scope", "0", "0.00"),
        ("", "total", "56000", "560.00"),
    ]
    assert {r["invoice_id"] for r in rows} == {"INV-1"}
    assert rows[1]["discount_percent"] == "20"
    assert rows[1]["unit_price_cents"] == "15000"


def test_invoice_csv_quotes_and_defuses_formulas() -> None:
    lines = (
        InvoiceLine(
            kind="adjustment", description='=HYPERLINK("x"), "quoted"', quantity_minutes=-30,
            unit_price_cents=15_000, discount_percent=20, amount_cents=-5, ticket_id=T1,
            adjusts_period="2025-02", adjusts_kind="overage",
        ),
    )  # fmt: skip
    text = invoice_csv(Invoice(ACCOUNT, "2025-03", "USD", lines))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["description"] == '\'=HYPERLINK("x"), "quoted"'
    assert (rows[0]["amount"], rows[1]["amount"]) == ("-0.05", "-0.05")
    assert rows[0]["ticket_id"] == str(T1)
    yen = invoice_csv(Invoice(ACCOUNT, "2025-03", "JPY", (replace(lines[0], amount_cents=1500),)))
    assert next(iter(csv.DictReader(io.StringIO(yen))))["amount"] == "1500"
