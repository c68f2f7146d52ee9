"""The work queue's order (`Agreement.queue_order`): one sort key per open ticket.

`queue_key` is the rule. The queue route sorts in SQL by the same parts: `queue_rank` and
`queue_at` stored on each ticket row from this key (`queue_at` null for `NO_DEADLINE`), then
more affected users, the report instant and the ticket id.

- `deadline`: rank 0, nearest deadline first (a ticket without a running deadline last), then
  more affected users, then first come first served.
- `multi_user_first` (seed 002): tickets affecting more than one user (rank 0) before the others
  (rank 1; an unknown count is one user), each group first come first served (`reported_at`),
  more affected users first on a tie.

A queue that mixes accounts with different orders compares the keys as they are: ranks first,
then the instants (deadlines of one account against report instants of another).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple
from uuid import UUID

from helpdesk.shared.agreements import QueueOrder

#: Where a ticket without a deadline sorts: after every real instant (SQL: 'infinity').
NO_DEADLINE = dt.datetime.max.replace(tzinfo=dt.UTC)


class QueueKey(NamedTuple):
    """A ticket's place in the queue; smaller comes first."""

    rank: int
    at: dt.datetime
    fewer_users: int
    reported_at: dt.datetime
    ticket_id: UUID


def queue_key(
    order: QueueOrder,
    *,
    next_due_at: dt.datetime | None,
    affected_users: int | None,
    reported_at: dt.datetime,
    ticket_id: UUID,
) -> QueueKey:
    """The sort key of an open ticket in the queue under `order` (smaller first)."""
    users = affected_users or 0
    if order == "multi_user_first":
        rank, at = (0 if users > 1 else 1), reported_at
    else:
        rank, at = 0, next_due_at or NO_DEADLINE
    return QueueKey(rank, at, -users, reported_at, ticket_id)
