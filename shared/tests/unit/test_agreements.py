"""Unit tests of the agreement contract: models, presets, overrides and error reporting."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from helpdesk.shared.agreements import (
    PRIORITIES,
    WEEKDAYS,
    Agreement,
    Calendar,
    Preset,
    Priority,
    agreement_errors,
    clock_minutes,
    deep_merge,
    get_preset,
    list_presets,
    preset_names,
    resolve_agreement,
)

pytestmark = pytest.mark.unit

# The suite runs beside other services' tests on shared machines: timing is not what is tested.
_patient = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRESET_NAMES = [
    "cloud_platform",
    "partner_reseller",
    "small_business_remote",
    "four_tier_24x7",
    "managed_budget",
]


def _preset(name: str) -> Preset:
    preset = get_preset(name)
    assert preset is not None
    return preset


def _operator_terms(name: str) -> dict[str, Any]:
    """The body parts a preset leaves to the operator, filled with the preset's own values."""
    base = _preset(name).agreement.model_dump(mode="json")
    terms: dict[str, Any] = {}
    for path in _preset(name).operator_must_set:
        *parents, leaf = path.split(".")
        source, target = base, terms
        for key in parents:
            source, target = source[key], target.setdefault(key, {})
        target[leaf] = source[leaf]
    return terms


def _fields(preset: str | None, overrides: dict[str, Any]) -> list[str]:
    """The field paths `resolve_agreement` refuses, in order."""
    with pytest.raises(ValidationError) as info:
        resolve_agreement(preset, overrides)
    return [e["field"] for e in agreement_errors(info.value)]


def _minimal() -> dict[str, Any]:
    """A small complete agreement body without a preset."""
    target = {"response_minutes": 60, "resolution_minutes": 240, "calendar": "office"}
    return {
        "calendars": {
            "office": {
                "timezone": "Europe/Amsterdam",
                "weekly": [{"day": d, "start": "09:00", "end": "17:00"} for d in WEEKDAYS[:5]],
                "holidays": [{"date": "2025-12-26"}, {"month": 12, "day": 25, "yearly": True}],
            }
        },
        "targets": {p: dict(target) for p in PRIORITIES},
        "plan": {"kind": "hourly", "currency": "EUR", "hourly_rate_cents": 9000},
    }


# --- presets -----------------------------------------------------------------------------------


def test_one_preset_per_seed_in_seed_order() -> None:
    presets = list_presets()
    assert [p.name for p in presets] == PRESET_NAMES == preset_names()
    assert [p.seed for p in presets] == ["000", "001", "002", "003", "004"]
    for preset in presets:
        assert preset.agreement.preset == preset.name
        assert preset.title
        assert f"seed {preset.seed}" in preset.description


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_round_trips_through_json(name: str) -> None:
    preset = _preset(name)
    assert Preset.model_validate_json(preset.model_dump_json()) == preset
    agreement = preset.agreement
    assert Agreement.model_validate_json(agreement.model_dump_json()) == agreement
    # Events are JSON on Kafka; consumers parse with json.loads then validate.
    assert Agreement.model_validate(json.loads(agreement.model_dump_json())) == agreement


@_patient
@given(name=st.sampled_from(PRESET_NAMES))
def test_resolving_a_preset_without_overrides_gives_its_agreement(name: str) -> None:
    terms = _operator_terms(name)
    assert resolve_agreement(name, terms) == _preset(name).agreement
    assert resolve_agreement(None, {"preset": name, **terms}) == _preset(name).agreement
    if not terms:
        assert resolve_agreement(name, None) == _preset(name).agreement


def test_presets_are_copies() -> None:
    first = list_presets()[0]
    first.agreement.calendars.clear()
    assert list_presets()[0].agreement.calendars


def test_every_preset_has_all_priorities_on_a_known_calendar() -> None:
    for preset in list_presets():
        for priority in PRIORITIES:
            assert preset.agreement.calendar_for(priority) is not None


def test_four_tier_24x7_follows_seed_003() -> None:
    agreement = _preset("four_tier_24x7").agreement
    figures = {
        p: (t.response_minutes, t.resolution_minutes, t.calendar)
        for p, t in agreement.targets.items()
    }
    assert figures == {
        "P1": (60, 120, "24x7"),
        "P2": (120, 240, "24x7"),
        "P3": (1440, 2880, "24x7"),
        "P4": (2880, 5760, "24x7"),
    }
    assert agreement.calendars["24x7"].is_24x7
    assert all(agreement.calendars["24x7"].intervals_on(day) == [(0, 1440)] for day in WEEKDAYS)
    assert agreement.availability_targets == {
        "network": 99.99,
        "cloud": 99.0,
        "operational": 99.0,
        "voice": 99.99,
    }
    assert agreement.follow_up is not None
    assert agreement.follow_up.after_minutes == [1440, 2880, 4320]
    assert agreement.follow_up.max_unanswered == 3
    assert agreement.warning_share == 0.75


def test_cloud_platform_follows_seed_000() -> None:
    preset = _preset("cloud_platform")
    assert preset.default_plan_variant == "starter"
    assert set(preset.plan_variants) == {"hourly", "starter", "pro"}
    hourly = preset.plan_variants["hourly"].plan
    starter = preset.plan_variants["starter"].plan
    pro = preset.plan_variants["pro"].plan
    assert (hourly.kind, hourly.hourly_rate_cents, hourly.increment_minutes) == (
        "hourly",
        15000,
        15,
    )
    assert (hourly.monthly_fee_cents, hourly.discount_percent, hourly.included_minutes) == (0, 0, 0)
    assert (starter.kind, starter.monthly_fee_cents) == ("monthly", 50000)
    assert (starter.discount_percent, starter.included_minutes) == (20, 300)
    assert (pro.kind, pro.monthly_fee_cents) == ("monthly", 87500)
    assert (pro.discount_percent, pro.included_minutes, pro.designated_engineer) == (30, 300, True)
    assert {p.currency for p in (hourly, starter, pro)} == {"USD"}
    # docs/policies.md worked example: Starter overage 30 min at $120/h is $60.00.
    discounted = starter.hourly_rate_cents * (100 - starter.discount_percent) // 100
    assert discounted == 12000
    assert 30 * discounted // 60 == 6000

    agreement = preset.agreement
    assert agreement.plan_variant == "starter"
    assert agreement.plan == starter
    responses = {p: t.response_minutes for p, t in agreement.targets.items()}
    assert responses == {"P1": 240, "P2": 720, "P3": 2400, "P4": 2400}
    assert all(t.resolution_minutes is None for _, t in agreement.targets.items())
    assert agreement.calendars[agreement.targets.P1.calendar].is_24x7
    assert agreement.scope_catalogue.scope_of("portal") == "in"
    assert agreement.scope_catalogue.scope_of("storage_data_migration") == "out"
    assert agreement.scope_catalogue.scope_of("third_party_applications") == "unsupported"


@pytest.mark.parametrize(
    ("variant", "kind", "fee", "discount"),
    [("hourly", "hourly", 0, 0), ("starter", "monthly", 50000, 20), ("pro", "monthly", 87500, 30)],
)
def test_cloud_platform_variant_is_chosen_by_plan_variant(
    variant: str, kind: str, fee: int, discount: int
) -> None:
    agreement = resolve_agreement("cloud_platform", {"plan_variant": variant})
    assert agreement.plan_variant == variant
    assert (agreement.plan.kind, agreement.plan.monthly_fee_cents) == (kind, fee)
    assert agreement.plan.discount_percent == discount
    assert agreement.plan.hourly_rate_cents == 15000


def test_variant_replaces_the_whole_plan_and_overrides_still_apply() -> None:
    hourly = resolve_agreement("cloud_platform", {"plan_variant": "hourly"})
    # Nothing of the default Starter plan leaks into Hourly.
    assert hourly.plan.included_minutes == 0
    pro = resolve_agreement(
        "cloud_platform", {"plan_variant": "pro", "plan": {"monthly_fee_cents": 80000}}
    )
    assert pro.plan.monthly_fee_cents == 80000
    assert pro.plan.discount_percent == 30


def test_partner_reseller_follows_seed_001() -> None:
    agreement = _preset("partner_reseller").agreement
    calendar = agreement.calendars["business_hours"]
    assert [day for day in WEEKDAYS if calendar.intervals_on(day)] == list(WEEKDAYS[:5])
    assert calendar.intervals_on("mon") == [(540, 1020)]
    # 24 business hours = three 8-hour business days.
    for _, target in agreement.targets.items():
        assert (target.response_minutes, target.calendar) == (1440, "business_hours")
        assert target.response_minutes == 3 * 8 * 60
    assert agreement.escalation_targets is not None
    engineering = agreement.escalation_targets["engineering"]
    assert (engineering.response_minutes, engineering.calendar) == (4320, "business_hours")
    assert not engineering.pause_clocks
    assert agreement.escalation_targets["vendor"].pause_clocks
    assert agreement.required_fields.on_open == [
        "partner_domain",
        "customer_name",
        "customer_domain",
        "details",
        "steps_taken",
    ]
    # "Steps taken to replicate and resolve the issue, and any error messages associated":
    # error messages only where there are some.
    assert "error_messages" not in agreement.required_fields.on_open
    assert agreement.partner_rules is not None
    assert agreement.partner_rules.excessive_escalation_threshold == 5
    assert agreement.partner_rules.window_days == 30
    assert agreement.partner_rules.margin_restore_days == 184


def test_partner_reseller_margin_must_be_set_by_the_operator() -> None:
    """Seed 001: partners with excessive escalations "will have their accounts reverted to a full
    price account (AKA 0% margin)". The margin is the partner's contract term: a PUT of the
    preset without plan.discount_percent is refused, naming the field and why; 0 is accepted."""
    assert _preset("partner_reseller").operator_must_set.keys() == {"plan.discount_percent"}
    with pytest.raises(ValidationError) as info:
        resolve_agreement("partner_reseller", {"plan": {"currency": "USD"}})
    [error] = agreement_errors(info.value)
    assert error["field"] == "plan.discount_percent"
    assert "margin" in error["reason"]
    assert "changes no invoice" in error["reason"]
    assert _fields(None, {"preset": "partner_reseller"}) == ["plan.discount_percent"]
    assert _fields("partner_reseller", {"plan": {"discount_percent": None}}) == [
        "plan.discount_percent"
    ]
    margin = resolve_agreement("partner_reseller", {"plan": {"discount_percent": 20}})
    assert margin.plan.discount_percent == 20
    assert resolve_agreement("partner_reseller", {"plan": {"discount_percent": 0}}).plan == (
        _preset("partner_reseller").agreement.plan
    )
    # Presets whose seeds leave nothing unknowable resolve from their name alone.
    assert [p.name for p in list_presets() if p.operator_must_set] == ["partner_reseller"]


def test_partner_reseller_time_zone_is_overridable() -> None:
    agreement = resolve_agreement(
        "partner_reseller",
        {
            "calendars": {"business_hours": {"timezone": "Europe/Amsterdam"}},
            "plan": {"discount_percent": 20},
        },
    )
    calendar = agreement.calendars["business_hours"]
    assert calendar.timezone == "Europe/Amsterdam"
    assert calendar.zone.key == "Europe/Amsterdam"
    assert (
        calendar.weekly == _preset("partner_reseller").agreement.calendars["business_hours"].weekly
    )


def test_a_presets_business_hours_are_the_accounts_local_hours() -> None:
    local = resolve_agreement("small_business_remote", {}, local_timezone="Europe/Amsterdam")
    assert local.calendars["business_hours"].timezone == "Europe/Amsterdam"
    assert local.calendars["24x7"].timezone == "UTC"  # around the clock: no local day
    # An explicit calendar zone in the body wins over the account's.
    chosen = resolve_agreement(
        "small_business_remote",
        {"calendars": {"business_hours": {"timezone": "Asia/Tokyo"}}},
        local_timezone="Europe/Amsterdam",
    )
    assert chosen.calendars["business_hours"].timezone == "Asia/Tokyo"
    assert resolve_agreement("small_business_remote").calendars["business_hours"].timezone == (
        "America/New_York"
    )


def test_small_business_remote_follows_seed_002() -> None:
    agreement = _preset("small_business_remote").agreement
    calendar = agreement.calendar_for("P1")
    assert calendar.intervals_on("fri") == [(510, 1050)]
    assert calendar.intervals_on("sat") == []
    assert calendar.is_holiday(dt.date(2026, 12, 25))
    assert agreement.target("P1").response_minutes == 60
    # "Non-urgent issues we'll respond within 24 hours": one business day, not 1440 minutes.
    assert {agreement.target(p).response_business_days for p in ("P2", "P3", "P4")} == {1}
    assert {agreement.target(p).response_minutes for p in ("P2", "P3", "P4")} == {None}
    # An account that means 24 business hours switches the unit with a merge patch.
    hours = resolve_agreement(
        "small_business_remote",
        {"targets": {"P3": {"response_minutes": 1440, "response_business_days": None}}},
    )
    assert (hours.target("P3").response_minutes, hours.target("P3").response_business_days) == (
        1440,
        None,
    )
    # "Requests are typically handled first come first serve, but problems impacting more
    # than one user are given priority."
    assert agreement.queue_order == "multi_user_first"
    others = [name for name in PRESET_NAMES if name != "small_business_remote"]
    assert {_preset(name).agreement.queue_order for name in others} == {"deadline"}
    assert agreement.fair_use is not None
    assert agreement.fair_use.per_day_minutes == 30
    assert agreement.fair_use.per_ticket_minutes == 30
    assert agreement.fair_use.work_types == ["remote"]
    assert agreement.plan.after_hours_billable
    # The after-hours add-on is one override away.
    addon = resolve_agreement("small_business_remote", {"targets": {"P1": {"calendar": "24x7"}}})
    assert addon.calendar_for("P1").is_24x7


def test_managed_budget_follows_seed_004() -> None:
    plan = _preset("managed_budget").agreement.plan
    assert plan.kind == "managed"
    assert plan.excluded_kinds == ["service_request", "solution_design"]
    assert plan.after_hours_billable
    assert plan.flat_fees is None
    assert plan.review_every_months == 3
    with_fees = resolve_agreement(
        "managed_budget", {"plan": {"flat_fees": {"solution_design": 250000}}}
    )
    assert with_fees.plan.flat_fees == {"solution_design": 250000}


def test_managed_budget_promises_no_response_times_and_keeps_business_hours() -> None:
    """Seed 004 names no response time ('Restoring services as quickly as feasible ... is the
    goal'): no targets. Its business hours stay, for 'After-hours incident response'."""
    preset = _preset("managed_budget")
    agreement = preset.agreement
    for _, target in agreement.targets.items():
        assert (target.response_minutes, target.resolution_minutes) == (None, None)
        assert target.calendar == "business_hours"
    assert agreement.calendars["business_hours"].intervals_on("mon") == [(540, 1020)]
    assert "no targets" in preset.description
    # A contract that names response times sets them.
    named = resolve_agreement("managed_budget", {"targets": {"P1": {"response_minutes": 60}}})
    assert named.target("P1").response_minutes == 60


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_only_seed_003_closes_unanswered_tickets(name: str) -> None:
    """Seed 003 § 4.2.2: 'We will close a ticket if you do not respond to repeated inquires
    (3+)'. No other seed describes closing unanswered tickets: their presets send no
    reminders and close nothing, and their descriptions say so."""
    preset = _preset(name)
    if preset.seed == "003":
        assert preset.agreement.follow_up is not None
        assert preset.agreement.follow_up.max_unanswered == 3
    else:
        assert preset.agreement.follow_up is None
        assert "no follow-ups and no automatic close" in preset.description


@pytest.mark.parametrize("name", ["partner_reseller", "small_business_remote", "managed_budget"])
def test_business_hours_presets_close_on_the_accounts_public_holidays(name: str) -> None:
    """Seed 002: '... and excluding holidays'. The presets' business hours close on the
    public holidays of the account's country (US by default), observed days included."""
    calendar = _preset(name).agreement.calendars["business_hours"]
    assert (calendar.country, calendar.subdivision, calendar.holidays) == ("US", None, [])
    assert calendar.holiday_names(dt.date(2026, 11, 26)) == ["Thanksgiving Day"]
    # 4 July 2026 is a Saturday, observed on Friday 3 July.
    assert calendar.is_holiday(dt.date(2026, 7, 3))
    assert not calendar.is_holiday(dt.date(2026, 7, 6))
    assert not calendar.is_24x7
    # The account's country replaces the US holidays; an explicit country in the body wins.
    local = resolve_agreement(name, _operator_terms(name), local_country="GB").calendars[
        "business_hours"
    ]
    assert local.country == "GB"
    assert not local.is_holiday(dt.date(2026, 11, 26))
    assert local.is_holiday(dt.date(2026, 12, 28))  # Boxing Day (Sat 26) observed Monday
    chosen = resolve_agreement(
        name,
        {"calendars": {"business_hours": {"country": "DE"}}, **_operator_terms(name)},
        local_country="GB",
    )
    assert chosen.calendars["business_hours"].country == "DE"


def test_holidays_between_lists_what_the_calendar_resolved_to() -> None:
    calendar = resolve_agreement(
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
    ).calendars["business_hours"]
    days = dict(calendar.holidays_between(dt.date(2026, 10, 1), dt.date(2026, 12, 31)))
    assert days == {
        dt.date(2026, 11, 3): "Election Day",
        dt.date(2026, 11, 26): "Thanksgiving Day",
        dt.date(2026, 12, 24): "Christmas Eve",
        dt.date(2026, 12, 25): "Christmas Day",
    }


@pytest.mark.parametrize(
    ("calendar", "field"),
    [
        ({"country": "XX"}, "calendars.office.country"),
        ({"country": "us"}, "calendars.office.country"),
        ({"subdivision": "NY"}, "calendars.office.subdivision"),
        ({"country": "US", "subdivision": "ZZ"}, "calendars.office.subdivision"),
        ({"removed_holidays": [{}]}, "calendars.office.removed_holidays.0.date"),
        (
            {"removed_holidays": [{"date": "2026-11-11", "name": "Veterans Day"}]},
            "calendars.office.removed_holidays.0.date",
        ),
    ],
)
def test_a_calendars_country_and_removals_are_checked(calendar: dict[str, Any], field: str) -> None:
    body = _minimal()
    body["calendars"]["office"].update(calendar)
    assert _fields(None, body) == [field]


def test_the_end_user_support_plan_moves_end_users_into_scope() -> None:
    """Seed 001: 'Unless signed up for a LogicCloud IT partner end-user support plan, any
    end-customer calls ... will be directed back to the partner.'"""
    without = _preset("partner_reseller").agreement
    assert without.partner_rules is not None
    assert not without.partner_rules.end_user_support_plan
    assert without.scope_catalogue.scope_of("end_user_support") == "unsupported"
    plan = resolve_agreement(
        "partner_reseller",
        {"partner_rules": {"end_user_support_plan": True}, **_operator_terms("partner_reseller")},
    )
    for category in ("end_user_support", "end_user_devices", "end_user_portals"):
        assert plan.scope_catalogue.scope_of(category) == "in"
    assert plan.scope_catalogue.unsupported == []


# --- refusals, each with its field path -------------------------------------------------------


def _weekly(*intervals: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "calendars": {
            "office": {"weekly": [{"day": d, "start": s, "end": e} for d, s, e in intervals]}
        }
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param(_weekly(), "calendars.office.weekly", id="week-without-open-time"),
        pytest.param(
            _weekly(("mon", "10:00", "09:00")),
            "calendars.office.weekly.0.end",
            id="start-after-end",
        ),
        pytest.param(
            _weekly(("mon", "09:00", "09:00")),
            "calendars.office.weekly.0.end",
            id="start-equals-end",
        ),
        pytest.param(
            _weekly(("mon", "24:00", "24:00")), "calendars.office.weekly.0.start", id="start-24"
        ),
        pytest.param(
            _weekly(("mon", "09:00", "24:30")), "calendars.office.weekly.0.end", id="end-past-24"
        ),
        pytest.param(
            _weekly(("mon", "9:00", "17:00")), "calendars.office.weekly.0.start", id="not-hh-mm"
        ),
        pytest.param(
            _weekly(("xyz", "09:00", "17:00")), "calendars.office.weekly.0.day", id="bad-day"
        ),
        pytest.param(
            _weekly(
                ("mon", "09:00", "12:00"), ("tue", "08:00", "18:00"), ("mon", "11:59", "17:00")
            ),
            "calendars.office.weekly",
            id="overlap",
        ),
        pytest.param(
            _weekly(("mon", "09:00", "12:00"), ("mon", "09:00", "12:00")),
            "calendars.office.weekly",
            id="duplicate-interval",
        ),
        pytest.param(
            {"calendars": {"office": {"timezone": "Mars/Olympus_Mons"}}},
            "calendars.office.timezone",
            id="unknown-timezone",
        ),
        pytest.param(
            {"calendars": {"office": {"timezone": "../etc/passwd"}}},
            "calendars.office.timezone",
            id="malformed-timezone",
        ),
        pytest.param(
            {"calendars": {"office": {"timezone": "America"}}},
            "calendars.office.timezone",
            id="timezone-directory",
        ),
        pytest.param(
            {"calendars": {"office": {"holidays": [{"month": 2, "day": 30, "yearly": True}]}}},
            "calendars.office.holidays.0.day",
            id="february-30-yearly",
        ),
        pytest.param(
            {"calendars": {"office": {"holidays": [{"month": 4, "day": 31}]}}},
            "calendars.office.holidays.0.day",
            id="april-31-yearly",
        ),
        pytest.param(
            {"calendars": {"office": {"holidays": [{"month": 13, "day": 1, "yearly": True}]}}},
            "calendars.office.holidays.0.month",
            id="month-13",
        ),
        pytest.param(
            {"calendars": {"office": {"holidays": [{"date": "2025-02-30"}]}}},
            "calendars.office.holidays.0.date",
            id="february-30-one-off",
        ),
        pytest.param(
            {"calendars": {"office": {"holidays": [{"month": 1, "day": 1, "yearly": False}]}}},
            "calendars.office.holidays.0.yearly",
            id="yearly-false",
        ),
        pytest.param(
            {"targets": {"P1": {"calendar": "weekend"}}},
            "targets.P1.calendar",
            id="unknown-calendar",
        ),
        pytest.param({"calendars": {"office": None}}, "calendars", id="no-calendars"),
        pytest.param({"targets": {"P4": None}}, "targets.P4", id="missing-priority"),
        pytest.param({"targets": {"P5": {}}}, "targets.P5", id="unknown-priority"),
        pytest.param(
            {"targets": {"P2": {"response_minutes": -5}}},
            "targets.P2.response_minutes",
            id="negative-response",
        ),
        pytest.param(
            {"targets": {"P2": {"response_minutes": 0}}},
            "targets.P2.response_minutes",
            id="zero-response",
        ),
        pytest.param(
            {"targets": {"P3": {"resolution_minutes": -1}}},
            "targets.P3.resolution_minutes",
            id="negative-resolution",
        ),
        pytest.param(
            {"targets": {"P1": {"resolution_minutes": 30}}},
            "targets.P1.resolution_minutes",
            id="resolution-before-response",
        ),
        pytest.param(
            {"targets": {"P1": {"response_minutes": "60"}}},
            "targets.P1.response_minutes",
            id="minutes-as-string",
        ),
        pytest.param(
            {"targets": {"P1": {"response_minutes": 60.5}}},
            "targets.P1.response_minutes",
            id="fractional-minutes",
        ),
        pytest.param(
            {"plan": {"discount_percent": 101}}, "plan.discount_percent", id="discount-101"
        ),
        pytest.param(
            {"plan": {"discount_percent": -1}}, "plan.discount_percent", id="discount-neg"
        ),
        pytest.param(
            {"plan": {"increment_minutes": 0}}, "plan.increment_minutes", id="increment-0"
        ),
        pytest.param(
            {"plan": {"included_minutes": -30}}, "plan.included_minutes", id="included-neg"
        ),
        pytest.param({"plan": {"hourly_rate_cents": -1}}, "plan.hourly_rate_cents", id="rate-neg"),
        pytest.param(
            {"plan": {"hourly_rate_cents": 0}}, "plan.hourly_rate_cents", id="hourly-free"
        ),
        pytest.param(
            {"plan": {"hourly_rate_cents": "150"}}, "plan.hourly_rate_cents", id="cents-str"
        ),
        pytest.param(
            {"plan": {"hourly_rate_cents": True}}, "plan.hourly_rate_cents", id="cents-bool"
        ),
        pytest.param({"plan": {"currency": "usd"}}, "plan.currency", id="currency-lowercase"),
        pytest.param({"plan": {"currency": "DOLLAR"}}, "plan.currency", id="currency-long"),
        pytest.param({"plan": {"kind": "yearly"}}, "plan.kind", id="plan-kind"),
        pytest.param(
            {"plan": {"excluded_kinds": ["incident", "incident"]}},
            "plan.excluded_kinds",
            id="excluded-twice",
        ),
        pytest.param(
            {"plan": {"excluded_kinds": ["warranty"]}}, "plan.excluded_kinds.0", id="unknown-kind"
        ),
        pytest.param(
            {"plan": {"flat_fees": {"incident": -100}}},
            "plan.flat_fees.incident",
            id="flat-fee-neg",
        ),
        pytest.param(
            {"plan": {"flat_fees": {"lunch": 100}}}, "plan.flat_fees.lunch", id="flat-fee-kind"
        ),
        pytest.param({"warning_share": 0}, "warning_share", id="warning-0"),
        pytest.param({"warning_share": 1}, "warning_share", id="warning-1"),
        pytest.param({"warning_share": 1.5}, "warning_share", id="warning-above-1"),
        pytest.param({"warning_share": -0.1}, "warning_share", id="warning-negative"),
        pytest.param(
            {"follow_up": {"after_minutes": [1440, -1, 4320]}},
            "follow_up.after_minutes.1",
            id="follow-up-negative",
        ),
        pytest.param(
            {"follow_up": {"after_minutes": [2880, 1440, 4320]}},
            "follow_up.after_minutes",
            id="follow-up-not-increasing",
        ),
        pytest.param(
            {"follow_up": {"after_minutes": [1440], "max_unanswered": 3}},
            "follow_up.max_unanswered",
            id="follow-up-too-few",
        ),
        pytest.param(
            {"fair_use": {"per_day_minutes": -30}},
            "fair_use.per_day_minutes",
            id="fair-use-negative",
        ),
        pytest.param({"fair_use": {}}, "fair_use.per_day_minutes", id="fair-use-without-cap"),
        pytest.param(
            {"fair_use": {"per_day_minutes": 30, "work_types": ["phone"]}},
            "fair_use.work_types.0",
            id="fair-use-work-type",
        ),
        pytest.param(
            {
                "maintenance_windows": [
                    {"start": "2025-03-01T02:00:00+01:00", "end": "2025-03-01T01:00:00Z"}
                ]
            },
            "maintenance_windows.0.end",
            id="window-end-before-start",
        ),
        pytest.param(
            {
                "maintenance_windows": [
                    {"start": "2025-03-01T02:00:00Z", "end": "2025-03-01T02:00:00Z"}
                ]
            },
            "maintenance_windows.0.end",
            id="window-empty",
        ),
        pytest.param(
            {
                "maintenance_windows": [
                    {"start": "2025-03-01T02:00:00", "end": "2025-03-01T04:00:00Z"}
                ]
            },
            "maintenance_windows.0.start",
            id="window-naive",
        ),
        pytest.param(
            {
                "maintenance_windows": [
                    {
                        "start": "2025-03-01T02:00:00Z",
                        "end": "2025-03-01T04:00:00Z",
                        "service_class": "voice",
                    }
                ]
            },
            "maintenance_windows.0.service_class",
            id="window-unknown-class",
        ),
        pytest.param(
            {"availability_targets": {"network": 100.5}},
            "availability_targets.network",
            id="avail-high",
        ),
        pytest.param(
            {"availability_targets": {"network": -1}},
            "availability_targets.network",
            id="avail-neg",
        ),
        pytest.param(
            {"scope_catalogue": {"in_scope": ["portal"], "out_of_scope": ["billing", "portal"]}},
            "scope_catalogue.out_of_scope.1",
            id="category-twice",
        ),
        pytest.param(
            {"required_fields": {"on_open": ["customer_name", "customer_name"]}},
            "required_fields.on_open",
            id="required-field-twice",
        ),
        pytest.param(
            {"escalation_targets": {"engineering": {"response_minutes": 4320, "calendar": "nope"}}},
            "escalation_targets.engineering.calendar",
            id="escalation-unknown-calendar",
        ),
        pytest.param(
            {"escalation_targets": {"engineering": {"response_minutes": 4320}}},
            "escalation_targets.engineering.calendar",
            id="escalation-without-calendar",
        ),
        pytest.param(
            {"escalation_targets": {"sales": {"pause_clocks": True}}},
            "escalation_targets.sales",
            id="escalation-unknown-tier",
        ),
        pytest.param(
            {"partner_rules": {"excessive_escalation_threshold": 0, "window_days": 30}},
            "partner_rules.excessive_escalation_threshold",
            id="partner-threshold-0",
        ),
        pytest.param(
            {"targets": {"P1": {"resolution_minute": 5}}}, "targets.P1.resolution_minute", id="typo"
        ),
        pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
        pytest.param(
            {"targets": {"P2": {"response_business_days": 1}}},
            "targets.P2.response_minutes",
            id="response-in-two-units",
        ),
        pytest.param(
            {"targets": {"P2": {"response_minutes": 60, "response_business_days": 1}}},
            "targets.P2.response_minutes",
            id="response-in-two-units",
        ),
        pytest.param(
            {"targets": {"P2": {"response_minutes": None, "response_business_days": 0}}},
            "targets.P2.response_business_days",
            id="response-zero-days",
        ),
    ],
)
def test_malformed_agreement_is_refused_at_its_field(overrides: dict[str, Any], field: str) -> None:
    # The body is otherwise valid, so the refusal is the one under test.
    assert resolve_agreement(None, _minimal()) is not None
    assert _fields(None, deep_merge(_minimal(), overrides)) == [field]


def test_unknown_preset_is_refused_at_preset() -> None:
    assert _fields("gold_plus", {}) == ["preset"]
    assert _fields(None, {"preset": "gold_plus"}) == ["preset"]
    assert _fields(None, {"preset": 7}) == ["preset"]


def test_body_preset_must_match_requested_preset() -> None:
    assert _fields("managed_budget", {"preset": "cloud_platform"}) == ["preset"]
    assert (
        resolve_agreement("managed_budget", {"preset": "managed_budget"}).preset == "managed_budget"
    )


def test_unknown_plan_variant_is_refused_at_plan_variant() -> None:
    assert _fields("cloud_platform", {"plan_variant": "platinum"}) == ["plan_variant"]
    assert _fields("managed_budget", {"plan_variant": "pro"}) == ["plan_variant"]
    assert _fields(None, {**_minimal(), "plan_variant": "pro"}) == ["plan_variant"]


def test_non_object_body_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        resolve_agreement(None, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert agreement_errors(info.value) == [
        {"field": "", "reason": "the agreement must be a JSON object"}
    ]


def test_empty_body_without_preset_names_every_required_field() -> None:
    assert sorted(_fields(None, {})) == ["calendars", "plan", "targets"]


def test_preset_overrides_report_the_same_paths() -> None:
    assert _fields("four_tier_24x7", {"targets": {"P1": {"calendar": "office"}}}) == [
        "targets.P1.calendar"
    ]
    assert _fields("four_tier_24x7", {"calendars": {"24x7": {"weekly": []}}}) == [
        "calendars.24x7.weekly"
    ]
    assert _fields("cloud_platform", {"plan": {"discount_percent": 120}}) == [
        "plan.discount_percent"
    ]


def test_removing_a_calendar_still_in_use_names_each_target() -> None:
    assert _fields("small_business_remote", {"calendars": {"business_hours": None}}) == [
        "targets.P1.calendar",
        "targets.P2.calendar",
        "targets.P3.calendar",
        "targets.P4.calendar",
        "plan.business_hours_calendar",
    ]


def test_agreement_errors_gives_field_and_reason() -> None:
    with pytest.raises(ValidationError) as info:
        resolve_agreement("four_tier_24x7", {"targets": {"P1": {"calendar": "office"}}})
    [error] = agreement_errors(info.value)
    assert error["field"] == "targets.P1.calendar"
    assert "office" in error["reason"]
    assert "24x7" in error["reason"]


def test_agreement_errors_lists_every_problem() -> None:
    overrides = {"warning_share": 2, "plan": {"discount_percent": 101, "increment_minutes": 0}}
    assert sorted(_fields("four_tier_24x7", overrides)) == [
        "plan.discount_percent",
        "plan.increment_minutes",
        "warning_share",
    ]


# --- accepted edge cases ----------------------------------------------------------------------


def test_minimal_custom_agreement_gets_defaults() -> None:
    agreement = resolve_agreement(None, _minimal())
    assert agreement.preset is None
    assert agreement.warning_share == 0.75
    # No follow-ups unless asked for: only seed 003 closes unanswered tickets.
    assert agreement.follow_up is None
    assert agreement.fair_use is None
    assert agreement.plan.increment_minutes == 15
    calendar = agreement.calendars["office"]
    assert calendar.is_holiday(dt.date(2025, 12, 26))
    assert calendar.is_holiday(dt.date(2031, 12, 25))
    assert not calendar.is_holiday(dt.date(2026, 12, 26))


def test_adjacent_intervals_and_leap_day_are_accepted() -> None:
    calendar = Calendar.model_validate(
        {
            "timezone": "America/Sao_Paulo",
            "weekly": [
                {"day": "mon", "start": "08:00", "end": "12:00"},
                {"day": "mon", "start": "12:00", "end": "24:00"},
                {"day": "tue", "start": "00:00", "end": "02:00"},
            ],
            "holidays": [{"month": 2, "day": 29, "name": "Leap day"}],
        }
    )
    assert calendar.intervals_on("mon") == [(480, 720), (720, 1440)]
    assert calendar.is_holiday(dt.date(2028, 2, 29))
    assert not calendar.is_holiday(dt.date(2027, 3, 1))


def test_null_resolution_means_no_resolution_target() -> None:
    agreement = resolve_agreement(
        "four_tier_24x7", {"targets": {"P4": {"resolution_minutes": None}}}
    )
    assert agreement.target("P4").resolution_minutes is None
    assert agreement.target("P3").resolution_minutes == 2880


def test_aware_maintenance_window_is_kept_with_its_offset() -> None:
    agreement = resolve_agreement(
        "four_tier_24x7",
        {
            "maintenance_windows": [
                {
                    "start": "2025-03-30T01:00:00+01:00",
                    "end": "2025-03-30T04:00:00+02:00",
                    "service_class": "network",
                    "note": "core switch firmware",
                }
            ]
        },
    )
    [window] = agreement.maintenance_windows
    assert window.end - window.start == dt.timedelta(hours=2)
    assert Agreement.model_validate_json(agreement.model_dump_json()) == agreement


def test_json_schema_is_generated() -> None:
    schema = Agreement.model_json_schema()
    assert set(schema["required"]) == {"calendars", "targets", "plan"}
    assert "targets" in schema["properties"]


# --- overrides ---------------------------------------------------------------------------------


def test_overrides_merge_dicts_and_keep_siblings() -> None:
    agreement = resolve_agreement("four_tier_24x7", {"targets": {"P1": {"response_minutes": 30}}})
    assert agreement.target("P1").response_minutes == 30
    assert agreement.target("P1").resolution_minutes == 120
    assert agreement.target("P1").label == "Critical"
    assert agreement.target("P2") == _preset("four_tier_24x7").agreement.target("P2")


def test_overrides_replace_lists() -> None:
    agreement = resolve_agreement(
        "managed_budget",
        {"follow_up": {"after_minutes": [720, 1440, 2160]}, "plan": {"excluded_kinds": []}},
    )
    assert agreement.follow_up is not None
    assert agreement.follow_up.after_minutes == [720, 1440, 2160]
    assert agreement.plan.excluded_kinds == []
    # A replaced list is validated as a whole: two reminders cannot carry max_unanswered 3.
    assert _fields("managed_budget", {"follow_up": {"after_minutes": [720, 1440]}}) == [
        "follow_up.max_unanswered"
    ]


def test_overrides_can_add_and_drop_entries() -> None:
    agreement = resolve_agreement(
        "four_tier_24x7",
        {"availability_targets": {"voice": None, "storage": 99.9}, "warning_share": 0.8},
    )
    assert agreement.availability_targets == {
        "network": 99.99,
        "cloud": 99.0,
        "operational": 99.0,
        "storage": 99.9,
    }
    assert agreement.warning_share == 0.8
    no_fair_use = resolve_agreement("small_business_remote", {"fair_use": None})
    assert no_fair_use.fair_use is None


def test_resolving_does_not_touch_the_preset_or_the_overrides() -> None:
    overrides = {
        "targets": {"P1": {"response_minutes": 15}},
        "calendars": {"24x7": {"holidays": []}},
    }
    snapshot = copy.deepcopy(overrides)
    resolve_agreement("four_tier_24x7", overrides)
    assert overrides == snapshot
    assert _preset("four_tier_24x7").agreement.target("P1").response_minutes == 60


# --- hypothesis: properties ---------------------------------------------------------------------

_keys = st.sampled_from(["a", "b", "c", "d"])
_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=3)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(_keys, _json, max_size=4)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@_patient
@given(base=_objects, patch=_objects)
def test_deep_merge_properties(base: dict[str, Any], patch: dict[str, Any]) -> None:
    base_before, patch_before = copy.deepcopy(base), copy.deepcopy(patch)
    merged = deep_merge(base, patch)
    assert (base, patch) == (base_before, patch_before)
    for key, value in patch.items():
        if value is None:
            assert key not in merged
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            assert merged[key] == deep_merge(base[key], value)
        else:
            # Lists and scalars replace (an object replacing a non-object loses its nulls).
            assert merged[key] == _without_nulls(value)
    for key, value in base.items():
        if key not in patch:
            assert merged[key] == value
    # Applying the same override twice changes nothing more (a PUT retried is harmless).
    assert deep_merge(merged, patch) == merged
    assert deep_merge(base, {}) == base


@_patient
@given(
    name=st.sampled_from(PRESET_NAMES),
    minutes=st.integers(1, 10_000),
    priority=st.sampled_from(PRIORITIES),
)
def test_overriding_a_response_target_keeps_everything_else(
    name: str, minutes: int, priority: Priority
) -> None:
    preset = _preset(name).agreement
    resolution = preset.targets.for_priority(priority).resolution_minutes
    # The response target has one unit: naming minutes drops a preset's business days.
    overrides: dict[str, Any] = {
        "targets": {priority: {"response_minutes": minutes, "response_business_days": None}},
        **_operator_terms(name),
    }
    if resolution is not None and resolution < minutes:
        overrides["targets"][priority]["resolution_minutes"] = minutes
    agreement = resolve_agreement(name, overrides)
    assert agreement.targets.for_priority(priority).response_minutes == minutes
    assert agreement.calendars == preset.calendars
    assert agreement.plan == preset.plan
    assert Agreement.model_validate_json(agreement.model_dump_json()) == agreement


_clock = st.integers(0, 1440)


@_patient
@given(
    spans=st.lists(st.tuples(_clock, _clock).filter(lambda s: s[0] < s[1]), min_size=1, max_size=4)
)
def test_intervals_on_one_day_are_refused_exactly_when_they_overlap(
    spans: list[tuple[int, int]],
) -> None:
    def hhmm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    body = {
        "timezone": "UTC",
        "weekly": [{"day": "wed", "start": hhmm(s), "end": hhmm(e)} for s, e in spans],
    }
    overlapping = any(
        a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :]
    )
    if overlapping:
        with pytest.raises(ValidationError) as info:
            Calendar.model_validate(body)
        assert [e["field"] for e in agreement_errors(info.value)] == ["weekly"]
    else:
        calendar = Calendar.model_validate(body)
        assert calendar.intervals_on("wed") == sorted(spans)
        assert sum(e - s for s, e in calendar.intervals_on("wed")) == sum(e - s for s, e in spans)


@_patient
@given(month=st.integers(1, 12), day=st.integers(1, 31))
def test_yearly_holiday_accepted_exactly_when_the_date_exists_in_a_leap_year(
    month: int, day: int
) -> None:
    body = {"timezone": "UTC", "weekly": [{"day": "mon", "start": "09:00", "end": "17:00"}]}
    body["holidays"] = [{"month": month, "day": day, "yearly": True}]
    try:
        dt.date(2000, month, day)
    except ValueError:
        with pytest.raises(ValidationError) as info:
            Calendar.model_validate(body)
        assert [e["field"] for e in agreement_errors(info.value)] == ["holidays.0.day"]
    else:
        assert Calendar.model_validate(body).is_holiday(dt.date(2000, month, day))


@_patient
@given(minute=st.integers(0, 1440))
def test_clock_minutes_inverts_hh_mm(minute: int) -> None:
    assert clock_minutes(f"{minute // 60:02d}:{minute % 60:02d}") == minute
