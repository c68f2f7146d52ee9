"""Timers of imported history: fired once the import settled, marked imported."""

from __future__ import annotations

import datetime as dt

import pytest

from helpdesk.sla_timer.domain.imports import IMPORT_SETTLE, Firing, firing

pytestmark = pytest.mark.unit

NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def test_a_live_ticket_fires_at_its_deadline() -> None:
    assert firing(NOON, None) == Firing(NOON, False)


def test_a_deadline_in_the_imported_past_waits_for_the_import_to_settle() -> None:
    """An imported P2 reported at 12:00, its 12:30 reply imported 8 s after the opening: the
    16:00 deadline was past when the history arrived (18:00), so it fires, as imported history,
    only once the import settled -- by then the reply has met the clock and no breach is due."""
    imported_at = NOON + 6 * H
    assert firing(NOON + 4 * H, imported_at) == Firing(imported_at + IMPORT_SETTLE, True)
    assert firing(imported_at, imported_at) == Firing(imported_at + IMPORT_SETTLE, True)
    # A deadline still ahead when the history arrived is live news: it fires when due.
    later = imported_at + dt.timedelta(seconds=4)
    assert firing(later, imported_at) == Firing(later, False)
