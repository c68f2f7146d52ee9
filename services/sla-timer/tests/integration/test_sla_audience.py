"""What a contact reads of their ticket's SLA: the public rule of
`helpdesk.shared.contracts.audience` (issue 21, point 7)."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.shared.contracts.audience import PUBLIC_CLOCK_FIELDS
from services.intake.tests.integration._support import (
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
)
from tests.support import InProcessService, wait_for
from tests.support.stack import instant, sla_view

pytestmark = pytest.mark.integration

TIERS = {
    "engineering": {"response_minutes": 240, "calendar": "24x7"},
    "management": {"response_minutes": 60, "calendar": "24x7"},
}


def _kinds(view: dict[str, Any]) -> list[tuple[str, str | None]]:
    return sorted((c["kind"], c.get("tier")) for c in view["clocks"])


async def test_a_contact_sees_their_promises_not_the_escalation_clocks(
    sla: InProcessService, admin: As
) -> None:
    """Before: a contact read every clock of their ticket (an escalation to management's own
        clock included, with warning thresholds), the effective priority and the VIP flag, all of
        which webhooks keep from them. Now they read the response and resolution clocks their
        agreement promises (due, met, breached) and nothing else, and their queue's next deadline is
    one of those; staff still read everything."""
    account = await new_account(admin, {"preset": "four_tier_24x7", "escalation_targets": TIERS})
    _, contact = await contact_key(admin, account["id"], visibility="account")
    _, technician = await staff_key(admin, "technician")
    ticket = await new_ticket(contact, account["id"], affected_users=2)
    ok(await run(technician, ticket["id"], "triage", {"priority": "P3", "kind": "incident"}))
    ok(await run(technician, ticket["id"], "escalate", {"tier": "management"}))

    staff = await wait_for(sla_view(sla, technician, ticket["id"], lambda v: len(v["clocks"]) == 3))
    assert _kinds(staff) == [("escalation", "management"), ("resolution", None), ("response", None)]
    assert {"effective_priority", "vip"} <= staff.keys()

    seen = await sla_view(sla, contact, ticket["id"])()
    assert _kinds(seen) == [("resolution", None), ("response", None)]
    assert all(list(c) == list(PUBLIC_CLOCK_FIELDS) for c in seen["clocks"])
    assert not {"effective_priority", "vip"} & seen.keys()
    due = {c["kind"]: c["due_at"] for c in staff["clocks"] if c["kind"] != "escalation"}
    assert {c["kind"]: c["due_at"] for c in seen["clocks"]} == due

    async def queued(caller: As) -> dict[str, Any]:
        response = await sla.http.get(
            "/v1/queue", headers={"Authorization": f"Bearer {caller.token}"}
        )
        (item,) = [i for i in ok(response)["items"] if i["ticket_id"] == ticket["id"]]
        return dict(item)

    # The queue's next deadline: the management clock's for staff, the response's for the
    # contact (who never learns that the escalation, or its clock, exists).
    due_of = {c["kind"]: instant(c["due_at"]) for c in staff["clocks"]}
    assert due_of["escalation"] < due_of["response"]
    staff_item, contact_item = await queued(technician), await queued(contact)
    assert instant(staff_item["next_due_at"]) == due_of["escalation"]
    assert instant(contact_item["next_due_at"]) == due_of["response"]
    assert "effective_priority" in staff_item
    assert "effective_priority" not in contact_item
