"""What the use cases need from storage: a unit of work and the repositories it holds.

`adapters.unit_of_work.PostgresUnitOfWork` implements it on one PostgreSQL transaction; the
unit tests implement it in memory. Everything a use case reads here is the write model (the
ticket event store) or a read model that `emit` keeps current in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel

from helpdesk.intake.domain.partner import PartnerStanding
from helpdesk.intake.domain.tickets import Ticket
from helpdesk.shared.agreements import Agreement, EscalationTier
from helpdesk.shared.contracts.accounts import Visibility
from helpdesk.shared.contracts.common import AccountStatus
from helpdesk.shared.events import Event

AnyEvent = Event[BaseModel]


@dataclass(frozen=True)
class AccountRecord:
    """An account as the use cases (and the account view) see it."""

    id: UUID
    number: str
    name: str
    timezone: str
    status: AccountStatus
    agreement_version: int | None
    #: the stored partner standing (`PartnerStanding.to_json`)
    partner: dict[str, Any] = field(default_factory=dict)
    #: ISO 3166-1 alpha-2, or None: the presets then observe US public holidays.
    country: str | None = None


@dataclass(frozen=True)
class Opening:
    """What opening a ticket needs to know of its account (read in one round trip)."""

    status: AccountStatus
    agreement_version: int | None
    required_on_open: list[str]


@dataclass(frozen=True)
class ContactRecord:
    """A contact of an account."""

    id: UUID
    account_id: UUID
    visibility: Visibility


@dataclass(frozen=True)
class KeyRecord:
    """An issued API key."""

    key_id: str
    account_id: UUID | None
    revoked: bool


class TicketStore(Protocol):
    """The ticket event store: the write model of tickets."""

    async def load(self, ticket_id: UUID) -> Ticket | None:
        """Fold the ticket from its events, or None."""

    async def append(self, events: Sequence[AnyEvent]) -> None:
        """Append after the ticket's last seq; a taken (ticket_id, seq) raises `Conflict`."""

    async def next_number(self) -> str:
        """A new ticket number (HD- and six digits)."""

    async def not_closed(self, account_id: UUID) -> list[UUID]:
        """The account's tickets that are not closed."""


class Accounts(Protocol):
    """Accounts, their agreements and partner standing."""

    async def get(self, account_id: UUID, *, lock: bool = False) -> AccountRecord | None:
        """The account, or None; with `lock`, no other transaction changes it until this one
        ends (a change derived from its current state, such as the next agreement version)."""

    async def clash(self, name: str, number: str | None, exclude: UUID | None = None) -> str | None:
        """`"name"` or `"number"` when another account has it, else None."""

    async def next_number(self) -> str:
        """A new account number (AC-…) that no account has: a client may have chosen the one
        the sequence would give next."""

    async def opening(self, account_id: UUID) -> Opening | None:
        """Status, agreement version and required fields on open, or None."""

    async def agreement(self, account_id: UUID) -> Agreement | None:
        """The account's current agreement, if one was set."""

    async def standing(self, account_id: UUID) -> PartnerStanding:
        """The account's partner standing."""


class People(Protocol):
    """Contacts, staff and API keys."""

    async def contact(self, contact_id: UUID) -> ContactRecord | None:
        """The contact, or None."""

    async def contact_with_email(self, email: str) -> UUID | None:
        """The contact with this (lower-case) address, or None."""

    async def staff_role(self, staff_id: UUID) -> str | None:
        """The role of the staff member, or None."""

    async def staff_tier(self, staff_id: UUID) -> EscalationTier | None:
        """The escalation tier the staff member works in, or None (front line, or unknown)."""

    async def staff_with_email(self, email: str) -> UUID | None:
        """The staff member with this (lower-case) address, or None."""

    async def key(self, key_id: str) -> KeyRecord | None:
        """The API key, or None."""


class IntakeUnitOfWork(Protocol):
    """One transaction of intake: its repositories, and `emit` for the events decided.

    What a use case emits is applied to the read models at once (a later read in the same unit
    of work sees it) and commits with them, or nothing does.
    """

    @property
    def tickets(self) -> TicketStore:
        """The ticket event store."""

    @property
    def accounts(self) -> Accounts:
        """Accounts."""

    @property
    def people(self) -> People:
        """Contacts, staff and keys."""

    async def emit(self, events: Sequence[AnyEvent]) -> None:
        """Record events: apply them to the read models and queue them for the stream.

        A read model's unique column taken by a concurrent command raises `Conflict`.
        """
