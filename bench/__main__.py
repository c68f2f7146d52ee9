"""`python -m bench`: run every benchmark and print its figures (no pass/fail)."""

from __future__ import annotations

import argparse
import asyncio
import os

from bench import billing_rating, deliveries, intake_api, outbox_relay, rebuild, sla_timers


async def _all(
    bootstrap: str, database_url: str, messages: int, requests: int, events: int, entries: int
) -> None:
    await outbox_relay.run(bootstrap, database_url, messages)
    await rebuild.run(bootstrap, database_url, events)
    await billing_rating.run(bootstrap, database_url, entries)
    await sla_timers.run(bootstrap, database_url)
    await deliveries.run(bootstrap, database_url)
    await intake_api.run(bootstrap, database_url, requests)


def main() -> None:
    """Parse the options, find a broker and a database, and run the benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=outbox_relay.DEFAULT_MESSAGES)
    parser.add_argument("--requests", type=int, default=intake_api.DEFAULT_REQUESTS)
    parser.add_argument("--events", type=int, default=rebuild.DEFAULT_EVENTS)
    parser.add_argument("--entries", type=int, default=billing_rating.DEFAULT_ENTRIES)
    args = parser.parse_args()
    counts = (args.messages, args.requests, args.events, args.entries)
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
