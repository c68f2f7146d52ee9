"""Account status closes open tickets; the SLA timer's auto-close request closes a ticket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.events import Actor, new_envelope
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import As, new_account, new_ticket, ok, run
from tests.support import publish, wait_for

pytestmark = pytest.mark.integration


async def tickets_in_every_state(admin: As, account_id: str) -> dict[str, str]:
    """status -> ticket id, one ticket per status."""
    made: dict[str, str] = {}
    made["new"] = (await new_ticket(admin, account_id))["id"]
    made["open"] = (await new_ticket(admin, account_id, priority="P2"))["id"]
    waiting = await new_ticket(admin, account_id, priority="P3")
    ok(await run(admin, waiting["id"], "request-info", {"body": "which one?"}))
    made["waiting_on_customer"] = waiting["id"]
    vendor = await new_ticket(admin, account_id, priority="P3")
    ok(await run(admin, vendor["id"], "escalate", {"tier": "vendor"}))
    made["waiting_on_vendor"] = vendor["id"]
    resolved = await new_ticket(admin, account_id, priority="P4")
    ok(await run(admin, resolved["id"], "resolve", {"resolution": "fix", "summary": "s"}))
    made["resolved"] = resolved["id"]
    closed = await new_ticket(admin, account_id, priority="P4")
    ok(await run(admin, closed["id"], "close", {"reason": "duplicate"}))
    made["closed"] = closed["id"]
    for status, ticket_id in made.items():
        assert ok(await admin.get(f"/v1/tickets/{ticket_id}"))["status"] == status
    return made


@pytest.mark.parametrize(
    ("status", "reason"), [("on_hold", "account_on_hold"), ("expired", "contract_expired")]
)
async def test_a_non_active_account_closes_its_tickets_and_takes_no_new_ones(
    admin: As, status: str, reason: str
) -> None:
    account = await new_account(admin)
    bystander = await new_account(admin)
    untouched = await new_ticket(admin, bystander["id"])
    made = await tickets_in_every_state(admin, account["id"])
    url = f"/v1/accounts/{account['id']}"
    assert ok(await admin.patch(url, {"status": status}))["status"] == status
    for was, ticket_id in made.items():
        ticket = ok(await admin.get(f"/v1/tickets/{ticket_id}"))
        assert ticket["status"] == "closed", was
        assert ticket["close_reason"] == (reason if was != "closed" else "duplicate"), was
    last = ok(await admin.get(f"/v1/tickets/{made['open']}/events"))[-1]
    assert (last["type"], last["payload"]["reason"]) == ("ticket.closed", reason)

    refused = await admin.post("/v1/tickets", {"account_id": account["id"], "subject": "s"})
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert ok(await admin.get(f"/v1/tickets/{untouched['id']}"))["status"] == "new"

    # the same status again changes nothing; back to active takes tickets again
    assert ok(await admin.patch(url, {"status": status}))["status"] == status
    assert ok(await admin.patch(url, {"status": "active"}))["status"] == "active"
    assert (await new_ticket(admin, account["id"]))["status"] == "new"
    closed = ok(await admin.get(f"/v1/tickets/{made['open']}"))
    assert closed["status"] == "closed"
    assert ok(await admin.get(f"/v1/tickets/{made['closed']}"))["seq"] == 2


async def send(settings: Settings, account_id: str, ticket_id: str, ticket_seq: int) -> None:
    """Publish the SLA timer's request to close a ticket."""
    now = datetime.now(UTC)
    payload = AutoCloseRequested(
        ticket_id=uuid.UUID(ticket_id), ticket_seq=ticket_seq, unanswered_follow_ups=3
    )
    envelope = new_envelope(
        payload,
        account_id=uuid.UUID(account_id),
        actor=Actor(type="system", id="sla_timer"),
        occurred_at=now,
        recorded_at=now,
        correlation_id=str(uuid.uuid4()),
        ticket_id=uuid.UUID(ticket_id),
    )
    await publish(settings.kafka_bootstrap, settings.topic, [envelope])


async def test_the_sla_timers_auto_close_request(admin: As, stack: Settings) -> None:
    account = await new_account(admin)
    stale = await new_ticket(admin, account["id"], priority="P3")
    asked = ok(await run(admin, stale["id"], "request-info", {"body": "which printer?"}))
    replied = ok(await run(admin, stale["id"], "customer-reply", {"body": "the big one"}))
    assert replied["status"] == "open"
    again = ok(await run(admin, stale["id"], "request-info", {"body": "still there?"}))
    waiting = await new_ticket(admin, account["id"], priority="P3")
    current = ok(await run(admin, waiting["id"], "request-info", {"body": "hello?"}))
    already_open = await new_ticket(admin, account["id"], priority="P3")

    # stale: the seq the timer saw is before the customer answered
    await send(stack, account["id"], stale["id"], asked["seq"])
    # not waiting on the customer at all
    await send(stack, account["id"], already_open["id"], already_open["seq"])
    # current: one account means one partition, so the requests above are handled first
    await send(stack, account["id"], waiting["id"], current["seq"])

    async def closed() -> dict[str, Any] | None:
        ticket: dict[str, Any] = ok(await admin.get(f"/v1/tickets/{waiting['id']}"))
        return ticket if ticket["status"] == "closed" else None

    ticket = await wait_for(closed)
    assert ticket["close_reason"] == "no_response"
    assert ticket["seq"] == current["seq"] + 1
    last = ok(await admin.get(f"/v1/tickets/{waiting['id']}/events"))[-1]
    assert last["actor"] == {"type": "system", "id": "intake"}
    assert last["seq"] == current["seq"] + 1

    untouched = ok(await admin.get(f"/v1/tickets/{stale['id']}"))
    assert (untouched["status"], untouched["seq"]) == ("waiting_on_customer", again["seq"])
    assert ok(await admin.get(f"/v1/tickets/{already_open['id']}"))["status"] == "open"

    # a redelivered request for the closed ticket changes nothing either
    await send(stack, account["id"], waiting["id"], current["seq"])
    marker = await new_ticket(admin, account["id"], priority="P3")
    marked = ok(await run(admin, marker["id"], "request-info", {"body": "?"}))
    await send(stack, account["id"], marker["id"], marked["seq"])

    async def marker_closed() -> bool:
        return bool(ok(await admin.get(f"/v1/tickets/{marker['id']}"))["status"] == "closed")

    await wait_for(marker_closed)
    assert ok(await admin.get(f"/v1/tickets/{waiting['id']}"))["seq"] == current["seq"] + 1


async def test_the_auto_close_request_closes_a_resolved_ticket_once(
    admin: As, stack: Settings
) -> None:
    """Seed 003 § 4.2.2: "We will close a ticket if you do not respond to repeated inquires (3+)
    by our technicians to confirm whether the problem has been satisfactorily resolved"."""
    account = await new_account(admin)
    resolved = await new_ticket(admin, account["id"], priority="P3")
    done = ok(await run(admin, resolved["id"], "resolve", {"resolution": "fix", "summary": "s"}))
    for _ in range(2):  # redelivered: closes once
        await send(stack, account["id"], resolved["id"], done["seq"])

    async def closed() -> dict[str, Any] | None:
        ticket: dict[str, Any] = ok(await admin.get(f"/v1/tickets/{resolved['id']}"))
        return ticket if ticket["status"] == "closed" else None

    ticket = await wait_for(closed)
    assert (ticket["close_reason"], ticket["seq"]) == ("no_response", done["seq"] + 1)
    # A marker request behind the second one: once it is handled, so is the repeat.
    marker = await new_ticket(admin, account["id"], priority="P3")
    marked = ok(await run(admin, marker["id"], "resolve", {"resolution": "fix", "summary": "s"}))
    await send(stack, account["id"], marker["id"], marked["seq"])

    async def marker_closed() -> bool:
        return bool(ok(await admin.get(f"/v1/tickets/{marker['id']}"))["status"] == "closed")

    await wait_for(marker_closed)
    events = ok(await admin.get(f"/v1/tickets/{resolved['id']}/events"))
    assert [e["type"] for e in events].count("ticket.closed") == 1
