"""Helpers of intake's integration tests: accounts, people and keys over the HTTP API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from tests.support import InProcessService

PROBLEM = "application/problem+json"


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class As:
    """Requests to a service in-process, with one caller's token."""

    http: httpx.AsyncClient
    token: str

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.http.get(url, params=params or None, headers=self._headers(None))

    async def post(
        self, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(url, json=body or {}, headers=self._headers(headers))

    async def put(self, url: str, body: Any) -> httpx.Response:
        return await self.http.put(url, json=body, headers=self._headers(None))

    async def patch(self, url: str, body: Any) -> httpx.Response:
        return await self.http.patch(url, json=body, headers=self._headers(None))

    async def delete(self, url: str) -> httpx.Response:
        return await self.http.delete(url, headers=self._headers(None))


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def problem_fields(response: httpx.Response, status: int = 422) -> list[str]:
    """The fields a problem+json answer names."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    return [e["field"] for e in body.get("errors", [])]


async def new_account(
    admin: As, agreement: dict[str, Any] | None = None, **body: Any
) -> dict[str, Any]:
    """A fresh account (the admin creates it), with an agreement when given."""
    account: dict[str, Any] = ok(
        await admin.post("/v1/accounts", {"name": unique("acct"), **body}), 201
    )
    if agreement is not None:
        ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", agreement))
    return account


async def contact_key(
    admin: As, account_id: str, visibility: str = "own"
) -> tuple[dict[str, Any], As]:
    """A contact of the account and a client with its key."""
    contact: dict[str, Any] = ok(
        await admin.post(
            f"/v1/accounts/{account_id}/contacts",
            {
                "name": unique("contact"),
                "email": f"{unique('c')}@example.com",
                "visibility": visibility,
            },
        ),
        201,
    )
    key = ok(
        await admin.post("/v1/api-keys", {"role": "contact", "contact_id": contact["id"]}), 201
    )
    return {**contact, "key_id": key["id"]}, As(admin.http, key["token"])


async def staff_key(
    admin: As, role: str, scopes: list[str] | None = None, tier: str | None = None
) -> tuple[dict[str, Any], As]:
    """A staff member of `role` (working in escalation `tier`, if given) and a client with their
    key."""
    body: dict[str, Any] = {
        "name": unique(role),
        "email": f"{unique('s')}@example.com",
        "role": role,
    }
    member: dict[str, Any] = ok(
        await admin.post("/v1/staff", body if tier is None else {**body, "tier": tier}), 201
    )
    body = {"role": role, "staff_id": member["id"], "scopes": scopes or []}
    key = ok(await admin.post("/v1/api-keys", body), 201)
    return {**member, "key_id": key["id"]}, As(admin.http, key["token"])


async def new_ticket(caller: As, account_id: str, **body: Any) -> Any:
    """Open a ticket; answers its view."""
    payload = {"account_id": account_id, "subject": unique("subject"), **body}
    return ok(await caller.post("/v1/tickets", payload), 201)


async def run(
    caller: As,
    ticket_id: str,
    command: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST one ticket command."""
    return await caller.post(f"/v1/tickets/{ticket_id}/{command}", body or {}, headers)


async def count(service: InProcessService, table: sa.Table) -> int:
    """Rows in one of the service's tables."""
    async with service.runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


PASSWORD = "correct horse battery"


async def signed_in(admin: As, contact_id: str, password: str = PASSWORD) -> dict[str, Any]:
    """Invite a contact, set their password through the link, and sign in: the session."""
    invitation = ok(await admin.post("/v1/invitations", {"contact_id": contact_id}), 201)
    accepted = await admin.http.post(
        f"/v1/invitations/{invitation['token']}/accept", json={"password": password}
    )
    email = ok(accepted)["email"]
    session: dict[str, Any] = ok(
        await admin.http.post("/v1/sessions", json={"email": email, "password": password}), 201
    )
    return session
