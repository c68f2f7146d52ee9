"""Request and response bodies of intake's public API (field names are the contract)."""

from __future__ import annotations

from typing import Any
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from helpdesk.shared.contracts.common import AccountStatus, Channel, Priority, Scope, TicketKind


class Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class AccountCreate(Body):
    """POST /v1/accounts."""

    name: str = Field(min_length=1, max_length=200)
    number: str | None = Field(default=None, min_length=1, max_length=40)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class AccountView(BaseModel):
    """An account as the API shows it."""

    id: UUID
    number: str
    name: str
    timezone: str
    status: AccountStatus


class TicketCreate(Body):
    """POST /v1/tickets."""

    account_id: UUID
    contact_id: UUID | None = None
    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=100_000)
    channel: Channel = "api"
    priority: Priority | None = None
    kind: TicketKind = "incident"
    severity: str | None = Field(default=None, max_length=100)
    affected_users: int | None = Field(default=None, ge=0)
    service_class: str | None = Field(default=None, max_length=100)
    fields: dict[str, Any] = Field(default_factory=dict)
    reported_at: AwareDatetime | None = None
    scope: Scope = "in"
