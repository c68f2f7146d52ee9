"""Timers from a fold (keys, instants, payloads), the stored history, queue helpers, periods,
and the retraction of a fired breach a late ticket event proves wrong (issue 20, point 4)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from helpdesk.shared.agreements import Agreement, FollowUp, get_preset
from helpdesk.shared.contracts.sla import AutoCloseRequested, FollowUpDue, SlaBreached, SlaMet
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketCommented,
    TicketCustomerReplied,
    TicketEscalated,
    TicketInfoRequested,
    TicketOpened,
    TicketResolved,
    TicketTriaged,
)
from helpdesk.sla_timer.domain import TicketEvent, follow_up_schedule
from helpdesk.sla_timer.domain.history import (
    clock_view,
    decode_history,
    fold,
    history_item,
)
from helpdesk.sla_timer.domain.retractions import retractions
from helpdesk.sla_timer.domain.timers import (
    clock_timers,
    follow_up_timers,
    nearest_deadline,
    ticket_status,
    timer_identity,
)

pytestmark = pytest.mark.unit

TICKET = uuid.UUID(int=7)
TUESDAY = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def four_tier() -> Agreement:
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    return preset.agreement


def opened(priority: str = "P2") -> TicketOpened:
    return TicketOpened.model_validate(
        {
            "ticket_id": str(TICKET),
            "number": "HD-1",
            "account_id": str(uuid.UUID(int=1)),
            "subject": "s",
            "description": "",
            "channel": "api",
            "priority": priority,
            "reported_at": TUESDAY.isoformat(),
        }
    )


def staff_reply() -> TicketCommented:
    return TicketCommented(
        comment_id=uuid.uuid4(), body="b", public=True, by_staff=True, author="a"
    )


def test_running_clocks_give_warning_and_breach_timers_at_their_instants() -> None:
    sla = fold([TicketEvent(TUESDAY, opened())], four_tier(), TUESDAY, vip_contact=False)
    timers = {(t.action, t.key): t for t in clock_timers(TICKET, sla)}
    assert set(timers) == {
        ("warning", "response:1:1"),
        ("breach", "response:1:1"),
        ("warning", "resolution:1:1"),
        ("breach", "resolution:1:1"),
    }
    breach = timers[("breach", "response:1:1")]
    assert breach.due_at == TUESDAY + 2 * H
    assert isinstance(breach.payload, SlaBreached)
    assert breach.payload.breached_at == breach.payload.due_at == TUESDAY + 2 * H
    assert timers[("warning", "resolution:1:1")].due_at == TUESDAY + 3 * H  # 75 % of 4 h
    assert timer_identity(breach.payload) == ("breach", "response:1:1")


def test_a_met_clock_gives_a_met_timer_and_a_late_one_still_breaches_at_its_deadline() -> None:
    events = [
        TicketEvent(TUESDAY, opened()),
        TicketEvent(TUESDAY + H, staff_reply()),
        TicketEvent(TUESDAY + 5 * H, TicketResolved(resolution="fix", summary="s")),
    ]
    sla = fold(events, four_tier(), TUESDAY + 5 * H, vip_contact=False)
    timers = {(t.action, t.key): t for t in clock_timers(TICKET, sla)}
    met = timers[("met", "response:1:1")]
    assert isinstance(met.payload, SlaMet)
    assert (met.due_at, met.payload.elapsed_minutes) == (TUESDAY + H, 60)
    assert timers[("breach", "resolution:1:1")].due_at == TUESDAY + 4 * H
    assert ("met", "resolution:1:1") not in timers


def test_a_paused_clock_has_no_timers_and_the_wait_schedules_reminders() -> None:
    asked = TUESDAY + H
    events = [
        TicketEvent(TUESDAY, opened()),
        TicketEvent(asked, TicketInfoRequested(comment_id=uuid.uuid4(), body="?", author="a")),
    ]
    sla = fold(events, four_tier(), asked, vip_contact=False)
    assert [t.action for t in clock_timers(TICKET, sla)] == ["met"]
    assert nearest_deadline(sla) is None
    policy = FollowUp(after_minutes=[10, 20], max_unanswered=2)
    timers = follow_up_timers(TICKET, follow_up_schedule(events, policy), ticket_seq=2)
    assert [(t.action, t.due_at - asked) for t in timers] == [
        ("follow_up", dt.timedelta(minutes=10)),
        ("follow_up", dt.timedelta(minutes=20)),
        ("auto_close", dt.timedelta(minutes=30)),
    ]
    reminder, request = timers[1].payload, timers[2].payload
    assert isinstance(reminder, FollowUpDue)
    assert reminder.reminder == 2
    assert isinstance(request, AutoCloseRequested)
    assert request.ticket_seq == 2
    assert timer_identity(reminder) == ("follow_up", timers[1].key)
    assert timer_identity(request) == ("auto_close", timers[2].key)
    assert follow_up_timers(TICKET, None, ticket_seq=2) == []


def test_ticket_status_follows_waits_resolution_and_closure() -> None:
    def status(*payloads: object) -> str:
        return ticket_status([TicketEvent(TUESDAY, p) for p in payloads])

    info = TicketInfoRequested(comment_id=uuid.uuid4(), body="?", author="a")
    answer = TicketCustomerReplied(comment_id=uuid.uuid4(), body="!", author="c", resumed=True)
    assert status(opened()) == "open"
    assert status(opened(), info) == "waiting_on_customer"
    assert status(opened(), info, answer) == "open"
    assert status(opened(), TicketEscalated(tier="vendor")) == "waiting_on_vendor"
    assert status(opened(), TicketResolved(resolution="fix", summary="s")) == "resolved"
    assert status(opened(), TicketClosed(reason="duplicate")) == "closed"


def test_the_queue_and_intake_read_one_status_from_the_events() -> None:
    """Issue 23: "A ticket's status is worked out twice, and the two disagree": the SLA timer
    said `open` after any customer reply and never `new`. Now both read `status_after`: an
    untriaged ticket is new until its triage, and a reply that intake did not record as
    resuming (a ticket with the vendor) leaves the status as it was."""

    def status(*payloads: object) -> str:
        return ticket_status([TicketEvent(TUESDAY, p) for p in payloads])

    untriaged = opened().model_copy(update={"priority": None})
    triage = TicketTriaged(priority="P2", previous_priority=None, kind="incident", scope="in")
    aside = TicketCustomerReplied(comment_id=uuid.uuid4(), body="?", author="c", resumed=False)
    assert status(untriaged) == "new"
    assert status(untriaged, triage) == "open"
    assert status(opened(), TicketEscalated(tier="vendor"), aside) == "waiting_on_vendor"


def test_history_round_trips_and_the_view_shows_business_minutes() -> None:
    items = [history_item("ticket.opened", TUESDAY, opened("P1"))]
    events = decode_history(items)
    assert events[0].occurred_at == TUESDAY
    assert events[0].payload == opened("P1")
    sla = fold(events, four_tier(), TUESDAY + 30 * dt.timedelta(minutes=1), vip_contact=False)
    view = clock_view(sla.clocks[0])
    assert (view["elapsed_minutes"], view["remaining_minutes"], view["status"]) == (
        30,
        30,
        "running",
    )
    vip = fold(events, four_tier(), TUESDAY, vip_contact=True)
    assert vip.effective_priority == "P1"


def test_a_clock_closed_before_its_reply_shows_stopped_as_the_report_counts_it() -> None:
    """A ticket closed as a duplicate with no reply: its response clock was neither met nor
    breached, so the view says `stopped` (with `stopped_at`), never `met` with `met_at: null`."""
    closed_at = TUESDAY + 10 * dt.timedelta(minutes=1)
    items = [
        history_item("ticket.opened", TUESDAY, opened("P2")),
        history_item("ticket.closed", closed_at, TicketClosed(reason="duplicate")),
    ]
    sla = fold(decode_history(items), four_tier(), closed_at + H, vip_contact=False)
    views = {v["kind"]: v for v in (clock_view(c) for c in sla.clocks)}
    assert {k: (v["status"], v["met_at"]) for k, v in views.items()} == {
        "response": ("stopped", None),
        "resolution": ("stopped", None),
    }
    assert views["response"]["stopped_at"] == closed_at.isoformat()
    # Nothing fires for a stopped clock: no met event, no breach.
    assert clock_timers(TICKET, sla) == []


# -- retractions --------------------------------------------------------------------------------

#: P2 under four_tier_24x7: response due 2 h after the report, resolution 4 h.
RESOLUTION_DUE = TUESDAY + 4 * H
BREACH_ID = uuid.UUID(int=99)
JUST_BEFORE = RESOLUTION_DUE - dt.timedelta(milliseconds=30)


def fired_breach() -> SlaBreached:
    """The resolution breach the timer fired at its deadline, with nothing else known yet."""
    sla = fold([TicketEvent(TUESDAY, opened())], four_tier(), RESOLUTION_DUE, vip_contact=False)
    [breach] = [
        t.payload
        for t in clock_timers(TICKET, sla)
        if t.action == "breach" and t.key == "resolution:1:1"
    ]
    assert isinstance(breach, SlaBreached)
    return breach


def views_after(*late: TicketEvent) -> list[dict[str, object]]:
    """The clock views once the late events are folded in (as of the last of them)."""
    events = [TicketEvent(TUESDAY, opened()), *late]
    sla = fold(events, four_tier(), events[-1].occurred_at, vip_contact=False)
    return [clock_view(c) for c in sla.clocks]


def test_a_resolution_before_the_deadline_retracts_the_breach_it_proves_wrong() -> None:
    """Before, a resolution 30 ms before the deadline relayed after it left the fired breach
    standing (mailed, counted). Now the fold shows the clock met, and the rule retracts that
    breach once, naming it, the reason and the instant the clock was met."""
    breach = fired_breach()
    resolved = TicketEvent(JUST_BEFORE, TicketResolved(resolution="fix", summary="s"))
    [retraction] = retractions([(BREACH_ID, breach)], views_after(resolved))
    assert retraction.breach_event_id == BREACH_ID
    assert (retraction.kind, retraction.cycle, retraction.ordinal) == ("resolution", 1, 1)
    assert retraction.due_at == retraction.breached_at == RESOLUTION_DUE
    assert retraction.reason == "met"
    assert retraction.settled_at == JUST_BEFORE
    assert retraction.priority == breach.priority


def test_a_ticket_closed_before_the_deadline_retracts_it_as_stopped() -> None:
    """A closure in time stops the clock (neither met nor breached): the breach is wrong too."""
    closed = TicketEvent(JUST_BEFORE, TicketClosed(reason="duplicate"))
    [retraction] = retractions([(BREACH_ID, fired_breach())], views_after(closed))
    assert (retraction.reason, retraction.settled_at) == ("stopped", JUST_BEFORE)


def test_a_resolution_after_the_deadline_leaves_the_breach_standing() -> None:
    """Met late is breached: nothing is retracted."""
    late = TicketEvent(RESOLUTION_DUE + H, TicketResolved(resolution="fix", summary="s"))
    assert retractions([(BREACH_ID, fired_breach())], views_after(late)) == []


def test_a_pause_before_the_deadline_defers_the_verdict() -> None:
    """An info request just before the deadline pauses the resolution clock: it may still breach
    later, so the breach stands until the clock is met or stopped."""
    info = TicketInfoRequested(comment_id=uuid.uuid4(), body="?", author="a")
    paused = TicketEvent(JUST_BEFORE, info)
    views = views_after(paused)
    assert next(v for v in views if v["kind"] == "resolution")["status"] == "paused"
    assert retractions([(BREACH_ID, fired_breach())], views) == []


def test_only_the_clock_of_the_breach_is_looked_at() -> None:
    """The response clock of the same ticket was met late (breached); a breach of a clock the
    fold does not have (another cycle) is left alone."""
    resolved = TicketEvent(JUST_BEFORE, TicketResolved(resolution="fix", summary="s"))
    views = views_after(resolved)
    assert next(v for v in views if v["kind"] == "response")["status"] == "breached"
    other_cycle = fired_breach().model_copy(update={"cycle": 2})
    assert retractions([(BREACH_ID, other_cycle)], views) == []
