"""The managers' daily digest: when it is due, and which tickets it lists (seed 003: tickets
are monitored daily by management).

Pure: the instant `now` and the digest's hour and time zone are parameters; the clock states
come from the projection, which folds them from `sla.*` and `ticket.*` events.

Rules:
- the digest of day D is due at `hour`:00 local time of D in the configured time zone; the
  day due at `now` is the latest one whose instant is not after `now` (a digest missed while
  the notifier was down is sent late the same day, never for a day that is over);
- a response or resolution clock of the ticket's current cycle is listed `breached` once an
  `sla.breached` was seen and the ticket is not closed (met late or not: management follows a
  breached ticket until it is closed), and `at_risk` once an `sla.warning` was seen while it
  is neither met, breached nor closed;
- a clock whose breach was retracted (`sla.breach_retracted`: an event that arrived after the
  breach showed the clock met or stopped before its deadline) is not listed: it never breached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from helpdesk.notifier.domain.messages import DigestItem, DigestStatus

#: The clocks the digest reports; next-reply and escalation clocks mail no one.
DIGEST_CLOCKS = ("response", "resolution")


@dataclass(frozen=True)
class ClockState:
    """One SLA clock of a ticket as the notifier's projection knows it."""

    number: str
    subject: str
    account_name: str
    priority: str | None
    clock: str  # response | resolution
    due_at: datetime
    warned: bool
    breached: bool
    met: bool
    ticket_closed: bool
    retracted: bool = False


def digest_status(state: ClockState) -> DigestStatus | None:
    """Whether a clock belongs in the digest, and as what."""
    if state.ticket_closed or state.retracted or state.clock not in DIGEST_CLOCKS:
        return None
    if state.breached:
        return "breached"
    if state.warned and not state.met:
        return "at_risk"
    return None


def digest_items(states: Iterable[ClockState]) -> list[DigestItem]:
    """The digest's lines: every clock at risk or breached."""
    items = []
    for state in states:
        status = digest_status(state)
        if status is not None:
            items.append(
                DigestItem(
                    number=state.number,
                    subject=state.subject,
                    account_name=state.account_name,
                    priority=state.priority,
                    clock=state.clock,
                    status=status,
                    due_at=state.due_at,
                )
            )
    return items


def digest_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """When the digest of `day` is due: `hour`:00 local time (a DST gap shifts it forward)."""
    local = datetime.combine(day, time(hour), tzinfo=zone)
    # Round-trip through UTC so a non-existent local time (spring forward) becomes a real one.
    return local.astimezone(ZoneInfo("UTC")).astimezone(zone)


def digest_due(now: datetime, hour: int, zone: ZoneInfo) -> tuple[date, datetime]:
    """The day whose digest is due at `now` (the latest not after it) and its instant."""
    if not 0 <= hour <= 23:
        raise ValueError("the digest hour is 0..23")
    today = now.astimezone(zone).date()
    at = digest_instant(today, hour, zone)
    if at <= now:
        return today, at
    yesterday = today - timedelta(days=1)
    return yesterday, digest_instant(yesterday, hour, zone)


def next_digest(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The instant of the digest after `day`'s."""
    return digest_instant(day + timedelta(days=1), hour, zone)
