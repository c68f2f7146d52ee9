"""POST /v1/tickets against a minimal authenticated endpoint of the same app, in one run.

Intake runs as a real process (uvicorn, one worker) on a fresh topic and database; the load
comes from this process over loopback at a few concurrency levels. The baseline is
GET /v1/me: the same app, the same authentication, no database write and no event.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import ADMIN_TOKEN, ServiceProcess, fresh_stack_settings

LEVELS = (1, 8, 32)
DEFAULT_REQUESTS = 600


@dataclass(frozen=True)
class Figures:
    """Throughput and latency of one endpoint at one concurrency level."""

    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        """Latency in milliseconds at `share` (0..1)."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _load(
    call: Callable[[int], Awaitable[httpx.Response]], requests: int, concurrency: int
) -> Figures:
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for n in counter:
            started = time.perf_counter()
            response = await call(n)
            latencies.append(time.perf_counter() - started)
            if response.status_code >= 300:
                raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Figures(requests, time.perf_counter() - started, latencies)


async def run(bootstrap: str, database_url: str, requests: int = DEFAULT_REQUESTS) -> None:
    """Measure and print both endpoints at each level, and the ratio."""
    settings = await fresh_stack_settings(bootstrap, database_url)
    with tempfile.TemporaryDirectory() as logs:
        intake = ServiceProcess("intake", settings, Path(logs))
        intake.start()
        try:
            await intake.wait_ready()
            limits = httpx.Limits(
                max_connections=max(LEVELS), max_keepalive_connections=max(LEVELS)
            )
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(
                base_url=intake.url, headers=auth, limits=limits
            ) as client:
                account = (await client.post("/v1/accounts", json={"name": "Bench"})).json()

                async def open_ticket(n: int) -> httpx.Response:
                    body = {"account_id": account["id"], "subject": f"bench {n}", "priority": "P3"}
                    return await client.post("/v1/tickets", json=body)

                async def whoami(_: int) -> httpx.Response:
                    return await client.get("/v1/me")

                await _load(whoami, 50, 4)  # warm up connections and code paths
                await _load(open_ticket, 50, 4)
                print("\nintake API: POST /v1/tickets vs GET /v1/me (same app, same auth)")
                print(
                    f"{'concurrency':>11} {'endpoint':>16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
                )
                for level in LEVELS:
                    base = await _load(whoami, requests, level)
                    post = await _load(open_ticket, requests, level)
                    for name, fig in (("GET /v1/me", base), ("POST /v1/tickets", post)):
                        print(
                            f"{level:>11} {name:>16} {fig.rate:>8.0f} "
                            f"{fig.percentile(0.5):>8.1f} {fig.percentile(0.99):>8.1f}"
                        )
                    ratio = post.rate / base.rate
                    print(f"{'':>11} {'ratio':>16} {ratio:>8.0%}   (target: POST >= 50% of GET)")
        finally:
            intake.stop()
