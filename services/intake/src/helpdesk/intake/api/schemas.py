"""Request bodies of intake's public API (field names are the contract in DESIGN.md)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

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


class Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _known_zone(value: str | None) -> str | None:
    if value is not None and value not in available_timezones():
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


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

    occurred_at: AwareDatetime | None = None


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
    affected_users: Annotated[int, Field(ge=0)] | None = None
    service_class: Annotated[str, Field(max_length=100)] | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    reported_at: AwareDatetime | None = None


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
    public: bool = False


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

    minutes: Annotated[int, Field(gt=0, le=24 * 60)]
    work_type: WorkType
    scope: Scope | None = None
    after_hours: bool = False
    worked_at: AwareDatetime
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


TICKET_COMMANDS: dict[str, type[Imported]] = {
    "triage": Triage,
    "assign": Assign,
    "comments": Comment,
    "request-info": RequestInfo,
    "customer-reply": CustomerReply,
    "escalate": Escalate,
    "vendor-return": VendorReturn,
    "time-entries": TimeEntry,
    "resolve": Resolve,
    "confirm": Confirm,
    "close": Close,
    "reopen": Reopen,
    "partner-resolvable": PartnerResolvable,
}
