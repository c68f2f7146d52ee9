"""`Idempotency-Key` on every POST: a retried request gets the first answer, not a second effect.

The caller is authenticated first, and the key is scoped to the authenticated principal (its
key id), so an unknown or revoked key gets its 401 and no row, and the spelling of the
Authorization header does not matter. The same key with the same method, path, query and body
replays the stored answer; with another request it is a 422.

The key is claimed in the command's own transaction (docs/adr/0004): the middleware opens one
transaction, claims the key in it, and the route's `ServiceRuntime.transaction()` /
`unit_of_work()` joins it instead of opening its own; once the route has answered, the answer is
stored and everything commits together. So a committed command always has its stored answer,
and a process dying mid-command leaves nothing behind (the claim is rolled back with the
command's writes). A second request with the same key waits on the claim's row lock until the
first commits (then it gets the replay) or rolls back (then it runs).

What is never kept: an answer of 500 and above, or a request that raised (its transaction is
rolled back, so a retry runs again); any row older than the retention (24 h by default; pruned,
and a later request may reuse the key); and a secret. An answer that carries one (a `token` or
`secret` member, or `Cache-Control: no-store`) is kept without it, and a replay answers 409
naming the created resource instead of the secret, which is shown once only. A route that fails
with a 4xx inside its transaction has its writes rolled back; its answer is then stored in a
transaction of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import Request, Response
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from helpdesk.shared.auth import Principal
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.web import Problem, header, problem_response, read_body, replay_body

HEADER = "idempotency-key"
_KEPT_HEADERS = ("content-type", "etag", "location")
# Printable ASCII, as in the IETF draft's examples (a UUID is usual); nothing a header or a
# database column could mangle.
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
#: Top-level members of a JSON answer that hold a secret shown once (API tokens, signing keys).
SECRET_MEMBERS = frozenset({"token", "secret"})
_SECRET_MARK = "x-idempotent-secret-withheld"  # noqa: S105 - a header name, not a secret
_PRUNE_EVERY_SECONDS = 60.0

Authenticate = Callable[[Request], Awaitable[Principal]]


@dataclass
class _Claim:
    """The request's key, claimed in the transaction `conn` holds open for its command."""

    caller: str
    key: str
    digest: str
    task: asyncio.Task[Any] | None
    conn: AsyncConnection | None = None

    async def release(self) -> None:
        """Roll the transaction back (the claim with it) and return the connection."""
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.rollback()
            await conn.close()


_claim: ContextVar[_Claim | None] = ContextVar("idempotency_claim", default=None)


@contextlib.asynccontextmanager
async def command_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """The transaction a command runs in: the one holding the request's Idempotency-Key claim
    if there is one (it commits once the answer is stored), else a fresh one.

    A command that fails in the claim's transaction rolls back everything, the claim too; the
    middleware then stores the answer in a transaction of its own.
    """
    held = _claim.get()
    if held is None or held.conn is None or held.task is not asyncio.current_task():
        async with engine.begin() as conn:
            yield conn
        return
    try:
        yield held.conn
    except BaseException:
        await held.release()
        raise


class IdempotencyKeys:
    """Stores and replays answers of POSTs with an Idempotency-Key (see the module)."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: RuntimeTables,
        authenticate: Authenticate,
        *,
        retention: timedelta = timedelta(hours=24),
        lease: timedelta = timedelta(minutes=5),
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._table = tables.idempotency_keys
        self._authenticate = authenticate
        self._retention = retention
        # Only rows of an earlier release are ever left unanswered (it claimed in a transaction
        # of its own); a claim of this one never outlives its transaction.
        self._lease = lease
        self._on_commit = on_commit
        self._pruned_at: float | None = None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The pure ASGI middleware around `app` (for `create_app(middleware=...)`)."""

        async def idempotent(scope: Scope, receive: Receive, send: Send) -> None:
            key = header(scope, HEADER.encode()) if scope["type"] == "http" else None
            if key is None or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            await self._handle(app, key, scope, receive, send)

        return idempotent

    async def _handle(
        self, app: ASGIApp, key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope)
        if not _KEY.fullmatch(key):
            problem = Problem(
                422,
                "Invalid request",
                "An Idempotency-Key is 1 to 255 printable ASCII characters.",
                errors=[{"field": "Idempotency-Key", "reason": "must be 1 to 255 printable ASCII"}],
            )
            await problem_response(problem, request)(scope, receive, send)
            return
        try:
            principal = await self._authenticate(request)
        except Problem as problem:
            await problem_response(problem, request)(scope, receive, send)
            return
        # The route's `Caller` dependency reuses it (one key lookup per request).
        scope.setdefault("state", {})["principal"] = principal
        body = await read_body(receive)
        receive = replay_body(body, receive)
        digest = hashlib.sha256(
            b"\n".join([b"POST", scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        claim = _Claim(principal.key_id, key, digest, asyncio.current_task())
        claim.conn = await self._engine.connect()
        try:
            await claim.conn.begin()
            stored = await self._claim(claim.conn, claim)
            if stored is not None:
                await claim.release()
                await _replay(request, stored, digest)(scope, receive, send)
                return
            answer = _Answer()
            token = _claim.set(claim)
            try:
                await app(scope, receive, answer.send)
            finally:
                _claim.reset(token)
            await self._store(claim, answer)
        finally:
            await claim.release()
        await answer.replay(send)

    async def _store(self, claim: _Claim, answer: _Answer) -> None:
        """Keep the answer with the command (or in a transaction of its own if the command's
        was rolled back), unless it is a fault."""
        if answer.status >= 500:
            return
        headers = {k: v for k, v in answer.headers().items() if k in _KEPT_HEADERS}
        kept, withheld = _without_secrets(answer.body, answer.headers())
        if withheld:
            headers[_SECRET_MARK] = "true"
        values = {"status_code": answer.status, "headers": headers, "body": kept}
        conn = claim.conn
        if conn is None:
            async with self._engine.begin() as own:
                # Another request took the key meanwhile: this answer goes out unstored.
                if await self._claim(own, claim) is None:
                    await own.execute(self._where(claim).values(**values))
            return
        await conn.execute(self._where(claim).values(**values))
        await conn.commit()
        claim.conn = None
        await conn.close()
        self._on_commit()

    def _where(self, claim: _Claim) -> Any:
        table = self._table
        return table.update().where((table.c.caller == claim.caller) & (table.c.key == claim.key))

    async def _claim(self, conn: AsyncConnection, claim: _Claim) -> sa.Row[Any] | None:
        """Claim the key in `conn`'s transaction; the stored row if it is taken.

        Takes over a row past its retention, or an unanswered one past its lease.
        """
        await self._prune(conn)
        table = self._table
        now = sa.func.now()
        insert = pg_insert(table).values(
            caller=claim.caller, key=claim.key, request_hash=claim.digest, created_at=now
        )
        expired = table.c.created_at < now - self._retention
        abandoned = table.c.status_code.is_(None) & (table.c.created_at < now - self._lease)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.caller, table.c.key],
            set_={
                "request_hash": insert.excluded.request_hash,
                "status_code": None,
                "headers": None,
                "body": None,
                "created_at": now,
            },
            where=expired | abandoned,
        ).returning(table.c.key)
        if await conn.scalar(statement) is not None:
            return None
        where = (table.c.caller == claim.caller) & (table.c.key == claim.key)
        return (await conn.execute(sa.select(table).where(where))).one()

    async def _prune(self, conn: AsyncConnection) -> None:
        """Delete rows past their retention, at most once a minute per process."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        table = self._table
        expired = table.c.created_at < sa.func.now() - self._retention
        await conn.execute(table.delete().where(expired))


class _Answer:
    """The route's answer, held back until it is stored."""

    def __init__(self) -> None:
        self.start: AsgiMessage = {}
        self.chunks: list[bytes] = []

    async def send(self, message: AsgiMessage) -> None:
        """The `send` the route gets."""
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def status(self) -> int:
        """The status code."""
        return int(self.start["status"])

    @property
    def body(self) -> bytes:
        """The whole body."""
        return b"".join(self.chunks)

    def headers(self) -> dict[str, str]:
        """The headers (lower-case names)."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.start.get("headers", ())}

    async def replay(self, send: Send) -> None:
        """Send the answer on to the client."""
        await send(self.start)
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def _without_secrets(content: bytes, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The answer as it may be stored, and whether a secret was taken out of it."""
    no_store = "no-store" in headers.get("cache-control", "")
    try:
        document = json.loads(content) if content else None
    except ValueError:
        document = None
    if isinstance(document, dict) and SECRET_MEMBERS & document.keys():
        redacted = {k: v for k, v in document.items() if k not in SECRET_MEMBERS}
        return json.dumps(redacted).encode(), True
    if no_store:
        return b"", True
    return content, False


def _replay(request: Request, stored: sa.Row[tuple[object, ...]], digest: str) -> Response:
    if stored.request_hash != digest:
        problem = Problem(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was used for a different request.",
            errors=[{"field": "Idempotency-Key", "reason": "reused with another request"}],
        )
        return problem_response(problem, request)
    if stored.status_code is None:
        problem = Problem(409, "Conflict", "A request with this Idempotency-Key is running.")
        return problem_response(problem, request)
    headers = dict(stored.headers or {})
    if headers.pop(_SECRET_MARK, None):
        return problem_response(_secret_withheld(stored, headers), request)
    headers["idempotent-replayed"] = "true"
    return Response(content=stored.body, status_code=stored.status_code, headers=headers)


def _secret_withheld(stored: sa.Row[tuple[object, ...]], headers: dict[str, str]) -> Problem:
    """The replay of an answer that carried a secret: what was done, without the secret."""
    created = headers.get("location")
    if created is None and stored.body:
        with contextlib.suppress(ValueError):
            identifier = json.loads(stored.body).get("id")
            created = str(identifier) if identifier is not None else None
    detail = (
        f"The first request with this Idempotency-Key succeeded ({stored.status_code})"
        + (f" and created {created}" if created else "")
        + "; its answer carried a secret, which is shown once and never stored."
    )
    return Problem(
        409,
        "Conflict",
        detail,
        errors=[{"field": "Idempotency-Key", "reason": "its answer held a secret; not replayed"}],
    )
