"""Agreement presets and overrides, required fields, and seed 001's partner rules over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from helpdesk.shared.agreements import get_preset
from services.intake.tests.integration._support import (
    As,
    new_account,
    new_ticket,
    ok,
    problem_fields,
    run,
)

pytestmark = pytest.mark.integration

PRESETS = [
    "cloud_platform",
    "partner_reseller",
    "small_business_remote",
    "four_tier_24x7",
    "managed_budget",
]
#: The partner preset with the margin every PUT of it must set (operator_must_set).
PARTNER = {"preset": "partner_reseller", "plan": {"discount_percent": 20}}
PARTNER_FIELDS = {
    "partner_domain": "partner.example",
    "customer_name": "Customer Ltd",
    "customer_domain": "customer.example",
    "details": "cannot log in",
    "steps_taken": "replicate, review, research",
}


async def test_five_presets_are_listed(admin: As) -> None:
    presets = ok(await admin.get("/v1/agreement-presets"))
    assert sorted(p["name"] for p in presets) == sorted(PRESETS)
    assert sorted(p["seed"] for p in presets) == ["000", "001", "002", "003", "004"]
    assert all(p["agreement"]["calendars"] for p in presets)
    by_seed = {p["seed"]: p for p in presets}
    # Seed 004 states no response times; only seed 003 closes unanswered tickets.
    assert {t["response_minutes"] for t in by_seed["004"]["agreement"]["targets"].values()} == {
        None
    }
    assert "no targets" in by_seed["004"]["description"]
    for seed, listed in by_seed.items():
        has_follow_ups = listed["agreement"]["follow_up"] is not None
        assert has_follow_ups == (seed == "003"), seed
        assert has_follow_ups or "no follow-ups" in listed["description"], seed


async def test_each_preset_applies_and_every_change_is_a_new_version(admin: As) -> None:
    account = await new_account(admin)
    url = f"/v1/accounts/{account['id']}/agreement"
    assert (await admin.get(url)).status_code == 404
    for version, name in enumerate(PRESETS, start=1):
        put = ok(await admin.put(url, PARTNER if name == "partner_reseller" else {"preset": name}))
        assert (put["preset"], put["version"]) == (name, version)
        got = ok(await admin.get(url))
        assert got == put
        preset = get_preset(name)
        assert preset is not None
        assert got["targets"] == preset.agreement.model_dump(mode="json")["targets"]
    assert ok(await admin.get(f"/v1/accounts/{account['id']}"))["agreement_version"] == 5


async def test_an_override_merges_into_the_preset(admin: As) -> None:
    account = await new_account(admin)
    url = f"/v1/accounts/{account['id']}/agreement"
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    base = preset.agreement.model_dump(mode="json")
    body = {"preset": "four_tier_24x7", "targets": {"P1": {"response_minutes": 30}}}
    got = ok(await admin.put(url, body))
    assert got["targets"]["P1"]["response_minutes"] == 30
    assert got["targets"]["P1"]["resolution_minutes"] == base["targets"]["P1"]["resolution_minutes"]
    assert got["targets"]["P1"]["calendar"] == base["targets"]["P1"]["calendar"]
    assert got["targets"]["P2"] == base["targets"]["P2"]
    assert got["plan"] == base["plan"]
    assert ok(await admin.get(url))["targets"]["P1"]["response_minutes"] == 30


def _holiday_days(agreement: dict[str, Any], calendar: str) -> dict[str, str]:
    return {d["date"]: d["name"] for d in agreement["resolved_holidays"][calendar]["days"]}


async def test_the_agreement_shows_the_holidays_its_calendars_resolved_to(admin: As) -> None:
    """Seed 002: 'Operating hours: M-F 8:30 AM to 5:30 PM ... and excluding holidays'. The
    account names no country: the preset closes on US public holidays (observed days
    included), and GET shows them for this year and next so the provider can check."""
    account = await new_account(admin, agreement={"preset": "small_business_remote"})
    assert account["country"] is None
    got = ok(await admin.get(f"/v1/accounts/{account['id']}/agreement"))
    year = datetime.now(ZoneInfo("America/New_York")).year
    business = got["resolved_holidays"]["business_hours"]
    assert (business["from"], business["to"]) == (f"{year}-01-01", f"{year + 1}-12-31")
    days = _holiday_days(got, "business_hours")
    thanksgiving = [d for d, n in days.items() if n == "Thanksgiving Day"]
    assert [d[:4] for d in thanksgiving] == [str(year), str(year + 1)]
    assert all(d.startswith((str(year), str(year + 1))) for d in days)
    assert got["resolved_holidays"]["24x7"]["days"] == []


async def test_the_accounts_country_chooses_the_presets_holidays(admin: As) -> None:
    account = await new_account(admin, timezone="Europe/London", country="GB")
    assert account["country"] == "GB"
    url = f"/v1/accounts/{account['id']}/agreement"
    put = ok(await admin.put(url, PARTNER))
    assert put["calendars"]["business_hours"]["country"] == "GB"
    assert ok(await admin.get(url)) == put
    names = set(_holiday_days(put, "business_hours").values())
    assert "Thanksgiving Day" not in names
    assert any(n.startswith("Boxing Day") for n in names)
    # A country moves the presets set from then on; an unknown one is refused at its field.
    moved = ok(await admin.patch(f"/v1/accounts/{account['id']}", {"country": "DE"}))
    assert moved["country"] == "DE"
    assert ok(await admin.put(url, PARTNER))["calendars"]["business_hours"]["country"] == "DE"
    refused = await admin.patch(f"/v1/accounts/{account['id']}", {"country": "XX"})
    assert problem_fields(refused) == ["country"]
    assert ok(await admin.get(f"/v1/accounts/{account['id']}"))["country"] == "DE"


async def test_partner_preset_needs_the_margin_from_the_operator(admin: As) -> None:
    """Seed 001: "reverted to a full price account (AKA 0% margin)" - a margin the seed cannot
    know. A PUT of the preset without it is refused, naming the field and why; nothing is set."""
    account = await new_account(admin)
    url = f"/v1/accounts/{account['id']}/agreement"
    refused = await admin.put(url, {"preset": "partner_reseller"})
    assert problem_fields(refused) == ["plan.discount_percent"]
    assert "changes no invoice" in refused.text
    assert (await admin.get(url)).status_code == 404
    presets = {p["name"]: p for p in ok(await admin.get("/v1/agreement-presets"))}
    assert list(presets["partner_reseller"]["operator_must_set"]) == ["plan.discount_percent"]
    assert ok(await admin.put(url, PARTNER))["plan"]["discount_percent"] == 20


async def test_partner_preset_requires_its_fields_on_open(admin: As) -> None:
    account = await new_account(admin, agreement=PARTNER)
    body = {"account_id": account["id"], "subject": "escalation", "fields": {}}
    missing = problem_fields(await admin.post("/v1/tickets", body))
    assert sorted(missing) == sorted(f"fields.{f}" for f in PARTNER_FIELDS)
    some = {**body, "fields": {"partner_domain": "p.example", "details": "  "}}
    missing = problem_fields(await admin.post("/v1/tickets", some))
    assert sorted(missing) == sorted(f"fields.{f}" for f in PARTNER_FIELDS if f != "partner_domain")
    listed = ok(await admin.get("/v1/tickets", account_id=account["id"]))["items"]
    assert listed == []
    ticket = await new_ticket(admin, account["id"], fields=PARTNER_FIELDS)
    assert ticket["fields"] == PARTNER_FIELDS


async def test_a_partner_without_error_messages_opens_a_ticket(admin: As) -> None:
    """Seed 001: "Steps taken to replicate and resolve the issue, and any error messages
    associated" -- a partner with no error message opens a ticket (absent or empty), while
    the other fields stay required."""
    account = await new_account(admin, agreement=PARTNER)
    bare = await new_ticket(admin, account["id"], fields=PARTNER_FIELDS)
    assert "error_messages" not in bare["fields"]
    empty = await new_ticket(admin, account["id"], fields={**PARTNER_FIELDS, "error_messages": ""})
    assert empty["fields"]["error_messages"] == ""
    given = {**PARTNER_FIELDS, "error_messages": "401"}
    assert (await new_ticket(admin, account["id"], fields=given))["fields"] == given
    for field in PARTNER_FIELDS:
        lacking = {k: v for k, v in PARTNER_FIELDS.items() if k != field}
        body = {"account_id": account["id"], "subject": "escalation", "fields": lacking}
        assert problem_fields(await admin.post("/v1/tickets", body)) == [f"fields.{field}"]


async def test_a_vendor_escalation_names_the_vendor_whose_response_time_applies(
    admin: As,
) -> None:
    """Seed 001: "subject to that specific vendors response times". Before, an escalation
    could not say which vendor, and the agreement could give no vendor's time. Now the partner
    agreement lists vendors' response times, and a vendor escalation names its vendor (only a
    vendor escalation may)."""
    vendor_target = {"pause_clocks": True, "calendar": "business_hours",
                     "vendors": {"Microsoft": 480}}  # fmt: skip
    agreement = {**PARTNER, "escalation_targets": {"vendor": vendor_target}}
    account = await new_account(admin, agreement=agreement)
    stored = ok(await admin.get(f"/v1/accounts/{account['id']}/agreement"))
    assert stored["escalation_targets"]["vendor"]["vendors"] == {"Microsoft": 480}
    ticket = await new_ticket(admin, account["id"], fields=PARTNER_FIELDS)
    wrong_tier = {"tier": "engineering", "vendor": "Microsoft"}
    assert problem_fields(await run(admin, ticket["id"], "escalate", wrong_tier)) == ["vendor"]
    ok(await run(admin, ticket["id"], "escalate", {"tier": "vendor", "vendor": "Microsoft"}))
    events = ok(await admin.get(f"/v1/tickets/{ticket['id']}/events"))
    assert [e["payload"].get("vendor") for e in events if e["type"] == "ticket.escalated"] == [
        "Microsoft"
    ]


async def test_four_tier_preset_requires_affected_users(admin: As) -> None:
    account = await new_account(admin, agreement={"preset": "four_tier_24x7"})
    refused = await admin.post("/v1/tickets", {"account_id": account["id"], "subject": "down"})
    assert problem_fields(refused) == ["affected_users"]
    ticket = await new_ticket(admin, account["id"], affected_users=0)
    assert ticket["affected_users"] == 0
    # e-mail tickets are reviewed by a technician first: nothing is refused
    emailed = await new_ticket(admin, account["id"], channel="email")
    assert emailed["affected_users"] is None


async def closed_partner_ticket(admin: As, account_id: str) -> str:
    ticket = await new_ticket(admin, account_id, fields=PARTNER_FIELDS, priority="P3")
    ok(await run(admin, ticket["id"], "close", {"reason": "duplicate"}))
    return str(ticket["id"])


async def test_partner_warning_then_revocation(admin: As) -> None:
    """Seed 001: excessive escalations "will receive a warning"; a partner that "continues to
    have excessive escalations" is "reverted to a full price account": the threshold again after
    the warning, not the next single flag."""
    account = await new_account(admin, agreement=PARTNER)
    url = f"/v1/accounts/{account['id']}"
    preset = get_preset("partner_reseller")
    assert preset is not None
    assert preset.agreement.partner_rules is not None
    rules = preset.agreement.partner_rules
    threshold = rules.excessive_escalation_threshold

    still_open = await new_ticket(admin, account["id"], fields=PARTNER_FIELDS)
    assert (await run(admin, still_open["id"], "partner-resolvable")).status_code == 409

    for n in range(1, threshold + 1):
        ticket_id = await closed_partner_ticket(admin, account["id"])
        flagged = ok(await run(admin, ticket_id, "partner-resolvable", {"note": f"#{n}"}))
        assert flagged["partner_resolvable"] is True
        standing = ok(await admin.get(url))["partner"]
        assert standing["flagged_tickets"] == n
        assert standing["warnings"] == (1 if n == threshold else 0)
        assert standing["margin"] == "granted"
    assert (await run(admin, ticket_id, "partner-resolvable")).status_code == 409

    for _ in range(1, threshold):  # flags after the warning, short of the threshold
        ticket_id = await closed_partner_ticket(admin, account["id"])
        ok(await run(admin, ticket_id, "partner-resolvable"))
        standing = ok(await admin.get(url))["partner"]
        assert (standing["margin"], standing["warnings"]) == ("granted", 1)
    ticket_id = await closed_partner_ticket(admin, account["id"])
    flagged_at = datetime.now(UTC)
    ok(await run(admin, ticket_id, "partner-resolvable"))
    standing = ok(await admin.get(url))["partner"]
    assert standing["margin"] == "revoked"
    assert standing["warnings"] == 0
    restored_on = datetime.fromisoformat(standing["margin_restored_on"])
    expected = flagged_at + timedelta(days=rules.margin_restore_days)
    assert abs(restored_on - expected) < timedelta(seconds=30)

    # a further flag while revoked pushes the date on
    ticket_id = await closed_partner_ticket(admin, account["id"])
    ok(await run(admin, ticket_id, "partner-resolvable"))
    extended = ok(await admin.get(url))["partner"]
    assert extended["margin"] == "revoked"
    assert datetime.fromisoformat(extended["margin_restored_on"]) >= restored_on
    assert extended["flagged_tickets"] == 2 * threshold + 1


async def test_flagging_needs_partner_rules(admin: As) -> None:
    account = await new_account(admin, agreement={"preset": "managed_budget"})
    ticket = await new_ticket(admin, account["id"])
    ok(await run(admin, ticket["id"], "close", {"reason": "duplicate"}))
    assert (await run(admin, ticket["id"], "partner-resolvable")).status_code == 409
    plain = await new_account(admin)
    ticket = await new_ticket(admin, plain["id"])
    ok(await run(admin, ticket["id"], "close", {"reason": "duplicate"}))
    assert (await run(admin, ticket["id"], "partner-resolvable")).status_code == 409
