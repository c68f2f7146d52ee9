"""Which fired breaches a ticket's current fold proves wrong (issue 20, point 4).

A breach fires once its deadline is older than the allowed lateness (docs/adr/0005). An event
can still arrive later whose `occurred_at` lies before the deadline (a resolution relayed late,
a reply still in intake's outbox, imported history): the fold then shows the clock `met` (met
in time) or `stopped` (the ticket closed before the deadline), and the breach that fired is
wrong. Each such breach is retracted once; the retraction names the breach and why.

A clock that is only paused or running again (a pause, or a new priority, that moved its
deadline) has no verdict yet: its breach stands until the clock is met or stopped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from helpdesk.shared.contracts.sla import ClockFacts, SlaBreached, SlaBreachRetracted

#: The clock statuses (`ClockStatus` values in a clock view) that refute a breach.
SETTLED = {"met": "met_at", "stopped": "stopped_at"}


def _same_clock(breach: SlaBreached, view: Mapping[str, Any]) -> bool:
    return (view["kind"], view["cycle"], view["ordinal"], view["tier"]) == (
        breach.kind,
        breach.cycle,
        breach.ordinal,
        breach.tier,
    )


def retractions(
    fired: Sequence[tuple[UUID, SlaBreached]], clocks: Sequence[Mapping[str, Any]]
) -> list[SlaBreachRetracted]:
    """The retractions of the fired breaches (`(event id, payload)`) of one ticket that its clock
    views (`history.clock_view`, as of its last event) show met or stopped."""
    out: list[SlaBreachRetracted] = []
    for event_id, breach in fired:
        view = next((c for c in clocks if _same_clock(breach, c)), None)
        if view is None or view["status"] not in SETTLED:
            continue
        settled_at = dt.datetime.fromisoformat(view[SETTLED[view["status"]]])
        out.append(
            SlaBreachRetracted(
                **{name: getattr(breach, name) for name in ClockFacts.model_fields},
                breach_event_id=event_id,
                breached_at=breach.breached_at,
                reason=view["status"],
                settled_at=settled_at,
            )
        )
    return out
