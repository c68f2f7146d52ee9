"""Sign-in: invitations set passwords, sessions are short-lived keys, failures are limited.

Seed 003: "Employees eligible to access your account's customer portal will be issued a user
name and password".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from starlette.requests import Request

from helpdesk.intake.adapters.tables import credentials, invitations
from helpdesk.intake.adapters.tables import runtime as intake_tables
from helpdesk.intake.api.sessions import CLIENT_ADDRESS_HEADER, client_address
from helpdesk.intake.application.sessions import (
    CLIENT_FAILURE_LIMIT,
    FAILURE_LIMIT,
    RESET_LIFETIME,
    RESET_LIMIT,
    SESSION_LIFETIME,
)
from helpdesk.shared.auth import hash_token
from helpdesk.shared.events import Envelope
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import (
    PASSWORD,
    As,
    contact_key,
    new_account,
    ok,
    problem_fields,
    signed_in,
    unique,
)
from tests.support import InProcessService, events_on_topic, wait_for

pytestmark = pytest.mark.integration


async def test_an_invited_contact_signs_in_and_the_session_is_their_key(admin: As) -> None:
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"], "own")
    before = datetime.now(UTC)
    session = await signed_in(admin, contact["id"])
    expires = datetime.fromisoformat(session["expires_at"])
    assert before + SESSION_LIFETIME <= expires <= datetime.now(UTC) + SESSION_LIFETIME
    me = ok(await As(admin.http, session["token"]).get("/v1/me"))
    assert (me["role"], me["contact_id"], me["visibility"]) == ("contact", contact["id"], "own")
    assert me["scopes"] == ["session"]


async def test_a_refresh_rotates_the_token_and_sign_out_ends_it(admin: As) -> None:
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    first = As(admin.http, (await signed_in(admin, contact["id"]))["token"])
    second = As(admin.http, ok(await first.post("/v1/sessions/current/refresh"), 201)["token"])
    assert (await first.get("/v1/me")).status_code == 401
    assert ok(await second.get("/v1/me"))["contact_id"] == contact["id"]
    assert (await second.delete("/v1/sessions/current")).status_code == 204
    assert (await second.get("/v1/me")).status_code == 401


async def test_an_api_key_is_no_session(admin: As) -> None:
    account = await new_account(admin)
    _, key = await contact_key(admin, account["id"])
    assert (await key.delete("/v1/sessions/current")).status_code == 404
    assert (await key.get("/v1/me")).status_code == 200


async def test_an_invitation_link_works_once_and_a_new_password_ends_the_sessions(
    admin: As,
) -> None:
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    old = As(admin.http, (await signed_in(admin, contact["id"]))["token"])
    invitation = ok(await admin.post("/v1/invitations", {"contact_id": contact["id"]}), 201)
    accept = f"/v1/invitations/{invitation['token']}/accept"
    assert problem_fields(await admin.http.post(accept, json={"password": "short"})) == ["password"]
    ok(await admin.http.post(accept, json={"password": "a new long password"}))
    assert (await admin.http.post(accept, json={"password": "another password"})).status_code == (
        404
    )
    assert (await old.get("/v1/me")).status_code == 401
    signing_in = {"email": invitation["email"], "password": PASSWORD}
    assert (await admin.http.post("/v1/sessions", json=signing_in)).status_code == 401


async def test_a_contact_cannot_invite_and_wrong_passwords_are_limited_per_address(
    admin: As,
) -> None:
    account = await new_account(admin)
    contact, key = await contact_key(admin, account["id"])
    assert (await key.post("/v1/invitations", {"contact_id": contact["id"]})).status_code == 403
    session = await signed_in(admin, contact["id"])
    me = ok(await As(admin.http, session["token"]).get("/v1/me"))
    email = ok(await admin.get(f"/v1/accounts/{account['id']}/contacts"))[0]["email"]
    wrong = {"email": email, "password": "not the password"}
    answers = [
        (await admin.http.post("/v1/sessions", json=wrong)).status_code
        for _ in range(FAILURE_LIMIT + 1)
    ]
    assert answers == [401] * FAILURE_LIMIT + [429]
    right = {"email": email, "password": PASSWORD}
    assert (await admin.http.post("/v1/sessions", json=right)).status_code == 429
    assert me["contact_id"] == contact["id"]
    # Another address is not affected.
    other, _ = await contact_key(admin, account["id"])
    assert (await signed_in(admin, other["id"]))["contact_id"] == other["id"]


async def test_secrets_are_stored_hashed_and_an_expired_session_is_refused(
    admin: As, intake: InProcessService
) -> None:
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    session = await signed_in(admin, contact["id"])
    keys = intake_tables.api_keys
    async with intake.runtime.engine.begin() as conn:
        password_hash = await conn.scalar(
            sa.select(credentials.c.password_hash).where(credentials.c.person_id == contact["id"])
        )
        row = (await conn.execute(sa.select(keys).where(keys.c.key_id == session["key_id"]))).one()
        invitation_rows = (await conn.execute(sa.select(invitations))).all()
        # Never used yet, so no replica has it cached: the table's expiry is what counts.
        await conn.execute(
            keys.update()
            .where(keys.c.key_id == session["key_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert isinstance(password_hash, str)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert session["token"] not in {str(value) for value in row}
    assert row.scopes == ["session"]
    # Invitation links are kept as SHA-256 hashes only.
    assert all(len(invitation.token_hash) == 64 for invitation in invitation_rows)
    refused = await As(admin.http, session["token"]).get("/v1/me")
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


async def _account_events(stack: Settings, type_: str, **payload: Any) -> list[Envelope]:
    """The `type_` events on the topic whose payload holds `payload`, once there are any."""

    async def found() -> list[Envelope]:
        return [
            e
            for e in await events_on_topic(stack, type_)
            if payload.items() <= e.document().items()
        ]

    return await wait_for(found, timeout=30)


async def test_forgot_password_answers_alike_and_its_link_sets_a_password_once(
    admin: As, stack: Settings, intake: InProcessService
) -> None:
    """Before, a forgotten password needed an admin's new invitation. Now `POST
    /v1/password-resets` answers the same 202 for any address; for a person with a password it
    puts a one-hour link on the stream for the notifier, which sets a new password once and
    ends every session of the person."""
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    old = As(admin.http, (await signed_in(admin, contact["id"]))["token"])
    email = ok(await admin.get(f"/v1/accounts/{account['id']}/contacts"))[0]["email"]
    nobody = f"{unique('nobody')}@example.com"
    unknown = await admin.http.post("/v1/password-resets", json={"email": nobody})
    known = await admin.http.post("/v1/password-resets", json={"email": email.upper()})
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
    assert known.status_code == 202
    assert problem_fields(await admin.http.post("/v1/password-resets", json={})) == ["email"]

    requested = (
        await _account_events(stack, "account.password_reset_requested", person_id=contact["id"])
    )[0]
    document = requested.document()
    assert (document["kind"], document["email"]) == ("contact", email)
    assert requested.account_id == UUID(account["id"])
    expires = datetime.fromisoformat(document["expires_at"])
    assert expires - requested.occurred_at == RESET_LIFETIME
    assert not [
        e
        for e in await events_on_topic(stack, "account.password_reset_requested")
        if e.document()["email"] == nobody
    ]
    token = document["path"].removeprefix("/password-resets/")
    async with intake.runtime.engine.connect() as conn:
        kept = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(invitations)
            .where(invitations.c.token_hash == hash_token(token))
        )
    assert kept == 1  # the link's hash, as an invitation's

    accept = f"/v1/invitations/{token}/accept"
    ok(await admin.http.post(accept, json={"password": "a brand new password"}))
    assert (await admin.http.post(accept, json={"password": "yet another one"})).status_code == 404
    assert (await old.get("/v1/me")).status_code == 401
    signing_in = {"email": email, "password": "a brand new password"}
    ok(await admin.http.post("/v1/sessions", json=signing_in), 201)


async def test_failures_are_limited_per_client_address_and_lockouts_are_events(
    admin: As, stack: Settings
) -> None:
    """Before, only an e-mail address was limited, so one client could try a password on
    every address. Now CLIENT_FAILURE_LIMIT failures from one client address (named by a
    trusted proxy) refuse it even the right password of another person, while other clients
    sign in; each lockout is an event naming the address by its hash only."""
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    await signed_in(admin, contact["id"])
    email = ok(await admin.get(f"/v1/accounts/{account['id']}/contacts"))[0]["email"]
    client = unique("198.51.100.7")  # the database is the test run's, yet tests may share it
    from_client = {CLIENT_ADDRESS_HEADER: client}
    answers = [
        (
            await admin.http.post(
                "/v1/sessions",
                json={"email": f"{unique('guess')}@example.com", "password": "guessed password"},
                headers=from_client,
            )
        ).status_code
        for _ in range(CLIENT_FAILURE_LIMIT + 1)
    ]
    assert answers == [401] * CLIENT_FAILURE_LIMIT + [429]
    right = {"email": email, "password": PASSWORD}
    refused = await admin.http.post("/v1/sessions", json=right, headers=from_client)
    assert refused.status_code == 429
    assert "network address" in refused.json()["detail"]
    elsewhere = {CLIENT_ADDRESS_HEADER: f"{client}-elsewhere"}
    ok(await admin.http.post("/v1/sessions", json=right, headers=elsewhere), 201)

    locked = await _account_events(
        stack, "account.sign_in_locked_out", address_hash=hash_token(client)
    )
    assert len({e.event_id for e in locked}) == 1
    assert (locked[0].document()["scope"], locked[0].document()["failures"]) == (
        "client",
        CLIENT_FAILURE_LIMIT,
    )

    # An e-mail address's lockout too; the password tried is nowhere in it.
    wrong = {"email": email, "password": "not the password at all"}
    for _ in range(FAILURE_LIMIT):
        await admin.http.post("/v1/sessions", json=wrong)
    by_email = await _account_events(
        stack, "account.sign_in_locked_out", address_hash=hash_token(email)
    )
    assert by_email[0].document()["scope"] == "email"
    assert "not the password at all" not in by_email[0].model_dump_json()
    assert email not in by_email[0].model_dump_json()


def _request(peer: str, named: str | None) -> Request:
    headers = [(CLIENT_ADDRESS_HEADER.lower().encode(), named.encode())] if named else []
    return Request({"type": "http", "client": (peer, 50000), "headers": headers})


def test_only_a_trusted_proxy_names_the_client_address() -> None:
    """The header would let any client pose as many; so it counts only from a trusted proxy
    (loopback by default, where `make up` runs the portal), else the peer's address counts."""
    loopback = Settings().trusted_proxies
    assert client_address(_request("127.0.0.1", "203.0.113.7"), loopback) == "203.0.113.7"
    assert client_address(_request("203.0.113.9", "203.0.113.7"), loopback) == "203.0.113.9"
    assert client_address(_request("203.0.113.9", None), loopback) == "203.0.113.9"
    # A proxy on another network once it is named.
    assert client_address(_request("10.1.2.3", "203.0.113.7"), "10.0.0.0/8") == "203.0.113.7"


async def test_a_person_has_at_most_reset_limit_working_reset_links(
    admin: As, stack: Settings, intake: InProcessService
) -> None:
    """Before, every request for an address had the notifier mail one more link, so anyone
    could flood a mailbox. Now a person has at most RESET_LIMIT links working at once; further
    requests answer the same 202 and mail nothing."""
    account = await new_account(admin)
    contact, _ = await contact_key(admin, account["id"])
    await signed_in(admin, contact["id"])
    email = ok(await admin.get(f"/v1/accounts/{account['id']}/contacts"))[0]["email"]
    answers = {
        (await admin.http.post("/v1/password-resets", json={"email": email})).status_code
        for _ in range(RESET_LIMIT + 2)
    }
    assert answers == {202}
    async with intake.runtime.engine.connect() as conn:
        links = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(invitations)
            .where(invitations.c.person_id == contact["id"], invitations.c.reset.is_(True))
        )
    assert links == RESET_LIMIT

    async def all_relayed() -> list[Envelope] | None:
        found = await _account_events(
            stack, "account.password_reset_requested", person_id=contact["id"]
        )
        return found if len(found) >= RESET_LIMIT else None

    assert len({e.event_id for e in await wait_for(all_relayed, timeout=30)}) == RESET_LIMIT
