"""`python -m bench`: run every benchmark and print its figures (no pass/fail)."""

from __future__ import annotations

import argparse
import asyncio
import os

from bench.outbox_relay import DEFAULT_MESSAGES, run


def main() -> None:
    """Parse the options, find a broker and a database, and run the benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    args = parser.parse_args()
    bootstrap = os.environ.get("HELPDESK_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("DATABASE_URL")
    if bootstrap and database_url:
        asyncio.run(run(bootstrap, database_url, args.messages))
        return
    from helpdesk.deploy.testing import provision_test_infra, teardown_test_infra

    bootstrap, database_url = provision_test_infra()
    try:
        asyncio.run(run(bootstrap, database_url, args.messages))
    finally:
        teardown_test_infra()


if __name__ == "__main__":
    main()
