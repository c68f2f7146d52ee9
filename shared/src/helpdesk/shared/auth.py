"""Bearer-token authentication, the same in every service.

The first admin key is the HELPDESK_ADMIN_TOKEN setting. Every other key is issued by intake,
stored only as a SHA-256 hash (the tokens are 256-bit random, so a slow hash adds nothing), and
reaches the other services as `account.api_key_*` events that each applies to its own
`api_keys` table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from fastapi import Request

from helpdesk.shared.web import Problem

Role = Literal["admin", "manager", "technician", "contact", "import"]
STAFF_ROLES: frozenset[str] = frozenset({"admin", "manager", "technician"})
TOKEN_PREFIX = "hd"  # noqa: S105 - a public marker, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff member, a contact of one account, or the bootstrap admin."""

    key_id: str
    role: Role
    account_id: UUID | None = None
    contact_id: UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_staff(self) -> bool:
        """Staff act on every account; contacts only on their own."""
        return self.role in STAFF_ROLES

    def can_see_account(self, account_id: UUID) -> bool:
        """Whether this principal may see anything of `account_id`."""
        return self.is_staff or self.account_id == account_id


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(key_id: str) -> str:
    """A fresh token for key `key_id`: `hd_<key id>_<secret>`, shown to its owner once."""
    return f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The key id a token names, or None for a token of another shape."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    return parts[1]


KeyLookup = Callable[[str], Awaitable["StoredKey | None"]]


@dataclass(frozen=True)
class StoredKey:
    """An issued key as every service stores it."""

    principal: Principal
    token_hash: str
    revoked: bool = False


class Authenticator:
    """Turns an `Authorization: Bearer` header into a `Principal`, or a 401 problem."""

    def __init__(self, admin_token: str, lookup: KeyLookup | None = None) -> None:
        self._admin_hash = hash_token(admin_token) if admin_token else None
        self._lookup = lookup

    async def __call__(self, request: Request) -> Principal:
        """FastAPI dependency."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Send an API key as 'Authorization: Bearer <token>'.")
        presented = hash_token(token.strip())
        if self._admin_hash and hmac.compare_digest(presented, self._admin_hash):
            return Principal(key_id="admin", role="admin")
        key_id = key_id_of(token.strip())
        stored = await self._lookup(key_id) if key_id and self._lookup else None
        if (
            stored is None
            or stored.revoked
            or not hmac.compare_digest(presented, stored.token_hash)
        ):
            raise _unauthorized("The API key is unknown or revoked.")
        return stored.principal


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
