"""SLA clock folding: targets, pauses, priority changes, reopen cycles, tiers, VIP."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.shared.agreements import Priority
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketEscalated,
    TicketReopened,
    TicketResolved,
    TicketTimeLogged,
    TicketTriaged,
    TicketVendorReturned,
)
from helpdesk.sla_timer.domain import (
    ClockKind,
    ClockStatus,
    TicketEvent,
    fold_ticket,
    vip_priority,
)
from tests.support.tickets import customer, info, opened, preset, reply

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def resolved() -> TicketResolved:
    return TicketResolved(resolution="fix", summary="done")


def triaged(priority: Priority, previous: Priority | None = None) -> TicketTriaged:
    return TicketTriaged(priority=priority, previous_priority=previous, kind="incident", scope="in")


TUESDAY_9 = dt.datetime(2025, 6, 3, 9, 0, tzinfo=UTC)


def test_four_tier_p2_reported_tuesday_0900() -> None:
    sla = fold_ticket([(TUESDAY_9, opened(TUESDAY_9))], preset("four_tier_24x7"), TUESDAY_9)
    response = sla.clock(ClockKind.RESPONSE)
    resolution = sla.clock(ClockKind.RESOLUTION)
    assert response is not None
    assert resolution is not None
    assert response.due_at == TUESDAY_9 + 2 * H
    assert resolution.due_at == TUESDAY_9 + 4 * H
    assert response.warning_at == TUESDAY_9 + 90 * M
    assert resolution.warning_at == TUESDAY_9 + 3 * H
    assert response.status is ClockStatus.RUNNING
    assert response.remaining_minutes == 120
    assert [row[1] for row in sla.upcoming()] == ["warning", "breach", "warning", "breach"]


def test_small_business_with_0830_opening_matches_the_worked_example() -> None:
    # docs/policies.md: Mon-Fri 08:30-17:30, urgent 1 h, Friday 17:10 -> Monday 09:10.
    agreement = preset("small_business_remote")
    reported = dt.datetime(2025, 6, 6, 17, 10, tzinfo=NY)
    sla = fold_ticket([(reported, opened(reported, "P1"))], agreement, reported)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    # 20 minutes on Friday (17:10-17:30) plus 40 on Monday from 08:30.
    assert response.due_at == dt.datetime(2025, 6, 9, 9, 10, tzinfo=NY)


def test_clocks_start_at_reported_at_not_at_the_event() -> None:
    reported = TUESDAY_9 - 30 * M
    sla = fold_ticket([(TUESDAY_9, opened(reported))], preset("four_tier_24x7"), TUESDAY_9)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.started_at == reported
    assert response.due_at == reported + 2 * H
    assert response.elapsed_minutes == 30


def test_response_met_by_public_staff_reply_only() -> None:
    agreement = preset("four_tier_24x7")
    events = [
        (TUESDAY_9, opened(TUESDAY_9)),
        (TUESDAY_9 + 10 * M, reply(public=False)),
        (TUESDAY_9 + 20 * M, reply(by_staff=False)),
        (TUESDAY_9 + 30 * M, reply()),
    ]
    sla = fold_ticket(events, agreement, TUESDAY_9 + H)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.status is ClockStatus.MET
    assert response.met_at == TUESDAY_9 + 30 * M
    assert response.elapsed_minutes == 30
    resolution = sla.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.status is ClockStatus.RUNNING


def test_late_response_is_breached_with_both_instants() -> None:
    events = [(TUESDAY_9, opened(TUESDAY_9)), (TUESDAY_9 + 3 * H, reply())]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 4 * H)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.status is ClockStatus.BREACHED
    assert response.breached_at == TUESDAY_9 + 2 * H
    assert response.met_at == TUESDAY_9 + 3 * H


def test_running_clock_past_due_is_breached() -> None:
    sla = fold_ticket([(TUESDAY_9, opened(TUESDAY_9))], preset("four_tier_24x7"), TUESDAY_9 + 5 * H)
    resolution = sla.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.status is ClockStatus.BREACHED
    assert resolution.breached_at == TUESDAY_9 + 4 * H
    assert resolution.remaining_minutes == 0
    assert resolution.warned


def test_info_request_is_a_response_and_pauses_until_the_customer_replies() -> None:
    events = [
        (TUESDAY_9, opened(TUESDAY_9)),
        (TUESDAY_9 + H, info()),
        (TUESDAY_9 + 3 * H, customer()),
    ]
    agreement = preset("four_tier_24x7")
    waiting = fold_ticket(events[:2], agreement, TUESDAY_9 + 2 * H)
    resolution = waiting.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.status is ClockStatus.PAUSED
    assert resolution.paused
    assert resolution.due_at is None
    assert resolution.warning_at is None
    assert resolution.remaining_minutes == 180  # frozen
    response = waiting.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.status is ClockStatus.MET
    resumed = fold_ticket(events, agreement, TUESDAY_9 + 3 * H)
    resolution = resumed.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.status is ClockStatus.RUNNING
    assert resolution.due_at == TUESDAY_9 + 6 * H
    assert resolution.elapsed_minutes == 60


def test_priority_change_after_a_pause_recomputes_from_start_and_keeps_paused_time() -> None:
    events = [
        (TUESDAY_9, opened(TUESDAY_9, "P3")),
        (TUESDAY_9 + H, info()),
        (TUESDAY_9 + 3 * H, customer()),
        (TUESDAY_9 + 4 * H, triaged("P1", "P3")),
    ]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 4 * H)
    resolution = sla.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.priority == "P1"
    assert resolution.target_minutes == 120
    # 2 h of P1 target from 09:00, with the 2 h pause 10:00-12:00 kept: due 13:00.
    assert resolution.due_at == TUESDAY_9 + 4 * H
    assert resolution.status is ClockStatus.BREACHED
    downgraded = fold_ticket(
        [*events, (TUESDAY_9 + 5 * H, triaged("P2", "P1"))],
        preset("four_tier_24x7"),
        TUESDAY_9 + 5 * H,
    )
    resolution = downgraded.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.due_at == TUESDAY_9 + 6 * H
    assert resolution.status is ClockStatus.RUNNING


def test_untriaged_email_ticket_has_no_clocks_until_triaged_then_counts_from_reported_at() -> None:
    agreement = preset("four_tier_24x7")
    events: list[tuple[dt.datetime, object]] = [(TUESDAY_9, opened(TUESDAY_9, None))]
    sla = fold_ticket(events, agreement, TUESDAY_9 + H)
    assert sla.clocks == ()
    assert sla.priority is None
    events.append((TUESDAY_9 + 90 * M, triaged("P2")))
    sla = fold_ticket(events, agreement, TUESDAY_9 + 90 * M)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.started_at == TUESDAY_9
    assert response.due_at == TUESDAY_9 + 2 * H
    assert response.remaining_minutes == 30


def test_reopen_starts_a_new_resolution_cycle_and_keeps_the_old_one() -> None:
    agreement = preset("four_tier_24x7")
    reopen_at = TUESDAY_9 + 24 * H
    events = [
        (TUESDAY_9, opened(TUESDAY_9)),
        (TUESDAY_9 + H, resolved()),
        (TUESDAY_9 + 2 * H, TicketClosed(reason="confirmed")),
        (reopen_at, TicketReopened(reason="still broken", cycle=2)),
    ]
    sla = fold_ticket(events, agreement, reopen_at + H)
    first = sla.clock(ClockKind.RESOLUTION, cycle=1)
    second = sla.clock(ClockKind.RESOLUTION, cycle=2)
    assert first is not None
    assert second is not None
    assert first.status is ClockStatus.MET
    assert first.met_at == TUESDAY_9 + H
    assert second.started_at == reopen_at
    assert second.due_at == reopen_at + 4 * H
    assert second.status is ClockStatus.RUNNING
    assert sla.cycle == 2
    assert len([c for c in sla.clocks if c.kind is ClockKind.RESPONSE]) == 1


def test_vendor_escalation_pauses_and_engineering_starts_its_own_clock() -> None:
    agreement = preset("partner_reseller")
    monday = dt.datetime(2025, 6, 2, 9, 0, tzinfo=NY)
    events = [
        (monday, opened(monday, "P3")),
        (monday + H, TicketEscalated(tier="engineering")),
        (monday + 2 * H, TicketEscalated(tier="vendor")),
        (monday + 26 * H, TicketVendorReturned()),  # Tuesday 11:00
    ]
    at_vendor = fold_ticket(events[:3], agreement, monday + 5 * H)
    response = at_vendor.clock(ClockKind.RESPONSE)
    engineering = at_vendor.clock(ClockKind.ESCALATION)
    assert response is not None
    assert engineering is not None
    assert response.status is ClockStatus.PAUSED
    assert response.elapsed_minutes == 120
    assert engineering.tier == "engineering"
    assert engineering.target_minutes == 72 * 60
    assert engineering.status is ClockStatus.PAUSED
    back = fold_ticket(events, agreement, monday + 26 * H)
    response = back.clock(ClockKind.RESPONSE)
    assert response is not None
    # 24 business hours = 3 days of 8 h; 2 h used Monday, 6 h left of Monday went unused while
    # paused, Tuesday 11:00-17:00 is 6 h -> 16 h left: Wednesday 8 h, Thursday 8 h -> Thu 17:00.
    assert response.due_at == dt.datetime(2025, 6, 5, 17, 0, tzinfo=NY)
    engineering = back.clock(ClockKind.ESCALATION)
    assert engineering is not None
    assert engineering.started_at == monday + H
    answered = fold_ticket(
        [*events, (monday + 27 * H, reply(tier="engineering"))], agreement, monday + 27 * H
    )
    engineering = answered.clock(ClockKind.ESCALATION)
    assert engineering is not None
    assert engineering.status is ClockStatus.MET


def test_only_engineerings_own_response_meets_the_engineering_clock() -> None:
    """Seed 001: "Tickets that must be forward to Engineering, are allotted a 72 business hour
    response time": a front-line "forwarded to Engineering" reply at 14:10 meets the ticket's
    response clock but not the engineering clock started at 14:00; Engineering's reply does,
    and so does an explicit statement that Engineering responded, or the resolution."""
    agreement = preset("partner_reseller")
    opened_at = dt.datetime(2025, 6, 2, 13, 0, tzinfo=NY)
    escalated = opened_at + H
    events = [
        (opened_at, opened(opened_at, "P3")),
        (escalated, TicketEscalated(tier="engineering")),
    ]
    front_line = (escalated + 10 * M, reply())
    internal = (escalated + 20 * M, reply(public=False))
    later = escalated + 30 * M
    sla = fold_ticket([*events, front_line, internal], agreement, later)
    response, engineering = sla.clock(ClockKind.RESPONSE), sla.clock(ClockKind.ESCALATION)
    assert response is not None
    assert engineering is not None
    assert (response.status, response.met_at) == (ClockStatus.MET, escalated + 10 * M)
    assert engineering.status is ClockStatus.RUNNING
    assert engineering.target_minutes == 72 * 60
    for answer in (
        reply(tier="engineering"),  # a public reply by Engineering staff
        reply(public=False, tier="engineering"),  # "Engineering responded", stated explicitly
        TicketResolved(resolution="fix", summary="done"),
    ):
        met = fold_ticket([*events, front_line, (later, answer)], agreement, later)
        clock = met.clock(ClockKind.ESCALATION)
        assert clock is not None
        assert (clock.status, clock.met_at) == (ClockStatus.MET, later), answer
    # Another tier's response is not Engineering's.
    vendor = fold_ticket([*events, (later, reply(tier="vendor"))], agreement, later)
    clock = vendor.clock(ClockKind.ESCALATION)
    assert clock is not None
    assert clock.status is ClockStatus.RUNNING


def test_a_named_vendors_response_time_runs_while_the_vendor_holds_the_ticket() -> None:
    """Seed 001: "Tickets that require the involvement with the end vendor ... are subject to
    that specific vendors response times". Before, a vendor escalation named no vendor and only
    paused the provider's clocks. Now the agreement may give a vendor's response time: an
    escalation naming that vendor runs it (not paused by the vendor's own hold) until the vendor
    hands the ticket back; an unnamed or unlisted vendor runs no clock."""
    agreement = preset("partner_reseller")
    targets = dict(agreement.escalation_targets or {})
    calendar = targets["engineering"].calendar
    targets["vendor"] = targets["vendor"].model_copy(
        update={"vendors": {"Microsoft": 480}, "calendar": calendar}
    )
    agreement = agreement.model_copy(update={"escalation_targets": targets})
    monday = dt.datetime(2025, 6, 2, 9, 0, tzinfo=NY)
    events = [
        (monday, opened(monday, "P3")),
        (monday + H, TicketEscalated(tier="vendor", vendor="Microsoft")),
    ]
    held = fold_ticket(events, agreement, monday + 6 * H)
    vendor, response = held.clock(ClockKind.ESCALATION), held.clock(ClockKind.RESPONSE)
    assert vendor is not None
    assert response is not None
    assert response.status is ClockStatus.PAUSED
    assert (vendor.tier, vendor.target_minutes, vendor.status) == (
        "vendor",
        480,
        ClockStatus.RUNNING,
    )
    # 8 business hours from Monday 10:00 on 09:00-17:00 days: Tuesday 10:00.
    assert vendor.due_at == dt.datetime(2025, 6, 3, 10, 0, tzinfo=NY)
    returned = monday + 24 * H + 30 * M  # Tuesday 09:30
    back = fold_ticket([*events, (returned, TicketVendorReturned())], agreement, returned)
    vendor = back.clock(ClockKind.ESCALATION)
    assert vendor is not None
    assert (vendor.status, vendor.met_at) == (ClockStatus.MET, returned)
    for unnamed in (TicketEscalated(tier="vendor"), TicketEscalated(tier="vendor", vendor="Acme")):
        sla = fold_ticket([events[0], (monday + H, unnamed)], agreement, monday + 6 * H)
        assert sla.clock(ClockKind.ESCALATION) is None


def test_vendor_escalation_without_pause_setting_keeps_clocks_running() -> None:
    events = [(TUESDAY_9, opened(TUESDAY_9)), (TUESDAY_9 + H, TicketEscalated(tier="vendor"))]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 90 * M)
    assert not sla.paused
    resolution = sla.clock(ClockKind.RESOLUTION)
    assert resolution is not None
    assert resolution.due_at == TUESDAY_9 + 4 * H


def test_vip_gets_the_next_higher_priority_targets() -> None:
    assert [vip_priority(p) for p in ("P1", "P2", "P3", "P4")] == ["P1", "P1", "P2", "P3"]
    sla = fold_ticket(
        [(TUESDAY_9, opened(TUESDAY_9, "P3"))], preset("four_tier_24x7"), TUESDAY_9, vip=True
    )
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert sla.priority == "P3"
    assert sla.effective_priority == "P2"
    assert response.due_at == TUESDAY_9 + 2 * H


def test_next_reply_clock_runs_from_each_customer_reply() -> None:
    events = [
        (TUESDAY_9, opened(TUESDAY_9)),
        (TUESDAY_9 + 10 * M, reply()),
        (TUESDAY_9 + H, customer()),
        (TUESDAY_9 + 2 * H, reply()),
        (TUESDAY_9 + 3 * H, customer()),
    ]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 3 * H, next_reply_minutes=30)
    first = sla.clock(ClockKind.NEXT_REPLY, ordinal=1)
    second = sla.clock(ClockKind.NEXT_REPLY, ordinal=2)
    assert first is not None
    assert second is not None
    assert first.status is ClockStatus.BREACHED
    assert first.breached_at == TUESDAY_9 + 90 * M
    assert second.status is ClockStatus.RUNNING
    assert second.due_at == TUESDAY_9 + 3 * H + 30 * M
    without = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 3 * H)
    assert without.clock(ClockKind.NEXT_REPLY) is None


def test_closed_without_resolution_stops_clocks() -> None:
    events = [(TUESDAY_9, opened(TUESDAY_9)), (TUESDAY_9 + H, TicketClosed(reason="duplicate"))]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 10 * H)
    assert {c.status for c in sla.clocks} == {ClockStatus.STOPPED}


def test_events_after_as_of_and_unknown_payloads_are_ignored() -> None:
    events = [
        TicketEvent(TUESDAY_9, opened(TUESDAY_9)),
        TicketEvent(
            TUESDAY_9 + 5 * M,
            TicketTimeLogged(
                entry_id=uuid.uuid4(),
                minutes=5,
                work_type="remote",
                scope="in",
                after_hours=False,
                worked_at=TUESDAY_9,
                technician="t",
                kind="incident",
            ),
        ),
        TicketEvent(TUESDAY_9 + H, reply()),
    ]
    sla = fold_ticket(events, preset("four_tier_24x7"), TUESDAY_9 + 30 * M)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.status is ClockStatus.RUNNING


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fold_ticket([], preset("four_tier_24x7"), dt.datetime(2025, 1, 1))  # noqa: DTZ001


def test_seconds_in_reported_at_round_elapsed_down_and_remaining_up() -> None:
    reported = TUESDAY_9 + dt.timedelta(seconds=30)
    sla = fold_ticket([(reported, opened(reported))], preset("four_tier_24x7"), TUESDAY_9 + H)
    response = sla.clock(ClockKind.RESPONSE)
    assert response is not None
    assert response.due_at == reported + 2 * H
    assert response.elapsed_minutes == 59
    assert response.remaining_minutes == 61


@settings(max_examples=100, deadline=None)
@given(
    pause_start=st.integers(min_value=0, max_value=3000),
    pause_length=st.integers(min_value=1, max_value=3000),
    look=st.integers(min_value=0, max_value=6000),
)
def test_elapsed_plus_remaining_is_the_target_and_due_is_exact(
    pause_start: int, pause_length: int, look: int
) -> None:
    agreement = preset("partner_reseller")
    reported = dt.datetime(2025, 6, 6, 15, 0, tzinfo=NY)
    events = [
        (reported, opened(reported, "P2")),
        (reported + pause_start * M, TicketEscalated(tier="vendor")),
        (reported + (pause_start + pause_length) * M, TicketVendorReturned()),
    ]
    as_of = reported + look * M
    clock = fold_ticket(events, agreement, as_of).clock(ClockKind.RESPONSE)
    assert clock is not None
    assert clock.elapsed + clock.remaining == clock.target_minutes * M
    if clock.status is ClockStatus.RUNNING:
        assert clock.due_at is not None
        assert clock.due_at > as_of
    if clock.status is ClockStatus.RUNNING and look >= pause_start + pause_length:
        assert clock.due_at is not None
        # With every event known, folding as of the due instant finds the target elapsed.
        at_due = fold_ticket(events, agreement, clock.due_at).clock(ClockKind.RESPONSE)
        assert at_due is not None
        assert at_due.elapsed == clock.target_minutes * M
        assert at_due.status is ClockStatus.BREACHED
        assert at_due.breached_at == clock.due_at
    elif clock.status is ClockStatus.PAUSED:
        assert clock.due_at is None
        assert clock.remaining > dt.timedelta(0)
