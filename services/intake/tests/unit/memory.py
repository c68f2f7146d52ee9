"""An in-memory `IntakeUnitOfWork` for the service-layer unit tests: no Kafka, no PostgreSQL.

`MemoryIntake` holds what is committed; `unit_of_work()` works on a copy and commits it only
when the block ends without an exception, as a PostgreSQL transaction would. `emit` applies
events to in-memory read models the way intake's projection does (unique names and e-mail
addresses included: a losing insert leaves no row, a losing rename is a `Conflict`) and keeps
them in `published`, the outbox.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from helpdesk.intake.application.ports import (
    AccountRecord,
    AnyEvent,
    ContactRecord,
    KeyRecord,
    Opening,
)
from helpdesk.intake.domain import partner
from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.names import name_key
from helpdesk.intake.domain.partner import PartnerStanding
from helpdesk.intake.domain.tickets import Ticket
from helpdesk.shared.agreements import Agreement, EscalationTier
from helpdesk.shared.contracts.accounts import (
    AccountOpened,
    AccountStatusChanged,
    AccountUpdated,
    AgreementSet,
    ApiKeyIssued,
    ApiKeyRevoked,
    ContactAdded,
    PartnerMarginExtended,
    PartnerMarginRevoked,
    PartnerWarningIssued,
    StaffAdded,
)
from helpdesk.shared.contracts.tickets import TicketFlaggedPartnerResolvable, TicketOpened
from helpdesk.shared.errors import Conflict


@dataclass
class State:
    """Everything intake keeps, in memory."""

    ticket_events: dict[UUID, list[AnyEvent]] = field(default_factory=dict)
    accounts: dict[UUID, AccountRecord] = field(default_factory=dict)
    agreements: dict[UUID, list[Agreement]] = field(default_factory=dict)
    contacts: dict[UUID, tuple[ContactRecord, str]] = field(default_factory=dict)
    staff: dict[UUID, tuple[str, str]] = field(default_factory=dict)
    staff_tiers: dict[UUID, EscalationTier | None] = field(default_factory=dict)
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    published: list[AnyEvent] = field(default_factory=list)
    ticket_number: int = 100_000
    account_number: int = 1_000


class MemoryTicketStore:
    """The ticket event store: (ticket_id, seq) is unique, as the table's primary key."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def load(self, ticket_id: UUID) -> Ticket | None:
        events = self.state.ticket_events.get(ticket_id, [])
        ticket: Ticket | None = None
        for event in events:
            env = event.envelope
            if isinstance(event.payload, TicketOpened):
                ticket = rules.start(event.payload, env.seq or 1, env.occurred_at)
            else:
                assert ticket is not None
                ticket = rules.fold(ticket, event.payload, env.seq or 0, env.occurred_at)
        return ticket

    async def append(self, events: Sequence[AnyEvent]) -> None:
        for event in events:
            assert event.envelope.ticket_id is not None
            stored = self.state.ticket_events.setdefault(event.envelope.ticket_id, [])
            if any(e.envelope.seq == event.envelope.seq for e in stored):
                raise Conflict("The ticket changed meanwhile; reload it and retry.")
            stored.append(event)

    async def next_number(self) -> str:
        self.state.ticket_number += 1
        return f"HD-{self.state.ticket_number}"

    async def not_closed(self, account_id: UUID) -> list[UUID]:
        found = []
        for ticket_id in self.state.ticket_events:
            ticket = await self.load(ticket_id)
            if ticket and ticket.account_id == account_id and ticket.status != "closed":
                found.append(ticket_id)
        return found


class MemoryAccounts:
    """Accounts, agreements and partner standing."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def get(self, account_id: UUID, *, lock: bool = False) -> AccountRecord | None:
        return self.state.accounts.get(account_id)  # one task: nothing to lock against

    async def clash(self, name: str, number: str | None, exclude: UUID | None = None) -> str | None:
        for account in self.state.accounts.values():
            if account.id == exclude:
                continue
            if name_key(account.name) == name_key(name):
                return "name"
            if account.number == number:
                return "number"
        return None

    async def next_number(self) -> str:
        taken = {account.number for account in self.state.accounts.values()}
        while True:
            self.state.account_number += 1
            if f"AC-{self.state.account_number}" not in taken:
                return f"AC-{self.state.account_number}"

    async def opening(self, account_id: UUID) -> Opening | None:
        account = self.state.accounts.get(account_id)
        if account is None:
            return None
        agreement = await self.agreement(account_id)
        required = list(agreement.required_fields.on_open) if agreement else []
        return Opening(account.status, account.agreement_version, required)

    async def agreement(self, account_id: UUID) -> Agreement | None:
        versions = self.state.agreements.get(account_id)
        return versions[-1] if versions else None

    async def standing(self, account_id: UUID) -> PartnerStanding:
        return PartnerStanding.from_json(self.state.accounts[account_id].partner)


class MemoryPeople:
    """Contacts, staff and keys."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def contact(self, contact_id: UUID) -> ContactRecord | None:
        found = self.state.contacts.get(contact_id)
        return found[0] if found else None

    async def contact_with_email(self, email: str) -> UUID | None:
        return next((c.id for c, e in self.state.contacts.values() if e == email), None)

    async def staff_role(self, staff_id: UUID) -> str | None:
        found = self.state.staff.get(staff_id)
        return found[0] if found else None

    async def staff_tier(self, staff_id: UUID) -> EscalationTier | None:
        return self.state.staff_tiers.get(staff_id)

    async def staff_with_email(self, email: str) -> UUID | None:
        return next((i for i, (_, e) in self.state.staff.items() if e == email), None)

    async def key(self, key_id: str) -> KeyRecord | None:
        return self.state.keys.get(key_id)


class MemoryUnitOfWork:
    """One unit of work on a copy of the state."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.tickets = MemoryTicketStore(state)
        self.accounts = MemoryAccounts(state)
        self.people = MemoryPeople(state)

    async def emit(self, events: Sequence[AnyEvent]) -> None:
        for event in events:
            self._apply(event.payload, event)
            self.state.published.append(event)

    def _apply(self, payload: BaseModel, event: AnyEvent) -> None:
        state, at = self.state, event.envelope.occurred_at
        match payload:
            case AccountOpened():
                if not any(
                    a.name == payload.name or a.number == payload.number
                    for a in state.accounts.values()
                ):
                    state.accounts[payload.account_id] = AccountRecord(
                        payload.account_id,
                        payload.number,
                        payload.name,
                        payload.timezone,
                        payload.status,
                        None,
                        country=payload.country,
                    )
            case AccountUpdated():
                others = (a for a in state.accounts.values() if a.id != payload.account_id)
                if any(a.name == payload.name for a in others):
                    raise Conflict("A concurrent request took the same unique value.")
                self._change(
                    payload.account_id,
                    name=payload.name,
                    timezone=payload.timezone,
                    country=payload.country,
                )
            case AccountStatusChanged():
                self._change(payload.account_id, status=payload.status)
            case AgreementSet():
                state.agreements.setdefault(payload.account_id, []).append(payload.agreement)
                self._change(payload.account_id, agreement_version=payload.version)
            case ContactAdded():
                if all(e != payload.email for _, e in state.contacts.values()):
                    contact = ContactRecord(
                        payload.contact_id, payload.account_id, payload.visibility
                    )
                    state.contacts[payload.contact_id] = (contact, payload.email)
            case StaffAdded():
                if all(e != payload.email for _, e in state.staff.values()):
                    state.staff[payload.staff_id] = (payload.role, payload.email)
                    state.staff_tiers[payload.staff_id] = payload.tier
            case ApiKeyIssued():
                state.keys[payload.key_id] = KeyRecord(payload.key_id, payload.account_id, False)
            case ApiKeyRevoked():
                state.keys[payload.key_id] = replace(state.keys[payload.key_id], revoked=True)
            case PartnerWarningIssued() | PartnerMarginRevoked() | PartnerMarginExtended():
                self._fold_standing(
                    event.envelope.account_id, lambda s: partner.fold(s, payload, at)
                )
            case TicketFlaggedPartnerResolvable():
                self._fold_standing(event.envelope.account_id, lambda s: partner.flagged(s, at))

    def _change(self, account_id: UUID, **values: Any) -> None:
        self.state.accounts[account_id] = replace(self.state.accounts[account_id], **values)

    def _fold_standing(
        self, account_id: UUID, step: Callable[[PartnerStanding], PartnerStanding]
    ) -> None:
        standing = step(PartnerStanding.from_json(self.state.accounts[account_id].partner))
        self._change(account_id, partner=standing.to_json())


class MemoryIntake:
    """Intake's committed state, and units of work on it."""

    def __init__(self) -> None:
        self.state = State()

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[MemoryUnitOfWork]:
        """A unit of work that commits when the block ends, and leaves no trace if it raises."""
        work = copy.deepcopy(self.state)
        yield MemoryUnitOfWork(work)
        self.state = work

    @property
    def published(self) -> list[AnyEvent]:
        """Every committed event, in order."""
        return self.state.published

    def types(self) -> list[str]:
        """The types of the committed events, in order."""
        return [e.type for e in self.published]
