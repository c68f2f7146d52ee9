"""The API edge (issue 9): what used to answer 500, lose a race, leak, or say too little.

One intake runs in-process for the module; each test makes its own accounts and keys.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from helpdesk.deploy.stack import Infra, Stack
from helpdesk.intake.adapters.smtp import InboundHandler
from helpdesk.intake.adapters.tables import accounts, contacts, inbound_messages, runtime, staff
from helpdesk.shared.events import Envelope
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import (
    PROBLEM,
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    problem_fields,
    run,
    staff_key,
    unique,
)
from tests.support import (
    ADMIN_TOKEN,
    SPECS,
    InProcessService,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def account(admin: As) -> dict[str, Any]:
    return await new_account(admin)


def _email(sender: str, subject: str, body: str, message_id: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@provider.example"
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@customer.example>"
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


async def _post_email(admin: As, raw: bytes) -> httpx.Response:
    return await admin.http.post(
        "/v1/inbound/email",
        content=raw,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "message/rfc822"},
    )


async def _on_stream(
    intake: InProcessService, settings: Settings, type_: str
) -> list[dict[str, Any]]:
    """The payloads of `type_` on the topic, once intake's outbox is published."""

    async def published() -> bool:
        async with intake.runtime.engine.connect() as conn:
            waiting = await conn.scalar(sa.select(sa.func.count()).select_from(runtime.outbox))
        return waiting == 0

    await wait_for(published)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    payloads: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        read = 0
        while read < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    read += 1
                    envelope = Envelope.from_bytes(record.value)
                    if envelope.type == type_:
                        payloads.append(envelope.document())
    finally:
        await consumer.stop()
    return payloads


# -- 1: NUL characters ------------------------------------------------------------------------


async def test_nul_characters_are_a_422_naming_the_field_not_a_500(
    admin: As, account: dict[str, Any]
) -> None:
    subject = {"account_id": account["id"], "subject": "a\u0000b"}
    assert problem_fields(await admin.post("/v1/tickets", subject)) == ["subject"]
    nested = {"account_id": account["id"], "subject": "s", "fields": {"k": ["x", "\u0000"]}}
    assert problem_fields(await admin.post("/v1/tickets", nested)) == ["fields.k.1"]
    assert problem_fields(await admin.post("/v1/accounts", {"name": "x\u0000"})) == ["name"]
    patched = await admin.patch(f"/v1/accounts/{account['id']}", {"name": "y\u0000"})
    assert problem_fields(patched) == ["name"]
    member = {"name": "\u0000", "email": f"{unique('s')}@example.com", "role": "technician"}
    assert problem_fields(await admin.post("/v1/staff", member)) == ["name"]
    for query in ("q=%00", "assignee=a%00b"):
        response = await admin.http.get(f"/v1/tickets?{query}")
        assert problem_fields(response) == [query.split("=")[0]], query
    assert problem_fields(await admin.delete("/v1/api-keys/%00")) == ["path"]
    # a token whose key id is not one intake issues is a 401, not a database error
    bad_token = As(admin.http, "hd_not-hex!_x")
    assert (await bad_token.get("/v1/me")).status_code == 401


async def test_an_email_with_nul_characters_is_stored_without_them(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    contact, _ = await contact_key(admin, account["id"])
    raw = _email(contact["email"], "printer\u0000 down", "it\u0000 jams")
    opened = ok(await _post_email(admin, raw), 201)
    ticket = ok(await admin.get(f"/v1/tickets/{opened['ticket_id']}"))
    assert (ticket["subject"], ticket["description"]) == ("printer down", "it jams")
    # over SMTP the same message is taken (250), not deferred forever (451)
    envelope = SmtpEnvelope()
    envelope.mail_from = contact["email"]
    envelope.original_content = _email(contact["email"], "again\u0000", "body\u0000")
    handler = InboundHandler(intake.runtime)
    assert await handler.handle_DATA(None, None, envelope) == "250 OK"  # type: ignore[arg-type]


# -- 2: datetimes -----------------------------------------------------------------------------


async def test_datetimes_are_bounded(admin: As, account: dict[str, Any]) -> None:
    importer = As(
        admin.http, ok(await admin.post("/v1/api-keys", {"role": "import"}), 201)["token"]
    )
    far_past = {"account_id": account["id"], "subject": "s"}
    for instant in ("0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"):
        response = await importer.post("/v1/tickets", {**far_past, "reported_at": instant})
        assert problem_fields(response) == ["reported_at"], instant
        response = await importer.post("/v1/tickets", {**far_past, "occurred_at": instant})
        assert problem_fields(response) == ["occurred_at"], instant
    ticket = await new_ticket(admin, account["id"], priority="P3")
    for instant in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"):
        entry = {"minutes": 5, "work_type": "remote", "worked_at": instant}
        assert problem_fields(await run(admin, ticket["id"], "time-entries", entry)) == [
            "worked_at"
        ], instant
    # work on a ticket does not precede its report
    before = datetime.fromisoformat(ticket["reported_at"]) - timedelta(hours=1)
    entry = {"minutes": 5, "work_type": "remote", "worked_at": before.isoformat()}
    assert problem_fields(await run(admin, ticket["id"], "time-entries", entry)) == ["worked_at"]
    assert ok(await admin.get(f"/v1/tickets/{ticket['id']}"))["seq"] == 1


# -- 4, 5, 6: uniqueness under concurrency ----------------------------------------------------


async def test_concurrent_renames_to_one_name_are_one_200_and_409s(admin: As) -> None:
    targets = [await new_account(admin) for _ in range(10)]
    name = unique("renamed")
    answers = await asyncio.gather(
        *(admin.patch(f"/v1/accounts/{a['id']}", {"name": name}) for a in targets)
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * 9, codes
    assert all(r.headers["content-type"].startswith(PROBLEM) for r in answers if r.is_error)


async def test_concurrent_account_creates_are_one_201_and_409s(
    admin: As, intake: InProcessService, stack: Settings
) -> None:
    name, number = unique("same"), unique("N")
    by_name = await asyncio.gather(*(admin.post("/v1/accounts", {"name": name}) for _ in range(25)))
    by_number = await asyncio.gather(
        *(admin.post("/v1/accounts", {"name": unique("n"), "number": number}) for _ in range(25))
    )
    for answers in (by_name, by_number):
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] + [409] * 24, codes
    async with intake.runtime.engine.connect() as conn:
        clash = sa.or_(accounts.c.name == name, accounts.c.number == number)
        assert await conn.scalar(sa.select(sa.func.count()).where(clash)) == 2
    opened = await _on_stream(intake, stack, "account.opened")
    assert len([e for e in opened if e["name"] == name]) == 1
    assert len([e for e in opened if e["number"] == number]) == 1


async def test_concurrent_people_with_one_email_are_one_201_and_409s(
    admin: As, account: dict[str, Any], intake: InProcessService, stack: Settings
) -> None:
    email = f"{unique('dup')}@example.com"
    body = {"name": "Dup", "email": email}
    answers = await asyncio.gather(
        *(admin.post(f"/v1/accounts/{account['id']}/contacts", body) for _ in range(20))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 19, codes
    created = next(r.json() for r in answers if r.status_code == 201)
    async with intake.runtime.engine.connect() as conn:
        found = (
            await conn.execute(sa.select(contacts.c.id).where(contacts.c.email == email))
        ).all()
    assert [row.id for row in found] == [uuid.UUID(created["id"])]
    added = await _on_stream(intake, stack, "contact.added")
    assert len([e for e in added if e["email"] == email]) == 1

    email = f"{unique('dup')}@example.com"
    member = {"name": "Dup", "email": email, "role": "technician"}
    answers = await asyncio.gather(*(admin.post("/v1/staff", member) for _ in range(20)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 19, codes
    async with intake.runtime.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).where(staff.c.email == email)) == 1
    added = await _on_stream(intake, stack, "account.staff_added")
    assert len([e for e in added if e["email"] == email]) == 1


# -- 7, 10, 12: Idempotency-Key ---------------------------------------------------------------


async def _idempotency_rows(intake: InProcessService, key: str) -> list[Any]:
    table = runtime.idempotency_keys
    async with intake.runtime.engine.connect() as conn:
        return list((await conn.execute(sa.select(table).where(table.c.key == key))).all())


async def test_a_fault_frees_the_key_and_keys_expire(
    admin: As, account: dict[str, Any], intake: InProcessService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpdesk.intake.application import tickets as commands

    real = commands.open_ticket

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault")

    body = {"account_id": account["id"], "subject": unique("s")}
    key = {"Idempotency-Key": unique("fault")}
    monkeypatch.setattr(commands, "open_ticket", broken)
    with pytest.raises(RuntimeError):
        await admin.post("/v1/tickets", body, key)
    assert await _idempotency_rows(intake, key["Idempotency-Key"]) == []
    monkeypatch.setattr(commands, "open_ticket", real)
    first = ok(await admin.post("/v1/tickets", body, key), 201)

    # a day later the key is free again: the answer is not replayed, the request runs
    table = runtime.idempotency_keys
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(
            table.update()
            .where(table.c.key == key["Idempotency-Key"])
            .values(created_at=sa.func.now() - timedelta(hours=25))
        )
    again = ok(await admin.post("/v1/tickets", body, key), 201)
    assert again["id"] != first["id"]

    # a claim whose request never finished (its process died) is freed after the lease
    stuck = unique("stuck")
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(
            table.insert().values(
                caller="admin",
                key=stuck,
                request_hash="x",
                created_at=sa.func.now() - timedelta(minutes=10),
            )
        )
    ok(await admin.post("/v1/tickets", body, {"Idempotency-Key": stuck}), 201)


async def test_a_secret_is_never_stored_nor_replayed(admin: As, intake: InProcessService) -> None:
    member, _ = await staff_key(admin, "technician")
    key = {"Idempotency-Key": unique("secret")}
    body = {"role": "technician", "staff_id": member["id"]}
    issued = ok(await admin.post("/v1/api-keys", body, key), 201)
    assert issued["token"]
    [row] = await _idempotency_rows(intake, key["Idempotency-Key"])
    assert issued["token"].encode() not in (row.body or b"")
    assert issued["token"].split("_")[-1].encode() not in (row.body or b"")
    replay = await admin.post("/v1/api-keys", body, key)
    assert problem_fields(replay, 409) == ["Idempotency-Key"]
    assert issued["id"] in replay.json()["detail"]
    assert "token" not in replay.text


async def test_idempotency_comes_after_authentication(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    key = unique("anon")
    anonymous = await intake.http.post(
        "/v1/tickets",
        json={"account_id": account["id"], "subject": "s"},
        headers={"Authorization": "", "Idempotency-Key": key},
    )
    assert anonymous.status_code == 401
    assert await _idempotency_rows(intake, key) == []

    member, technician = await staff_key(admin, "technician")
    body = {"account_id": account["id"], "subject": unique("s")}
    key = unique("case")
    first = ok(await technician.post("/v1/tickets", body, {"Idempotency-Key": key}), 201)
    # the scheme is case-insensitive: the same principal, so the same answer
    lower = await intake.http.post(
        "/v1/tickets",
        json=body,
        headers={"Authorization": f"bearer {technician.token}", "Idempotency-Key": key},
    )
    assert ok(lower, 201)["id"] == first["id"]
    assert lower.headers["idempotent-replayed"] == "true"
    # a revoked key gets no stored answers
    assert (await admin.delete(f"/v1/api-keys/{member['key_id']}")).status_code == 204
    revoked = await technician.post("/v1/tickets", body, {"Idempotency-Key": key})
    assert revoked.status_code == 401


# -- 9: Message-ID de-duplication -------------------------------------------------------------


async def test_a_reused_message_id_from_another_sender_is_its_own_message(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    first, _ = await contact_key(admin, account["id"])
    other, _ = await contact_key(admin, account["id"])
    message_id = f"<{uuid.uuid4().hex}@shared.example>"
    mine = ok(await _post_email(admin, _email(first["email"], "one", "x", message_id)), 201)
    retried = ok(await _post_email(admin, _email(first["email"], "one", "x", message_id)))
    assert retried["duplicate"] is True
    assert retried["ticket_id"] == mine["ticket_id"]
    theirs = ok(await _post_email(admin, _email(other["email"], "two", "y", message_id)), 201)
    assert theirs["ticket_id"] != mine["ticket_id"]
    assert "duplicate" not in theirs
    async with intake.runtime.engine.connect() as conn:
        recorded = await conn.scalar(
            sa.select(sa.func.count()).where(inbound_messages.c.message_id == message_id)
        )
    assert recorded == 2


# -- 11: one view per audience ----------------------------------------------------------------


async def test_a_contact_sees_neither_logged_time_nor_internal_comments(
    admin: As, account: dict[str, Any]
) -> None:
    _, contact = await contact_key(admin, account["id"])
    ticket = await new_ticket(contact, account["id"])
    tid = ticket["id"]
    assert "minutes_logged" not in ticket
    ok(await run(admin, tid, "triage", {"priority": "P3"}))
    ok(await run(admin, tid, "comments", {"body": "internal", "public": False}))
    ok(await run(admin, tid, "comments", {"body": "hello", "public": True}))
    now = datetime.now(UTC).isoformat()
    ok(
        await run(
            admin, tid, "time-entries", {"minutes": 30, "work_type": "remote", "worked_at": now}
        )
    )
    staff_view = ok(await admin.get(f"/v1/tickets/{tid}"))
    assert (staff_view["comments"], staff_view["minutes_logged"]) == (2, 30)
    for view in (
        ok(await contact.get(f"/v1/tickets/{tid}")),
        next(t for t in ok(await contact.get("/v1/tickets"))["items"] if t["id"] == tid),
        ok(await run(contact, tid, "customer-reply", {"body": "thanks"})),
    ):
        assert "minutes_logged" not in view
        assert "partner_resolvable" not in view
    contact_view = ok(await contact.get(f"/v1/tickets/{tid}"))
    history = ok(await contact.get(f"/v1/tickets/{tid}/events"))
    commented = [e for e in history if e["type"] in {"ticket.commented", "ticket.customer_replied"}]
    assert contact_view["comments"] == len(commented) == 2


# -- 13, 15, 16: what the API takes -----------------------------------------------------------


async def test_host_dependent_zones_are_refused(admin: As, account: dict[str, Any]) -> None:
    for zone in ("localtime", "Factory", "posixrules", "right/UTC"):
        created = await admin.post("/v1/accounts", {"name": unique("tz"), "timezone": zone})
        assert problem_fields(created) == ["timezone"], zone
        patched = await admin.patch(f"/v1/accounts/{account['id']}", {"timezone": zone})
        assert problem_fields(patched) == ["timezone"], zone
    calendar = {"business_hours": {"timezone": "localtime"}}
    agreement = await admin.put(
        f"/v1/accounts/{account['id']}/agreement",
        {"preset": "small_business_remote", "calendars": calendar},
    )
    assert problem_fields(agreement) == ["calendars.business_hours.timezone"]


async def test_strict_types_size_limits_attachments_and_allow(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    base = {"account_id": account["id"], "subject": "s"}
    for value in (True, "3", 2.5):
        response = await admin.post("/v1/tickets", {**base, "affected_users": value})
        assert problem_fields(response) == ["affected_users"], value
    ticket = await new_ticket(admin, account["id"], priority="P3")
    comment = await run(admin, ticket["id"], "comments", {"body": "b", "public": 1})
    assert problem_fields(comment) == ["public"]

    contact, _ = await contact_key(admin, account["id"])
    message = EmailMessage()
    message["From"] = contact["email"]
    message["Subject"] = "scan attached"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@customer.example>"
    message.set_content("see attached")
    message.add_attachment(b"%PDF" * 100, maintype="application", subtype="pdf", filename="a.pdf")
    opened = ok(await _post_email(admin, message.as_bytes(policy=SMTP)), 201)
    view = ok(await admin.get(f"/v1/tickets/{opened['ticket_id']}"))
    assert view["fields"]["attachments"] == [
        {"filename": "a.pdf", "content_type": "application/pdf", "size": 400}
    ]
    assert "a.pdf (400 bytes)" in view["description"]

    settings = intake.runtime.settings
    limit = settings.email_max_bytes
    settings.email_max_bytes = 1000
    try:
        too_large = await _post_email(admin, _email(contact["email"], "big", "x" * 2000))
    finally:
        settings.email_max_bytes = limit
    assert problem_fields(too_large, 413) == ["body"]

    options = await admin.http.options(f"/v1/accounts/{account['id']}")
    assert options.status_code == 204
    assert {"GET", "PATCH"} <= set(options.headers["allow"].replace(" ", "").split(","))
    wrong = await admin.http.delete(f"/v1/accounts/{account['id']}")
    assert wrong.status_code == 405
    assert "PATCH" in wrong.headers["allow"]


async def test_unreadable_bodies_are_problems_that_say_what_is_wrong(
    admin: As, account: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    cases = [
        (b'{"account_id": "x", "subject": }', 400, "invalid JSON"),
        (b'{"subject": "\xff\xfe"}', 400, "UTF-8"),
        (b"[" * 10_000 + b"]" * 10_000, 400, "nested"),
    ]
    for content, status, said in cases:
        response = await admin.http.post("/v1/tickets", content=content, headers=headers)
        assert response.status_code == status, (content[:20], response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert said in response.text, response.text
    text = await admin.http.post(
        "/v1/tickets",
        content=json.dumps({"account_id": account["id"], "subject": "s"}),
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert problem_fields(text, 415) == ["Content-Type"]


# -- 17: the OpenAPI documents ----------------------------------------------------------------


async def test_every_openapi_document_declares_its_problems(stack: Settings) -> None:
    for name, spec in SPECS.items():
        runtime_ = ServiceRuntime(spec(), stack)
        try:
            document = runtime_.app().openapi()
        finally:
            await runtime_.engine.dispose()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for status in ("401", "403", "404", "409", "412", "422"):
                    declared = operation["responses"].get(status)
                    assert declared, (name, method, path, status)
                    assert "application/problem+json" in declared["content"]


# -- 18: maintenance commands use the stack's admin token ---------------------------------------


def test_service_commands_run_with_the_stacks_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELPDESK_ADMIN_TOKEN", raising=False)
    stack = Stack(tmp_path)
    kept = stack.admin_token()  # what `make up` generated and services run with
    infra = Infra("127.0.0.1:1", "postgresql+asyncpg://x@/helpdesk?host=/s", "t", 3)
    monkeypatch.setattr(Stack, "start_infra", lambda self: infra)
    commands: list[tuple[list[str], dict[str, str]]] = []

    def run(argv: list[str], *, env: dict[str, str], **kwargs: Any) -> None:
        commands.append((argv, env))

    monkeypatch.setattr(subprocess, "run", run)
    for command in ("rebuild", "retry-parked"):
        Stack(tmp_path).service_command("sla_timer", command)  # a later process: reads the file
    assert [argv[-1] for argv, _ in commands] == ["rebuild", "retry-parked"]
    assert {env["HELPDESK_ADMIN_TOKEN"] for _, env in commands} == {kept}


# -- issue 8: a short HTTP path ---------------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once_although_it_was_cached(
    admin: As, intake: InProcessService
) -> None:
    member, technician = await staff_key(admin, "technician")
    ok(await technician.get("/v1/me"))
    transport = intake.http._transport
    assert isinstance(transport, httpx.ASGITransport)
    cache = transport.app.state.authenticate.cache  # type: ignore[attr-defined]
    assert any(p.key_id == member["key_id"] for p, _ in cache._entries.values())
    # served from the cache: the key table is not read again
    ok(await technician.get("/v1/me"))

    assert (await admin.delete(f"/v1/api-keys/{member['key_id']}")).status_code == 204
    # this replica emitted the revoke: its cache forgot the key when the event was applied
    assert (await technician.get("/v1/me")).status_code == 401
    assert (await technician.post("/v1/tickets", {"subject": "s"})).status_code == 401


async def test_concurrent_requests_with_one_key_are_one_command_and_its_replays(
    admin: As, account: dict[str, Any], intake: InProcessService
) -> None:
    body = {"account_id": account["id"], "subject": unique("s")}
    key = {"Idempotency-Key": unique("race")}
    answers = await asyncio.gather(*(admin.post("/v1/tickets", body, key) for _ in range(4)))
    # the claim is taken in the command's transaction: the others wait for it, then replay
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.headers.get("idempotent-replayed", "") for a in answers) == [""] + ["true"] * 3
    [row] = await _idempotency_rows(intake, key["Idempotency-Key"])
    assert row.status_code == 201
    # a refusal inside the command's transaction rolls its writes back and is still kept
    refused_key = {"Idempotency-Key": unique("refused")}
    missing = {"account_id": str(uuid.uuid4()), "subject": unique("s")}
    first = await admin.post("/v1/tickets", missing, refused_key)
    assert 400 <= first.status_code < 500
    again = await admin.post("/v1/tickets", missing, refused_key)
    assert again.status_code == first.status_code
    assert again.headers["idempotent-replayed"] == "true"
