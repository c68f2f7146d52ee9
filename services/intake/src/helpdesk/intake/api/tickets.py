"""Tickets: open, list, read, audit history, and every lifecycle command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from helpdesk.intake import queries
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import tickets as service
from helpdesk.intake.application.commands import (
    TICKET_COMMANDS,
    Imported,
    TicketCreate,
    TicketImport,
)
from helpdesk.intake.application.context import command_context
from helpdesk.intake.domain.tickets import Ticket, audience_view
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import utc_now
from helpdesk.shared.contracts.common import Priority, TicketStatus
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import IfMatch, check_if_match

router = APIRouter(prefix="/v1", tags=["tickets"])


def _answer(ticket: Ticket, caller: Principal, response: Response) -> dict[str, Any]:
    shown = audience_view(ticket.view(), staff=caller.is_staff)
    response.headers["ETag"] = f'"{shown["version"]}"'
    return shown


@router.post("/tickets", status_code=201)
async def open_ticket(
    body: TicketCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Open a ticket (honours Idempotency-Key)."""
    ctx = command_context(caller, body.occurred_at, utc_now())
    async with runtime.unit_of_work() as uow:
        ticket = await service.open_ticket(PostgresUnitOfWork(uow), caller, body, ctx)
    response.headers["Location"] = f"/v1/tickets/{ticket.id}"
    return _answer(ticket, caller, response)


@router.post("/ticket-imports", status_code=201)
async def import_ticket(
    body: TicketImport, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """Import a ticket with its whole history in one transaction (import scope; honours
    Idempotency-Key): every step carries its own `occurred_at`, and a refused step refuses all."""
    async with runtime.unit_of_work() as uow:
        ticket = await service.import_ticket(PostgresUnitOfWork(uow), caller, body, utc_now())
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
    async with runtime.engine.connect() as conn:
        return await queries.ticket_list(
            conn,
            caller,
            account_id=account_id,
            status=status,
            priority=priority,
            assignee=assignee,
            text=q,
            limit=limit,
            cursor=cursor,
        )


@router.get("/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: UUID, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """One ticket; its ETag is its `version` for the caller (staff: seq; a contact: the count
    of public events), the strong tag that If-Match names."""
    async with runtime.engine.connect() as conn:
        row = await queries.ticket(conn, caller, ticket_id)
    shown = audience_view(row.state, staff=caller.is_staff)
    response.headers["ETag"] = f'"{shown["version"]}"'
    return shown


@router.get("/tickets/{ticket_id}/events")
async def ticket_history(ticket_id: UUID, runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """The ticket's full audit history, oldest first (contacts do not see internal notes)."""
    async with runtime.engine.connect() as conn:
        return await queries.ticket_history(conn, caller, ticket_id)


def _command_route(
    segment: str, body_type: type[Imported]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def run(
        ticket_id: UUID,
        body: body_type,  # type: ignore[valid-type]
        runtime: Runtime,
        caller: Caller,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        command: Imported = body
        ctx = command_context(caller, command.occurred_at, utc_now())
        # The ticket's ETag is its version for the caller, strong: `If-Match: "5"`, `*` or a
        # list of tags; a stale one is a 412 (RFC 9110), a weak one never matches.
        precondition = partial(check_if_match, if_match, what="ticket")
        async with runtime.unit_of_work() as uow:
            ticket = await service.run(
                PostgresUnitOfWork(uow), caller, ticket_id, command, ctx, precondition
            )
        return _answer(ticket, caller, response)

    # Resolved here: under postponed annotations FastAPI would look `body_type` up globally.
    run.__annotations__["body"] = body_type
    run.__name__ = f"ticket_{segment.replace('-', '_')}"
    run.__doc__ = body_type.__doc__
    return run


for _segment, _body in TICKET_COMMANDS.items():
    router.add_api_route(
        f"/tickets/{{ticket_id}}/{_segment}", _command_route(_segment, _body), methods=["POST"]
    )
