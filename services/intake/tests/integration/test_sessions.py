"""Sign-in: invitations set passwords, sessions are short-lived keys, failures are limited.

Seed 003: "Employees eligible to access your account's customer portal will be issued a user
name and password".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from helpdesk.intake.adapters.tables import credentials, invitations
from helpdesk.intake.adapters.tables import runtime as intake_tables
from helpdesk.intake.application.sessions import FAILURE_LIMIT, SESSION_LIFETIME
from services.intake.tests.integration._support import (
    PASSWORD,
    As,
    contact_key,
    new_account,
    ok,
    problem_fields,
    signed_in,
)
from tests.support import InProcessService

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
