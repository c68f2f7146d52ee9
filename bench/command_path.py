"""Command latency on the whole stack, against the bare endpoint and the database's own floor.

The four services run as real processes (uvicorn, one worker each, every consumer and relay
on), as `make up` runs them, on free ports and a fresh topic and database; this process is the
client: one keep-alive httpx connection per concurrent client. In one run, alternating rounds
so that a noisy machine slows each figure alike, it measures:

- the bare endpoint: intake's GET /healthz (same app and middlewares, no database);
- the floor: one INSERT + COMMIT on the same database over asyncpg (with fsync), which no
  command can beat;
- POST /v1/tickets, POST /v1/tickets/{id}/comments and POST /v1/tickets/{id}/time-entries,

each as req/s, p50 and p99, and as a share of both baselines (docs/adr/0007).

`--baseline-python PATH` (the interpreter of another checkout's .venv, e.g. the commit before
a change) runs a second stack from that checkout at the same time, and measures the two in
alternating rounds: a before/after comparison on one noisy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.intake_api import Figures
from helpdesk.shared.settings import Settings
from tests.support import ADMIN_TOKEN, ServiceProcess, fresh_database, fresh_stack_settings

SERVICES = ("intake", "sla_timer", "billing", "notifier")
LEVELS = (1, 8)
ROUNDS = 3
DEFAULT_REQUESTS = 300
#: The issue's aims (issue 25, point 1) for each command.
SHARE_AIM = 0.25  # of the bare endpoint's rate at concurrency 8
P50_AIM_MS = 10.0  # at concurrency 1
P99_AIM_MS = 50.0  # at concurrency 8
RESULTS = Path(__file__).parent / "results"

Call = Callable[[int], Awaitable[int]]


class _Service(ServiceProcess):
    """A service run by a given interpreter from a given checkout (the stack under test)."""

    def __init__(self, name: str, settings: Settings, log_dir: Path, python: Path) -> None:
        super().__init__(name, settings, log_dir)
        self._python = python
        # The checkout whose .venv holds `python`.
        self._checkout = python.parent.parent.parent

    def start(self) -> None:
        """Launch `python -m helpdesk.<name> serve` in the checkout."""
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [str(self._python), "-m", f"helpdesk.{self.name}", "serve"],
                env=self._env,
                cwd=self._checkout,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


async def _load(call: Call, requests: int, concurrency: int) -> Figures:
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker() -> None:
        for n in counter:
            started = time.perf_counter()
            status = await call(n)
            latencies.append(time.perf_counter() - started)
            if status >= 300:
                raise RuntimeError(f"answered {status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Figures(requests, time.perf_counter() - started, latencies)


def _merge(rounds: list[Figures]) -> Figures:
    return Figures(
        sum(f.requests for f in rounds),
        sum(f.seconds for f in rounds),
        [latency for f in rounds for latency in f.latencies],
    )


@contextlib.asynccontextmanager
async def _stack(bootstrap: str, database_url: str, python: Path, logs: Path) -> AsyncIterator[str]:
    """Run the four services of one checkout on a fresh topic and database; yield intake's URL.

    `make up`'s settings, not the tests' shorter poll intervals.
    """
    settings = await fresh_stack_settings(bootstrap, database_url)
    settings = settings.model_copy(update={"outbox_poll_ms": Settings().outbox_poll_ms})
    processes = [_Service(name, settings, logs, python) for name in SERVICES]
    for process in processes:
        process.start()
    try:
        for process in processes:
            await process.wait_ready()
        yield processes[0].url
    finally:
        for process in processes:
            process.stop()


def _commit(python: Path) -> str:
    """The commit checked out where `python`'s .venv is, "+dirty" with uncommitted changes."""
    git = ["git", "describe", "--always", "--dirty=+dirty"]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        done = subprocess.run(  # noqa: S603
            git, capture_output=True, text=True, check=True, cwd=python.parent.parent.parent
        )
        return done.stdout.strip()
    return "unknown"


async def run(
    bootstrap: str,
    database_url: str,
    requests: int = DEFAULT_REQUESTS,
    baseline_python: Path | None = None,
) -> None:
    """Measure and print every figure; keep them in bench/results/command-path-<time>.json."""
    stacks = {"": Path(sys.executable)}
    if baseline_python is not None:
        stacks = {"base ": baseline_python, "new ": Path(sys.executable)}
    floor_url = await fresh_database(database_url)
    floor_pool = await asyncpg.create_pool(
        floor_url.replace("postgresql+asyncpg", "postgresql"), min_size=1, max_size=max(LEVELS)
    )
    await floor_pool.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v text)")
    try:
        with tempfile.TemporaryDirectory() as logs:
            async with contextlib.AsyncExitStack() as running:
                urls = {
                    label: await running.enter_async_context(
                        _stack(bootstrap, database_url, python, Path(logs))
                    )
                    for label, python in stacks.items()
                }
                figures = await _measure(urls, floor_pool, requests)
    finally:
        await floor_pool.close()
    _report(figures, {label: _commit(python) for label, python in stacks.items()})


async def _commands(url: str) -> tuple[httpx.AsyncClient, dict[str, Call]]:
    """A keep-alive client on intake at `url`, and its bare endpoint and commands by name."""
    limits = httpx.Limits(max_connections=max(LEVELS), max_keepalive_connections=max(LEVELS))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    client = httpx.AsyncClient(base_url=url, headers=admin, limits=limits)
    account = (await client.post("/v1/accounts", json={"name": "Bench"})).json()["id"]
    tickets: list[str] = []

    async def bare(_: int) -> int:
        return (await client.get("/healthz")).status_code

    async def open_ticket(n: int) -> int:
        body = {"account_id": account, "subject": f"bench {n}", "priority": "P3"}
        answer = await client.post("/v1/tickets", json=body)
        tickets.append(answer.json()["id"])
        return answer.status_code

    async def comment(n: int) -> int:
        path = f"/v1/tickets/{tickets[n % len(tickets)]}/comments"
        return (await client.post(path, json={"body": f"comment {n}"})).status_code

    async def time_entry(n: int) -> int:
        # now: after the ticket was reported, and not in the future of the command
        body = {"minutes": 5, "work_type": "remote", "worked_at": datetime.now(UTC).isoformat()}
        path = f"/v1/tickets/{tickets[n % len(tickets)]}/time-entries"
        return (await client.post(path, json=body)).status_code

    return client, {
        "GET /healthz": bare,
        "POST /v1/tickets": open_ticket,
        "POST .../comments": comment,
        "POST .../time-entries": time_entry,
    }


async def _measure(
    urls: dict[str, str], floor_pool: asyncpg.Pool, requests: int
) -> dict[tuple[int, str], Figures]:
    async def floor(n: int) -> int:
        async with floor_pool.acquire() as conn:
            await conn.execute("INSERT INTO bench_floor (v) VALUES ($1)", f"row {n}")
        return 200

    endpoints: dict[str, Call] = {"INSERT+COMMIT": floor}
    clients = []
    for label, url in urls.items():
        client, calls = await _commands(url)
        clients.append(client)
        endpoints |= {f"{label}{name}": call for name, call in calls.items()}
    try:
        for call in endpoints.values():  # warm up connections and code paths
            await _load(call, 50, 4)
        rounds: dict[tuple[int, str], list[Figures]] = {}
        for _ in range(ROUNDS):
            for level in LEVELS:
                for name, call in endpoints.items():
                    figure = await _load(call, requests // ROUNDS, level)
                    rounds.setdefault((level, name), []).append(figure)
    finally:
        for client in clients:
            await client.aclose()
    return {key: _merge(value) for key, value in rounds.items()}


def _aims(name: str, level: int, row: dict[str, Any]) -> str:
    if "POST" not in name:
        return ""
    if level == 1:
        return f"p50<{P50_AIM_MS:.0f}:{'ok' if row['p50_ms'] < P50_AIM_MS else 'MISS'}"
    share = f">={SHARE_AIM:.0%} bare:{'ok' if row['of_bare'] >= SHARE_AIM else 'MISS'}"
    return f"{share} p99<{P99_AIM_MS:.0f}:{'ok' if row['p99_ms'] < P99_AIM_MS else 'MISS'}"


def _report(figures: dict[tuple[int, str], Figures], commits: dict[str, str]) -> None:
    labels = list(commits)
    print("\ncommand path on the whole stack (four services consuming), external client")
    print(
        f"{'conc':>4} {'endpoint':>27} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'of bare':>8} {'of floor':>8}"
    )
    rows = []
    for (level, name), fig in figures.items():
        # The floor belongs to no stack: its share of the bare endpoint is of the first one's.
        label = next((label for label in labels if name.startswith(label)), labels[0])
        bare, floor = figures[(level, f"{label}GET /healthz")], figures[(level, "INSERT+COMMIT")]
        row = {
            "concurrency": level,
            "endpoint": name,
            "rate": round(fig.rate, 1),
            "p50_ms": round(fig.percentile(0.5), 2),
            "p99_ms": round(fig.percentile(0.99), 2),
            "of_bare": round(fig.rate / bare.rate, 3),
            "of_floor": round(fig.rate / floor.rate, 3),
        }
        rows.append(row)
        print(
            f"{level:>4} {name:>27} {row['rate']:>7.0f} {row['p50_ms']:>7.1f} "
            f"{row['p99_ms']:>7.1f} {row['of_bare']:>8.0%} {row['of_floor']:>8.0%}  "
            + _aims(name, level, row)
        )
    print("(of bare: share of the same stack's GET /healthz rate; of floor: of INSERT+COMMIT)")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "commits": {label.strip() or "this": commit for label, commit in commits.items()},
        "measured_at": stamp,
        "figures": rows,
    }
    path = RESULTS / f"command-path-{stamp}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"(kept in {path})")
