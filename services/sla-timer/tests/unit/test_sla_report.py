"""SLA report: met / breached counts and percentiles per priority and clock kind."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from helpdesk.shared.agreements import Priority, get_preset
from helpdesk.shared.contracts.tickets import TicketCommented, TicketOpened, TicketResolved
from helpdesk.sla_timer.domain import ClockKind, TicketSla, fold_ticket, percentile, sla_report

pytestmark = pytest.mark.unit

T0 = dt.datetime(2025, 6, 3, 9, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)


def ticket(priority: Priority, response_after: int, resolve_after: int | None) -> TicketSla:
    preset = get_preset("four_tier_24x7")
    assert preset is not None
    events: list[tuple[dt.datetime, object]] = [
        (
            T0,
            TicketOpened(
                ticket_id=uuid.uuid4(),
                number="1",
                account_id=uuid.uuid4(),
                subject="s",
                description="d",
                channel="phone",
                priority=priority,
                reported_at=T0,
            ),
        ),
        (
            T0 + response_after * M,
            TicketCommented(
                comment_id=uuid.uuid4(), body="b", public=True, by_staff=True, author="t"
            ),
        ),
    ]
    if resolve_after is not None:
        events.append((T0 + resolve_after * M, TicketResolved(resolution="fix", summary="s")))
    return fold_ticket(events, preset.agreement, T0 + 10 * 24 * 60 * M)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4, 1, 3, 2], 0.5) == 2
    assert percentile([4, 1, 3, 2], 0.9) == 4
    assert percentile(list(range(1, 11)), 0.9) == 9
    with pytest.raises(ValueError, match="share"):
        percentile([1], 0)


def test_report_counts_and_percentiles_per_priority_and_kind() -> None:
    tickets = [
        ticket("P2", 30, 100),
        ticket("P2", 60, 200),
        ticket("P2", 150, 300),  # response and resolution late
        ticket("P1", 10, None),  # resolution still open (breached, running)
    ]
    lines = {(line.priority, line.kind): line for line in sla_report(tickets)}
    response = lines["P2", ClockKind.RESPONSE]
    assert (response.met, response.breached, response.open) == (2, 1, 0)
    assert response.p50_minutes == 60
    assert response.p90_minutes == 150
    assert response.met_share == pytest.approx(2 / 3)
    resolution = lines["P2", ClockKind.RESOLUTION]
    assert (resolution.met, resolution.breached) == (2, 1)
    assert resolution.p50_minutes == 200
    p1_resolution = lines["P1", ClockKind.RESOLUTION]
    assert (p1_resolution.met, p1_resolution.breached) == (0, 1)
    assert p1_resolution.p50_minutes is None


def test_report_period_filters_on_reported_at() -> None:
    tickets = [ticket("P3", 30, 60)]
    assert sla_report(tickets, reported_from=T0 + M) == []
    assert len(sla_report(tickets, reported_from=T0, reported_until=T0 + M)) == 2
