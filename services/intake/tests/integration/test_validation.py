"""Bad bodies: problem+json naming each field, and nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpdesk.intake.adapters.tables import accounts, agreements, contacts, tickets
from services.intake.tests.integration._support import (
    As,
    count,
    new_account,
    new_ticket,
    problem_fields,
    run,
    unique,
)
from tests.support import InProcessService

pytestmark = pytest.mark.integration

CALENDAR = {
    "timezone": "Europe/Berlin",
    "weekly": [{"day": "mon", "start": "08:00", "end": "17:00"}],
}
TARGET = {"response_minutes": 60, "resolution_minutes": 240, "calendar": "office"}
AGREEMENT: dict[str, Any] = {
    "calendars": {"office": CALENDAR},
    "targets": {p: TARGET for p in ("P1", "P2", "P3", "P4")},
    "plan": {"kind": "hourly", "currency": "EUR", "hourly_rate_cents": 12000},
}


@pytest.fixture(scope="module")
async def account(admin: As) -> dict[str, Any]:
    return await new_account(admin, agreement=AGREEMENT)


@pytest.fixture(scope="module")
async def other(admin: As) -> dict[str, Any]:
    return await new_account(admin)


@pytest.fixture
async def unchanged(intake: InProcessService) -> AsyncIterator[None]:
    """Every test here must leave the row counts as they were."""
    tables = (accounts, agreements, contacts, tickets)
    before = [await count(intake, t) for t in tables]
    yield
    assert [await count(intake, t) for t in tables] == before


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"priority": "P9"}, "priority"),
        ({"channel": "fax"}, "channel"),
        ({"subject": ""}, "subject"),
        ({"kind": "wish"}, "kind"),
        ({"affected_users": -1}, "affected_users"),
        ({"account_id": "not-a-uuid"}, "account_id"),
        ({"reported_at": "yesterday"}, "reported_at"),
    ],
)
async def test_bad_ticket_bodies(
    admin: As, account: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    body = {"account_id": account["id"], "subject": "printer", **change}
    assert problem_fields(await admin.post("/v1/tickets", body)) == [field]


@pytest.mark.usefixtures("unchanged")
async def test_a_ticket_body_missing_its_subject_and_account(admin: As) -> None:
    assert sorted(problem_fields(await admin.post("/v1/tickets", {}))) == [
        "account_id",
        "subject",
    ]


@pytest.mark.usefixtures("unchanged")
async def test_a_ticket_for_an_unknown_account_or_contact(
    admin: As, account: dict[str, Any]
) -> None:
    missing = {"account_id": "00000000-0000-0000-0000-000000000001", "subject": "s"}
    assert problem_fields(await admin.post("/v1/tickets", missing), 404) == []
    stranger = {"account_id": account["id"], "subject": "s", "contact_id": account["id"]}
    assert problem_fields(await admin.post("/v1/tickets", stranger)) == ["contact_id"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": ""}, "name"),
        ({"name": "x", "status": "active"}, "status"),
        ({"nom": "x"}, "name"),
    ],
)
async def test_bad_account_bodies(admin: As, body: dict[str, Any], field: str) -> None:
    assert field in problem_fields(await admin.post("/v1/accounts", body))


@pytest.mark.usefixtures("unchanged")
async def test_bad_account_patches(
    admin: As, account: dict[str, Any], other: dict[str, Any]
) -> None:
    url = f"/v1/accounts/{account['id']}"
    assert problem_fields(await admin.patch(url, {"status": "paused"})) == ["status"]
    assert problem_fields(await admin.patch(url, {"timezone": "Europe/Atlantis"})) == ["timezone"]
    assert problem_fields(await admin.patch(url, {"name": other["name"]}), 409) == ["name"]
    assert (await admin.get(url)).json()["name"] == account["name"]


@pytest.mark.usefixtures("unchanged")
async def test_a_duplicate_account_name_is_409(
    admin: As, account: dict[str, Any], other: dict[str, Any]
) -> None:
    clash = await admin.post("/v1/accounts", {"name": account["name"]})
    assert problem_fields(clash, 409) == ["name"]
    # Issue 21: names differing only by case, white space or character width are one name
    for alike in (
        account["name"].upper(),
        f" {account['name']} ",
        account["name"].replace("-", "－"),
    ):
        assert problem_fields(await admin.post("/v1/accounts", {"name": alike}), 409) == ["name"]
    renamed = await admin.patch(f"/v1/accounts/{other['id']}", {"name": account["name"].upper()})
    assert problem_fields(renamed, 409) == ["name"]
    clash = await admin.post("/v1/accounts", {"name": unique("n"), "number": account["number"]})
    assert problem_fields(clash, 409) == ["number"]


@pytest.mark.usefixtures("unchanged")
async def test_bad_contacts(admin: As, account: dict[str, Any]) -> None:
    url = f"/v1/accounts/{account['id']}/contacts"
    assert problem_fields(await admin.post(url, {"name": "n", "email": "no-at-sign"})) == ["email"]
    bad_role = {"name": "n", "email": f"{unique('e')}@example.com", "roles": ["boss"]}
    assert problem_fields(await admin.post(url, bad_role)) == ["roles.0"]
    bad_visibility = {"name": "n", "email": f"{unique('e')}@example.com", "visibility": "all"}
    assert problem_fields(await admin.post(url, bad_visibility)) == ["visibility"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"calendars": {"office": {**CALENDAR, "weekly": []}}}, "calendars.office.weekly"),
        (
            {"calendars": {"office": {**CALENDAR, "timezone": "Europe/Nowhere"}}},
            "calendars.office.timezone",
        ),
        ({"targets": {"P1": {**TARGET, "calendar": "night"}}}, "targets.P1.calendar"),
        ({"targets": {"P2": {**TARGET, "response_minutes": -5}}}, "targets.P2.response_minutes"),
        (
            {
                "calendars": {
                    "office": {
                        **CALENDAR,
                        "weekly": [{"day": "mon", "start": "17:00", "end": "08:00"}],
                    }
                }
            },
            "calendars.office.weekly.0.end",
        ),
        ({"plan": {"kind": "barter"}}, "plan.kind"),
        ({"preset": "no_such_preset"}, "preset"),
    ],
)
async def test_malformed_agreements(
    admin: As, account: dict[str, Any], override: dict[str, Any], field: str
) -> None:
    body = {**AGREEMENT, **override}
    if "targets" in override:
        body["targets"] = {**AGREEMENT["targets"], **override["targets"]}
    url = f"/v1/accounts/{account['id']}/agreement"
    fields = problem_fields(await admin.put(url, body))
    assert field in fields, fields
    assert (await admin.get(url)).json()["version"] == 1


async def test_bad_ticket_commands_change_nothing(admin: As, account: dict[str, Any]) -> None:
    ticket = await new_ticket(admin, account["id"])
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("triage", {"priority": "urgent"}, "priority"),
        ("triage", {}, "priority"),
        ("comments", {"body": ""}, "body"),
        ("escalate", {"tier": "pope"}, "tier"),
        (
            "time-entries",
            {"minutes": 0, "work_type": "remote", "worked_at": ticket["reported_at"]},
            "minutes",
        ),
        ("time-entries", {"minutes": 10, "work_type": "remote"}, "worked_at"),
        ("resolve", {"resolution": "prayer", "summary": "s"}, "resolution"),
        ("close", {"reason": "bored"}, "reason"),
        ("assign", {"technician": "a", "extra": 1}, "extra"),
    ]
    for command, body, field in cases:
        assert problem_fields(await run(admin, ticket["id"], command, body)) == [field], command
    assert (await admin.get(f"/v1/tickets/{ticket['id']}")).json()["seq"] == 1
    unknown = await run(admin, ticket["id"], "dance", {})
    assert unknown.status_code in {404, 405}
    assert unknown.headers["content-type"].startswith("application/problem+json")
