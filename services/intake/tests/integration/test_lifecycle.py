"""One ticket through every command, its audit history, and what its contact sees of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake.tests.integration._support import (
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
)

pytestmark = pytest.mark.integration


async def test_every_command_in_order(admin: As) -> None:
    account = await new_account(admin, agreement={"preset": "managed_budget"})
    _, contact = await contact_key(admin, account["id"])
    tech, technician = await staff_key(admin, "technician")
    ticket = await new_ticket(
        contact, account["id"], channel="web", description="printer jams", affected_users=3
    )
    assert (ticket["status"], ticket["version"], ticket["cycle"]) == ("new", 1, 1)
    worked_at = datetime.now(UTC).isoformat()
    steps: list[tuple[As, str, dict[str, Any], str, str]] = [
        (
            technician,
            "triage",
            {"priority": "P2", "kind": "incident", "category": "break_fix"},
            "open",
            "ticket.triaged",
        ),
        (technician, "assign", {"technician": tech["id"]}, "open", "ticket.assigned"),
        (
            technician,
            "comments",
            {"body": "looking at it", "public": True},
            "open",
            "ticket.commented",
        ),
        (
            technician,
            "comments",
            {"body": "suspect fuser", "public": False},
            "open",
            "ticket.commented",
        ),
        (
            technician,
            "request-info",
            {"body": "model?"},
            "waiting_on_customer",
            "ticket.info_requested",
        ),
        (contact, "customer-reply", {"body": "LaserJet 4"}, "open", "ticket.customer_replied"),
        (technician, "escalate", {"tier": "engineering"}, "open", "ticket.escalated"),
        (technician, "escalate", {"tier": "vendor"}, "waiting_on_vendor", "ticket.escalated"),
        (technician, "vendor-return", {"note": "part shipped"}, "open", "ticket.vendor_returned"),
        (
            technician,
            "time-entries",
            {"minutes": 40, "work_type": "onsite", "worked_at": worked_at, "note": "swap"},
            "open",
            "ticket.time_logged",
        ),
        (
            technician,
            "resolve",
            {"resolution": "fix", "summary": "new fuser"},
            "resolved",
            "ticket.resolved",
        ),
        (contact, "confirm", {}, "closed", "ticket.closed"),
        (contact, "reopen", {"reason": "jams again"}, "open", "ticket.reopened"),
        (
            technician,
            "resolve",
            {"resolution": "workaround", "summary": "manual feed"},
            "resolved",
            "ticket.resolved",
        ),
        (technician, "close", {"reason": "duplicate"}, "closed", "ticket.closed"),
    ]
    seq = 1
    for caller, command, body, status, _ in steps:
        response = await run(caller, ticket["id"], command, body)
        view = ok(response)
        seq += 2 if command == "confirm" else 1
        if caller is contact:  # a contact sees their own version, never the internal seq
            assert (view["status"], "seq" in view) == (status, False), command
            assert response.headers["etag"] == f'"{view["version"]}"'
        else:
            assert (view["status"], view["seq"], view["version"]) == (status, seq, seq), command
            assert response.headers["etag"] == f'"{seq}"'
        assert ok(await admin.get(f"/v1/tickets/{ticket['id']}"))["status"] == status

    final = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))
    assert final["priority"] == "P2"
    assert final["assignee"] == tech["id"]
    assert final["escalations"] == ["engineering", "vendor"]
    assert final["minutes_logged"] == 40
    assert final["cycle"] == 2
    assert (final["resolution"], final["close_reason"]) == ("workaround", "duplicate")
    assert final["comments"] == 4

    history = ok(await technician.get(f"/v1/tickets/{ticket['id']}/events"))
    expected_types = ["ticket.opened"]
    for _, command, _, _, event_type in steps:
        expected_types += (
            ["ticket.confirmed", "ticket.closed"] if command == "confirm" else [event_type]
        )
    assert [e["type"] for e in history] == expected_types
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    occurred = [e["occurred_at"] for e in history]
    assert occurred == sorted(occurred)
    assert history[1]["payload"]["scope"] == "in"  # break_fix is in the managed preset's scope
    assert history[1]["actor"] == {"type": "staff", "id": tech["id"]}
    assert history[0]["actor"]["type"] == "contact"
    reopened = next(e for e in history if e["type"] == "ticket.reopened")
    assert reopened["payload"]["cycle"] == 2

    # the contact's view leaves out internal comments and time entries
    seen = ok(await contact.get(f"/v1/tickets/{ticket['id']}/events"))
    hidden = {e["event_id"] for e in history} - {e["event_id"] for e in seen}
    hidden_events = [e for e in history if e["event_id"] in hidden]
    assert [e["type"] for e in hidden_events] == ["ticket.commented", "ticket.time_logged"]
    assert hidden_events[0]["payload"]["public"] is False
    assert all(e["payload"]["public"] for e in seen if e["type"] == "ticket.commented")
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))


async def test_refused_transitions_answer_409_and_change_nothing(admin: As) -> None:
    account = await new_account(admin)
    ticket = await new_ticket(admin, account["id"], priority="P3")
    tid = ticket["id"]
    refused: list[tuple[str, dict[str, Any]]] = [
        ("confirm", {}),
        ("vendor-return", {}),
        ("reopen", {"reason": "r"}),
        ("close", {"reason": "confirmed"}),
        ("partner-resolvable", {}),
    ]
    for command, body in refused:
        response = await run(admin, tid, command, body)
        assert response.status_code == 409, command
        assert response.headers["content-type"].startswith("application/problem+json")
    ok(await run(admin, tid, "close", {"reason": "duplicate"}))
    closed: list[tuple[str, dict[str, Any]]] = [
        ("comments", {"body": "x", "public": True}),
        ("customer-reply", {"body": "x"}),
        ("triage", {"priority": "P1"}),
        ("resolve", {"resolution": "fix", "summary": "s"}),
        ("close", {"reason": "duplicate"}),
    ]
    for command, body in closed:
        assert (await run(admin, tid, command, body)).status_code == 409, command
    view = ok(await admin.get(f"/v1/tickets/{tid}"))
    assert (view["status"], view["seq"]) == ("closed", 2)
    # late time entries are still booked on a closed ticket
    late = {"minutes": 15, "work_type": "remote", "worked_at": datetime.now(UTC).isoformat()}
    assert ok(await run(admin, tid, "time-entries", late))["minutes_logged"] == 15
    missing = await run(
        admin, "00000000-0000-0000-0000-000000000000", "assign", {"technician": "a"}
    )
    assert missing.status_code == 404


async def test_triage_checks_the_scope_catalogue(admin: As) -> None:
    account = await new_account(admin, agreement={"preset": "managed_budget"})
    ticket = await new_ticket(admin, account["id"])
    unknown = await run(admin, ticket["id"], "triage", {"priority": "P2", "category": "gaming"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "category"
    out = ok(
        await run(
            admin, ticket["id"], "triage", {"priority": "P2", "category": "root_cause_research"}
        )
    )
    assert (out["scope"], out["category"], out["status"]) == ("out", "root_cause_research", "open")


async def test_custom_fields_come_back_exactly_including_integers_beyond_64_bits(
    admin: As,
) -> None:
    # JSON allows any integer; the projection's documents must not refuse one or round it.
    account = await new_account(admin)
    fields = {"asset_serial": 2**70, "rack": -(2**63) - 1, "ratio": 0.1, "tags": ["a", 1]}
    ticket = await new_ticket(admin, account["id"], fields=fields)
    assert ticket["fields"] == fields
    again = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))
    assert again["fields"] == fields
