"""Live loops act only for partitions their replica owns and has caught up with."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from helpdesk.shared.consumer import ConsumerRuntime
from helpdesk.shared.db import create_engine
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
        self.runtime = ConsumerRuntime(
            "live-loop-test",
            engine=self.engine,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic,
            tables=spec.tables,
            projection=spec.projection,
            metrics=Metrics("test"),
            live_loops=[self.tick],
            poll_ms=50,
            live_interval=0.05,
        )
        self.task: asyncio.Task[None] | None = None

    async def tick(self, partitions: frozenset[int]) -> None:
        self.ticks.append(partitions)

    def start(self) -> None:
        self.task = asyncio.create_task(self.runtime.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
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
        if second.task is not None and not second.task.done():
            await second.stop()
