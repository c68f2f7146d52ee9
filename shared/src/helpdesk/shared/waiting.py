"""Waiting for a wake-up with a deadline, in a way that a cancellation always ends."""

from __future__ import annotations

import asyncio
import contextlib


async def woken_or_elapsed(wakeup: asyncio.Event, seconds: float) -> None:
    """Return once `wakeup` is set or `seconds` have passed, whichever comes first.

    `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11, `wait_for` swallows a
    cancellation that arrives while the event is being set (cpython gh-86296), so a task
    cancelled at that instant goes on looping and a service's stop() waits for it forever.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wakeup.wait()
