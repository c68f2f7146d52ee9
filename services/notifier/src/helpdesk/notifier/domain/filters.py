"""Which events a webhook subscription receives: type filters with wildcards and audiences.

Filters are event types (`ticket.opened`), a namespace wildcard (`ticket.*`, matching every
type below `ticket.`), or `*` (everything). A subscription matches when any filter does.

Audiences:
- **provider** subscriptions (created by staff) may receive every account's events;
- **account** subscriptions (created with an account's key) receive only that account's
  events, and only those a contact of that account with visibility `account` may see. The
  rule is an allow-list, so an event type added later stays staff-only until someone decides
  otherwise:

  | visible to an account                                   | staff-only                          |
  |---------------------------------------------------------|-------------------------------------|
  | ticket.opened/triaged/assigned/info_requested/          | ticket.commented with public=false  |
  | customer_replied/vendor_returned/resolved/confirmed/    | ticket.escalated to management      |
  | closed/reopened, ticket.commented with public=true,     | ticket.time_logged, ticket.flagged_ |
  | ticket.escalated to engineering or a vendor             | partner_resolvable                  |
  | account.opened/updated/status_changed, contact.added    | account.staff_added, account.api_   |
  | account.partner_warning_issued/margin_revoked/extended  | key_*, agreement.* (plan, internal  |
  | billing.invoice_finalized (a final invoice is sent to   | presets), billing.* other than the  |
  | the customer anyway)                                    | final invoice (drafts, rating,      |
  |                                                         | fair-use), every sla.* event        |

  `sla.*` stays staff-only: warnings and breaches are the provider's internal steering
  signals; the customer learns what matters to them by e-mail (follow-ups, resolution).
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

PROVIDER_ACCOUNT = UUID(int=0)  # helpdesk.shared.contracts.accounts.PROVIDER_ACCOUNT
WILDCARD = "*"
NEVER_DELIVERED = "notification."

_SEGMENT = r"[a-z][a-z0-9_]*"
_PATTERN = re.compile(rf"^(\*|{_SEGMENT}(\.{_SEGMENT})*(\.\*)?)$")
#: A filter as OpenAPI declares it (the normalised form; the API also trims and lower-cases).
FILTER_PATTERN = _PATTERN.pattern

# Event types an account-scoped subscription may receive, if `_PAYLOAD_RULES` agree.
ACCOUNT_VISIBLE_TYPES: frozenset[str] = frozenset(
    {
        "ticket.opened",
        "ticket.triaged",
        "ticket.assigned",
        "ticket.commented",
        "ticket.info_requested",
        "ticket.customer_replied",
        "ticket.escalated",
        "ticket.vendor_returned",
        "ticket.resolved",
        "ticket.confirmed",
        "ticket.closed",
        "ticket.reopened",
        "ticket.quoted",
        "ticket.quote_approved",
        "ticket.quote_declined",
        "account.opened",
        "account.updated",
        "account.status_changed",
        "account.partner_warning_issued",
        "account.partner_margin_revoked",
        "account.partner_margin_extended",
        "contact.added",
        "billing.invoice_finalized",
    }
)


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


def _payload_visible_to_account(event: EventFacts) -> bool:
    if event.type == "ticket.commented":
        return event.payload.get("public") is True
    if event.type == "ticket.escalated":
        return event.payload.get("tier") in {"engineering", "vendor"}
    return True


def visible_to(audience: Audience, event: EventFacts) -> bool:
    """Whether the audience may see the event at all (whatever its filters)."""
    if event.type.startswith(NEVER_DELIVERED):
        return False
    if audience.kind == "provider":
        return True
    return (
        event.account_id == audience.account_id
        and event.account_id != PROVIDER_ACCOUNT
        and event.type in ACCOUNT_VISIBLE_TYPES
        and _payload_visible_to_account(event)
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
