"""Live loops act only for partitions their replica owns and has caught up with."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import pytest

from helpdesk.shared.consumer import ConsumerRuntime
from helpdesk.shared.context import utc_now
from helpdesk.shared.db import create_engine
from helpdesk.shared.live import LiveContext, LiveLoops
from helpdesk.shared.metrics import Metrics
from helpdesk.shared.settings import Settings
from tests.support import SPECS, wait_for

pytestmark = pytest.mark.integration


class Replica:
    """One consumer-group member whose live loop records the partitions it was given."""

    def __init__(self, settings: Settings) -> None:
        spec = SPECS["sla_timer"]()
        self.engine = create_engine(settings.database_url)
        self.ticks: list[frozenset[int]] = []
        metrics = Metrics("test")
        self.runtime = ConsumerRuntime(
            "live-loop-test",
            engine=self.engine,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic,
            tables=spec.tables,
            projection=spec.projection,
            metrics=metrics,
            poll_ms=50,
        )
        self.live = LiveLoops(
            self.runtime,
            [self.tick],
            engine=self.engine,
            tables=spec.tables,
            projection=spec.projection,
            metrics=metrics,
            clock=utc_now,
            max_idle=0.05,
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def tick(self, context: LiveContext) -> datetime | None:
        self.ticks.append(frozenset(context.owned))
        return None

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.runtime.run()),
            asyncio.create_task(self.live.run()),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.engine.dispose()

    async def owns(self) -> frozenset[int]:
        return self.ticks[-1] if self.ticks else frozenset()


async def test_two_replicas_split_the_partitions_and_one_takes_over(settings: Settings) -> None:
    first, second = Replica(settings), Replica(settings)
    first.start()
    second.start()
    try:

        async def split() -> bool:
            a, b = await first.owns(), await second.owns()
            return bool(a) and bool(b) and a | b == frozenset(range(12))

        await wait_for(split, timeout=60)
        a, b = await first.owns(), await second.owns()
        print(f"\nreplica 1 acts for {sorted(a)}, replica 2 for {sorted(b)}")
        assert not a & b
        assert a == first.runtime.caught_up
        assert b == second.runtime.caught_up
        await second.stop()

        async def took_over() -> bool:
            return await first.owns() == frozenset(range(12))

        await wait_for(took_over, timeout=60)
    finally:
        await first.stop()
        if second.tasks and not second.tasks[0].done():
            await second.stop()
