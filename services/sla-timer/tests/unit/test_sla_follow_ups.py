"""Follow-up reminders and the auto-close request while a ticket waits on the customer."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from helpdesk.shared.agreements import FollowUp
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketCommented,
    TicketConfirmed,
    TicketCustomerReplied,
    TicketInfoRequested,
    TicketReopened,
    TicketResolved,
)
from helpdesk.sla_timer.domain import auto_close_offset, follow_up_schedule, schedule_from

pytestmark = pytest.mark.unit

T0 = dt.datetime(2025, 6, 3, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
INFO = TicketInfoRequested(comment_id=uuid.uuid4(), body="?", author="tech")
REPLY = TicketCustomerReplied(comment_id=uuid.uuid4(), body="!", author="c", resumed=True)
RESOLVED = TicketResolved(resolution="fix", summary="done")


def test_default_schedule_three_daily_follow_ups_then_auto_close_a_day_later() -> None:
    schedule = follow_up_schedule([(T0, INFO)], FollowUp())
    assert schedule is not None
    assert schedule.reason == "info_requested"
    assert [(f.index, f.due_at) for f in schedule.follow_ups] == [
        (0, T0 + DAY),
        (1, T0 + 2 * DAY),
        (2, T0 + 3 * DAY),
    ]
    assert schedule.auto_close_at == T0 + 4 * DAY
    nxt = schedule.next_follow_up(T0 + DAY)
    assert nxt is not None
    assert (nxt.index, nxt.number) == (1, 2)
    assert schedule.sent_by(T0 + 3 * DAY) == 3
    assert schedule.next_follow_up(T0 + 3 * DAY) is None
    assert not schedule.auto_close_due(T0 + 4 * DAY - dt.timedelta(seconds=1))
    assert schedule.auto_close_due(T0 + 4 * DAY)


@pytest.mark.parametrize(
    ("offsets", "max_unanswered", "expected"),
    [
        ([60, 120, 240, 480], 3, 480),  # the list has one more entry: use it
        ([60, 120, 240], 3, 360),  # last + (last - previous)
        ([100], 1, 200),  # single entry: last + first
        ([100, 300], 1, 300),
        ([100, 250], 2, 400),
    ],
)
def test_auto_close_offset(offsets: list[int], max_unanswered: int, expected: int) -> None:
    policy = FollowUp(after_minutes=offsets, max_unanswered=max_unanswered)
    assert auto_close_offset(policy) == expected
    schedule = schedule_from(T0, policy)
    assert len(schedule.follow_ups) == max_unanswered
    assert schedule.auto_close_at == T0 + dt.timedelta(minutes=expected)


def test_resolution_waits_for_confirmation_and_replies_or_state_changes_end_the_wait() -> None:
    policy = FollowUp()
    resolved_at = T0 + DAY
    events: list[tuple[dt.datetime, object]] = [(T0, INFO), (resolved_at, RESOLVED)]
    schedule = follow_up_schedule(events, policy)
    assert schedule is not None
    assert schedule.reason == "confirmation"
    assert schedule.waiting_since == resolved_at
    for end in (
        REPLY,
        TicketConfirmed(),
        TicketClosed(reason="confirmed"),
        TicketReopened(reason="r", cycle=2),
    ):
        assert follow_up_schedule([*events, (resolved_at + DAY, end)], policy) is None
    assert follow_up_schedule([(T0, INFO), (T0 + DAY, REPLY)], policy) is None


def test_staff_comment_does_not_end_the_wait_and_as_of_limits_the_events() -> None:
    comment = TicketCommented(
        comment_id=uuid.uuid4(), body="ping", public=True, by_staff=True, author="t"
    )
    events = [(T0, INFO), (T0 + dt.timedelta(hours=2), comment), (T0 + DAY, REPLY)]
    schedule = follow_up_schedule(events, FollowUp(), as_of=T0 + dt.timedelta(hours=3))
    assert schedule is not None
    assert schedule.waiting_since == T0
    assert follow_up_schedule(events, FollowUp()) is None


def test_not_waiting_without_a_request() -> None:
    assert follow_up_schedule([], FollowUp()) is None
