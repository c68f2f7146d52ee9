"""The work queue's order under each `queue_order` (domain/queue.py)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from helpdesk.shared.agreements import QueueOrder
from helpdesk.sla_timer.domain.queue import NO_DEADLINE, QueueKey, queue_key

pytestmark = pytest.mark.unit

NINE = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)  # Monday 09:00 in New York
M = dt.timedelta(minutes=1)


def key(
    order: QueueOrder, reported: dt.datetime, users: int | None, due: dt.datetime | None, n: int
) -> QueueKey:
    return queue_key(
        order,
        next_due_at=due,
        affected_users=users,
        reported_at=reported,
        ticket_id=uuid.UUID(int=n),
    )


def test_multi_user_problems_come_first_then_first_come_first_served() -> None:
    """Seed 002: "Requests are typically handled first come first serve, but problems impacting
    more than one user are given priority": a 3-user ticket reported at 09:05 stands before a
    1-user one reported at 09:00, even when the 1-user one is due first."""
    single = key("multi_user_first", NINE, 1, NINE + 60 * M, 1)
    multi = key("multi_user_first", NINE + 5 * M, 3, NINE + 600 * M, 2)
    later_multi = key("multi_user_first", NINE + 7 * M, 30, NINE + 61 * M, 3)
    unknown = key("multi_user_first", NINE - 5 * M, None, None, 4)
    assert sorted([single, later_multi, unknown, multi]) == [multi, later_multi, unknown, single]


def test_deadline_order_is_nearest_deadline_then_more_users_then_first_come() -> None:
    """Other presets keep nearest deadline first: the 1-user ticket due at 10:00 stands before
    the 3-user one due at 19:00; on equal deadlines more users first, then earlier reports;
    no deadline goes last."""
    single = key("deadline", NINE, 1, NINE + 60 * M, 1)
    multi = key("deadline", NINE + 5 * M, 3, NINE + 600 * M, 2)
    same_due_more = key("deadline", NINE + 9 * M, 5, NINE + 600 * M, 3)
    same_due_earlier = key("deadline", NINE + 1 * M, 3, NINE + 600 * M, 4)
    untimed = key("deadline", NINE - 60 * M, 50, None, 5)
    assert untimed.at == NO_DEADLINE
    assert sorted([untimed, multi, same_due_more, single, same_due_earlier]) == [
        single,
        same_due_more,
        same_due_earlier,
        multi,
        untimed,
    ]
