"""Event-type filters with wildcards, and what an account-scoped subscription may receive."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from helpdesk.notifier.domain.filters import (
    PROVIDER_ACCOUNT,
    Audience,
    EventFacts,
    InvalidFilterError,
    SubscriptionRule,
    matches,
    matches_any,
    validate_filter,
    visible_to,
)
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT as SHARED_PROVIDER_ACCOUNT
from helpdesk.shared.contracts.audience import PUBLIC_TYPES

pytestmark = pytest.mark.unit

ACME = UUID("00000000-0000-0000-0000-00000000acbe")
OTHER = UUID("00000000-0000-0000-0000-0000000000ff")


def _event(type_: str, account: UUID = ACME, **payload: Any) -> EventFacts:
    return EventFacts(type=type_, account_id=account, payload=payload)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "ticket.opened", True),
        ("*", "billing.invoice_finalized", True),
        ("ticket.*", "ticket.opened", True),
        ("ticket.*", "ticket.time_logged", True),
        ("ticket.*", "tickets.opened", False),
        ("ticket.*", "ticket", False),
        ("ticket.*", "account.opened", False),
        ("ticket.opened", "ticket.opened", True),
        ("ticket.opened", "ticket.opened_again", False),
        ("account.api_key_*", "account.api_key_issued", False),  # not a valid filter anyway
    ],
)
def test_wildcards(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


def test_matches_any() -> None:
    assert matches_any(["sla.*", "ticket.resolved"], "ticket.resolved")
    assert not matches_any(["sla.*", "ticket.resolved"], "ticket.opened")
    assert not matches_any([], "ticket.opened")


@pytest.mark.parametrize("bad", ["", "ticket.", "ticket.**", "*.opened", "ticket*", "a b", "**"])
def test_malformed_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidFilterError):
        validate_filter(bad)


def test_filters_are_normalised() -> None:
    assert validate_filter("  Ticket.*  ") == "ticket.*"
    assert validate_filter("*") == "*"
    with pytest.raises(InvalidFilterError):
        SubscriptionRule(event_types=("Ticket.*",), audience=Audience.provider())
    with pytest.raises(InvalidFilterError):
        SubscriptionRule(event_types=(), audience=Audience.provider())


def test_provider_id_matches_the_shared_contract() -> None:
    assert PROVIDER_ACCOUNT == SHARED_PROVIDER_ACCOUNT


def test_provider_subscriptions_see_every_account_and_internal_events() -> None:
    staff = Audience.provider()
    for event in [
        _event("ticket.commented", public=False),
        _event("ticket.time_logged", account=OTHER),
        _event("account.api_key_issued", account=PROVIDER_ACCOUNT),
        _event("sla.breached"),
        _event("sla.breach_retracted"),
        _event("billing.invoice_drafted"),
    ]:
        assert visible_to(staff, event)


@pytest.mark.parametrize(
    "event",
    [
        _event("ticket.opened"),
        _event("ticket.commented", public=True, by_staff=True),
        _event("ticket.commented", public=True, by_staff=False),
        _event("ticket.info_requested"),
        _event("ticket.resolved"),
        _event("ticket.closed", reason="no_response"),
        _event("ticket.escalated", tier="vendor"),
        _event("ticket.escalated", tier="engineering"),
        _event("account.status_changed"),
        _event("account.partner_warning_issued"),
        _event("billing.invoice_finalized"),
    ],
)
def test_account_subscriptions_see_what_an_account_wide_contact_sees(event: EventFacts) -> None:
    assert visible_to(Audience.account(ACME), event)


@pytest.mark.parametrize(
    "event",
    [
        _event("ticket.commented", public=False, by_staff=True),
        _event("ticket.commented"),  # no `public`: not known to be public
        _event("ticket.time_logged"),
        _event("ticket.escalated", tier="management"),
        _event("ticket.flagged_partner_resolvable"),
        _event("account.api_key_issued"),
        _event("account.api_key_revoked"),
        _event("account.staff_added"),
        _event("agreement.set"),
        _event("sla.warning"),
        _event("sla.breached"),
        _event("sla.breach_retracted"),
        _event("sla.auto_close_requested"),
        _event("billing.invoice_drafted"),
        _event("billing.time_rated"),
        _event("billing.fair_use_exceeded"),
        _event("ticket.some_future_type"),  # the allow-list keeps new types staff-only
    ],
)
def test_account_subscriptions_never_see_internals(event: EventFacts) -> None:
    assert not visible_to(Audience.account(ACME), event)


def test_account_subscriptions_see_only_their_own_account() -> None:
    assert not visible_to(Audience.account(ACME), _event("ticket.opened", account=OTHER))
    provider_level = Audience.account(PROVIDER_ACCOUNT)
    assert not visible_to(provider_level, _event("account.opened", account=PROVIDER_ACCOUNT))


def test_notification_events_are_never_delivered() -> None:
    for audience in (Audience.provider(), Audience.account(ACME)):
        assert not visible_to(audience, _event("notification.webhook_delivered"))


def test_audience_shape() -> None:
    with pytest.raises(ValueError, match="account"):
        Audience("account")
    with pytest.raises(ValueError, match="account"):
        Audience("provider", uuid4())


def test_subscription_rule_combines_enabled_filters_and_audience() -> None:
    rule = SubscriptionRule(event_types=("ticket.*",), audience=Audience.account(ACME))
    assert rule.wants(_event("ticket.opened"))
    assert not rule.wants(_event("ticket.time_logged"))
    assert not rule.wants(_event("account.status_changed"))  # filtered out by type
    assert not rule.wants(_event("ticket.opened", account=OTHER))
    disabled = SubscriptionRule(event_types=("*",), audience=Audience.provider(), enabled=False)
    assert not disabled.wants(_event("ticket.opened"))
    everything = SubscriptionRule(event_types=("*",), audience=Audience.provider())
    assert everything.wants(_event("ticket.time_logged", account=OTHER))


def test_every_registered_customer_event_type_is_decided() -> None:
    """Each ticket.* type of the contracts is either visible or deliberately staff-only."""
    import helpdesk.shared.contracts  # noqa: F401 - registers every event type
    from helpdesk.shared.events import registry

    staff_only = {"ticket.time_logged", "ticket.flagged_partner_resolvable"}
    ticket_types = [t for t in registry.types() if t.startswith("ticket.")]
    assert "ticket.opened" in ticket_types
    for type_ in ticket_types:
        assert (type_ in PUBLIC_TYPES) != (type_ in staff_only), type_
