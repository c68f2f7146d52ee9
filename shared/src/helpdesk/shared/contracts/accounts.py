"""`account.*`, `agreement.*`, `contact.*` events, written by intake.

Provider-level records (staff, staff keys) belong to the provider itself, whose account id is
`PROVIDER_ACCOUNT` (the nil UUID): they key one partition like any account's events.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.agreements.models import Agreement, EscalationTier
from helpdesk.shared.contracts.common import AccountStatus, Payload
from helpdesk.shared.events import registry

PROVIDER_ACCOUNT = UUID(int=0)
ContactRole = Literal["key_contact", "approver", "billing", "ticket_manager", "vip"]
Visibility = Literal["own", "account"]
StaffRole = Literal["technician", "manager", "admin"]
KeyRole = Literal["technician", "manager", "admin", "contact", "import"]


@registry.register("account.opened")
class AccountOpened(Payload):
    """A customer account was created."""

    account_id: UUID
    number: str
    name: str
    timezone: str
    status: AccountStatus = "active"
    #: ISO 3166-1 alpha-2; whose public holidays a preset's business hours observe (None: US).
    country: str | None = None


@registry.register("account.updated")
class AccountUpdated(Payload):
    """An account's name, time zone or country changed (each carries the current value)."""

    account_id: UUID
    name: str
    timezone: str
    country: str | None = None


@registry.register("account.status_changed")
class AccountStatusChanged(Payload):
    """An account became active, on hold or expired (the latter two close its open tickets)."""

    account_id: UUID
    status: AccountStatus
    previous: AccountStatus


@registry.register("agreement.set")
class AgreementSet(Payload):
    """A new version of an account's agreement: the whole resolved `Agreement` (a preset with
    the account's overrides applied), so every consumer reads exactly that document."""

    account_id: UUID
    version: int = Field(ge=1)
    agreement: Agreement


@registry.register("contact.added")
class ContactAdded(Payload):
    """A person of a customer account who may open and follow tickets."""

    contact_id: UUID
    account_id: UUID
    name: str
    email: str
    roles: list[ContactRole]
    visibility: Visibility


@registry.register("account.staff_added")
class StaffAdded(Payload):
    """A member of the provider's own staff."""

    staff_id: UUID
    name: str
    email: str
    role: StaffRole
    #: The escalation tier the member works in (e.g. engineering); their public replies are
    #: that tier's response to an escalation (seed 001). None: front-line staff.
    tier: EscalationTier | None = None


@registry.register("account.api_key_issued")
class ApiKeyIssued(Payload):
    """An API key; only the SHA-256 of its token travels and is stored.

    A sign-in session is a key with `expires_at` (and the `session` scope): every service
    refuses it from then on, as it refuses a revoked key.
    """

    key_id: str
    role: KeyRole
    token_hash: str
    account_id: UUID | None = None
    contact_id: UUID | None = None
    staff_id: UUID | None = None
    visibility: Visibility | None = None
    scopes: list[str] = Field(default_factory=list)
    expires_at: AwareDatetime | None = None


@registry.register("account.api_key_revoked")
class ApiKeyRevoked(Payload):
    """A key stops working in every service."""

    key_id: str


@registry.register("account.partner_warning_issued")
class PartnerWarningIssued(Payload):
    """Too many escalations the partner should have resolved, in the rolling window (seed 001)."""

    account_id: UUID
    flagged_in_window: int
    window_days: int


@registry.register("account.partner_margin_revoked")
class PartnerMarginRevoked(Payload):
    """The partner is billed at full price until `restore_on` (seed 001)."""

    account_id: UUID
    restore_on: AwareDatetime


@registry.register("account.partner_margin_extended")
class PartnerMarginExtended(Payload):
    """Another partner-resolvable ticket while the margin is revoked pushes its return back."""

    account_id: UUID
    restore_on: AwareDatetime


@registry.register("account.password_reset_requested")
class PasswordResetRequested(Payload):
    """Someone asked for a new password of a person with an address (`POST /v1/password-resets`).

    The notifier mails `path` (under the portal's address) to `email`. The token in `path` is
    the one secret on the stream: it works once and for an hour, and the notifier never
    delivers this event to a webhook (ADR 0006).
    """

    kind: Literal["contact", "staff"]
    person_id: UUID
    email: str
    path: str
    expires_at: AwareDatetime


@registry.register("account.sign_in_locked_out")
class SignInLockedOut(Payload):
    """Too many failed sign-ins from one e-mail address or one client (network) address:
    sign-in is refused for it until `until`. Only a SHA-256 of the address travels."""

    scope: Literal["email", "client"]
    address_hash: str
    failures: int
    until: AwareDatetime
