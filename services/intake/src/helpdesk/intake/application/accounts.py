"""Account use cases: open an account, change it, set its agreement.

Names and numbers are unique. The read-model handlers insert with ON CONFLICT DO NOTHING on
the unique columns (a replay must not fail), so a create that lost a race with a concurrent one
leaves no row: the use case then refuses with a 409, and its unit of work, events included, is
rolled back.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError

from helpdesk.intake.application.commands import AccountCreate, AccountPatch
from helpdesk.intake.application.ports import AccountRecord, IntakeUnitOfWork
from helpdesk.intake.application.tickets import Precondition, close_all
from helpdesk.shared.agreements import Agreement, agreement_errors, resolve_agreement
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import Context, new_id
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountStatusChanged,
    AccountUpdated,
    AgreementSet,
)
from helpdesk.shared.contracts.common import AccountStatus, CloseReason
from helpdesk.shared.errors import Conflict, Invalid, InvalidField, NotFound

#: Who manages accounts, their agreements and contacts.
MANAGERS = ("manager", "admin")


class InvalidAgreement(Invalid):
    """An agreement body that does not describe a valid agreement (422, naming each field)."""

    title = "Invalid agreement"


def name_taken(field: str = "name") -> Conflict:
    """409: another account has this name (or number)."""
    return Conflict(
        f"Another account has this {field}.", errors=[{"field": field, "reason": "already taken"}]
    )


async def visible_account(
    uow: IntakeUnitOfWork, principal: Principal, account_id: UUID, *, lock: bool = False
) -> AccountRecord:
    """The account if the caller may see it, else `NotFound` (`lock`: see `Accounts.get`)."""
    if not principal.can_see_account(account_id):
        raise NotFound.of("account")
    account = await uow.accounts.get(account_id, lock=lock)
    if account is None:
        raise NotFound.of("account")
    return account


async def _unique(
    uow: IntakeUnitOfWork, name: str, number: str | None, exclude: UUID | None = None
) -> None:
    clash = await uow.accounts.clash(name, number, exclude)
    if clash is not None:
        raise name_taken(clash)


async def create_account(
    uow: IntakeUnitOfWork, principal: Principal, command: AccountCreate, ctx: Context
) -> AccountRecord:
    """Open a customer account (unique name and number)."""
    principal.require_role(*MANAGERS)
    await _unique(uow, command.name, command.number)
    account_id = new_id()
    number = command.number or await uow.accounts.next_number()
    opened = AccountOpened(
        account_id=account_id,
        number=number,
        name=command.name,
        timezone=command.timezone,
        country=command.country,
    )
    await uow.emit([ctx.event(opened, account_id=account_id)])
    account = await uow.accounts.get(account_id)
    if account is None:
        # A concurrent create took the name or number first; this one records nothing.
        await _unique(uow, command.name, number)
        raise Conflict("A concurrent request created an account like this one.")
    return account


async def change_account(
    uow: IntakeUnitOfWork,
    principal: Principal,
    account_id: UUID,
    command: AccountPatch,
    ctx: Context,
) -> AccountRecord:
    """Rename, move time zone or country, or change status (on hold / expired close its open
    tickets). A new time zone or country applies to agreements set from then on."""
    principal.require_role(*MANAGERS)
    account = await visible_account(uow, principal, account_id)
    name = command.name or account.name
    timezone = command.timezone or account.timezone
    country = command.country or account.country
    if (name, timezone, country) != (account.name, account.timezone, account.country):
        await _unique(uow, name, None, exclude=account_id)
        updated = AccountUpdated(
            account_id=account_id, name=name, timezone=timezone, country=country
        )
        try:
            await uow.emit([ctx.event(updated, account_id=account_id)])
        except Conflict as clash:
            # A concurrent rename to the same name committed between check and update.
            raise name_taken() from clash
    if command.status is not None:
        await _change_status(uow, account, command.status, ctx)
    return await visible_account(uow, principal, account_id)


async def _change_status(
    uow: IntakeUnitOfWork, account: AccountRecord, status: AccountStatus, ctx: Context
) -> None:
    """Record a status change; on hold or expired closes every ticket not yet closed."""
    if status == account.status:
        return
    changed = AccountStatusChanged(account_id=account.id, status=status, previous=account.status)
    await uow.emit([ctx.event(changed, account_id=account.id)])
    if status != "active":
        reason: CloseReason = "account_on_hold" if status == "on_hold" else "contract_expired"
        await close_all(uow, account.id, reason, ctx)


def _agreement_of(body: dict[str, Any], account: AccountRecord) -> Agreement:
    """The agreement a PUT body describes: a preset name and/or parts that override it.

    A preset's business hours are the account's local hours when the account has a time zone
    (one left at the default UTC keeps the preset's America/New_York), and close on the public
    holidays of the account's country (US when it has none)."""
    local = account.timezone if account.timezone != "UTC" else None
    try:
        return resolve_agreement(
            body.get("preset"), body, local_timezone=local, local_country=account.country
        )
    except ValidationError as exc:
        raise InvalidAgreement(
            "The agreement is not valid; nothing was changed.",
            errors=list(agreement_errors(exc)),  # type: ignore[arg-type]
        ) from exc


async def set_agreement(
    uow: IntakeUnitOfWork,
    principal: Principal,
    account_id: UUID,
    body: dict[str, Any],
    ctx: Context,
    precondition: Precondition | None = None,
) -> tuple[Agreement, int]:
    """Set the account's next agreement version from a preset and/or explicit parts that
    override it; answers the resolved agreement and its version.

    The version is decided with the account's row locked, so concurrent changes are stored
    one after the other as consecutive versions, each answered with its own. `precondition`
    checks the current version (0 before the first agreement) against the caller's If-Match.
    """
    principal.require_role(*MANAGERS)
    account = await visible_account(uow, principal, account_id, lock=True)
    if precondition is not None:
        precondition(str(account.agreement_version or 0))
    agreement = _agreement_of(body, account)
    manager = agreement.plan.technical_account_manager
    if manager is not None and await uow.people.staff_role(manager) is None:
        raise InvalidField("plan.technical_account_manager", "names no staff member")
    version = (account.agreement_version or 0) + 1
    agreed = AgreementSet(account_id=account_id, version=version, agreement=agreement)
    await uow.emit([ctx.event(agreed, account_id=account_id)])
    return agreement, version
