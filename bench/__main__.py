"""`python -m bench`: run every benchmark and print its figures (no pass/fail)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from bench import (
    billing_rating,
    command_path,
    deliveries,
    intake_api,
    outbox_relay,
    rebuild,
    sla_timers,
)


async def _all(
    bootstrap: str,
    database_url: str,
    messages: int,
    requests: int,
    events: int,
    entries: int,
    baseline_python: Path | None,
    only: str | None,
) -> None:
    if only == "command-path":
        await command_path.run(bootstrap, database_url, baseline_python=baseline_python)
        return
    await outbox_relay.run(bootstrap, database_url, messages)
    await rebuild.run(bootstrap, database_url, events)
    await billing_rating.run(bootstrap, database_url, entries)
    await sla_timers.run(bootstrap, database_url)
    await deliveries.run(bootstrap, database_url)
    await intake_api.run(bootstrap, database_url, requests)
    await command_path.run(bootstrap, database_url, baseline_python=baseline_python)


def main() -> None:
    """Parse the options, find a broker and a database, and run the benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=outbox_relay.DEFAULT_MESSAGES)
    parser.add_argument("--requests", type=int, default=intake_api.DEFAULT_REQUESTS)
    parser.add_argument("--events", type=int, default=rebuild.DEFAULT_EVENTS)
    parser.add_argument("--entries", type=int, default=billing_rating.DEFAULT_ENTRIES)
    parser.add_argument(
        "--baseline-python",
        type=Path,
        help="another checkout's .venv/bin/python: its stack is measured next to this one's",
    )
    parser.add_argument("--only", choices=["command-path"], help="run one benchmark only")
    args = parser.parse_args()
    counts = (
        args.messages,
        args.requests,
        args.events,
        args.entries,
        args.baseline_python,
        args.only,
    )
    bootstrap = os.environ.get("HELPDESK_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("DATABASE_URL")
    if bootstrap and database_url:
        asyncio.run(_all(bootstrap, database_url, *counts))
        return
    from helpdesk.deploy.testing import provision_test_infra, teardown_test_infra

    bootstrap, database_url = provision_test_infra()
    try:
        asyncio.run(_all(bootstrap, database_url, *counts))
    finally:
        teardown_test_infra()


if __name__ == "__main__":
    main()
