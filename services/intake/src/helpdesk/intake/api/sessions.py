"""Sign-in sessions and invitations (`application.sessions`).

The session's token and an invitation's token are in their answers and nowhere else (a reset
link's, in the mail the notifier sends): only their hashes are kept, and no log line carries them.

Sign-in failures are also counted per client address: the peer's, or the one a trusted proxy
(the portal) names in `X-Helpdesk-Client-Address`. Proxies are trusted by their own address
(HELPDESK_TRUSTED_PROXIES, loopback by default, as `make up` runs the portal).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, Request, Response

from helpdesk.intake.adapters.sign_ins import PostgresSignIns
from helpdesk.intake.adapters.unit_of_work import PostgresUnitOfWork
from helpdesk.intake.application import sessions as service
from helpdesk.intake.application.commands import (
    InvitationAccept,
    InvitationCreate,
    PasswordResetCreate,
    SessionCreate,
)
from helpdesk.intake.application.people import IssuedKey
from helpdesk.shared.deps import Caller, Runtime
from helpdesk.shared.errors import InvalidField
from helpdesk.shared.web import Problem

router = APIRouter(prefix="/v1", tags=["sessions"])

#: The header in which a trusted proxy names the browser's network address.
CLIENT_ADDRESS_HEADER = "X-Helpdesk-Client-Address"


def client_address(request: Request, trusted_proxies: str) -> str | None:
    """The network address a request comes from: the peer's, unless the peer is one of the
    `trusted_proxies` (comma-separated addresses or networks), which names its client's."""
    peer = request.client.host if request.client else None
    named = request.headers.get(CLIENT_ADDRESS_HEADER)
    if peer is None or not named:
        return peer
    entries = [entry.strip() for entry in trusted_proxies.split(",") if entry.strip()]
    networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]
    try:
        trusted = any(ipaddress.ip_address(peer) in net for net in networks)
    except ValueError:  # not an IP address (a test client's name)
        return peer
    return named.strip()[:64] if trusted else peer


def _session(key: IssuedKey, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "no-store"
    issued = key.issued
    return {
        "token": key.token,
        "key_id": issued.key_id,
        "expires_at": issued.expires_at,
        "role": issued.role,
        "account_id": issued.account_id,
        "contact_id": issued.contact_id,
        "staff_id": issued.staff_id,
        "visibility": issued.visibility,
    }


@router.post("/sessions", status_code=201)
async def sign_in(
    body: SessionCreate, request: Request, runtime: Runtime, response: Response
) -> dict[str, Any]:
    """Sign in with e-mail and password: a session token that works at every service, for
    hours (refresh it while it is used). Too many failures for one e-mail address, or from one
    client address, answer 429."""
    async with runtime.unit_of_work() as uow:
        key = await service.sign_in(
            PostgresUnitOfWork(uow),
            PostgresSignIns(uow.conn),
            body.email,
            body.password,
            runtime.clock(),
            client_address(request, runtime.settings.trusted_proxies),
        )
    # Refused only now, once the failure is committed (it counts towards the limit).
    if key is None:
        raise Problem(401, "Unauthorized", "The e-mail address or the password is wrong.")
    return _session(key, response)


@router.post("/sessions/current/refresh", status_code=201)
async def refresh(runtime: Runtime, caller: Caller, response: Response) -> dict[str, Any]:
    """A new session token for the caller's session, which ends."""
    async with runtime.unit_of_work() as uow:
        key = await service.refresh(
            PostgresUnitOfWork(uow), PostgresSignIns(uow.conn), caller, runtime.clock()
        )
    return _session(key, response)


@router.delete("/sessions/current", status_code=204)
async def sign_out(runtime: Runtime, caller: Caller) -> Response:
    """Sign out: the caller's session stops working at every service."""
    async with runtime.unit_of_work() as uow:
        await service.sign_out(
            PostgresUnitOfWork(uow), PostgresSignIns(uow.conn), caller, runtime.clock()
        )
    return Response(status_code=204)


@router.post("/invitations", status_code=201)
async def invite(
    body: InvitationCreate, runtime: Runtime, caller: Caller, response: Response
) -> dict[str, Any]:
    """A one-time link token, valid for days, for a contact or a staff member to set their
    password (POST /v1/invitations/{token}/accept); hand it over or let it be mailed."""
    if (body.contact_id is None) == (body.staff_id is None):
        raise InvalidField("contact_id", "give contact_id or staff_id", "Invite one person.")
    kind: service.PersonKind = "contact" if body.contact_id else "staff"
    person_id = body.contact_id or body.staff_id
    assert person_id is not None
    async with runtime.unit_of_work() as uow:
        invited = await service.invite(
            PostgresUnitOfWork(uow),
            PostgresSignIns(uow.conn),
            caller,
            kind,
            person_id,
            runtime.clock(),
        )
    response.headers["Cache-Control"] = "no-store"
    return {
        "token": invited.token,
        "email": invited.person.email,
        "expires_at": invited.expires_at,
        "path": f"/invitations/{invited.token}",
    }


@router.post("/invitations/{token}/accept")
async def accept(token: str, body: InvitationAccept, runtime: Runtime) -> dict[str, Any]:
    """Set the password of the invited person; the link is used up, earlier sessions end."""
    async with runtime.unit_of_work() as uow:
        person = await service.accept(
            PostgresUnitOfWork(uow),
            PostgresSignIns(uow.conn),
            token,
            body.password,
            runtime.clock(),
        )
    return {"email": person.email, "kind": person.kind}


@router.post("/password-resets", status_code=202)
async def request_reset(body: PasswordResetCreate, runtime: Runtime) -> dict[str, Any]:
    """Forgot password: the notifier mails a one-time link, valid for an hour, to set a new
    password (POST /v1/invitations/{token}/accept, which ends every session of the person). The
    answer is the same whether anyone has this address or not."""
    async with runtime.unit_of_work() as uow:
        await service.request_reset(
            PostgresUnitOfWork(uow), PostgresSignIns(uow.conn), body.email, runtime.clock()
        )
    return {"detail": "If someone has this address, a link to choose a new password is on its way."}
