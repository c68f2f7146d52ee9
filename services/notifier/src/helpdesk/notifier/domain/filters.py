"""Which events a webhook subscription receives: type filters with wildcards and audiences.

Filters are event types (`ticket.opened`), a namespace wildcard (`ticket.*`, matching every
type below `ticket.`), or `*` (everything). A subscription matches when any filter does.

Audiences:
- **provider** subscriptions (created by staff) may receive every account's events;
- **account** subscriptions (created with an account's key) receive only that account's
  events, and only those a contact of that account may see: the one audience rule of
  `helpdesk.shared.contracts.audience` (which the ticket reads and the SLA view apply too). It
  is an allow-list, so an event type added later stays staff-only until someone decides
  otherwise; every `sla.*` event is staff-only.
  Provider-level events (account id = the nil UUID: staff, staff keys) never reach an account.
- `notification.*` (the notifier's own delivery records) is never delivered by webhook to
  anyone: each delivery records an event, so delivering those would feed itself forever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from helpdesk.shared.contracts.audience import is_public

PROVIDER_ACCOUNT = UUID(int=0)  # helpdesk.shared.contracts.accounts.PROVIDER_ACCOUNT
WILDCARD = "*"
NEVER_DELIVERED = "notification."

_SEGMENT = r"[a-z][a-z0-9_]*"
_PATTERN = re.compile(rf"^(\*|{_SEGMENT}(\.{_SEGMENT})*(\.\*)?)$")
#: A filter as OpenAPI declares it (the normalised form; the API also trims and lower-cases).
FILTER_PATTERN = _PATTERN.pattern


class InvalidFilterError(ValueError):
    """An event-type filter that is not a type, `namespace.*` or `*`."""


def validate_filter(pattern: str) -> str:
    """The filter, normalised (trimmed, lower-case); raise `InvalidFilterError` if malformed."""
    normalised = pattern.strip().lower()
    if not _PATTERN.match(normalised):
        raise InvalidFilterError(
            f"{pattern!r} is not an event type, a `namespace.*` wildcard or `*`"
        )
    return normalised


def matches(pattern: str, event_type: str) -> bool:
    """Whether one filter matches an event type (`ticket.*` matches `ticket.opened`)."""
    if pattern == WILDCARD:
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def matches_any(patterns: Iterable[str], event_type: str) -> bool:
    """Whether any filter matches."""
    return any(matches(pattern, event_type) for pattern in patterns)


AudienceKind = Literal["provider", "account"]


@dataclass(frozen=True)
class Audience:
    """Whose events a subscription may receive: the provider's staff, or one account."""

    kind: AudienceKind
    account_id: UUID | None = None

    def __post_init__(self) -> None:
        if (self.kind == "account") != (self.account_id is not None):
            raise ValueError("an account audience names its account, a provider one none")

    @classmethod
    def provider(cls) -> Audience:
        """Every account's events (subscriptions created by staff)."""
        return cls("provider")

    @classmethod
    def account(cls, account_id: UUID) -> Audience:
        """One account's customer-visible events (subscriptions created with its key)."""
        return cls("account", account_id)


@dataclass(frozen=True)
class EventFacts:
    """What filtering needs of an event: its type, its account and its payload."""

    type: str
    account_id: UUID
    payload: Mapping[str, Any] = field(default_factory=dict)


def visible_to(audience: Audience, event: EventFacts) -> bool:
    """Whether the audience may see the event at all (whatever its filters)."""
    if event.type.startswith(NEVER_DELIVERED):
        return False
    if audience.kind == "provider":
        return True
    return (
        event.account_id == audience.account_id
        and event.account_id != PROVIDER_ACCOUNT
        and is_public(event.type, event.payload)
    )


@dataclass(frozen=True)
class SubscriptionRule:
    """The filtering part of a subscription."""

    event_types: tuple[str, ...]
    audience: Audience
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.event_types:
            raise InvalidFilterError("a subscription needs at least one event-type filter")
        for pattern in self.event_types:
            if validate_filter(pattern) != pattern:
                raise InvalidFilterError(f"{pattern!r} is not normalised; use validate_filter")

    def wants(self, event: EventFacts) -> bool:
        """Whether this subscription receives the event."""
        return (
            self.enabled
            and matches_any(self.event_types, event.type)
            and visible_to(self.audience, event)
        )
