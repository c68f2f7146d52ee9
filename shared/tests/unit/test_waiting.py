"""A loop that waits for a wake-up must end when cancelled, whatever else happens that instant."""

from __future__ import annotations

import asyncio

import pytest

from helpdesk.shared.waiting import woken_or_elapsed

pytestmark = pytest.mark.unit


async def test_a_cancel_arriving_as_the_wakeup_is_set_ends_the_loop() -> None:
    wakeup = asyncio.Event()
    waiting = asyncio.Event()

    async def live_loop() -> None:
        while True:
            wakeup.clear()
            waiting.set()
            await woken_or_elapsed(wakeup, 3600)

    task = asyncio.create_task(live_loop())
    await waiting.wait()
    await asyncio.sleep(0)  # one turn: the inner wait is now parked on the event
    # What stop() meets when a batch wakes the loop at the moment it is cancelled.
    wakeup.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert task.cancelled()


async def test_the_wait_ends_at_the_wakeup_or_the_deadline() -> None:
    wakeup = asyncio.Event()
    wakeup.set()
    async with asyncio.timeout(5):
        await woken_or_elapsed(wakeup, 3600)  # set: returns at once
    wakeup.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await woken_or_elapsed(wakeup, 0.05)
    assert loop.time() - started >= 0.05
