"""Sign-in: passwords set through invitations, and sessions that are short-lived API keys.

A session is an `ApiKeyIssued` with the `session` scope and an `expires_at`, so every service
authenticates it (and refuses it once expired or revoked) exactly as it does an API key. A
session is refreshed by rotation: a new key, the old one revoked. Passwords are argon2id hashes
kept in intake only; invitation tokens are kept as SHA-256 hashes (they carry 256 random bits).
A password reset is an invitation of a person who has a password, lasting an hour, whose link
the notifier mails. Failed sign-ins are counted per e-mail address and per client address; a
lockout is an event on the stream.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from helpdesk.intake.application.accounts import MANAGERS, visible_account
from helpdesk.intake.application.people import IssuedKey
from helpdesk.intake.application.ports import IntakeUnitOfWork
from helpdesk.shared.auth import SESSION_SCOPE, Principal, hash_token, new_token
from helpdesk.shared.context import Context, new_id
from helpdesk.shared.contracts.accounts import (
    PROVIDER_ACCOUNT,
    ApiKeyIssued,
    ApiKeyRevoked,
    KeyRole,
    PasswordResetRequested,
    SignInLockedOut,
    Visibility,
)
from helpdesk.shared.errors import ApplicationError, Invalid, InvalidField, NotFound
from helpdesk.shared.events import Actor

#: How long a session works without a refresh (the portal refreshes it while it is used).
SESSION_LIFETIME = timedelta(hours=8)
#: How long an invitation link works.
INVITATION_LIFETIME = timedelta(days=3)
#: How long a password reset link works.
RESET_LIFETIME = timedelta(hours=1)
#: Reset links of one person working at once: beyond, a request mails nothing more (so that
#: nobody can have the notifier flood a mailbox).
RESET_LIMIT = 3
#: Failed sign-ins of one address in `FAILURE_WINDOW` beyond which it is refused for a while.
FAILURE_LIMIT = 5
#: The same for one client address, which an office's colleagues may share behind one router.
CLIENT_FAILURE_LIMIT = 20
FAILURE_WINDOW = timedelta(minutes=15)
PASSWORD_MIN = 12
PASSWORD_MAX = 1024

PersonKind = Literal["contact", "staff"]
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106) parameters
# Verified when no one has the address, so an unknown address takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Person:
    """Someone who may sign in: a contact of an account or a member of the provider's staff."""

    kind: PersonKind
    id: UUID
    email: str
    role: KeyRole
    account_id: UUID | None = None
    visibility: Visibility | None = None


class SignIns(Protocol):
    """Sign-in state: credentials, invitations and failed attempts."""

    async def person(self, kind: PersonKind, person_id: UUID) -> Person | None:
        """The contact or staff member, as they are now."""

    async def credentials(self, email: str) -> list[tuple[Person, str]]:
        """The people with this address and a password, with its hash."""

    async def failures_since(self, email: str, since: datetime) -> int:
        """Failed sign-ins of this address since `since`."""

    async def client_failures_since(self, client_hash: str, since: datetime) -> int:
        """Failed sign-ins from this client address (its SHA-256) since `since`."""

    async def record_failure(self, email: str, client_hash: str | None, at: datetime) -> None:
        """Count a failed sign-in of this address, from this client address if known."""

    async def clear_failures(self, email: str) -> None:
        """Forget the address's failed sign-ins (it signed in)."""

    async def save_invitation(
        self, token_hash: str, person: Person, expires_at: datetime, *, reset: bool = False
    ) -> None:
        """Keep a new invitation (or a password reset's link)."""

    async def open_resets(self, person: Person, at: datetime) -> int:
        """The person's password reset links unused and unexpired at `at`."""

    async def take_invitation(self, token_hash: str, at: datetime) -> Person | None:
        """The invitation's person if it is unused and unexpired at `at`, marking it used."""

    async def set_password(self, person: Person, password_hash: str, at: datetime) -> None:
        """Store (or replace) the person's password hash."""

    async def open_sessions(self, person: Person) -> list[str]:
        """The key ids of the person's sessions not revoked yet."""


class TooManyAttempts(ApplicationError):  # noqa: N818 - named after the answer it gives
    """Too many failed sign-ins of one address or from one client address: refused until the
    window has passed."""

    status = 429
    title = "Too Many Requests"


@dataclass(frozen=True)
class Invited:
    """A new invitation: its one-time token exists only in this answer."""

    person: Person
    token: str
    expires_at: datetime


def _actor(person: Person) -> Actor:
    return Actor(type=person.kind, id=str(person.id))


async def _issue(uow: IntakeUnitOfWork, person: Person, at: datetime) -> IssuedKey:
    key_id = new_id().hex
    token = new_token(key_id)
    issued = ApiKeyIssued(
        key_id=key_id,
        role=person.role,
        token_hash=hash_token(token),
        account_id=person.account_id,
        contact_id=person.id if person.kind == "contact" else None,
        staff_id=person.id if person.kind == "staff" else None,
        visibility=person.visibility,
        scopes=[SESSION_SCOPE],
        expires_at=at + SESSION_LIFETIME,
    )
    ctx = Context(_actor(person), at, at)
    await uow.emit([ctx.event(issued, account_id=person.account_id or PROVIDER_ACCOUNT)])
    return IssuedKey(issued, token)


async def sign_in(
    uow: IntakeUnitOfWork,
    sign_ins: SignIns,
    email: str,
    password: str,
    at: datetime,
    client: str | None = None,
) -> IssuedKey | None:
    """A session for the person with this address and password, or None (a failure counted).

    `client` is the network address the attempt came from, when known. The caller commits
    before refusing, so that the failure (and a lockout's event) counts.
    """
    email = email.lower()
    since = at - FAILURE_WINDOW
    client_hash = hash_token(client) if client else None
    email_failures = await sign_ins.failures_since(email, since)
    client_failures = await sign_ins.client_failures_since(client_hash, since) if client_hash else 0
    if email_failures >= FAILURE_LIMIT or client_failures >= CLIENT_FAILURE_LIMIT:
        whose = "this address" if email_failures >= FAILURE_LIMIT else "your network address"
        raise TooManyAttempts(
            f"Too many failed sign-ins for {whose}; try again in "
            f"{int(FAILURE_WINDOW.total_seconds() // 60)} minutes."
        )
    found = await sign_ins.credentials(email)
    if not found:
        await _verifies(_DUMMY_HASH, password)
    for person, password_hash in found:
        if await _verifies(password_hash, password):
            await sign_ins.clear_failures(email)
            return await _issue(uow, person, at)
    await sign_ins.record_failure(email, client_hash, at)
    lockouts = []
    # Announced once, by the failure that reaches the limit.
    if email_failures + 1 == FAILURE_LIMIT:
        lockouts.append(("email", hash_token(email), FAILURE_LIMIT))
    if client_hash and client_failures + 1 == CLIENT_FAILURE_LIMIT:
        lockouts.append(("client", client_hash, CLIENT_FAILURE_LIMIT))
    if lockouts:
        ctx = Context(Actor(type="system", id="intake"), at, at)
        await uow.emit(
            [
                ctx.event(
                    SignInLockedOut(
                        scope=scope, address_hash=hashed, failures=limit, until=at + FAILURE_WINDOW
                    ),
                    account_id=PROVIDER_ACCOUNT,
                )
                for scope, hashed, limit in lockouts
            ]
        )
    return None


async def _verifies(password_hash: str, password: str) -> bool:
    try:
        # argon2 is deliberately slow: off the event loop.
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def refresh(
    uow: IntakeUnitOfWork, sign_ins: SignIns, principal: Principal, at: datetime
) -> IssuedKey:
    """A new session for the caller's session's person (with their current role); the
    caller's session is revoked."""
    person = await _session_person(sign_ins, principal)
    issued = await _issue(uow, person, at)
    await _revoke(uow, person, [principal.key_id], at)
    return issued


async def sign_out(
    uow: IntakeUnitOfWork, sign_ins: SignIns, principal: Principal, at: datetime
) -> None:
    """Revoke the caller's session in every service."""
    person = await _session_person(sign_ins, principal)
    await _revoke(uow, person, [principal.key_id], at)


async def _session_person(sign_ins: SignIns, principal: Principal) -> Person:
    if not principal.is_session:
        raise NotFound("This key is no session (an API key is revoked with DELETE /v1/api-keys).")
    kind: PersonKind = "contact" if principal.contact_id else "staff"
    person_id = principal.contact_id or principal.staff_id
    person = await sign_ins.person(kind, person_id) if person_id else None
    if person is None:
        raise NotFound("No such person.")
    return person


async def _revoke(uow: IntakeUnitOfWork, person: Person, key_ids: list[str], at: datetime) -> None:
    ctx = Context(_actor(person), at, at)
    account = person.account_id or PROVIDER_ACCOUNT
    await uow.emit([ctx.event(ApiKeyRevoked(key_id=k), account_id=account) for k in key_ids])


async def invite(
    uow: IntakeUnitOfWork,
    sign_ins: SignIns,
    principal: Principal,
    kind: PersonKind,
    person_id: UUID,
    at: datetime,
) -> Invited:
    """A one-time link for a contact (managers) or a staff member (admins) to set a password."""
    if kind == "contact":
        principal.require_role(*MANAGERS)
    else:
        principal.require_role("admin")
    person = await sign_ins.person(kind, person_id)
    if person is None:
        raise InvalidField(f"{kind}_id", f"no such {kind}", f"No such {kind}.")
    if person.account_id is not None:
        await visible_account(uow, principal, person.account_id)
    return await _invitation(sign_ins, person, at + INVITATION_LIFETIME)


async def _invitation(
    sign_ins: SignIns, person: Person, expires_at: datetime, *, reset: bool = False
) -> Invited:
    token = secrets.token_urlsafe(32)
    await sign_ins.save_invitation(hash_token(token), person, expires_at, reset=reset)
    return Invited(person, token, expires_at)


async def request_reset(uow: IntakeUnitOfWork, sign_ins: SignIns, email: str, at: datetime) -> None:
    """A reset link, mailed by the notifier, for each person with a password at this address
    (none for an unknown address, nor for a person with RESET_LIMIT links working already:
    the caller answers the same either way).

    The link is an invitation for an hour, accepted like one: it sets the password and ends
    the person's sessions.
    """
    for person, _ in await sign_ins.credentials(email.lower()):
        if await sign_ins.open_resets(person, at) >= RESET_LIMIT:
            continue
        reset = await _invitation(sign_ins, person, at + RESET_LIFETIME, reset=True)
        requested = PasswordResetRequested(
            kind=person.kind,
            person_id=person.id,
            email=person.email,
            path=f"/password-resets/{reset.token}",
            expires_at=reset.expires_at,
        )
        ctx = Context(Actor(type="system", id="intake"), at, at)
        await uow.emit([ctx.event(requested, account_id=person.account_id or PROVIDER_ACCOUNT)])


def check_password(password: str) -> None:
    """Refuse a password too short or too long to be one."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(
            f"A password has {PASSWORD_MIN} to {PASSWORD_MAX} characters; nothing was changed.",
            errors=[{"field": "password", "reason": f"needs {PASSWORD_MIN} characters or more"}],
        )


async def accept(
    uow: IntakeUnitOfWork, sign_ins: SignIns, token: str, password: str, at: datetime
) -> Person:
    """Set the invited person's password (the link then stops working); their sessions end."""
    check_password(password)
    person = await sign_ins.take_invitation(hash_token(token), at)
    if person is None:
        raise NotFound("This invitation link is unknown, used or expired; ask for a new one.")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    await sign_ins.set_password(person, password_hash, at)
    sessions = await sign_ins.open_sessions(person)
    if sessions:
        await _revoke(uow, person, sessions, at)
    return person
