"""Tenancy and roles: who sees and does what, keys stored hashed, keys valid in other services."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.intake.adapters.tables import runtime as intake_tables
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import (
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    run,
    staff_key,
    unique,
)
from tests.support import InProcessService, in_process, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(admin: As) -> dict[str, Any]:
    """Two accounts; on A a contact seeing its own tickets, one seeing all, and a third."""
    a, b = await new_account(admin), await new_account(admin)
    own, own_as = await contact_key(admin, a["id"], "own")
    other, other_as = await contact_key(admin, a["id"], "own")
    everyone, everyone_as = await contact_key(admin, a["id"], "account")
    b_contact, b_as = await contact_key(admin, b["id"], "own")
    return {
        "a": a,
        "b": b,
        "own": (own, own_as),
        "other": (other, other_as),
        "account": (everyone, everyone_as),
        "b_contact": (b_contact, b_as),
        "own_ticket": await new_ticket(own_as, a["id"]),
        "other_ticket": await new_ticket(other_as, a["id"]),
        "b_ticket": await new_ticket(b_as, b["id"]),
    }


async def test_a_contact_opens_tickets_as_itself(world: dict[str, Any]) -> None:
    own, _ = world["own"]
    ticket = world["own_ticket"]
    assert ticket["contact_id"] == own["id"]
    assert ticket["account_id"] == world["a"]["id"]
    assert ticket["status"] == "new"
    assert ticket["number"].startswith("HD-")


async def test_a_contact_sees_nothing_of_another_account(world: dict[str, Any]) -> None:
    _, own = world["own"]
    b, b_ticket = world["b"], world["b_ticket"]
    for url in (
        f"/v1/accounts/{b['id']}",
        f"/v1/accounts/{b['id']}/agreement",
        f"/v1/accounts/{b['id']}/contacts",
        f"/v1/tickets/{b_ticket['id']}",
        f"/v1/tickets/{b_ticket['id']}/events",
    ):
        response = await own.get(url)
        assert response.status_code == 404, url
    assert (await run(own, b_ticket["id"], "customer-reply", {"body": "x"})).status_code == 404
    refused = await own.post("/v1/tickets", {"account_id": b["id"], "subject": "s"})
    assert refused.status_code == 404
    assert ok(await own.get(f"/v1/accounts/{world['a']['id']}"))["id"] == world["a"]["id"]
    assert [acc["id"] for acc in ok(await own.get("/v1/accounts"))] == [world["a"]["id"]]


async def test_visibility_own_hides_a_colleagues_ticket(world: dict[str, Any]) -> None:
    _, own = world["own"]
    _, everyone = world["account"]
    other_ticket = world["other_ticket"]
    assert (await own.get(f"/v1/tickets/{other_ticket['id']}")).status_code == 404
    assert (await own.get(f"/v1/tickets/{other_ticket['id']}/events")).status_code == 404
    reply = await run(own, other_ticket["id"], "customer-reply", {"body": "me too"})
    assert reply.status_code == 404
    assert ok(await everyone.get(f"/v1/tickets/{other_ticket['id']}"))["id"] == other_ticket["id"]
    assert len(ok(await everyone.get(f"/v1/tickets/{other_ticket['id']}/events"))) == 1


async def test_listing_shows_each_caller_what_it_may_see(world: dict[str, Any], admin: As) -> None:
    a_tickets = {world["own_ticket"]["id"], world["other_ticket"]["id"]}

    async def listed(caller: As, **params: Any) -> set[str]:
        return {t["id"] for t in ok(await caller.get("/v1/tickets", **params))["items"]}

    assert await listed(world["own"][1]) == {world["own_ticket"]["id"]}
    assert await listed(world["other"][1]) == {world["other_ticket"]["id"]}
    assert await listed(world["account"][1]) == a_tickets
    assert await listed(world["b_contact"][1]) == {world["b_ticket"]["id"]}
    # a contact cannot widen its view with a filter
    assert await listed(world["own"][1], account_id=world["b"]["id"]) == set()
    assert await listed(admin, account_id=world["a"]["id"]) == a_tickets
    everything = await listed(admin, limit=200)
    assert a_tickets | {world["b_ticket"]["id"]} <= everything


async def test_roles(world: dict[str, Any], admin: As) -> None:
    _, technician = await staff_key(admin, "technician")
    _, manager = await staff_key(admin, "manager")
    _, other_admin = await staff_key(admin, "admin")
    _, contact = world["own"]
    ticket = world["own_ticket"]

    # technicians handle tickets of every account but create no accounts
    assert (await technician.post("/v1/accounts", {"name": unique("x")})).status_code == 403
    triaged = ok(await run(technician, ticket["id"], "triage", {"priority": "P3"}))
    assert (triaged["status"], triaged["priority"]) == ("open", "P3")
    b_ticket = world["b_ticket"]
    assert ok(await technician.get(f"/v1/tickets/{b_ticket['id']}"))["id"] == b_ticket["id"]
    assert (
        await technician.patch(f"/v1/accounts/{world['a']['id']}", {"status": "on_hold"})
    ).status_code == 403

    # managers run accounts but not staff or staff keys
    assert (await manager.post("/v1/accounts", {"name": unique("m")})).status_code == 201
    staff_body = {"name": "n", "email": f"{unique('m')}@example.com", "role": "technician"}
    assert (await manager.post("/v1/staff", staff_body)).status_code == 403
    assert (await manager.post("/v1/api-keys", {"role": "import"})).status_code == 403

    # an admin key does it all
    assert (await other_admin.post("/v1/staff", staff_body)).status_code == 201

    # contacts answer, but do not triage, assign, comment internally or create accounts
    forbidden: list[tuple[str, dict[str, Any]]] = [
        ("triage", {"priority": "P1"}),
        ("assign", {"technician": "me"}),
        ("comments", {"body": "x", "public": True}),
        ("resolve", {"resolution": "fix", "summary": "s"}),
        (
            "time-entries",
            {"minutes": 5, "work_type": "remote", "worked_at": triaged["reported_at"]},
        ),
    ]
    for command, body in forbidden:
        assert (await run(contact, ticket["id"], command, body)).status_code == 403, command
    assert (await contact.post("/v1/accounts", {"name": unique("c")})).status_code == 403
    assert (await contact.get("/v1/staff")).status_code == 403
    replied = ok(await run(contact, ticket["id"], "customer-reply", {"body": "thanks"}))
    assert replied["version"] == triaged["version"] + 1  # both events are public


async def test_keys_are_stored_hashed_and_revocable(
    world: dict[str, Any], admin: As, intake: InProcessService
) -> None:
    member, technician = await staff_key(admin, "technician")
    token = technician.token
    assert token.startswith(f"hd_{member['key_id']}_")
    keys = intake_tables.api_keys
    assert not any(c.name == "token" for c in keys.columns)
    async with intake.runtime.engine.connect() as conn:
        row = (await conn.execute(sa.select(keys).where(keys.c.key_id == member["key_id"]))).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(value) for value in row}
    assert (await technician.get("/v1/tickets")).status_code == 200

    assert (await admin.delete(f"/v1/api-keys/{member['key_id']}")).status_code == 204
    refused = await technician.get("/v1/tickets")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert (await admin.delete(f"/v1/api-keys/{member['key_id']}")).status_code == 204
    assert (await admin.delete("/v1/api-keys/nope")).status_code == 404
    assert (await As(admin.http, token + "x").get("/v1/tickets")).status_code == 401
    assert (await As(admin.http, "hd_garbage").get("/v1/tickets")).status_code == 401
    assert (await admin.http.get("/v1/tickets", headers={"Authorization": ""})).status_code == 401


async def test_key_requests_are_checked(world: dict[str, Any], admin: As) -> None:
    member, _ = await staff_key(admin, "technician")
    # a staff key names a staff member of that very role
    mismatch = await admin.post("/v1/api-keys", {"role": "manager", "staff_id": member["id"]})
    assert mismatch.status_code == 422
    assert (await admin.post("/v1/api-keys", {"role": "contact"})).status_code == 422
    contact, _ = world["own"]
    wrong_account = {"role": "contact", "contact_id": contact["id"], "account_id": world["b"]["id"]}
    assert (await admin.post("/v1/api-keys", wrong_account)).status_code == 422
    importing = {"role": "contact", "contact_id": contact["id"], "scopes": ["import"]}
    assert (await admin.post("/v1/api-keys", importing)).status_code == 422


async def test_a_key_issued_at_intake_works_at_the_sla_timer(
    world: dict[str, Any], admin: As, stack: Settings
) -> None:
    _, own = world["own"]
    own_ticket, b_ticket = world["own_ticket"], world["b_ticket"]
    _, doomed = await contact_key(admin, world["a"]["id"], visibility="account")
    _, colleague = await contact_key(admin, world["a"]["id"])
    async with in_process("sla_timer", stack) as sla:
        sla_own = As(sla.http, own.token)
        sla_admin = As(sla.http, admin.token)

        async def status(caller: As, ticket_id: str) -> int | None:
            code = (await caller.get(f"/v1/tickets/{ticket_id}/sla")).status_code
            return code if code != 401 else None

        async def seen(caller: As, ticket_id: str) -> bool:
            return (await caller.get(f"/v1/tickets/{ticket_id}/sla")).status_code == 200

        await wait_for(lambda: seen(sla_own, own_ticket["id"]))
        view = ok(await sla_own.get(f"/v1/tickets/{own_ticket['id']}/sla"))
        assert view["ticket_id"] == own_ticket["id"]
        await wait_for(lambda: seen(sla_admin, b_ticket["id"]))
        assert await status(sla_own, b_ticket["id"]) == 404
        # Visibility "own" holds at the SLA timer too: a colleague's ticket is not theirs.
        sla_colleague = As(sla.http, colleague.token)
        await wait_for(lambda: status(sla_colleague, own_ticket["id"]))
        assert await status(sla_colleague, own_ticket["id"]) == 404

        # a revocation reaches the other service too
        sla_doomed = As(sla.http, doomed.token)
        await wait_for(lambda: seen(sla_doomed, own_ticket["id"]))
        key_id = doomed.token.split("_")[1]
        assert (await admin.delete(f"/v1/api-keys/{key_id}")).status_code == 204

        async def refused() -> bool:
            return (await sla_doomed.get(f"/v1/tickets/{own_ticket['id']}/sla")).status_code == 401

        await wait_for(refused)
