"""Rules of the domain that the service layer used to hold: the customer's e-mail reply,
required fields on opening (and the e-mail exemption), and when an imported command happens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.tickets import MissingFieldsError, TimelineError
from helpdesk.shared.contracts.common import Channel, TicketStatus
from helpdesk.shared.contracts.tickets import TicketCustomerReplied, TicketReopened
from services.intake.tests.unit.test_ticket_rules import STATUSES, T0, apply, in_status

pytestmark = pytest.mark.unit

CHANNELS: tuple[Channel, ...] = ("api", "web", "phone", "chat", "email")
minutes = st.integers(min_value=-10_000, max_value=10_000).map(lambda m: timedelta(minutes=m))


# -- the customer's e-mail reply --------------------------------------------------------------


def test_an_e_mail_reply_to_a_closed_ticket_reopens_it_and_records_the_reply() -> None:
    closed = in_status("closed")
    reopened, replied = rules.email_reply(closed, comment_id=uuid4(), body="again", author="c:1")
    assert isinstance(reopened, TicketReopened)
    assert (reopened.cycle, reopened.reason) == (2, "customer replied by e-mail")
    assert isinstance(replied, TicketCustomerReplied)
    assert (replied.channel, replied.body, replied.resumed) == ("email", "again", False)
    after = apply(closed, [reopened, replied])
    assert (after.status, after.cycle, after.comments) == ("open", 2, 1)


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "closed"])
def test_an_e_mail_reply_to_any_other_ticket_is_just_the_reply(status: TicketStatus) -> None:
    ticket = in_status(status)
    (replied,) = rules.email_reply(ticket, comment_id=uuid4(), body="hi", author="c:1")
    assert isinstance(replied, TicketCustomerReplied)
    assert replied.channel == "email"
    assert replied.resumed == (status == "waiting_on_customer")
    assert apply(ticket, replied).status != "closed"


# -- required fields on opening ---------------------------------------------------------------


@given(
    required=st.lists(st.sampled_from(["affected_users", "domain", "steps"]), unique=True),
    present=st.dictionaries(
        st.sampled_from(["affected_users", "domain", "steps"]),
        st.one_of(st.none(), st.just(""), st.just("  "), st.just("x"), st.integers(0, 5)),
    ),
    channel=st.sampled_from(CHANNELS),
)
def test_required_fields_on_open_are_refused_unless_by_e_mail(
    required: list[str], present: dict[str, object], channel: Channel
) -> None:
    missing = [
        name
        for name in required
        if present.get(name) is None or str(present.get(name)).strip() == ""
    ]
    if channel == "email" or not missing:
        rules.check_required_on_open(required, channel, present)
        return
    with pytest.raises(MissingFieldsError) as refused:
        rules.check_required_on_open(required, channel, present)
    assert refused.value.fields == missing


# -- when an imported command happens ---------------------------------------------------------


@given(offset=minutes)
def test_nothing_lies_in_the_future(offset: timedelta) -> None:
    instant = T0 + offset
    if offset > timedelta(0):
        with pytest.raises(TimelineError) as refused:
            rules.not_in_future("occurred_at", instant, T0)
        assert (refused.value.field, refused.value.reason) == ("occurred_at", "lies in the future")
    else:
        assert rules.not_in_future("occurred_at", instant, T0) == instant


@given(back=minutes, gap=minutes)
def test_a_ticket_history_never_goes_backwards(back: timedelta, gap: timedelta) -> None:
    ticket = in_status("open")  # its last event lies a minute after T0
    last = ticket.last_occurred_at
    recorded_at = last + abs(gap)
    occurred_at = last + back
    if occurred_at >= last:
        assert rules.command_instant(ticket, occurred_at, recorded_at) == occurred_at
    else:  # back-dated: an import
        with pytest.raises(TimelineError, match="before the ticket's last recorded event"):
            rules.command_instant(ticket, occurred_at, recorded_at)


@given(lag=minutes)
def test_a_live_command_that_read_the_clock_early_happens_right_after_the_last_event(
    lag: timedelta,
) -> None:
    ticket = in_status("open")
    now = ticket.last_occurred_at + lag
    assert rules.command_instant(ticket, now, now) == max(now, ticket.last_occurred_at)


@given(
    reported=st.one_of(st.none(), minutes),
    occurred=st.one_of(st.none(), minutes),
)
def test_an_imported_ticket_opens_when_reported_never_before(
    reported: timedelta | None, occurred: timedelta | None
) -> None:
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    reported_at = None if reported is None else now + reported
    occurred_at = None if occurred is None else now + occurred
    future = [i for i in (occurred_at, reported_at) if i is not None and i > now]
    if future:
        with pytest.raises(TimelineError, match="lies in the future"):
            rules.opening_instant(reported_at, occurred_at, now)
        return
    reported_as, opened_at = rules.opening_instant(reported_at, occurred_at, now)
    assert reported_as == (reported_at or occurred_at or now)
    assert opened_at >= reported_as
    assert opened_at == max(occurred_at or reported_as, reported_as)


def test_work_follows_the_report_to_the_minute() -> None:
    ticket = in_status("open")
    rules.check_worked_at(ticket, T0.replace(second=0))
    with pytest.raises(TimelineError, match="worked_at lies before the ticket was reported"):
        rules.check_worked_at(ticket, T0 - timedelta(minutes=1))
