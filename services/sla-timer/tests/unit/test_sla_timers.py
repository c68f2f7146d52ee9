"""Timers from a fold (keys, instants, payloads), the stored history, queue helpers, periods."""

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
)
from helpdesk.sla_timer.domain import TicketEvent, follow_up_schedule
from helpdesk.sla_timer.domain.history import (
    clock_view,
    decode_history,
    fold,
    history_item,
)
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
