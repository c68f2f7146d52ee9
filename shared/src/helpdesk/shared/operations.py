"""What an operator looks at in an incident: the outbox's dead letters and the parked events.

Served by every service at `GET /v1/admin/dead-letters` (admin only) and printed by
`make dead-letters-<service>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.shared.auth import Principal
from helpdesk.shared.db import RuntimeTables


class DeadLetter(BaseModel):
    """An outbox row that can never be published, and why."""

    event_id: UUID
    type: str
    reason: str
    size_bytes: int
    created_at: datetime | None
    dead_at: datetime


class DeadLetters(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetter]
    next_cursor: str | None = None


async def list_dead_letters(
    conn: AsyncConnection, tables: RuntimeTables, limit: int
) -> list[DeadLetter]:
    """The newest `limit` dead letters of a service."""
    letters = tables.dead_letters
    rows = await conn.execute(
        sa.select(
            letters.c.event_id,
            letters.c.type,
            letters.c.reason,
            sa.func.length(letters.c.value).label("size_bytes"),
            letters.c.created_at,
            letters.c.dead_at,
        )
        .order_by(letters.c.dead_at.desc(), letters.c.event_id)
        .limit(limit)
    )
    return [DeadLetter.model_validate(row._asdict()) for row in rows]


async def count_parked(conn: AsyncConnection, tables: RuntimeTables) -> int:
    """How many events a service has parked (failed or held)."""
    table = tables.parked_events
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def operations_router() -> APIRouter:
    """The operator's routes every service serves."""
    # Imported here: the dependencies module imports the service runtime, which includes this.
    from helpdesk.shared.deps import principal, runtime

    router = APIRouter(prefix="/v1/admin", tags=["operations"])

    # The dependency is a local name here, which a string annotation cannot name: FastAPI
    # resolves annotations in the module's globals, so it goes in the default instead.
    @router.get("/dead-letters", response_model=DeadLetters)
    async def dead_letters(
        request: Request,
        caller: Principal = Depends(principal),  # noqa: B008
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DeadLetters:
        """Outbox rows this service could never publish (admin only), newest first."""
        caller.require_role("admin")
        items = await (await runtime(request)).dead_letters(limit)
        return DeadLetters(items=items)

    return router
