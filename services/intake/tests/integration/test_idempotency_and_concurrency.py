"""Idempotency-Key replays, If-Match, and concurrent commands that never lose an update."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.intake.adapters.tables import ticket_events, tickets
from services.intake.tests.integration._support import (
    PROBLEM,
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
    unique,
)
from tests.support import InProcessService

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def account(admin: As) -> dict[str, Any]:
    return await new_account(admin)


async def tickets_with_subject(intake: InProcessService, subject: str) -> int:
    async with intake.runtime.engine.connect() as conn:
        found = await conn.scalar(
            sa.select(sa.func.count()).select_from(tickets).where(tickets.c.subject == subject)
        )
    return int(found or 0)


async def test_a_retried_create_answers_the_first_ticket(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    _, technician = await staff_key(admin, "technician")
    subject = unique("printer")
    body = {"account_id": account["id"], "subject": subject, "priority": "P3"}
    key = {"Idempotency-Key": unique("idem")}
    first = await technician.post("/v1/tickets", body, key)
    again = await technician.post("/v1/tickets", body, key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert again.headers["location"] == f"/v1/tickets/{first.json()['id']}"
    assert await tickets_with_subject(intake, subject) == 1

    # the same key with another body is refused, and changes nothing
    other = await technician.post("/v1/tickets", {**body, "priority": "P1"}, key)
    assert other.status_code == 422
    assert other.headers["content-type"].startswith(PROBLEM)
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await tickets_with_subject(intake, subject) == 1

    # another caller may use the same key for its own request
    _, contact = await contact_key(admin, account["id"])
    theirs = await contact.post("/v1/tickets", body, key)
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != first.json()["id"]
    assert await tickets_with_subject(intake, subject) == 2


async def test_commands_replay_too_and_a_refusal_is_replayed_as_a_refusal(
    admin: As, account: dict[str, Any]
) -> None:
    ticket = await new_ticket(admin, account["id"])
    key = {"Idempotency-Key": unique("cmd")}
    comment = {"body": "on it", "public": True}
    first = ok(await run(admin, ticket["id"], "comments", comment, key))
    replay = await run(admin, ticket["id"], "comments", comment, key)
    assert replay.json() == first
    assert replay.headers["idempotent-replayed"] == "true"
    assert ok(await admin.get(f"/v1/tickets/{ticket['id']}"))["comments"] == 1

    refused_key = {"Idempotency-Key": unique("bad")}
    refused = await run(admin, ticket["id"], "vendor-return", {}, refused_key)
    assert refused.status_code == 409
    replayed = await run(admin, ticket["id"], "vendor-return", {}, refused_key)
    assert replayed.status_code == 409
    assert replayed.headers["idempotent-replayed"] == "true"
    too_long = await run(admin, ticket["id"], "comments", comment, {"Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422


async def test_a_stale_if_match_is_412_and_writes_nothing(
    admin: As, account: dict[str, Any]
) -> None:
    ticket = await new_ticket(admin, account["id"])
    read = await admin.get(f"/v1/tickets/{ticket['id']}")
    etag = read.headers["etag"]
    assert etag == '"1"'
    moved = await run(admin, ticket["id"], "assign", {"technician": "a"}, {"If-Match": etag})
    assert moved.status_code == 200
    assert moved.headers["etag"] == '"2"'
    stale = await run(admin, ticket["id"], "assign", {"technician": "b"}, {"If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith(PROBLEM)
    assert stale.headers["etag"] == '"2"'
    after = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))
    assert (after["seq"], after["assignee"]) == (2, "a")
    assert len(ok(await admin.get(f"/v1/tickets/{ticket['id']}/events"))) == 2
    # RFC 9110: a weak tag never matches for a state-changing request; a list or * may.
    weak = await run(admin, ticket["id"], "assign", {"technician": "c"}, {"If-Match": 'W/"2"'})
    assert weak.status_code == 412
    listed = await run(admin, ticket["id"], "assign", {"technician": "c"}, {"If-Match": '"1", "2"'})
    assert ok(listed)["assignee"] == "c"
    anything = await run(admin, ticket["id"], "assign", {"technician": "d"}, {"If-Match": "*"})
    assert ok(anything)["assignee"] == "d"
    malformed = await run(admin, ticket["id"], "assign", {"technician": "e"}, {"If-Match": '"7'})
    assert malformed.status_code == 400
    assert malformed.headers["content-type"].startswith(PROBLEM)


async def test_concurrent_commands_never_lose_an_update(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    ticket = await new_ticket(admin, account["id"], priority="P2")
    successes = 0
    for round_ in range(4):
        responses = await asyncio.gather(
            *(
                run(admin, ticket["id"], "comments", {"body": f"{round_}-{i}", "public": False})
                for i in range(6)
            )
        )
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 409}, codes
        assert 200 in codes
        successes += codes.count(200)
    view = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))
    assert view["seq"] == successes + 1
    assert view["comments"] == successes
    history = ok(await admin.get(f"/v1/tickets/{ticket['id']}/events"))
    assert [e["seq"] for e in history] == list(range(1, successes + 2))
    async with intake.runtime.engine.connect() as conn:
        stored = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(ticket_events)
            .where(ticket_events.c.ticket_id == ticket["id"])
        )
    assert stored == successes + 1


async def test_two_different_commands_at_once_both_land_or_one_is_refused(
    admin: As, account: dict[str, Any]
) -> None:
    ticket = await new_ticket(admin, account["id"], priority="P2")
    assign, comment = await asyncio.gather(
        run(admin, ticket["id"], "assign", {"technician": "zed"}),
        run(admin, ticket["id"], "comments", {"body": "hello", "public": True}),
    )
    assert {assign.status_code, comment.status_code} <= {200, 409}
    view = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))
    landed = [assign.status_code, comment.status_code].count(200)
    assert landed >= 1
    assert view["seq"] == 1 + landed
    assert (view["assignee"] == "zed") == (assign.status_code == 200)
    assert (view["comments"] == 1) == (comment.status_code == 200)
