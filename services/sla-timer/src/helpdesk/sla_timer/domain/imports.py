"""Imported history: which timers belong to it, and when they may fire.

A ticket's history imported with an import key arrives in several requests (the opening, then
each command, seconds apart). A deadline that lay in the past when it arrived must not fire on
a half-imported history (a breach at 16:00 whose 12:30 reply comes in 8 s later), and what it
records is history, not news: nobody is e-mailed about it.

So a timer due by the time the ticket's last imported event was recorded is imported history:
it fires `IMPORT_SETTLE` after that recording, once no more of the history has come (by then
the fold has the whole history, and a timer the history answered is gone), stamped with its
own due instant, and its event carries an import actor, which the notifier mails no one about
and webhooks pass on as such. Timers due later are live ones and fire when due.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

#: How long after a ticket's last imported event its past-due timers wait for more history:
#: about twice the gap between the requests of one ticket's import seen in practice (8 s).
IMPORT_SETTLE = dt.timedelta(seconds=15)


class Firing(NamedTuple):
    """When a timer fires, and whether it records imported history."""

    fire_at: dt.datetime
    imported: bool


def firing(due_at: dt.datetime, imported_at: dt.datetime | None) -> Firing:
    """When a timer due at `due_at` fires, given when the ticket's last imported event was
    recorded (None: never imported)."""
    if imported_at is None:
        return Firing(due_at, False)
    if due_at <= imported_at:
        return Firing(imported_at + IMPORT_SETTLE, True)
    return Firing(due_at, False)
