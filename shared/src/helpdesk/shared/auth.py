"""Bearer-token authentication and tenancy, the same in every service.

The first admin key is the HELPDESK_ADMIN_TOKEN setting. Every other key is issued by intake,
stored only as a SHA-256 hash (tokens carry 256 random bits, so a slow hash adds nothing), and
reaches every service as `account.api_key_*` events that the consumer runtime applies to the
service's own `api_keys` table (`key_projection`).

Principals are cached in process (`PrincipalCache`, by token hash, bounded): a request with a
known key costs no database round trip. The key projection invalidates a key's entry wherever
it applies the key's revoke: on the replica that emits it, at emit time (own events are applied
in the command's transaction), and on a replica whose consumer applies it; and it notifies the
service's other replicas (`pg_notify` on `revocation_channel`, heard by each replica's
`RevocationListener` when the transaction commits). So a revoked key is refused by every
replica of a service once that service has applied the revocation; `PrincipalCache.ttl` is the
fallback bound should a replica's listening connection be lost. An issued key is new: nothing
is cached for it.

A sign-in session (intake's `POST /v1/sessions`) is such a key with an `expires_at` and the
`session` scope: it is projected and authenticated like any key, and refused once expired.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar
from uuid import UUID

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helpdesk.shared.consumer import Projection, UnitOfWork
from helpdesk.shared.context import Clock, utc_now
from helpdesk.shared.contracts.accounts import ApiKeyIssued, ApiKeyRevoked
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.events import Event
from helpdesk.shared.web import Problem

#: A SELECT of some rows (`Principal.visible_tickets` keeps its type).
Query = TypeVar("Query", bound=sa.Select[Any])

Role = Literal["admin", "manager", "technician", "contact", "import"]
STAFF_ROLES: frozenset[str] = frozenset({"admin", "manager", "technician", "import"})
TOKEN_PREFIX = "hd"  # noqa: S105 - a public marker, not a secret
IMPORT_SCOPE = "import"
SESSION_SCOPE = "session"
_KEY_ID = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff member, a contact of one account, or the bootstrap admin."""

    key_id: str
    role: Role
    account_id: UUID | None = None
    contact_id: UUID | None = None
    staff_id: UUID | None = None
    visibility: Literal["own", "account"] | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    #: when a session's key stops working (None: an API key, until revoked)
    expires_at: datetime | None = None

    @property
    def is_session(self) -> bool:
        """Whether this key is a sign-in session (intake's `POST /v1/sessions`)."""
        return SESSION_SCOPE in self.scopes

    def expired(self, now: datetime) -> bool:
        """Whether this is a session that has ended by `now`."""
        return self.expires_at is not None and now >= self.expires_at

    @property
    def is_staff(self) -> bool:
        """Staff act on every account; contacts only on their own."""
        return self.role in STAFF_ROLES

    @property
    def may_import(self) -> bool:
        """Whether this key may back-date commands (history import)."""
        return self.role == "import" or IMPORT_SCOPE in self.scopes

    def can_see_account(self, account_id: UUID) -> bool:
        """Whether this principal may see anything of `account_id`."""
        return self.is_staff or self.account_id == account_id

    def can_see_ticket(self, account_id: UUID, contact_id: UUID | None) -> bool:
        """A contact with visibility `own` sees only the tickets they are the contact of."""
        if self.is_staff:
            return True
        if self.account_id != account_id:
            return False
        return self.visibility == "account" or self.contact_id == contact_id

    def visible_tickets(
        self, query: Query, account_id: sa.ColumnElement[Any], contact_id: sa.ColumnElement[Any]
    ) -> Query:
        """`query` of a ticket table limited to the rows `can_see_ticket` allows, in SQL: the
        one statement of seed 003's visibility for every service's ticket lists."""
        if self.is_staff:
            return query
        query = query.where(account_id == self.account_id)
        if self.visibility != "account":
            query = query.where(contact_id == self.contact_id)
        return query

    def require_role(self, *roles: str) -> None:
        """403 unless the caller has one of `roles` (the bootstrap admin has every role)."""
        if self.role != "admin" and self.role not in roles:
            raise Problem(403, "Forbidden", f"This needs one of the roles: {', '.join(roles)}.")


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(key_id: str) -> str:
    """A fresh token for key `key_id`: `hd_<key id>_<secret>`, shown to its owner once."""
    return f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The key id a token names, or None for a token of another shape."""
    parts = token.split("_", 2)
    # Key ids are hex (intake issues UUIDs); anything else is no key, and never reaches SQL.
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not _KEY_ID.fullmatch(parts[1]):
        return None
    return parts[1]


class PrincipalCache:
    """Principals by token hash, the least recently used dropped beyond `size`.

    An entry lives `ttl` seconds (the bound on a revoke reaching a replica that does not apply
    it, see the module). A key invalidated by a key event is not cached again for
    `settle` seconds: the event's transaction may not have committed yet, and a lookup in
    between would read (and keep) the key as it was.
    """

    def __init__(self, size: int = 4096, ttl: float = 5.0, settle: float = 60.0) -> None:
        self.size = size
        self.ttl = ttl
        self.settle = settle
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._unsettled: dict[str, float] = {}

    def get(self, token_hash: str) -> Principal | None:
        """The cached principal of a token, if still fresh."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        principal, expires = entry
        if time.monotonic() >= expires:
            del self._entries[token_hash]
            return None
        self._entries.move_to_end(token_hash)
        return principal

    def put(self, token_hash: str, principal: Principal) -> None:
        """Cache a principal just read from the key table (unless its key is settling)."""
        now = time.monotonic()
        settling = self._unsettled.get(principal.key_id)
        if settling is not None and now < settling:
            return
        self._entries[token_hash] = (principal, now + self.ttl)
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def invalidate(self, key_id: str) -> None:
        """Forget key `key_id` (a key event was applied)."""
        now = time.monotonic()
        self._unsettled = {k: t for k, t in self._unsettled.items() if t > now}
        self._unsettled[key_id] = now + self.settle
        for token_hash in [h for h, (p, _) in self._entries.items() if p.key_id == key_id]:
            del self._entries[token_hash]


#: The caches of the running replicas in this process, by service schema (a test may run
#: several services, or two replicas of one, in one process).
_caches: dict[str | None, weakref.WeakSet[PrincipalCache]] = {}


def _register(schema: str | None, cache: PrincipalCache) -> None:
    _caches.setdefault(schema, weakref.WeakSet()).add(cache)


def invalidate_key(schema: str | None, key_id: str) -> None:
    """Forget `key_id` in the caches of every replica of the service of `schema` here."""
    for cache in list(_caches.get(schema, ())):
        cache.invalidate(key_id)


def revocation_channel(schema: str | None) -> str:
    """The PostgreSQL channel on which a service's replicas hear of revoked keys."""
    return f"helpdesk_keys_revoked_{schema or 'public'}"


class RevocationListener:
    """Listens on the service's revocation channel and forgets each revoked key at once.

    A replica whose consumer did not apply a revoke (the group gave the partition to another
    replica) would otherwise accept the key until its cache entry expires; with the listener the
    bound is the time the service's consumer takes to apply the revocation. If the listening
    connection is lost, the cache's `ttl` is the bound again until the service restarts.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str | None,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._schema = schema
        self._on_revoked = on_revoked or partial(invalidate_key, schema)
        self._conn: AsyncConnection | None = None

    async def start(self) -> None:
        """Take a connection of its own and listen on it."""
        self._conn = await self._engine.connect()
        raw = await self._conn.get_raw_connection()
        await raw.driver_connection.add_listener(  # type: ignore[union-attr]
            revocation_channel(self._schema), self._heard
        )

    def _heard(self, _connection: object, _pid: int, _channel: str, key_id: str) -> None:
        self._on_revoked(key_id)

    async def stop(self) -> None:
        """Stop listening and give the connection back."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closed, not pooled: a pooled connection would go on listening.
            await conn.invalidate()
            await conn.close()


def key_projection(tables: RuntimeTables) -> Projection:
    """The projection that keeps a service's `api_keys` table in step with the key events."""
    keys = tables.api_keys
    projection = Projection(tables=[keys])

    @projection.on(ApiKeyIssued)
    async def issued(uow: UnitOfWork, event: Event[ApiKeyIssued]) -> None:
        key = event.payload
        await uow.conn.execute(
            pg_insert(keys)
            .values(
                key_id=key.key_id,
                role=key.role,
                token_hash=key.token_hash,
                account_id=key.account_id,
                contact_id=key.contact_id,
                staff_id=key.staff_id,
                visibility=key.visibility,
                scopes=key.scopes,
                revoked=False,
                expires_at=key.expires_at,
            )
            .on_conflict_do_nothing()
        )

    @projection.on(ApiKeyRevoked)
    async def revoked(uow: UnitOfWork, event: Event[ApiKeyRevoked]) -> None:
        key_id = event.payload.key_id
        await uow.conn.execute(keys.update().where(keys.c.key_id == key_id).values(revoked=True))
        invalidate_key(tables.schema, key_id)
        # Every other replica of the service hears it when this transaction commits.
        await uow.conn.execute(
            sa.text("SELECT pg_notify(:channel, :key)"),
            {"channel": revocation_channel(tables.schema), "key": key_id},
        )

    return projection


class Authenticator:
    """Turns an `Authorization: Bearer` header into a `Principal`, or a 401 problem."""

    def __init__(
        self,
        admin_token: str,
        engine: AsyncEngine,
        tables: RuntimeTables,
        cache: PrincipalCache | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._clock = clock
        self._admin_hash = hash_token(admin_token) if admin_token else None
        self._engine = engine
        self._keys = tables.api_keys
        self.cache = cache or PrincipalCache()
        _register(tables.schema, self.cache)

    async def __call__(self, request: Request) -> Principal:
        """FastAPI dependency."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Send an API key as 'Authorization: Bearer <token>'.")
        presented = hash_token(token)
        if self._admin_hash and hmac.compare_digest(presented, self._admin_hash):
            return Principal(key_id="admin", role="admin")
        cached = self.cache.get(presented)
        if cached is not None:
            return self._unexpired(cached)
        key_id = key_id_of(token)
        row = None
        if key_id is not None:
            async with self._engine.connect() as conn:
                row = (
                    await conn.execute(sa.select(self._keys).where(self._keys.c.key_id == key_id))
                ).first()
        if row is None or row.revoked or not hmac.compare_digest(presented, row.token_hash):
            raise _unauthorized("The API key is unknown or revoked.")
        principal = Principal(
            key_id=row.key_id,
            role=row.role,
            account_id=row.account_id,
            contact_id=row.contact_id,
            staff_id=row.staff_id,
            visibility=row.visibility,
            scopes=frozenset(row.scopes),
            expires_at=row.expires_at,
        )
        self.cache.put(presented, principal)
        return self._unexpired(principal)

    def _unexpired(self, principal: Principal) -> Principal:
        if principal.expired(self._clock()):
            raise _unauthorized("The session has expired; sign in again.")
        return principal


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
