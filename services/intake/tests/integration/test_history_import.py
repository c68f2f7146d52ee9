"""History import: an import key back-dates a ticket and its commands, within the rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.intake.tests.integration._support import (
    As,
    new_account,
    new_ticket,
    ok,
    problem_fields,
    run,
    staff_key,
)

pytestmark = pytest.mark.integration


def iso(at: datetime) -> str:
    return at.isoformat()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
async def account(admin: As) -> dict[str, Any]:
    return await new_account(admin)


@pytest.fixture(scope="module")
async def importer(admin: As) -> As:
    key = ok(await admin.post("/v1/api-keys", {"role": "import"}), 201)
    assert key["role"] == "import"
    return As(admin.http, key["token"])


async def test_an_import_replays_a_ticket_at_its_own_times(
    importer: As, account: dict[str, Any]
) -> None:
    reported = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    ticket = await new_ticket(importer, account["id"], reported_at=iso(reported), priority="P2")
    assert instant(ticket["reported_at"]) == reported
    steps: list[tuple[str, dict[str, Any]]] = [
        ("assign", {"technician": "alice"}),
        ("comments", {"body": "looking", "public": True}),
        ("request-info", {"body": "which printer?"}),
        ("customer-reply", {"body": "the big one"}),
        (
            "time-entries",
            {"minutes": 45, "work_type": "onsite", "worked_at": iso(reported + timedelta(hours=5))},
        ),
        ("resolve", {"resolution": "fix", "summary": "toner"}),
        ("confirm", {}),
    ]
    times = []
    for hours, (command, body) in enumerate(steps, start=1):
        at = reported + timedelta(hours=hours)
        times.append(at)
        ok(await run(importer, ticket["id"], command, {**body, "occurred_at": iso(at)}))
    history = ok(await importer.get(f"/v1/tickets/{ticket['id']}/events"))
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert instant(history[0]["occurred_at"]) == reported
    # confirm records two events at one instant
    assert [instant(e["occurred_at"]) for e in history[1:]] == [*times, times[-1]]
    assert all(instant(e["recorded_at"]) > reported + timedelta(days=39) for e in history)
    assert {e["actor"]["type"] for e in history} == {"import"}
    final = ok(await importer.get(f"/v1/tickets/{ticket['id']}"))
    assert final["status"] == "closed"
    assert instant(final["closed_at"]) == times[-1]
    assert instant(final["resolved_at"]) == times[-2]


async def test_import_times_may_not_lie_in_the_future_or_go_backwards(
    importer: As, account: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    future = await importer.post(
        "/v1/tickets",
        {"account_id": account["id"], "subject": "s", "reported_at": iso(now + timedelta(hours=1))},
    )
    assert problem_fields(future) == ["reported_at"]
    ticket = await new_ticket(importer, account["id"], reported_at=iso(now - timedelta(days=2)))
    step = now - timedelta(days=1)
    ok(await run(importer, ticket["id"], "assign", {"technician": "a", "occurred_at": iso(step)}))
    ahead = {"technician": "b", "occurred_at": iso(now + timedelta(minutes=5))}
    assert problem_fields(await run(importer, ticket["id"], "assign", ahead)) == ["occurred_at"]
    back = {"technician": "b", "occurred_at": iso(step - timedelta(minutes=1))}
    assert problem_fields(await run(importer, ticket["id"], "assign", back)) == ["occurred_at"]
    same = {"technician": "c", "occurred_at": iso(step)}
    assert ok(await run(importer, ticket["id"], "assign", same))["seq"] == 3
    naive = {"technician": "d", "occurred_at": "2024-01-01T10:00:00"}
    assert problem_fields(await run(importer, ticket["id"], "assign", naive)) == ["occurred_at"]
    # nothing of the refused ones was recorded
    history = ok(await importer.get(f"/v1/tickets/{ticket['id']}/events"))
    assert [e["payload"].get("technician") for e in history[1:]] == ["a", "c"]


async def test_only_import_keys_back_date(admin: As, account: dict[str, Any]) -> None:
    _, technician = await staff_key(admin, "technician")
    _, scoped = await staff_key(admin, "technician", scopes=["import"])
    past = datetime.now(UTC) - timedelta(days=3)
    ticket = await new_ticket(technician, account["id"])
    refused = await run(
        technician, ticket["id"], "assign", {"technician": "x", "occurred_at": iso(past)}
    )
    assert problem_fields(refused, 403) == ["occurred_at"]
    not_allowed = await technician.post(
        "/v1/tickets", {"account_id": account["id"], "subject": "s", "reported_at": iso(past)}
    )
    assert problem_fields(not_allowed, 403) == ["reported_at"]
    assert ok(await technician.get(f"/v1/tickets/{ticket['id']}"))["seq"] == 1

    imported = await new_ticket(scoped, account["id"], reported_at=iso(past))
    later = iso(past + timedelta(hours=1))
    done = ok(
        await run(scoped, imported["id"], "assign", {"technician": "y", "occurred_at": later})
    )
    history = ok(await scoped.get(f"/v1/tickets/{imported['id']}/events"))
    assert instant(history[-1]["occurred_at"]) == past + timedelta(hours=1)
    assert done["assignee"] == "y"


async def test_a_whole_history_is_imported_in_one_request_or_not_at_all(
    importer: As, admin: As, account: dict[str, Any]
) -> None:
    """Issue 22 point 6: "an import endpoint that takes a ticket's whole history in one request
    (applied atomically, so the SLA timer decides on the complete history)". Before, a history
    came one command per request, and the consumers saw a ticket without its first reply.
    Now `POST /v1/ticket-imports` records the opening and every step in one transaction, at the
    steps' own instants; a step refused refuses all of it, naming the step."""
    reported = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    subject = f"imported {reported.timestamp()}"
    opening = {"account_id": account["id"], "subject": subject, "reported_at": iso(reported)}
    steps: list[dict[str, Any]] = [
        {"command": "assign", "technician": "alice"},
        {"command": "comments", "body": "on it", "public": True},
        {"command": "resolve", "resolution": "fix", "summary": "toner"},
        {"command": "confirm"},
    ]
    times = [reported + timedelta(minutes=30 * n) for n in range(1, len(steps) + 1)]
    history = [{**step, "occurred_at": iso(at)} for step, at in zip(steps, times, strict=True)]

    # A step refused (a reply cannot come after the confirmation closed the ticket) refuses all.
    late = {"command": "customer-reply", "body": "x", "occurred_at": iso(times[-1])}
    refused = await importer.post(
        "/v1/ticket-imports", {"ticket": opening, "history": [*history, late]}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["errors"][0]["field"] == "history.4"
    # A step without its instant is refused before anything runs.
    undated = [*history[:1], steps[1]]
    fields = problem_fields(
        await importer.post("/v1/ticket-imports", {"ticket": opening, "history": undated})
    )
    assert fields == ["history.1.comments.occurred_at"]
    # Only import keys import.
    _, technician = await staff_key(admin, "technician")
    forbidden = await technician.post("/v1/ticket-imports", {"ticket": opening, "history": []})
    assert forbidden.status_code == 403, forbidden.text
    listed = ok(await importer.get("/v1/tickets", q=subject))
    assert listed["items"] == []

    imported = ok(
        await importer.post("/v1/ticket-imports", {"ticket": opening, "history": history}), 201
    )
    assert (imported["status"], imported["assignee"]) == ("closed", "alice")
    events = ok(await importer.get(f"/v1/tickets/{imported['id']}/events"))
    assert [instant(e["occurred_at"]) for e in events] == [reported, *times, times[-1]]
    assert {e["actor"]["type"] for e in events} == {"import"}
    assert [t["id"] for t in ok(await importer.get("/v1/tickets", q=subject))["items"]] == [
        imported["id"]
    ]
