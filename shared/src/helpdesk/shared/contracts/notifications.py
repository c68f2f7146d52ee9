"""`notification.*` events, written by the notifier."""

from __future__ import annotations
