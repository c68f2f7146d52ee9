"""Issue 21 at intake's edge: what a request may hold, bounded numbers, and the races left.

Each limit is sent at the limit (taken) and one over (a 422 naming the field, or a 413 for the
body), and nothing is recorded for a refusal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.intake.adapters.tables import account_numbers, agreements, tickets
from helpdesk.intake.application.commands import (
    MAX_FIELD_STRING,
    MAX_FIELDS,
    MAX_FIELDS_BYTES,
    MAX_TEXT,
)
from helpdesk.shared.contracts.tickets import MAX_AFFECTED_USERS
from helpdesk.shared.web import MAX_BODY_BYTES
from services.intake.tests.integration._support import (
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    problem_fields,
    run,
    unique,
)
from tests.support import ADMIN_TOKEN, InProcessService

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def account(admin: As) -> dict[str, Any]:
    return await new_account(admin)


async def _tickets_with_subject(intake: InProcessService, subject: str) -> int:
    async with intake.runtime.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(tickets.c.subject == subject)
        return int(await conn.scalar(query) or 0)


def fields_of_size(size: int) -> dict[str, Any]:
    """Free-form fields of exactly `size` bytes as compact JSON, no string over the limit."""
    count = size // (MAX_FIELD_STRING + 3) + 1
    blob = ["x" * MAX_FIELD_STRING] * count
    fields = {"blob": blob}
    excess = len(json.dumps(fields, separators=(",", ":"))) - size
    blob[-1] = "x" * (MAX_FIELD_STRING - excess)
    assert len(json.dumps(fields, separators=(",", ":")).encode()) == size
    return fields


async def test_texts_fields_and_numbers_are_taken_at_their_limit_and_refused_one_over(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    """Issue 21: a 1.5 MB `fields` blob used to answer 201 and freeze the outbox."""
    at, over = unique("at"), unique("over")

    async def opens(subject: str, **body: Any) -> Any:
        return await admin.post(
            "/v1/tickets", {"account_id": account["id"], "subject": subject, **body}
        )

    limits: list[tuple[str, Any, Any]] = [
        ("description", "d" * MAX_TEXT, "d" * (MAX_TEXT + 1)),
        ("fields", fields_of_size(MAX_FIELDS_BYTES), fields_of_size(MAX_FIELDS_BYTES + 1)),
        ("fields", {"s": "x" * MAX_FIELD_STRING}, {"s": "x" * (MAX_FIELD_STRING + 1)}),
        (
            "fields",
            {f"k{i}": i for i in range(MAX_FIELDS)},
            {f"k{i}": i for i in range(MAX_FIELDS + 1)},
        ),
        ("affected_users", MAX_AFFECTED_USERS, MAX_AFFECTED_USERS + 1),
        ("affected_users", MAX_AFFECTED_USERS, 2**31),
    ]
    for field, taken, refused in limits:
        ok(await opens(at, **{field: taken}), 201)
        assert problem_fields(await opens(over, **{field: refused})) == [field], field
    assert await _tickets_with_subject(intake, at) == len(limits)
    assert await _tickets_with_subject(intake, over) == 0

    # one text on every other command
    ticket = await new_ticket(admin, account["id"], priority="P3")
    comment = {"body": "c" * MAX_TEXT, "public": False}
    ok(await run(admin, ticket["id"], "comments", comment))
    longer = await run(admin, ticket["id"], "comments", {**comment, "body": "c" * (MAX_TEXT + 1)})
    assert problem_fields(longer) == ["body"]
    escalated = await run(
        admin,
        ticket["id"],
        "escalate",
        {"tier": "engineering", "fields": fields_of_size(MAX_FIELDS_BYTES + 1)},
    )
    assert problem_fields(escalated) == ["fields"]

    # the whole body: one byte over 1 MiB is a 413 before any field is looked at
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    prefix = json.dumps({"account_id": account["id"], "subject": over, "description": ""})[:-2]
    filler = MAX_BODY_BYTES - len(prefix) - 2
    at_limit = (prefix + "d" * filler + '"}').encode()
    assert len(at_limit) == MAX_BODY_BYTES
    response = await admin.http.post("/v1/tickets", content=at_limit, headers=headers)
    assert problem_fields(response) == ["description"]  # read whole, refused by its own limit
    one_over = (prefix + "d" * (filler + 1) + '"}').encode()
    assert problem_fields(
        await admin.http.post("/v1/tickets", content=one_over, headers=headers), 413
    ) == ["body"]
    assert await _tickets_with_subject(intake, over) == 0


async def test_text_json_cannot_carry_is_refused_on_open_and_on_escalate(
    admin: As, account: dict[str, Any]
) -> None:
    """Issue 21, point 5: a lone surrogate in a `fields` key answered 500 on open and was
    stored mangled on escalate; NaN was stored as null."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    opened = '{"account_id": "' + account["id"] + '", "subject": "s", "fields": {"\\udfff": 1}}'
    response = await admin.http.post("/v1/tickets", content=opened, headers=headers)
    assert problem_fields(response) == ["fields.\\udfff"]
    ticket = await new_ticket(admin, account["id"], priority="P3")
    url = f"/v1/tickets/{ticket['id']}/escalate"
    for body in (
        '{"tier": "engineering", "fields": {"\\udfff": 1}}',
        '{"tier": "engineering", "fields": {"n": NaN}}',
    ):
        assert (await admin.http.post(url, content=body, headers=headers)).status_code == 422, body
    assert ok(await admin.get(f"/v1/tickets/{ticket['id']}"))["seq"] == 1


async def test_twenty_concurrent_agreement_puts_are_twenty_versions_each_answered_truly(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    """Issue 21, point 3: twenty PUTs all answered 200 but only two versions were stored."""
    target = await new_account(admin)
    url = f"/v1/accounts/{target['id']}/agreement"
    presets = ["small_business_remote", "four_tier_24x7", "cloud_platform", "managed_budget"]
    answers = await asyncio.gather(*(admin.put(url, {"preset": presets[i % 4]}) for i in range(20)))
    answered = {ok(a)["version"]: ok(a)["preset"] for a in answers}
    assert sorted(answered) == list(range(1, 21))
    async with intake.runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(agreements.c.version, agreements.c.agreement).where(
                agreements.c.account_id == target["id"]
            )
        )
        stored = {row.version: row.agreement["preset"] for row in rows}
    assert stored == answered  # every caller was told the version that holds its agreement
    current = await admin.get(url)
    assert (ok(current)["version"], current.headers["etag"]) == (20, '"20"')

    # If-Match: a stale version is a 412 that names the current one; the current one is taken
    stale = await admin.http.put(
        url,
        json={"preset": presets[0]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "If-Match": '"19"'},
    )
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"20"'
    racing = await asyncio.gather(
        *(
            admin.http.put(
                url,
                json={"preset": presets[i % 4]},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "If-Match": '"20"'},
            )
            for i in range(5)
        )
    )
    assert sorted(r.status_code for r in racing) == [200, 412, 412, 412, 412]
    winner = next(r for r in racing if r.status_code == 200)
    assert (winner.json()["version"], winner.headers["etag"]) == (21, '"21"')
    assert ok(await admin.get(url))["version"] == 21


async def test_generated_account_numbers_skip_numbers_clients_chose(
    admin: As, intake: InProcessService
) -> None:
    """Issue 21, point 6: `"number": "AC-<next>"` made the next create without one fail."""
    async with intake.runtime.engine.begin() as conn:
        last = int(await conn.scalar(sa.select(account_numbers.next_value())) or 0)
    squatted = [f"AC-{last + i}" for i in range(1, 4)]
    for number in squatted:
        ok(await admin.post("/v1/accounts", {"name": unique("squat"), "number": number}), 201)
    generated = ok(await admin.post("/v1/accounts", {"name": unique("plain")}), 201)
    assert generated["number"] not in squatted
    assert generated["number"] == f"AC-{last + 4}"


async def test_every_creating_route_answers_with_and_without_an_idempotency_key(
    admin: As, account: dict[str, Any]
) -> None:
    """Issue 21, point 4: each create answers 201 and what it created can be read back."""
    ticket = await new_ticket(admin, account["id"], priority="P3")
    for keyed in (False, True):

        def key(keyed: bool = keyed) -> dict[str, str] | None:
            return {"Idempotency-Key": unique("k")} if keyed else None

        created = ok(await admin.post("/v1/accounts", {"name": unique("a")}, key()), 201)
        assert ok(await admin.get(f"/v1/accounts/{created['id']}"))["id"] == created["id"]
        person = {"name": unique("c"), "email": f"{unique('c')}@example.com"}
        added = ok(await admin.post(f"/v1/accounts/{account['id']}/contacts", person, key()), 201)
        listed = ok(await admin.get(f"/v1/accounts/{account['id']}/contacts"))
        assert added["id"] in {c["id"] for c in listed}
        member = {**person, "email": f"{unique('s')}@example.com", "role": "technician"}
        staffed = ok(await admin.post("/v1/staff", member, key()), 201)
        assert staffed["id"] in {s["id"] for s in ok(await admin.get("/v1/staff"))}
        keyed = ok(
            await admin.post("/v1/api-keys", {"role": "contact", "contact_id": added["id"]}, key()),
            201,
        )
        assert ok(await As(admin.http, keyed["token"]).get("/v1/me"))["role"] == "contact"
        opened = ok(
            await admin.post("/v1/tickets", {"account_id": account["id"], "subject": "s"}, key()),
            201,
        )
        assert ok(await admin.get(f"/v1/tickets/{opened['id']}"))["id"] == opened["id"]
        entry = {"minutes": 5, "work_type": "remote", "worked_at": ticket["reported_at"]}
        logged = ok(await run(admin, ticket["id"], "time-entries", entry, key()))
        assert logged["id"] == ticket["id"]


async def test_a_contact_who_sees_only_their_tickets_lists_only_themselves(
    admin: As, account: dict[str, Any]
) -> None:
    """Issue 21, point 8: a contact with visibility `own` could list every colleague's e-mail
    address. They see their own entry; a contact who sees the account's tickets sees all."""
    own, own_key = await contact_key(admin, account["id"], visibility="own")
    colleague, colleague_key = await contact_key(admin, account["id"], visibility="account")
    url = f"/v1/accounts/{account['id']}/contacts"
    assert [c["id"] for c in ok(await own_key.get(url))] == [own["id"]]
    everyone = {c["id"] for c in ok(await colleague_key.get(url))}
    assert {own["id"], colleague["id"]} <= everyone
    assert {c["id"] for c in ok(await admin.get(url))} == everyone
