"""`Idempotency-Key` on every POST: a retried request gets the first answer, not a second effect.

The key is scoped to the caller (the hash of its bearer token). The same key with the same
method, path and body replays the stored answer; with another request it is a 422. A request
still running under the key answers 409. Answers of 500 and above are not kept, so a retry
after a server fault runs again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from fastapi import Request, Response
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from helpdesk.shared.auth import hash_token
from helpdesk.shared.db import RuntimeTables
from helpdesk.shared.web import Problem, problem_response

HEADER = "idempotency-key"
_KEPT_HEADERS = ("content-type", "etag", "location")


class IdempotencyKeys:
    """HTTP middleware that stores and replays answers of POSTs with an Idempotency-Key."""

    def __init__(self, engine: AsyncEngine, tables: RuntimeTables) -> None:
        self._engine = engine
        self._table = tables.idempotency_keys

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Middleware entry point."""
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return await call_next(request)
        if not 1 <= len(key) <= 255:
            problem = Problem(
                422,
                "Invalid request",
                errors=[{"field": "Idempotency-Key", "reason": "must be 1 to 255 characters"}],
            )
            return problem_response(problem, request)
        caller = hash_token(request.headers.get("authorization", ""))
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
        async with self._engine.begin() as conn:
            claimed = await conn.scalar(
                pg_insert(table)
                .values(caller=caller, key=key, request_hash=digest)
                .on_conflict_do_nothing()
                .returning(table.c.key)
            )
            if claimed is None:
                stored = (
                    await conn.execute(
                        sa.select(table).where(table.c.caller == caller, table.c.key == key)
                    )
                ).one()
        if claimed is None:
            return self._replay(request, stored, digest)
        response = await call_next(request)
        content = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        async with self._engine.begin() as conn:
            where = (table.c.caller == caller) & (table.c.key == key)
            if response.status_code >= 500:
                await conn.execute(table.delete().where(where))
            else:
                headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
                await conn.execute(
                    table.update()
                    .where(where)
                    .values(status_code=response.status_code, headers=headers, body=content)
                )
        return Response(
            content=content,
            status_code=response.status_code,
            headers=dict(response.headers),
        )

    @staticmethod
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
        headers = dict(stored.headers or {}) | {"idempotent-replayed": "true"}
        return Response(content=stored.body, status_code=stored.status_code, headers=headers)
