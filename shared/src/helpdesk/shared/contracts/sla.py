"""`sla.*` events, written by the SLA timer.

Each is a timer that fired: its envelope's `occurred_at` is the instant it was due (the deadline
of a breach, the warning instant, the instant a clock was met, a reminder's due time), and its
id derives from the ticket, the clock (kind, cycle, ordinal, tier) or the wait, and the action,
so it is decided once whatever restarts, rebuilds or replicas do. The envelope carries the
ticket id (without a seq: these are not ticket events). The notifier mails on `sla.breached`
(a breached `resolution` clock is the escalation threshold: management is told) and
`sla.follow_up_due` (the reminder to the customer); intake closes the ticket on
`sla.auto_close_requested`.

`sla.breach_retracted` is the one correction: a breach fired at its deadline (after the allowed
lateness) that a ticket event arriving later proves wrong (the clock was met, or stopped, before
the deadline) is retracted once; its `occurred_at` is the instant the clock was met or stopped.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.contracts.common import EscalationTier, Payload, Priority
from helpdesk.shared.events import registry

ClockKind = Literal["response", "resolution", "next_reply", "escalation"]
WaitReason = Literal["info_requested", "confirmation"]


class ClockFacts(Payload):
    """Which clock of which ticket, and its target.

    `ordinal` numbers the clocks of one kind in a cycle (next-reply) or of one tier (escalation);
    `tier` is set for escalation clocks only. `priority` is the one whose targets apply (after
    VIP treatment); None for escalation clocks. `due_at` is the clock's deadline.
    """

    ticket_id: UUID
    kind: ClockKind
    cycle: int = Field(ge=1)
    ordinal: int = Field(ge=1)
    tier: EscalationTier | None = None
    priority: Priority | None = None
    target_minutes: int = Field(ge=1)
    calendar: str
    due_at: AwareDatetime


@registry.register("sla.warning")
class SlaWarning(ClockFacts):
    """A running clock reached the agreement's warning share at `warning_at`."""

    warning_at: AwareDatetime


@registry.register("sla.breached")
class SlaBreached(ClockFacts):
    """A clock was not met by its deadline; `breached_at` is the deadline (equal to `due_at`)."""

    breached_at: AwareDatetime


@registry.register("sla.breach_retracted")
class SlaBreachRetracted(ClockFacts):
    """The breach `breach_event_id` (an `sla.breached` of this clock, `breached_at` its deadline)
    was wrong: the clock was `met` or `stopped` (the ticket closed) at `settled_at`, before the
    deadline, by a ticket event that arrived after the breach had fired. The clock facts are the
    breach's; the actor is the breach's too (an imported breach is retracted as imported)."""

    breach_event_id: UUID
    breached_at: AwareDatetime
    reason: Literal["met", "stopped"]
    settled_at: AwareDatetime


@registry.register("sla.met")
class SlaMet(ClockFacts):
    """A clock was met in time at `met_at`, with `elapsed_minutes` of business time used."""

    met_at: AwareDatetime
    elapsed_minutes: int = Field(ge=0)


@registry.register("sla.follow_up_due")
class FollowUpDue(Payload):
    """Reminder `reminder` (1-based) of `max_unanswered` to a customer who has not answered
    since `waiting_since` (an info request, or a resolution awaiting confirmation)."""

    ticket_id: UUID
    reminder: int = Field(ge=1)
    max_unanswered: int = Field(ge=1)
    waiting_since: AwareDatetime
    reason: WaitReason


@registry.register("sla.auto_close_requested")
class AutoCloseRequested(Payload):
    """The follow-up schedule ran out unanswered: intake closes the ticket (reason no_response).

    `ticket_seq` is the ticket's seq the SLA timer saw; intake ignores the request when the
    ticket moved on since (the customer answered meanwhile). `waiting_since` names the wait it
    ends (absent in requests written before it was added).
    """

    ticket_id: UUID
    ticket_seq: int
    unanswered_follow_ups: int
    reason: Literal["no_response"] = "no_response"
    waiting_since: AwareDatetime | None = None
