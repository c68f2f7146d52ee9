"""Intake's typed commands: the request bodies of its public API, validated at the edge.

A use case takes one of these as it is (field names are the contract in DESIGN.md); each ticket
command is dispatched by its class (`application.tickets.HANDLERS`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    Strict,
    field_validator,
)

from helpdesk.shared.agreements.models import known_time_zone
from helpdesk.shared.contracts.accounts import ContactRole, KeyRole, StaffRole, Visibility
from helpdesk.shared.contracts.common import (
    AccountStatus,
    Channel,
    CloseReason,
    EscalationTier,
    Priority,
    Resolution,
    Scope,
    TicketKind,
    WorkType,
)

Text = Annotated[str, Field(min_length=1, max_length=100_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# JSON true is not 1, and "3" is not 3: numbers and booleans are taken as they are typed.
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]

#: The earliest instant the API takes: nothing this service records happened before it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: How far ahead of the server's clock an instant may lie (clock skew of the sender); whether
#: a command may lie in the future at all is decided by the command (most may not).
CLOCK_SKEW = timedelta(minutes=5)


def _sane_instant(value: datetime) -> datetime:
    """An instant between 1970 and a few minutes from now, in UTC.

    Year 1 or 9999 with an offset does not even fit a datetime once converted to UTC; either
    bound would be a poison event for every consumer of the stream.
    """
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("lies outside the years datetimes can hold") from exc
    if utc < EARLIEST:
        raise ValueError("lies before 1970-01-01T00:00:00Z")
    if utc > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("lies in the future")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_sane_instant)]


class Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _known_zone(value: str | None) -> str | None:
    return None if value is None else known_time_zone(value)


class AccountCreate(Body):
    """POST /v1/accounts."""

    name: Name
    number: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    timezone: str = "UTC"

    _zone = field_validator("timezone")(_known_zone)


class AccountPatch(Body):
    """PATCH /v1/accounts/{id}: any of name, time zone, status."""

    name: Name | None = None
    timezone: str | None = None
    status: AccountStatus | None = None

    _zone = field_validator("timezone")(_known_zone)


class ContactCreate(Body):
    """POST /v1/accounts/{id}/contacts."""

    name: Name
    email: EmailStr
    roles: list[ContactRole] = Field(default_factory=list)
    visibility: Visibility = "own"


class StaffCreate(Body):
    """POST /v1/staff."""

    name: Name
    email: EmailStr
    role: StaffRole


class ApiKeyCreate(Body):
    """POST /v1/api-keys: a staff member's key, a contact's key, or an import key."""

    role: KeyRole
    account_id: UUID | None = None
    contact_id: UUID | None = None
    staff_id: UUID | None = None
    scopes: list[Annotated[str, Field(pattern=r"^import$")]] = Field(default_factory=list)


class Imported(Body):
    """Every command may carry `occurred_at` when the key has the import scope."""

    occurred_at: Instant | None = None


class TicketCreate(Imported):
    """POST /v1/tickets."""

    account_id: UUID
    contact_id: UUID | None = None
    subject: Annotated[str, Field(min_length=1, max_length=500)]
    description: Annotated[str, Field(max_length=100_000)] = ""
    channel: Channel = "api"
    priority: Priority | None = None
    kind: TicketKind = "incident"
    scope: Scope = "in"
    category: Annotated[str, Field(max_length=100)] | None = None
    severity: Annotated[str, Field(max_length=100)] | None = None
    affected_users: Annotated[StrictInt, Field(ge=0)] | None = None
    service_class: Annotated[str, Field(max_length=100)] | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    reported_at: Instant | None = None


class Triage(Imported):
    """POST /v1/tickets/{id}/triage."""

    priority: Priority
    kind: TicketKind | None = None
    scope: Scope | None = None
    category: Annotated[str, Field(max_length=100)] | None = None


class Assign(Imported):
    """POST /v1/tickets/{id}/assign."""

    technician: Name


class Comment(Imported):
    """POST /v1/tickets/{id}/comments: public comments are responses to the customer."""

    body: Text
    public: StrictBool = False


class RequestInfo(Imported):
    """POST /v1/tickets/{id}/request-info."""

    body: Text


class CustomerReply(Imported):
    """POST /v1/tickets/{id}/customer-reply."""

    body: Text


class Escalate(Imported):
    """POST /v1/tickets/{id}/escalate."""

    tier: EscalationTier
    fields: dict[str, Any] = Field(default_factory=dict)


class VendorReturn(Imported):
    """POST /v1/tickets/{id}/vendor-return: the vendor handed the ticket back."""

    note: Annotated[str, Field(max_length=10_000)] = ""


class TimeEntry(Imported):
    """POST /v1/tickets/{id}/time-entries."""

    minutes: Annotated[StrictInt, Field(gt=0, le=24 * 60)]
    work_type: WorkType
    scope: Scope | None = None
    after_hours: StrictBool = False
    worked_at: Instant
    note: Annotated[str, Field(max_length=10_000)] = ""


class Resolve(Imported):
    """POST /v1/tickets/{id}/resolve."""

    resolution: Resolution
    summary: Text


class Confirm(Imported):
    """POST /v1/tickets/{id}/confirm."""


class Close(Imported):
    """POST /v1/tickets/{id}/close."""

    reason: CloseReason


class Reopen(Imported):
    """POST /v1/tickets/{id}/reopen."""

    reason: Text


class PartnerResolvable(Imported):
    """POST /v1/tickets/{id}/partner-resolvable (seed 001)."""

    note: Annotated[str, Field(max_length=10_000)] = ""


class SessionCreate(Body):
    """POST /v1/sessions: sign in."""

    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class InvitationCreate(Body):
    """POST /v1/invitations: a link for a contact or a staff member to set a password."""

    contact_id: UUID | None = None
    staff_id: UUID | None = None


class InvitationAccept(Body):
    """POST /v1/invitations/{token}/accept: the new password."""

    password: Annotated[str, Field(max_length=1024)]
