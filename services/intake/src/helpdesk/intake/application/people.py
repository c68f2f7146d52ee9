"""People use cases: contacts of an account, the provider's staff, and API keys.

E-mail addresses are unique among contacts and among staff; as with account names, a create
that lost a race to a concurrent one finds no row after emitting and refuses with a 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from helpdesk.intake.application.accounts import MANAGERS, visible_account
from helpdesk.intake.application.commands import ApiKeyCreate, ContactCreate, StaffCreate
from helpdesk.intake.application.ports import IntakeUnitOfWork
from helpdesk.shared.auth import Principal, hash_token, new_token
from helpdesk.shared.context import Context, new_id
from helpdesk.shared.contracts.accounts import (
    PROVIDER_ACCOUNT,
    ApiKeyIssued,
    ApiKeyRevoked,
    ContactAdded,
    StaffAdded,
)
from helpdesk.shared.errors import Conflict, InvalidField, NotFound


def _email_taken() -> Conflict:
    return Conflict(
        "This e-mail address is taken.", errors=[{"field": "email", "reason": "already taken"}]
    )


async def add_contact(
    uow: IntakeUnitOfWork,
    principal: Principal,
    account_id: UUID,
    command: ContactCreate,
    ctx: Context,
) -> ContactAdded:
    """A person of the account who opens and follows tickets."""
    principal.require_role(*MANAGERS)
    await visible_account(uow, principal, account_id)
    email = command.email.lower()
    if await uow.people.contact_with_email(email) is not None:
        raise _email_taken()
    added = ContactAdded(
        contact_id=new_id(),
        account_id=account_id,
        name=command.name,
        email=email,
        roles=command.roles,
        visibility=command.visibility,
    )
    await uow.emit([ctx.event(added, account_id=account_id)])
    if await uow.people.contact(added.contact_id) is None:
        raise _email_taken()  # a concurrent request added this address first
    return added


async def add_staff(
    uow: IntakeUnitOfWork, principal: Principal, command: StaffCreate, ctx: Context
) -> StaffAdded:
    """A technician, manager or admin of the provider."""
    principal.require_role("admin")
    email = command.email.lower()
    if await uow.people.staff_with_email(email) is not None:
        raise _email_taken()
    added = StaffAdded(
        staff_id=new_id(), name=command.name, email=email, role=command.role, tier=command.tier
    )
    await uow.emit([ctx.event(added, account_id=PROVIDER_ACCOUNT)])
    if await uow.people.staff_role(added.staff_id) is None:
        raise _email_taken()  # a concurrent request added this address first
    return added


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its token, which exists only in this answer (only its hash is kept)."""

    issued: ApiKeyIssued
    token: str


async def issue_key(
    uow: IntakeUnitOfWork, principal: Principal, command: ApiKeyCreate, ctx: Context
) -> IssuedKey:
    """Issue a staff member's key, a contact's key, or an import key."""
    account_id, visibility, staff_id = command.account_id, None, command.staff_id
    if command.role == "contact":
        principal.require_role(*MANAGERS)
        if command.contact_id is None:
            raise InvalidField(
                "contact_id", "required for role contact", "A contact key names its contact."
            )
        contact = await uow.people.contact(command.contact_id)
        if contact is None or (account_id is not None and contact.account_id != account_id):
            raise InvalidField("contact_id", "no such contact", "No such contact of that account.")
        if command.scopes:
            raise InvalidField("scopes", "not for contact keys", "Contacts cannot import history.")
        account_id, visibility = contact.account_id, contact.visibility
    else:
        principal.require_role("admin")
        if command.role != "import":
            role = await uow.people.staff_role(staff_id) if staff_id else None
            if role != command.role:
                raise InvalidField(
                    "staff_id",
                    f"no {command.role} with this id",
                    "A staff key names a staff member of that role.",
                )
        account_id = None
    key_id = new_id().hex
    token = new_token(key_id)
    issued = ApiKeyIssued(
        key_id=key_id,
        role=command.role,
        token_hash=hash_token(token),
        account_id=account_id,
        contact_id=command.contact_id if command.role == "contact" else None,
        staff_id=staff_id if command.role != "contact" else None,
        visibility=visibility,
        scopes=sorted(set(command.scopes)),
    )
    await uow.emit([ctx.event(issued, account_id=account_id or PROVIDER_ACCOUNT)])
    return IssuedKey(issued, token)


async def revoke_key(
    uow: IntakeUnitOfWork, principal: Principal, key_id: str, ctx: Context
) -> None:
    """Revoke a key in every service (revoking a revoked key changes nothing)."""
    principal.require_role("admin")
    key = await uow.people.key(key_id)
    if key is None:
        raise NotFound("No such API key.")
    if not key.revoked:
        revoked = ApiKeyRevoked(key_id=key_id)
        await uow.emit([ctx.event(revoked, account_id=key.account_id or PROVIDER_ACCOUNT)])
