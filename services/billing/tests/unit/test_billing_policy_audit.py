"""Audit of billing against the seed policies' own words (quoted; docs/policies.md).

Every expected figure is worked out by hand from the policy text in a comment, in integer
cents, not taken from the code. Seed 000 (cloud platform) publishes the only prices: Hourly
"$150/hour", "Billed in 15-minute increments", "Charged upon completion of service"; Starter
"$500/month", "20% discount off hourly pricing", "5-hours of Out-of-Scope support included per
month"; Pro "$875/month", "30% discount", the same 5 hours. Starter and Pro round in 15-minute
steps too (docs/policies.md worked example: 130 min -> 135).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from helpdesk.billing.domain.book import AccountBook, monthly_key, ticket_key
from helpdesk.billing.domain.fair_use import fair_use_exceedances
from helpdesk.billing.domain.invoices import Invoice, monthly_invoice, ticket_invoice
from helpdesk.billing.domain.rating import PlanVersion, price_cents, rate_period
from helpdesk.billing.domain.usage import period_usage
from services.billing.tests.unit.billing_fixtures import (
    ACCOUNT,
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

HOURLY = preset_plan("cloud_platform", "hourly")
STARTER = preset_plan("cloud_platform", "starter")
PRO = preset_plan("cloud_platform", "pro")


def kinds(invoice: Invoice) -> dict[str, list[tuple[int, int]]]:
    """kind -> [(minutes, amount_cents)] of an invoice's lines, in invoice order."""
    found: dict[str, list[tuple[int, int]]] = {}
    for line in invoice.lines:
        found.setdefault(line.kind, []).append((line.quantity_minutes, line.amount_cents))
    return found


# --- seed 000, Hourly: $150/h in 15-minute increments, per ticket on completion ------------------


@pytest.mark.parametrize(
    ("minutes", "billed", "cents"),
    [
        (1, 15, 3_750),  # 1 -> 15 min; 15/60 × 15000 = 3750
        (14, 15, 3_750),  # 14 -> 15 min
        (15, 15, 3_750),  # already a multiple: 15 min
        (16, 30, 7_500),  # 16 -> 30 min; 30/60 × 15000 = 7500
        (59, 60, 15_000),  # 59 -> 60 min = one hour, $150.00
        (61, 75, 18_750),  # 61 -> 75 min; 75/60 × 15000 = 18750
    ],
)
def test_hourly_entry_rounded_up_to_15_minutes(minutes: int, billed: int, cents: int) -> None:
    entries = [entry(minutes, at(2025, 3, 10), ticket=T1)]
    invoice = ticket_invoice(ACCOUNT, T1, at(2025, 3, 11), TZ, entries, since(HOURLY))
    assert kinds(invoice) == {"time_and_materials": [(billed, cents)]}
    assert invoice.total_cents == cents


def test_hourly_rounds_each_entry_not_the_ticket_total() -> None:
    # "Billed in 15-minute increments": each entry is rounded (docs/policies.md "Each entry is
    # rounded up"). 14 + 16 = 30 raw, but 15 + 30 = 45 min billed: 45/60 × 15000 = 11250.
    entries = [entry(14, at(2025, 3, 10), ticket=T1), entry(16, at(2025, 3, 12), ticket=T1)]
    invoice = ticket_invoice(ACCOUNT, T1, at(2025, 3, 13), TZ, entries, since(HOURLY))
    assert invoice.total_cents == 11_250


def test_hourly_ticket_spanning_months_is_billed_when_resolved() -> None:
    # "Charged upon completion of service": January's 60 min and February's 30 min of out-of-
    # scope work are billed on resolution in February: 90/60 × 15000 = 22500; in-scope 45 min
    # free. January's monthly invoice bills nothing (no fee on the hourly plan).
    entries = [
        entry(60, at(2025, 1, 20), ticket=T1),
        entry(30, at(2025, 2, 3), ticket=T1),
        entry(45, at(2025, 2, 4), ticket=T1, scope="in"),
    ]
    invoice = ticket_invoice(ACCOUNT, T1, at(2025, 2, 5), TZ, entries, since(HOURLY))
    assert invoice.period == "2025-02"
    assert kinds(invoice) == {"time_and_materials": [(90, 22_500)], "in_scope": [(45, 0)]}
    assert invoice.total_cents == 22_500
    january = monthly_invoice(ACCOUNT, rate_period("2025-01", TZ, entries, since(HOURLY)))
    assert january.total_cents == 0


def test_hourly_month_without_work_bills_nothing() -> None:
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, [], since(HOURLY)))
    assert (invoice.lines, invoice.total_cents) == ((), 0)


# --- seed 000, Starter / Pro: fee, 5 h included, overage at the discounted rate ------------------


def test_starter_allowance_exhausted_by_rounding_then_next_entry_is_overage() -> None:
    # 290 min -> 300 (rounded up to 15): the whole 5 h allowance. 14 min -> 15: all overage at
    # $150 less 20 % = $120/h: 15/60 × 12000 = 3000. Invoice 50000 + 3000 = 53000.
    entries = [entry(290, at(2025, 3, 3), ticket=T1), entry(14, at(2025, 3, 4), ticket=T2)]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, since(STARTER)))
    assert kinds(invoice) == {
        "fee": [(0, 50_000)],
        "overage": [(15, 3_000)],
        "included": [(300, 0)],
    }
    assert invoice.total_cents == 53_000


def test_starter_entry_crossing_the_allowance_after_rounding() -> None:
    # 285 min (a multiple of 15) leaves 15 included minutes; 16 min -> 30 min: 15 included,
    # 15 overage at $120/h = 3000. Invoice 50000 + 3000 = 53000.
    entries = [entry(285, at(2025, 3, 3), ticket=T1), entry(16, at(2025, 3, 4), ticket=T2)]
    rating = rate_period("2025-03", TZ, entries, since(STARTER))
    assert monthly_invoice(ACCOUNT, rating).total_cents == 53_000
    usage = period_usage(rating)
    assert (usage.included_used_minutes, usage.billable_minutes) == (300, 15)


def test_starter_exactly_five_hours_is_all_included() -> None:
    # 300 min out of scope = the 5 h included: no overage, invoice = the fee, 50000.
    entries = [entry(150, at(2025, 3, 3), ticket=T1), entry(150, at(2025, 3, 4), ticket=T2)]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, since(STARTER)))
    assert invoice.total_cents == 50_000
    assert "overage" not in kinds(invoice)


def test_pro_smallest_overage_is_one_increment_at_105_an_hour() -> None:
    # Pro: 5 h included, then $150 less 30 % = $105/h. 1 min beyond -> 15 min:
    # 15/60 × 10500 = 2625. Invoice 87500 + 2625 = 90125.
    entries = [entry(300, at(2025, 6, 2), ticket=T1), entry(1, at(2025, 6, 3), ticket=T2)]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-06", TZ, entries, since(PRO, "Pro")))
    assert kinds(invoice)["overage"] == [(15, 2_625)]
    assert invoice.total_cents == 90_125


def test_in_scope_work_is_free_on_every_seed_000_plan() -> None:
    # "Free In-Scope Support" on Hourly, Starter and Pro: 600 min in scope cost nothing beyond
    # the plan's fee (0, 50000, 87500).
    entries = [entry(600, at(2025, 3, 3), ticket=T1, scope="in")]
    for plan, fee in ((HOURLY, 0), (STARTER, 50_000), (PRO, 87_500)):
        invoice = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, since(plan)))
        assert invoice.total_cents == fee
    hourly = ticket_invoice(ACCOUNT, T1, at(2025, 3, 4), TZ, entries, since(HOURLY))
    assert hourly.total_cents == 0


def test_starter_month_without_work_bills_the_fee_only() -> None:
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, [], since(STARTER)))
    assert kinds(invoice) == {"fee": [(0, 50_000)]}


# --- periods are the account's local months ------------------------------------------------------


def test_allowance_resets_at_the_local_month_boundary_not_utc() -> None:
    # New York account. 300 min at 23:30 on 31 March local (04:30 UTC on 1 April) use March's
    # 5 h; April's 60 min are within April's fresh 5 h: April invoice = 50000, no overage.
    # Counted by UTC month, April would have 360 min: 60 min overage = 12000.
    entries = [
        entry(300, at(2025, 3, 31, 23, 30), ticket=T1),
        entry(60, at(2025, 4, 1, 10), ticket=T2),
    ]
    plans = since(STARTER)
    march = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, plans))
    april = monthly_invoice(ACCOUNT, rate_period("2025-04", TZ, entries, plans))
    assert (march.total_cents, april.total_cents) == (50_000, 50_000)
    assert kinds(april)["included"] == [(60, 0)]


def test_account_east_of_utc_month_starts_before_utc_midnight() -> None:
    # Asia/Tokyo (UTC+9): 15:30 UTC on 31 March is 00:30 on 1 April in Tokyo -> April's.
    worked = datetime(2025, 3, 31, 15, 30, tzinfo=UTC)
    entries = [entry(60, worked, ticket=T1)]
    plans = since(STARTER)
    assert rate_period("2025-03", "Asia/Tokyo", entries, plans).pieces == ()
    april = rate_period("2025-04", "Asia/Tokyo", entries, plans)
    assert [(p.treatment, p.minutes) for p in april.pieces] == [("included", 60)]


# --- the monthly fee -----------------------------------------------------------------------------


def test_agreement_recorded_after_the_work_still_bills_that_months_fee() -> None:
    # docs/policies.md worked example: "$500.00 + $60.00 = $560.00". The Starter agreement is
    # recorded on 20 April (no earlier version), the March work is imported afterwards and is
    # rated under it (20 % off, 5 h included), so March is a Starter month: its fee is $500.00,
    # not nothing. April, the month the agreement was recorded in, is a whole Starter month too.
    plans = since(STARTER, "Starter", at(2025, 4, 20, 9))
    entries = [
        entry(195, at(2025, 3, 3), ticket=T1),
        entry(130, at(2025, 3, 10), ticket=T2),
        entry(90, at(2025, 3, 12), ticket=T3, scope="in"),
    ]
    march = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, entries, plans))
    assert kinds(march)["fee"] == [(0, 50_000)]
    assert march.total_cents == 56_000
    april = monthly_invoice(ACCOUNT, rate_period("2025-04", TZ, entries, plans))
    assert april.total_cents == 50_000


def test_a_new_agreement_version_with_the_same_plan_does_not_split_the_fee() -> None:
    # The agreement is versioned for any change (an SLA edit, a calendar): the plan stays
    # Starter at $500/month. March has 31 days; versions from the 7th and the 15th split it
    # 6/8/17 days, and three rounded shares would be 50000×6/31 = 9677.42 -> 9677,
    # 50000×8/31 = 12903.23 -> 12903, 50000×17/31 = 27419.35 -> 27419: 49999, a cent short.
    # The fee is one $500.00 line.
    plans = [
        PlanVersion(at(2024, 1, 1, 0), STARTER, "Starter"),
        PlanVersion(at(2025, 3, 7, 9), STARTER, "Starter"),
        PlanVersion(at(2025, 3, 15, 9), STARTER, "Starter"),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-03", TZ, [], plans))
    assert kinds(invoice) == {"fee": [(0, 50_000)]}
    assert invoice.lines[0].description == "Monthly fee (Starter)"


def test_upgrade_to_pro_mid_term_prorates_by_local_day() -> None:
    # "option to upgrade to Pro mid-term". June has 30 days; Pro from 21 June 00:00 local:
    # Starter 20 days = 50000 × 20/30 = 33333.33 -> 33333; Pro 10 days = 87500 × 10/30 =
    # 29166.67 -> 29167. Work: 300 min on 5 June (Starter's 5 h), 60 min on 25 June under Pro:
    # the allowance is 5 h a month whatever the plan, so 60 min overage at $105/h = 10500.
    plans = [
        PlanVersion(at(2024, 1, 1, 0), STARTER, "Starter"),
        PlanVersion(at(2025, 6, 21, 0), PRO, "Pro"),
    ]
    entries = [entry(300, at(2025, 6, 5), ticket=T1), entry(60, at(2025, 6, 25), ticket=T2)]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-06", TZ, entries, plans))
    assert kinds(invoice)["fee"] == [(0, 33_333), (0, 29_167)]
    assert kinds(invoice)["overage"] == [(60, 10_500)]
    assert invoice.total_cents == 33_333 + 29_167 + 10_500


# --- money: whole cents, halves rounded up -------------------------------------------------------


def test_half_cents_round_up_not_to_even() -> None:
    # No seed names a rounding rule; invoices round half up (banker's would give 2 and 12).
    # 1 min at 150 ¢/h = 2.5 ¢ -> 3 ¢; 5 min at 150 ¢/h = 12.5 ¢ -> 13 ¢.
    assert price_cents(1, 150, 0) == 3
    assert price_cents(5, 150, 0) == 13
    # 15 min at $150/h less 30 % = 2625 ¢ exactly: no rounding at the published prices.
    assert price_cents(15, 15_000, 30) == 2_625


# --- seed 002: after hours is an extra-cost add-on; fair use caps raise, never drop --------------


def test_fair_use_thirty_minutes_a_day_is_within_thirty_one_is_over() -> None:
    # "Up to 30 mins of remote service per day": 15 + 15 = 30 on one day is fair use; one more
    # minute (on another ticket, so only the day cap is concerned) is over by 1.
    caps = preset_fair_use("small_business_remote")
    within = [
        entry(15, at(2025, 2, 3, 9), scope="in", ticket=T1),
        entry(15, at(2025, 2, 3, 11), scope="in", ticket=T2),
    ]
    assert fair_use_exceedances(within, caps, TZ) == ()
    over = [*within, entry(1, at(2025, 2, 3, 15), scope="in", ticket=T3)]
    (found,) = fair_use_exceedances(over, caps, TZ)
    assert (found.cap, found.used_minutes, found.excess_minutes) == ("per_day", 31, 1)
    # On-site work is not "remote service": it does not count.
    onsite = [*within, entry(60, at(2025, 2, 3, 15), scope="in", ticket=T3, work_type="onsite")]
    assert fair_use_exceedances(onsite, caps, TZ) == ()


def test_small_business_after_hours_entry_billed_in_increments() -> None:
    # After hours is "an add-on ... at an extra cost": billed at the preset's $150/h.
    # 16 min after hours -> 30 min: 7500; in-hours in-scope work free; no fee (none named).
    plans = since(preset_plan("small_business_remote"))
    entries = [
        entry(16, at(2025, 2, 4, 19), scope="in", ticket=T1, after_hours=True),
        entry(25, at(2025, 2, 4, 10), scope="in", ticket=T2),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, plans))
    assert kinds(invoice) == {"after_hours": [(30, 7_500)], "in_scope": [(30, 0)]}
    assert invoice.total_cents == 7_500


# --- seed 004: the fee covers incidents (on-site too); exclusions are billed ---------------------


def test_managed_after_hours_incident_is_billed_and_onsite_incident_is_covered() -> None:
    # "Onsite support when needed" is in the fee: 240 min on site free. "After-hours incident
    # response" is excluded: 50 min -> 60 min at $150/h = 15000. "Service requests": 20 min ->
    # 30 min = 7500. Fee 250000 (the account's budget). Total 250000 + 15000 + 7500 = 272500.
    plans = since(preset_plan("managed_budget", monthly_fee_cents=250_000))
    entries = [
        entry(240, at(2025, 2, 3), kind="incident", scope="in", ticket=T1, work_type="onsite"),
        entry(50, at(2025, 2, 3, 21), kind="incident", scope="in", ticket=T1, after_hours=True),
        entry(20, at(2025, 2, 5), kind="service_request", scope="out", ticket=T2),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, plans))
    assert kinds(invoice) == {
        "fee": [(0, 250_000)],
        "time_and_materials": [(30, 7_500)],
        "after_hours": [(60, 15_000)],
        "in_scope": [(240, 0)],
    }
    assert invoice.total_cents == 272_500


# --- seed 003: no prices; out-of-scope work at the preset's $150/h -------------------------------


def test_four_tier_out_of_scope_billed_in_scope_free() -> None:
    # Seed 003 names no price; the preset has no fee and bills out-of-scope time at $150/h in
    # 15-minute steps with nothing included: 16 min -> 30 min = 7500; 120 min in scope free.
    plans = since(preset_plan("four_tier_24x7"))
    entries = [
        entry(16, at(2025, 2, 3), scope="out", ticket=T1),
        entry(120, at(2025, 2, 4), scope="in", ticket=T2),
    ]
    invoice = monthly_invoice(ACCOUNT, rate_period("2025-02", TZ, entries, plans))
    assert invoice.total_cents == 7_500
    assert kinds(invoice)["overage"] == [(30, 7_500)]


# --- a plan change with hourly work still open ---------------------------------------------------


def test_hourly_work_on_a_ticket_resolved_after_moving_to_starter_is_still_billed() -> None:
    # Hourly until 15 March, Starter from then on. T1 had 60 min of out-of-scope work on 10 March
    # under Hourly ($150/h, "Charged upon completion of service") and is resolved on 20 March,
    # under Starter. Those 60 min are not on the Starter invoice (they were not Starter work), so
    # they must be on T1's own invoice: 60/60 × 15000 = 15000. March's monthly invoice: Starter
    # from the 15th, 17 of 31 days: 50000 × 17/31 = 27419.35 -> 27419, and T1's 30 min on
    # 18 March within Starter's 5 h (included, 0).
    plans = (
        PlanVersion(at(2024, 1, 1, 0), HOURLY, "Hourly"),
        PlanVersion(at(2025, 3, 15, 0), STARTER, "Starter"),
    )
    book = AccountBook(
        ACCOUNT,
        TZ,
        plans,
        entries=(entry(60, at(2025, 3, 10), ticket=T1), entry(30, at(2025, 3, 18), ticket=T1)),
        resolved={T1: at(2025, 3, 20)},
    )
    drafts = book.drafts("2025-03")
    assert ticket_key(T1) in drafts
    assert book.invoice(ticket_key(T1)).total_cents == 15_000
    assert book.invoice(monthly_key("2025-03")).total_cents == 27_419
    assert sum(book.invoice(key).total_cents for key in drafts) == 15_000 + 27_419


def test_entry_logged_with_another_offset_counts_in_the_accounts_month() -> None:
    # A technician in Amsterdam logs 05:00 +02:00 on 1 April = 23:00 on 31 March in New York:
    # March's for the New York account. 30 min on Hourly: 30/60 × 15000 = 7500 on T1's invoice.
    worked = datetime.fromisoformat("2025-04-01T05:00:00+02:00")
    entries = [entry(30, worked, ticket=T1)]
    assert [p.minutes for p in rate_period("2025-03", TZ, entries, since(STARTER)).pieces] == [30]
    assert rate_period("2025-04", TZ, entries, since(STARTER)).pieces == ()
    invoice = ticket_invoice(ACCOUNT, T1, worked, TZ, entries, since(HOURLY))
    assert (invoice.period, invoice.total_cents) == ("2025-03", 7_500)
