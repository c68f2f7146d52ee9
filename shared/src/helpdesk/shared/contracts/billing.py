"""`billing.*` events, written by billing."""

from __future__ import annotations
