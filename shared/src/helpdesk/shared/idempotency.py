"""`Idempotency-Key` on every POST: a retried request gets the first answer, not a second effect.

The caller is authenticated first, and the key is scoped to the authenticated principal (its
key id), so an unknown or revoked key gets its 401 and no row, and the spelling of the
Authorization header does not matter. The same key with the same method, path, query and body
replays the stored answer; with another request it is a 422. A request still running under the
key answers 409.

What is never kept: an answer of 500 and above, or a request that raised (the claim is released
so a retry runs again); a claim older than the lease (its process died mid-request); any row
older than the retention (24 h by default; pruned, and a later request may reuse the key); and
a secret. An answer that carries one (a `token` or `secret` member, or `Cache-Control:
no-store`) is kept without it, and a replay answers 409 naming the created resource instead
of the secret, which is shown once only.

The claim is its own small transaction before the command's: a process dying between the
command's commit and the stored answer leaves a claim that the lease later frees, and a retry
after that runs the command again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import Request, Response
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from helpdesk.shared.auth import Principal
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.web import Problem, problem_response

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


class IdempotencyKeys:
    """HTTP middleware that stores and replays answers of POSTs with an Idempotency-Key."""

    def __init__(
        self,
        engine: AsyncEngine,
        tables: RuntimeTables,
        authenticate: Authenticate,
        *,
        retention: timedelta = timedelta(hours=24),
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._engine = engine
        self._table = tables.idempotency_keys
        self._authenticate = authenticate
        self._retention = retention
        self._lease = lease
        self._pruned_at: float | None = None

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Middleware entry point."""
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return await call_next(request)
        if not _KEY.fullmatch(key):
            problem = Problem(
                422,
                "Invalid request",
                "An Idempotency-Key is 1 to 255 printable ASCII characters.",
                errors=[{"field": "Idempotency-Key", "reason": "must be 1 to 255 printable ASCII"}],
            )
            return problem_response(problem, request)
        try:
            principal = await self._authenticate(request)
        except Problem as problem:
            return problem_response(problem, request)
        # The route's `Caller` dependency reuses it (one key lookup per request).
        request.state.principal = principal
        caller = principal.key_id
        body = await request.body()
        digest = hashlib.sha256(
            b"\n".join(
                [
                    request.method.encode(),
                    str(request.url.path).encode(),
                    request.url.query.encode(),
                    body,
                ]
            )
        ).hexdigest()
        table = self._table
        where = (table.c.caller == caller) & (table.c.key == key)
        async with self._engine.begin() as conn:
            await self._prune(conn)
            claimed = await conn.scalar(self._claim(caller, key, digest))
            stored = None
            if claimed is None:
                stored = (await conn.execute(sa.select(table).where(where))).one()
        if stored is not None:
            return _replay(request, stored, digest)
        try:
            response = await call_next(request)
            content = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        except BaseException:
            with contextlib.suppress(Exception):
                async with self._engine.begin() as conn:
                    await conn.execute(table.delete().where(where))
            raise
        async with self._engine.begin() as conn:
            if response.status_code >= 500:
                await conn.execute(table.delete().where(where))
            else:
                headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
                kept, withheld = _without_secrets(content, response)
                if withheld:
                    headers[_SECRET_MARK] = "true"
                await conn.execute(
                    table.update()
                    .where(where)
                    .values(status_code=response.status_code, headers=headers, body=kept)
                )
        return Response(
            content=content,
            status_code=response.status_code,
            headers=dict(response.headers),
        )

    def _claim(self, caller: str, key: str, digest: str) -> Any:
        """Insert the claim; take over a row past its retention or a claim past its lease."""
        table = self._table
        now = sa.func.now()
        insert = pg_insert(table).values(
            caller=caller, key=key, request_hash=digest, created_at=now
        )
        expired = table.c.created_at < now - self._retention
        abandoned = table.c.status_code.is_(None) & (table.c.created_at < now - self._lease)
        return insert.on_conflict_do_update(
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

    async def _prune(self, conn: Any) -> None:
        """Delete rows past their retention, at most once a minute per process."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        table = self._table
        expired = table.c.created_at < sa.func.now() - self._retention
        await conn.execute(table.delete().where(expired))


def _without_secrets(content: bytes, response: Response) -> tuple[bytes, bool]:
    """The answer as it may be stored, and whether a secret was taken out of it."""
    no_store = "no-store" in response.headers.get("cache-control", "")
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
