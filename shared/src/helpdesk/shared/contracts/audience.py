"""Who may see what: the one audience rule for events, a ticket's fields and its SLA clocks.

Every read applies it: intake's ticket, ticket list and `/events`, the SLA timer's ticket view,
the notifier's account webhooks. Two audiences: **staff** see everything; **public** is what a
contact of the account (visibility `account`) may see. It is an allow-list, so an event type added
later stays staff-only until someone decides otherwise.

| public                                                  | staff-only                          |
|---------------------------------------------------------|-------------------------------------|
| ticket.opened/triaged/assigned/info_requested/          | ticket.commented with public=false  |
| customer_replied/vendor_returned/resolved/confirmed/    | ticket.escalated to management      |
| closed/reopened, ticket.commented with public=true,     | ticket.time_logged, ticket.flagged_ |
| ticket.escalated to engineering or a vendor             | partner_resolvable                  |
| account.opened/updated/status_changed, contact.added    | account.staff_added, account.api_   |
| account.partner_warning_issued/margin_revoked/extended  | key_*, agreement.* (plan, internal  |
| billing.invoice_finalized (a final invoice is sent to   | presets), billing.* other than the  |
| the customer anyway)                                    | final invoice, every sla.* event    |

A ticket as a contact sees it is the fold of its public events only: its `version` counts them
(the contact's ETag and If-Match), `updated_at` is the last one's instant, `comments` counts
public comments, `escalations` lists public tiers; the internal `seq`, logged minutes and the
partner flag are not shown. A contact's `/events` numbers the public events 1, 2, … so the last
one's `seq` is the ticket's `version`: nothing in what a contact reads moves on internal work.

SLA clocks: the agreement is the contact's own, so a contact sees the promises it makes them
(response, next-reply and resolution clocks: start, due time, pause, and whether met, breached
or stopped). Not public: escalation clocks (the tiers' internal targets, and an escalation to
management itself), the warning threshold, the effective priority and the VIP flag. Webhooks send
no `sla.*` event to an account: warnings and breaches are pushed steering signals for staff, while
the clock states a contact reads are the same facts their own agreement and history give them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

Audience = Literal["public", "staff"]

#: Event types a contact may see, if `PUBLIC_ESCALATION_TIERS` / the comment's flag agree.
PUBLIC_TYPES: frozenset[str] = frozenset(
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
#: Escalations a contact sees: the ones that change what happens to their ticket (engineering
#: works on it, a vendor pauses it); escalating to management is the provider's own business.
PUBLIC_ESCALATION_TIERS: frozenset[str] = frozenset({"engineering", "vendor"})

#: Ticket fields (of intake's ticket view) only staff see.
STAFF_ONLY_TICKET_FIELDS: tuple[str, ...] = (
    "seq",
    "minutes_logged",
    "partner_resolvable",
    "public_comments",
    "public_version",
    "public_updated_at",
)

#: SLA clock kinds a contact sees, and the fields of each clock they see.
PUBLIC_CLOCK_KINDS: frozenset[str] = frozenset({"response", "next_reply", "resolution"})
PUBLIC_CLOCK_FIELDS: tuple[str, ...] = (
    "kind",
    "cycle",
    "ordinal",
    "priority",
    "target_minutes",
    "target_business_days",
    "calendar",
    "started_at",
    "due_at",
    "paused",
    "status",
    "met_at",
    "breached_at",
    "stopped_at",
)
#: Fields of a ticket's SLA view only staff see.
STAFF_ONLY_SLA_FIELDS: tuple[str, ...] = ("effective_priority", "vip")


def _field(payload: Mapping[str, Any] | object, name: str) -> Any:
    if isinstance(payload, Mapping):
        return payload.get(name)
    return getattr(payload, name, None)


def is_public(event_type: str, payload: Mapping[str, Any] | object) -> bool:
    """Whether a contact may see an event of `event_type` with `payload` (its JSON or its model)."""
    if event_type not in PUBLIC_TYPES:
        return False
    if event_type == "ticket.commented":
        return _field(payload, "public") is True
    if event_type == "ticket.escalated":
        return _field(payload, "tier") in PUBLIC_ESCALATION_TIERS
    return True


def audience_of(event_type: str, payload: Mapping[str, Any] | object) -> Audience:
    """`public` or `staff`: who may see the event."""
    return "public" if is_public(event_type, payload) else "staff"


def public_escalations(tiers: Iterable[str]) -> list[str]:
    """The escalation tiers of a ticket a contact sees, in order."""
    return [tier for tier in tiers if tier in PUBLIC_ESCALATION_TIERS]


def public_clocks(clocks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The SLA clocks (as the SLA view shows them) a contact sees, with the fields they see."""
    return [
        {name: clock.get(name) for name in PUBLIC_CLOCK_FIELDS}
        for clock in clocks
        if clock.get("kind") in PUBLIC_CLOCK_KINDS
    ]
