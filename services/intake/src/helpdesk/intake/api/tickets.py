"""Tickets: open, list, read, audit history, and every lifecycle command."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query, Response

from helpdesk.intake import commands
from helpdesk.intake.adapters.tables import ticket_events, tickets
from helpdesk.intake.api.schemas import TICKET_COMMANDS, Imported, TicketCreate
from helpdesk.intake.domain.tickets import Ticket, audience_history, audience_view
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts.common import Priority, TicketStatus
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1", tags=["tickets"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _answer(ticket: Ticket, caller: Principal, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{ticket.seq}"'
    return audience_view(ticket.view(), staff=caller.is_staff)


@router.post("/tickets", status_code=201)
async def open_ticket(
    body: TicketCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Open a ticket (honours Idempotency-Key)."""
    ctx = commands.context(caller, body.occurred_at, commands.now())
    async with runtime.transaction() as conn:
        ticket = await commands.open_ticket(conn, caller, body.model_dump(), ctx)
    response.headers["Location"] = f"/v1/tickets/{ticket.id}"
    return _answer(ticket, caller, response)


@router.get("/tickets")
async def list_tickets(
    runtime: Runtime,
    caller: Caller,
    account_id: UUID | None = None,
    status: TicketStatus | None = None,
    priority: Priority | None = None,
    assignee: str | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in subject or description")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Tickets, newest first, filtered; `next_cursor` pages on."""
    query = sa.select(tickets.c.id, tickets.c.state).order_by(tickets.c.id.desc()).limit(limit + 1)
    if not caller.is_staff:
        query = query.where(tickets.c.account_id == caller.account_id)
        if caller.visibility != "account":
            query = query.where(tickets.c.contact_id == caller.contact_id)
    filters = {
        tickets.c.account_id: account_id,
        tickets.c.status: status,
        tickets.c.priority: priority,
        tickets.c.assignee: assignee,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(tickets.c.subject.ilike(pattern), tickets.c.description.ilike(pattern))
        )
    if cursor:
        try:
            after = UUID(bytes=base64.urlsafe_b64decode(cursor.encode() + b"=="))
        except ValueError as exc:
            raise Problem(
                422,
                "Invalid request",
                errors=[{"field": "cursor", "reason": "not a cursor from this API"}],
            ) from exc
        query = query.where(tickets.c.id < after)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    page = rows[:limit]
    next_cursor = (
        base64.urlsafe_b64encode(page[-1].id.bytes).decode().rstrip("=")
        if len(rows) > limit
        else None
    )
    items = [audience_view(row.state, staff=caller.is_staff) for row in page]
    return {"items": items, "next_cursor": next_cursor}


@router.get("/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: UUID, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """One ticket; its ETag is its version (seq), the strong tag that If-Match names."""
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id))).first()
    if row is None or not caller.can_see_ticket(row.account_id, row.contact_id):
        raise Problem(404, "Not Found", "No such ticket.")
    response.headers["ETag"] = f'"{row.seq}"'
    return audience_view(row.state, staff=caller.is_staff)


@router.get("/tickets/{ticket_id}/events")
async def ticket_history(ticket_id: UUID, runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The ticket's full audit history, oldest first (contacts do not see internal notes)."""
    async with runtime.engine.connect() as conn:
        await commands.visible_ticket(conn, caller, ticket_id)
        rows = await conn.execute(
            sa.select(ticket_events.c.envelope)
            .where(ticket_events.c.ticket_id == ticket_id)
            .order_by(ticket_events.c.seq)
        )
        history = [row.envelope for row in rows]
    return audience_history(history, staff=caller.is_staff)


def _command_route(
    command: str, body_type: type[Imported]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def run(
        ticket_id: UUID,
        body: body_type,  # type: ignore[valid-type]
        runtime: Runtime,
        caller: Caller,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        fields = body.model_dump()  # type: ignore[attr-defined]
        ctx = commands.context(caller, fields.pop("occurred_at"), commands.now())
        async with runtime.transaction() as conn:
            ticket = await commands.ticket_command(
                conn, caller, ticket_id, command, fields, ctx, if_match
            )
        return _answer(ticket, caller, response)

    # Resolved here: under postponed annotations FastAPI would look `body_type` up globally.
    run.__annotations__["body"] = body_type
    run.__name__ = f"ticket_{command.replace('-', '_')}"
    run.__doc__ = body_type.__doc__
    return run


for _command, _body in TICKET_COMMANDS.items():
    router.add_api_route(
        f"/tickets/{{ticket_id}}/{_command}", _command_route(_command, _body), methods=["POST"]
    )
