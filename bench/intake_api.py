"""GET /v1/me and POST /v1/tickets against a bare JSON endpoint of the same app, in one run.

Intake runs as a real process (uvicorn, one worker) on a fresh topic and database; the load
comes from this process over loopback, with one keep-alive connection per concurrent client,
at a few concurrency levels. The baseline is GET /healthz: the same app and middlewares, a
FastAPI JSON answer without authentication or database. GET /v1/me adds authentication (a
technician's issued key, not the bootstrap admin token, so the key lookup is measured);
POST /v1/tickets adds a command: one transaction, its events, the outbox; "POST +Idem-Key" is
the same with a fresh Idempotency-Key on each request (claimed and answered in the command's
transaction). Each endpoint is
reported as a share of the baseline measured in the same run, since the machine's absolute
speed varies.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import ADMIN_TOKEN, ServiceProcess, fresh_stack_settings

LEVELS = (1, 8, 32)
DEFAULT_REQUESTS = 600
#: The issue's aims at concurrency 8, as shares of the baseline (and a p99 bound).
AIMS = {"GET /v1/me": 0.50, "POST /v1/tickets": 0.25}
P99_AIM_MS = 50.0


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


async def _setup(client: httpx.AsyncClient) -> tuple[str, str]:
    """An account, and the token of a technician's key."""
    suffix = uuid.uuid4().hex[:8]
    account = (await client.post("/v1/accounts", json={"name": f"Bench {suffix}"})).json()
    member = (
        await client.post(
            "/v1/staff",
            json={"name": "Bench", "email": f"bench-{suffix}@example.com", "role": "technician"},
        )
    ).json()
    key = (
        await client.post("/v1/api-keys", json={"role": "technician", "staff_id": member["id"]})
    ).json()
    return str(account["id"]), str(key["token"])


async def run(bootstrap: str, database_url: str, requests: int = DEFAULT_REQUESTS) -> None:
    """Measure and print the three endpoints at each level, with their share of the baseline."""
    settings = await fresh_stack_settings(bootstrap, database_url)
    with tempfile.TemporaryDirectory() as logs:
        intake = ServiceProcess("intake", settings, Path(logs))
        intake.start()
        try:
            await intake.wait_ready()
            limits = httpx.Limits(
                max_connections=max(LEVELS), max_keepalive_connections=max(LEVELS)
            )
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(base_url=intake.url, headers=admin) as setup:
                account_id, token = await _setup(setup)
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                base_url=intake.url, headers=auth, limits=limits
            ) as client:

                async def bare(_: int) -> httpx.Response:
                    return await client.get("/healthz")

                async def whoami(_: int) -> httpx.Response:
                    return await client.get("/v1/me")

                async def open_ticket(n: int) -> httpx.Response:
                    body = {"account_id": account_id, "subject": f"bench {n}", "priority": "P3"}
                    return await client.post("/v1/tickets", json=body)

                async def open_ticket_once(n: int) -> httpx.Response:
                    body = {"account_id": account_id, "subject": f"keyed {n}", "priority": "P3"}
                    key = {"Idempotency-Key": uuid.uuid4().hex}
                    return await client.post("/v1/tickets", json=body, headers=key)

                endpoints = (
                    ("GET /healthz", bare),
                    ("GET /v1/me", whoami),
                    ("POST /v1/tickets", open_ticket),
                    ("POST +Idem-Key", open_ticket_once),
                )
                for _, call in endpoints:  # warm up connections and code paths
                    await _load(call, 50, 4)
                print("\nintake API vs a bare JSON endpoint of the same app (GET /healthz)")
                print(
                    f"{'concurrency':>11} {'endpoint':>16} {'req/s':>8} {'p50 ms':>8} "
                    f"{'p99 ms':>8} {'of bare':>8}"
                )
                for level in LEVELS:
                    base: Figures | None = None
                    for name, call in endpoints:
                        fig = await _load(call, requests, level)
                        base = base or fig
                        aim = AIMS.get(name)
                        note = f"   (aim at c=8: >= {aim:.0%})" if aim and level == 8 else ""
                        print(
                            f"{level:>11} {name:>16} {fig.rate:>8.0f} "
                            f"{fig.percentile(0.5):>8.1f} {fig.percentile(0.99):>8.1f} "
                            f"{fig.rate / base.rate:>8.0%}{note}"
                        )
                print(f"(aim: p99 at concurrency 8 under {P99_AIM_MS:.0f} ms)")
        finally:
            intake.stop()
