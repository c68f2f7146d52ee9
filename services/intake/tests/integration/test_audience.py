"""What a contact reads of their ticket moves only with public events (issue 21, point 7)."""

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


async def _contact_reads(contact: As, ticket_id: str) -> dict[str, Any]:
    """Everything a contact reads of one ticket: the ticket, its ETag, its row in the list and
    its history."""
    answer = await contact.get(f"/v1/tickets/{ticket_id}")
    listed = ok(await contact.get("/v1/tickets"))["items"]
    return {
        "ticket": ok(answer),
        "etag": answer.headers["etag"],
        "listed": next(t for t in listed if t["id"] == ticket_id),
        "events": ok(await contact.get(f"/v1/tickets/{ticket_id}/events")),
    }


async def test_internal_work_moves_nothing_a_contact_reads(admin: As) -> None:
    """Before: a contact saw `seq`/ETag 7 beside a history of 5 events, `updated_at` moved on
    internal notes and time entries, and an escalation to management was in their `/events` and
    `escalations`. Now the contact's version counts public events only (their ETag and
    If-Match), `updated_at` is the last public event's instant, and staff-only events are left
    out everywhere; staff still see all of it."""
    account = await new_account(admin, agreement={"preset": "managed_budget"})
    _, contact = await contact_key(admin, account["id"], visibility="account")
    _, technician = await staff_key(admin, "technician")
    ticket = await new_ticket(contact, account["id"], description="VPN drops")
    tid = ticket["id"]
    ok(await run(technician, tid, "triage", {"priority": "P3", "kind": "incident"}))
    ok(await run(technician, tid, "comments", {"body": "on it", "public": True}))
    before = await _contact_reads(contact, tid)
    assert before["ticket"]["version"] == 3
    assert before["etag"] == '"3"'
    assert "seq" not in before["ticket"]

    worked_at = datetime.now(UTC).isoformat()
    internal: list[tuple[str, dict[str, Any]]] = [
        ("comments", {"body": "user keeps rebooting the router", "public": False}),
        ("time-entries", {"minutes": 25, "work_type": "remote", "worked_at": worked_at}),
        ("escalate", {"tier": "management"}),
    ]
    for command, body in internal:
        ok(await run(technician, tid, command, body))
    after = await _contact_reads(contact, tid)

    assert after == before
    assert after["ticket"]["escalations"] == []
    last_public = after["events"][-1]["occurred_at"].replace("Z", "+00:00")
    assert datetime.fromisoformat(after["ticket"]["updated_at"]) == datetime.fromisoformat(
        last_public
    )
    assert after["listed"]["version"] == 3
    assert [e["seq"] for e in after["events"]] == [1, 2, 3]
    assert [e["type"] for e in after["events"]] == [
        "ticket.opened",
        "ticket.triaged",
        "ticket.commented",
    ]

    staff_view = await technician.get(f"/v1/tickets/{tid}")
    assert (ok(staff_view)["seq"], ok(staff_view)["version"]) == (6, 6)
    assert staff_view.headers["etag"] == '"6"'
    assert ok(staff_view)["escalations"] == ["management"]
    assert ok(staff_view)["updated_at"] > after["ticket"]["updated_at"]
    staff_history = ok(await technician.get(f"/v1/tickets/{tid}/events"))
    assert [e["type"] for e in staff_history[3:]] == [
        "ticket.commented",
        "ticket.time_logged",
        "ticket.escalated",
    ]

    # The contact's If-Match names their version: the internal seq is stale for them, theirs
    # holds, and a public event moves it by one.
    stale = await run(contact, tid, "customer-reply", {"body": "still drops"}, {"If-Match": '"6"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"3"'
    replied = await run(
        contact, tid, "customer-reply", {"body": "still drops"}, {"If-Match": '"3"'}
    )
    assert ok(replied)["version"] == 4
    assert replied.headers["etag"] == '"4"'

    # A public escalation shows, as the webhooks' rule says.
    ok(await run(technician, tid, "escalate", {"tier": "engineering"}))
    seen = await _contact_reads(contact, tid)
    assert seen["ticket"]["escalations"] == ["engineering"]
    assert seen["etag"] == '"5"'
    assert seen["events"][-1]["type"] == "ticket.escalated"
    assert seen["events"][-1]["seq"] == 5
