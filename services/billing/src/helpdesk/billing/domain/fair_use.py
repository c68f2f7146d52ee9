"""Fair-use caps (seed 002): exceedances are reported, time is never dropped.

"Up to 30 mins of remote service per day" and "if the ticket can't be finished in 30 minutes or
less limited support may apply" are caps on service actually given, so they count the minutes
as logged (not rounded up to the billing increment), of the work types the agreement names,
whatever the scope. A cap is exceeded when the counted minutes go above it (30 of 30 is fine).

Each cap yields at most one exceedance per day (account-local date) or per ticket: the entry
that first takes the count over the cap, in worked_at order. Its `key` names the day or ticket,
not the entry, so that the service can derive a stable event id for
`billing.fair_use_exceeded` even if a late entry with an earlier worked_at moves the crossing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from helpdesk.billing.domain.periods import local_date
from helpdesk.shared.agreements import FairUse

if TYPE_CHECKING:
    from helpdesk.billing.domain.rating import TimeEntry

FairUseCap = Literal["per_day", "per_ticket"]


@dataclass(frozen=True)
class FairUseExceedance:
    """One cap exceeded: the entry that crossed it and the count at that point."""

    cap: FairUseCap
    limit_minutes: int
    #: Counted minutes including the crossing entry (so always above `limit_minutes`).
    used_minutes: int
    entry_id: UUID
    ticket_id: UUID
    worked_at: datetime
    #: The account-local date for a per-day cap; None for a per-ticket cap.
    day: date | None = None

    @property
    def excess_minutes(self) -> int:
        """Minutes above the cap at the crossing entry."""
        return self.used_minutes - self.limit_minutes

    @property
    def key(self) -> str:
        """Stable identity of the exceedance: the cap and the day or ticket it concerns."""
        if self.cap == "per_day":
            assert self.day is not None
            return f"per_day:{self.day.isoformat()}"
        return f"per_ticket:{self.ticket_id}"


def fair_use_exceedances(
    entries: Iterable[TimeEntry], fair_use: FairUse | None, timezone: str
) -> tuple[FairUseExceedance, ...]:
    """Every cap of `fair_use` that `entries` exceed, in worked_at order.

    Pass all entries of the account (or at least of the tickets concerned): a per-ticket cap
    counts a ticket's whole life, not one period.
    """
    if fair_use is None:
        return ()
    counted = sorted(
        (e for e in entries if e.work_type in fair_use.work_types),
        key=lambda e: (e.worked_at, str(e.entry_id)),
    )
    found: list[FairUseExceedance] = []
    per_day: defaultdict[date, int] = defaultdict(int)
    per_ticket: defaultdict[UUID, int] = defaultdict(int)
    for entry in counted:
        day = local_date(entry.worked_at, timezone)
        before_day, before_ticket = per_day[day], per_ticket[entry.ticket_id]
        per_day[day] += entry.minutes
        per_ticket[entry.ticket_id] += entry.minutes
        day_cap, ticket_cap = fair_use.per_day_minutes, fair_use.per_ticket_minutes
        if day_cap is not None and before_day <= day_cap < per_day[day]:
            found.append(
                FairUseExceedance(
                    cap="per_day",
                    limit_minutes=day_cap,
                    used_minutes=per_day[day],
                    entry_id=entry.entry_id,
                    ticket_id=entry.ticket_id,
                    worked_at=entry.worked_at,
                    day=day,
                )
            )
        if ticket_cap is not None and before_ticket <= ticket_cap < per_ticket[entry.ticket_id]:
            found.append(
                FairUseExceedance(
                    cap="per_ticket",
                    limit_minutes=ticket_cap,
                    used_minutes=per_ticket[entry.ticket_id],
                    entry_id=entry.entry_id,
                    ticket_id=entry.ticket_id,
                    worked_at=entry.worked_at,
                )
            )
    return tuple(found)
