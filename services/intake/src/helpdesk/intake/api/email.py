"""Inbound e-mail over HTTP: for a mail gateway that posts each raw message (staff keys only)."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from helpdesk.intake.adapters.tables import inbound_messages
from helpdesk.intake.domain.email import UnreadableEmailError
from helpdesk.intake.inbound import inbound_view, receive_email
from helpdesk.shared.auth import Principal
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.web import Problem, read_body

router = APIRouter(prefix="/v1", tags=["inbound e-mail"])
#: The route reads (and limits) its raw message itself, up to `HELPDESK_EMAIL_MAX_BYTES`.
RAW_MESSAGE_PATH = "/v1/inbound/email"

# opened: a resource was created; replied: an existing one changed; refused: the message was
# accepted and recorded, but nothing was done with it.
STATUS = {"opened": 201, "replied": 200, "refused": 202}
RAW_MESSAGE = {
    "requestBody": {
        "required": True,
        "content": {
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


def _staff_only(caller: Principal) -> None:
    if not caller.is_staff:
        raise Problem(
            403, "Forbidden", "Only staff keys (a mail gateway) may handle inbound e-mail."
        )


@router.post(
    RAW_MESSAGE_PATH.removeprefix("/v1"),
    status_code=201,
    openapi_extra=RAW_MESSAGE,
    responses={200: {"description": "threaded as a reply"}, 202: {"description": "refused"}},
)
async def inbound_email(request: Request, runtime: Runtime, caller: Caller) -> JSONResponse:
    """Take one raw RFC 5322 message: open a ticket, thread a reply, or record a refusal.

    At most `HELPDESK_EMAIL_MAX_BYTES` (25 MB, as over SMTP). Attachments are not stored; their
    names and sizes are noted on the ticket. NUL characters are removed.
    """
    _staff_only(caller)
    raw = await _message_bytes(request, runtime.settings.email_max_bytes)
    try:
        answer = await receive_email(runtime, raw)
    except UnreadableEmailError as exc:
        raise Problem(
            422,
            "Invalid request",
            "The body is not an e-mail message intake can read; nothing was recorded.",
            errors=[{"field": "body", "reason": str(exc)}],
        ) from exc
    status = 200 if answer.get("duplicate") else STATUS[answer["outcome"]]
    headers = {"Location": f"/v1/tickets/{answer['ticket_id']}"} if status == 201 else None
    return JSONResponse(answer, status_code=status, headers=headers)


async def _message_bytes(request: Request, limit: int) -> bytes:
    """The raw message, or a 413 once it is longer than SMTP would take (`limit`)."""
    return await read_body(request.receive, limit, request.headers.get("content-length"))


@router.get("/inbound/email")
async def list_inbound_email(
    runtime: Runtime,
    caller: Caller,
    outcome: Annotated[str | None, Query(pattern="^(opened|replied|refused)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[dict[str, Any]]:
    """The recorded inbound messages and their outcomes, newest first."""
    _staff_only(caller)
    query = sa.select(inbound_messages).order_by(inbound_messages.c.id.desc()).limit(limit)
    if outcome is not None:
        query = query.where(inbound_messages.c.outcome == outcome)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [inbound_view(row) for row in rows]
