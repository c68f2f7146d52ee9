"""The ticket state machine: which command each state allows, and what folding its events gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.tickets import MissingFieldsError, Ticket, TransitionError
from helpdesk.shared.contracts.common import CloseReason, TicketStatus
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketConfirmed,
    TicketEscalated,
    TicketOpened,
    TicketReopened,
    TicketTriaged,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
STATUSES: tuple[TicketStatus, ...] = (
    "new",
    "open",
    "waiting_on_customer",
    "waiting_on_vendor",
    "resolved",
    "closed",
)


def opened(*, priority: Any = None, fields: dict[str, Any] | None = None) -> Ticket:
    payload = TicketOpened(
        ticket_id=uuid4(),
        number="HD-100001",
        account_id=uuid4(),
        contact_id=uuid4(),
        subject="Mail is down",
        description="nobody can send",
        channel="api",
        priority=priority,
        fields=fields or {},
        reported_at=T0,
    )
    return rules.start(payload, 1, T0)


def apply(ticket: Ticket, payloads: BaseModel | list[BaseModel]) -> Ticket:
    """Fold decided payloads the way the command path does: seq + 1 each, a minute later."""
    for payload in payloads if isinstance(payloads, list) else [payloads]:
        at = ticket.last_occurred_at + timedelta(minutes=1)
        ticket = rules.fold(ticket, payload, ticket.seq + 1, at)
    return ticket


def triage(ticket: Ticket) -> TicketTriaged:
    return rules.triage(
        ticket,
        priority="P2",
        kind="incident",
        scope=None,
        category=None,
        in_scope=[],
        out_of_scope=[],
    )


def in_status(status: TicketStatus) -> Ticket:
    """A ticket driven (through the rules) into `status`."""
    ticket = opened()
    if status == "new":
        return ticket
    ticket = apply(ticket, triage(ticket))
    if status == "waiting_on_customer":
        ticket = apply(ticket, rules.request_info(ticket, comment_id=uuid4(), body="?", author="a"))
    elif status == "waiting_on_vendor":
        ticket = apply(ticket, rules.escalate(ticket, tier="vendor", fields={}, required=[]))
    elif status in {"resolved", "closed"}:
        ticket = apply(ticket, rules.resolve(ticket, resolution="fix", summary="done"))
        if status == "closed":
            ticket = apply(ticket, rules.confirm(ticket))
    assert ticket.status == status
    return ticket


Command = Callable[[Ticket], BaseModel | list[BaseModel]]

COMMANDS: dict[str, Command] = {
    "triage": triage,
    "assign": lambda t: rules.assign(t, "tech-1"),
    "comment": lambda t: rules.comment(
        t, comment_id=uuid4(), body="b", public=True, by_staff=True, author="a"
    ),
    "request_info": lambda t: rules.request_info(t, comment_id=uuid4(), body="?", author="a"),
    "customer_reply": lambda t: rules.customer_reply(
        t, comment_id=uuid4(), body="answer", author="c", channel="email"
    ),
    "escalate_engineering": lambda t: rules.escalate(t, tier="engineering", fields={}, required=[]),
    "escalate_vendor": lambda t: rules.escalate(t, tier="vendor", fields={}, required=[]),
    "vendor_return": lambda t: rules.vendor_return(t, "back"),
    "log_time": lambda t: rules.log_time(
        t,
        entry_id=uuid4(),
        minutes=30,
        work_type="remote",
        scope=None,
        after_hours=False,
        worked_at=T0,
        note="",
        technician="tech-1",
    ),
    "resolve": lambda t: rules.resolve(t, resolution="workaround", summary="s"),
    "confirm": rules.confirm,
    "close_duplicate": lambda t: rules.close(t, "duplicate"),
    "close_confirmed": lambda t: rules.close(t, "confirmed"),
    "reopen": lambda t: rules.reopen(t, "still broken"),
    "flag_partner": lambda t: rules.flag_partner_resolvable(t, "partner could have"),
}

ACTIVE: set[str] = {"new", "open", "waiting_on_customer", "waiting_on_vendor"}
ALL: set[str] = set(STATUSES)
# command -> the states that allow it
ALLOWED: dict[str, set[str]] = {
    "triage": ACTIVE,
    "assign": ACTIVE,
    "comment": ALL - {"closed"},
    "request_info": {"new", "open"},
    "customer_reply": ALL - {"closed"},
    "escalate_engineering": ACTIVE,
    "escalate_vendor": ACTIVE - {"waiting_on_vendor"},
    "vendor_return": {"waiting_on_vendor"},
    "log_time": ALL,
    "resolve": ACTIVE,
    "confirm": {"resolved"},
    "close_duplicate": ALL - {"closed"},
    "close_confirmed": {"resolved"},
    "reopen": {"resolved", "closed"},
    "flag_partner": {"closed"},
}


def expected_status(command: str, before: str) -> str:
    """The status after `command` succeeded on a ticket in `before`."""
    match command:
        case "triage":
            return "open" if before == "new" else before
        case "request_info":
            return "waiting_on_customer"
        case "customer_reply":
            return "open" if before == "waiting_on_customer" else before
        case "escalate_vendor":
            return "waiting_on_vendor"
        case "vendor_return" | "reopen":
            return "open"
        case "resolve":
            return "resolved"
        case "confirm" | "close_duplicate" | "close_confirmed":
            return "closed"
    return before


CASES = [(command, status) for command in COMMANDS for status in STATUSES]


@pytest.mark.parametrize(("command", "status"), CASES)
def test_each_command_in_each_state(command: str, status: TicketStatus) -> None:
    ticket = in_status(status)
    if status not in ALLOWED[command]:
        with pytest.raises(TransitionError):
            COMMANDS[command](ticket)
        return
    after = apply(ticket, COMMANDS[command](ticket))
    assert after.status == expected_status(command, status)
    assert after.seq > ticket.seq


def test_fold_counts_comments_minutes_and_escalations() -> None:
    ticket = in_status("open")
    ticket = apply(ticket, COMMANDS["comment"](ticket))
    ticket = apply(ticket, COMMANDS["escalate_engineering"](ticket))
    ticket = apply(ticket, COMMANDS["request_info"](ticket))
    ticket = apply(ticket, COMMANDS["customer_reply"](ticket))
    ticket = apply(ticket, COMMANDS["escalate_vendor"](ticket))
    ticket = apply(ticket, COMMANDS["log_time"](ticket))
    ticket = apply(ticket, COMMANDS["log_time"](ticket))
    assert ticket.comments == 3  # a comment, the request and the reply
    assert ticket.minutes_logged == 60
    assert ticket.escalations == ("engineering", "vendor")
    assert ticket.status == "waiting_on_vendor"
    assert ticket.seq == 9


def test_triage_opens_a_new_ticket_and_records_the_previous_priority() -> None:
    ticket = in_status("new")
    assert ticket.priority is None
    first = triage(ticket)
    assert first.previous_priority is None
    ticket = apply(ticket, first)
    assert (ticket.status, ticket.priority) == ("open", "P2")
    second = rules.triage(
        ticket, priority="P1", kind="service_request", scope="out", category=None,
        in_scope=[], out_of_scope=[],
    )  # fmt: skip
    assert second.previous_priority == "P2"
    ticket = apply(ticket, second)
    assert (ticket.priority, ticket.kind, ticket.scope) == ("P1", "service_request", "out")


def test_a_ticket_opened_with_a_priority_starts_open() -> None:
    assert opened(priority="P1").status == "open"
    assert opened().status == "new"


def test_confirm_emits_confirmed_then_closed_with_reason_confirmed() -> None:
    ticket = in_status("resolved")
    decided = rules.confirm(ticket)
    assert [type(p) for p in decided] == [TicketConfirmed, TicketClosed]
    assert isinstance(decided[1], TicketClosed)
    assert decided[1].reason == "confirmed"
    after = apply(ticket, decided)
    assert after.status == "closed"
    assert after.close_reason == "confirmed"
    assert after.seq == ticket.seq + 2
    assert after.closed_at == after.last_occurred_at


@pytest.mark.parametrize(
    "reason", ["no_response", "contract_expired", "account_on_hold", "duplicate"]
)
@pytest.mark.parametrize("status", ["new", "open", "waiting_on_customer", "waiting_on_vendor"])
def test_non_standard_closures_close_any_unresolved_ticket(
    reason: CloseReason, status: TicketStatus
) -> None:
    after = apply(in_status(status), rules.close(in_status(status), reason))
    assert (after.status, after.close_reason) == ("closed", reason)


def test_reason_confirmed_needs_a_resolved_ticket() -> None:
    with pytest.raises(TransitionError, match="resolved"):
        rules.close(in_status("open"), "confirmed")


def test_reopen_starts_a_new_cycle_and_clears_the_outcome() -> None:
    ticket = in_status("closed")
    assert (ticket.cycle, ticket.resolution, ticket.close_reason) == (1, "fix", "confirmed")
    reopened = rules.reopen(ticket, "again")
    assert isinstance(reopened, TicketReopened)
    assert reopened.cycle == 2
    ticket = apply(ticket, reopened)
    assert ticket.status == "open"
    assert ticket.cycle == 2
    assert (ticket.resolution, ticket.resolved_at, ticket.close_reason, ticket.closed_at) == (
        None,
        None,
        None,
        None,
    )
    ticket = apply(ticket, COMMANDS["resolve"](ticket))
    ticket = apply(ticket, rules.reopen(ticket, "and again"))
    assert ticket.cycle == 3
    assert ticket.resolution is None


def test_a_ticket_is_flagged_partner_resolvable_once() -> None:
    ticket = apply(in_status("closed"), rules.flag_partner_resolvable(in_status("closed"), "n"))
    assert ticket.partner_resolvable
    with pytest.raises(TransitionError, match="already"):
        rules.flag_partner_resolvable(ticket, "again")


def test_fold_refuses_an_opening_event() -> None:
    ticket = in_status("open")
    again = TicketOpened(
        ticket_id=ticket.id, number="x", account_id=ticket.account_id, subject="s",
        description="", channel="api", reported_at=T0,
    )  # fmt: skip
    with pytest.raises(TypeError):
        rules.fold(ticket, again, 5, T0)


def test_fold_never_moves_last_occurred_at_backwards() -> None:
    ticket = in_status("open")
    earlier = ticket.last_occurred_at - timedelta(days=1)
    after = rules.fold(ticket, rules.assign(ticket, "tech-2"), ticket.seq + 1, earlier)
    assert after.last_occurred_at == ticket.last_occurred_at


def test_time_entries_take_the_ticket_scope_unless_given() -> None:
    ticket = apply(
        in_status("open"),
        rules.triage(
            in_status("open"), priority="P3", kind="incident", scope="out", category="x",
            in_scope=[], out_of_scope=["x"],
        ),
    )  # fmt: skip
    logged = COMMANDS["log_time"](ticket)
    assert not isinstance(logged, list)
    assert logged.model_dump()["scope"] == "out"
    assert logged.model_dump()["category"] == "x"
    explicit = rules.log_time(
        ticket, entry_id=uuid4(), minutes=5, work_type="onsite", scope="in", after_hours=True,
        worked_at=T0, note="", technician="t",
    )  # fmt: skip
    assert explicit.scope == "in"


# -- required fields and the scope catalogue ------------------------------------------------


def test_check_required_names_every_missing_or_blank_field() -> None:
    with pytest.raises(MissingFieldsError) as caught:
        rules.check_required(["a", "b", "c", "d", "e"], {"a": "x", "b": None, "c": "   ", "e": 0})
    assert caught.value.fields == ["b", "c", "d"]


def test_check_required_accepts_everything_present() -> None:
    rules.check_required(["affected_users", "domain"], {"affected_users": 0, "domain": "x.io"})
    rules.check_required([], {})


def test_escalation_checks_required_fields_on_the_ticket_and_the_command() -> None:
    ticket = in_status("open")
    ticket = Ticket(**{**ticket.__dict__, "fields": {"partner_domain": "p.io"}})
    with pytest.raises(MissingFieldsError) as caught:
        rules.escalate(
            ticket, tier="engineering", fields={}, required=["partner_domain", "steps_taken"]
        )
    assert caught.value.fields == ["steps_taken"]
    done = rules.escalate(
        ticket,
        tier="engineering",
        fields={"steps_taken": "rebooted"},
        required=["partner_domain", "steps_taken"],
    )
    assert isinstance(done, TicketEscalated)


def _triage(category: str | None, scope: Any = None) -> TicketTriaged:
    return rules.triage(
        in_status("open"),
        priority="P3",
        kind="incident",
        scope=scope,
        category=category,
        in_scope=["portal", "billing"],
        out_of_scope=["third_party_apps"],
    )


def test_triage_derives_scope_from_the_catalogue() -> None:
    assert _triage("portal").scope == "in"
    assert _triage("third_party_apps").scope == "out"
    assert _triage(None).scope == "in"


def test_triage_keeps_an_explicit_scope() -> None:
    assert _triage("portal", scope="out").scope == "out"
    assert _triage("third_party_apps", scope="in").scope == "in"


def test_triage_refuses_a_category_outside_the_catalogue() -> None:
    with pytest.raises(ValueError, match="scope catalogue"):
        _triage("gaming")


def test_triage_without_a_catalogue_takes_any_category() -> None:
    decided = rules.triage(
        in_status("open"), priority="P4", kind="incident", scope=None, category="anything",
        in_scope=[], out_of_scope=[],
    )  # fmt: skip
    assert (decided.category, decided.scope) == ("anything", "in")


# -- view / from_view -------------------------------------------------------------------------

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=offsets,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
tickets = st.builds(
    Ticket,
    id=st.uuids(),
    number=st.text(min_size=1, max_size=12),
    account_id=st.uuids(),
    contact_id=st.none() | st.uuids(),
    subject=st.text(max_size=30),
    description=st.text(max_size=30),
    channel=st.sampled_from(["api", "web", "phone", "chat", "email"]),
    status=st.sampled_from(STATUSES),
    priority=st.none() | st.sampled_from(["P1", "P2", "P3", "P4"]),
    kind=st.sampled_from(["incident", "service_request", "solution_design"]),
    scope=st.sampled_from(["in", "out"]),
    category=st.none() | st.text(max_size=10),
    severity=st.none() | st.text(max_size=10),
    affected_users=st.none() | st.integers(0, 10_000),
    service_class=st.none() | st.text(max_size=10),
    fields=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    reported_at=instants,
    seq=st.integers(1, 10_000),
    last_occurred_at=instants,
    cycle=st.integers(1, 50),
    assignee=st.none() | st.text(max_size=10),
    escalations=st.lists(st.sampled_from(["engineering", "vendor", "management"]), max_size=4).map(
        tuple
    ),
    resolution=st.none() | st.sampled_from(["fix", "workaround"]),
    resolved_at=st.none() | instants,
    close_reason=st.none()
    | st.sampled_from(["confirmed", "no_response", "contract_expired", "account_on_hold"]),
    closed_at=st.none() | instants,
    partner_resolvable=st.booleans(),
    comments=st.integers(0, 1000),
    minutes_logged=st.integers(0, 100_000),
    public_version=st.integers(1, 1000),
    public_updated_at=instants,
)


@given(tickets)
@settings(max_examples=200, deadline=None)
def test_view_round_trips_through_json(ticket: Ticket) -> None:
    view = json.loads(json.dumps(ticket.view()))
    back = Ticket.from_view(view)
    assert back == ticket
    assert back.view() == view


# -- a random walk through the commands -------------------------------------------------------


@given(st.lists(st.sampled_from(sorted(COMMANDS)), max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_command_sequence_obeys_the_state_table(commands: list[str]) -> None:
    ticket = opened()
    accepted, reopens, tiers = 0, 0, []
    for command in commands:
        before = ticket
        if before.status not in ALLOWED[command] or (
            command == "flag_partner" and before.partner_resolvable
        ):
            with pytest.raises(TransitionError):
                COMMANDS[command](before)
            continue
        decided = COMMANDS[command](before)
        ticket = apply(before, decided)
        accepted += len(decided) if isinstance(decided, list) else 1
        reopens += command == "reopen"
        if command.startswith("escalate_"):
            tiers.append(command.removeprefix("escalate_"))
        assert ticket.status == expected_status(command, before.status)
        assert Ticket.from_view(ticket.view()) == ticket
    assert ticket.seq == 1 + accepted
    assert ticket.cycle == 1 + reopens
    assert list(ticket.escalations) == tiers
    if ticket.status in ACTIVE:
        assert (ticket.resolution, ticket.resolved_at, ticket.closed_at) == (None, None, None)


@pytest.mark.parametrize("status", STATUSES)
def test_unanswered_inquiries_close_a_ticket_waiting_or_awaiting_confirmation(
    status: TicketStatus,
) -> None:
    """Seed 003 § 4.2.2: "We will close a ticket if you do not respond to repeated inquires (3+)
    by our technicians to confirm whether the problem has been satisfactorily resolved" -- a
    resolved ticket closes with reason no_response, as one waiting for information does."""
    ticket = in_status(status)
    closure = rules.auto_close(ticket, ticket.seq)
    if status in {"waiting_on_customer", "resolved"}:
        assert closure is not None
        after = apply(ticket, closure)
        assert (after.status, after.close_reason) == ("closed", "no_response")
        # Once: the same request against the closed ticket decides nothing.
        assert rules.auto_close(after, after.seq) is None
    else:
        assert closure is None


def test_an_answer_after_the_request_keeps_the_ticket() -> None:
    """Seed 003 § 4.2.2 closes only when the customer does "not respond": a reply after the
    timer's request (a later seq) leaves the ticket as it is."""
    ticket = in_status("resolved")
    answered = apply(
        ticket,
        rules.customer_reply(ticket, comment_id=uuid4(), body="works", author="c", channel="api"),
    )
    assert rules.auto_close(answered, ticket.seq) is None
