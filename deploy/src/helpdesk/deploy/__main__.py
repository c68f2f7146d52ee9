"""`python -m helpdesk.deploy`: run the Helpdesk stack locally without Docker.

Subcommands::

    up [--foreground | --background]   Kafka, PostgreSQL, migrations, the four services
    down                               stop what `up --background` left running
    status                             what runs
    infra [--state-dir DIR --kafka-port P --controller-port C]
                                       only Kafka + PostgreSQL + topic, for tests and CI;
                                       prints HELPDESK_KAFKA_BOOTSTRAP=... and DATABASE_URL=...
    infra-down [--state-dir DIR]       stop what `infra` started
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from helpdesk.deploy._proc import DeployError, log
from helpdesk.deploy.mailsink import DEV_MAIL_PORT
from helpdesk.deploy.prometheus import DEV_PROMETHEUS_PORT
from helpdesk.deploy.stack import (
    DEV_CONTROLLER_PORT,
    DEV_KAFKA_PORT,
    PORTAL,
    SERVICES,
    Stack,
    dev_state_dir,
    up,
)
from helpdesk.deploy.testing import TEST_CONTROLLER_PORT, TEST_KAFKA_PORT, state_dir_for_tests
from helpdesk.shared.kafka import ensure_topic
from helpdesk.shared.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpdesk.deploy",
        description="Run the Helpdesk stack locally (Kafka from jars, embedded PostgreSQL).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up_cmd = commands.add_parser("up", help="start everything and print the URLs")
    mode = up_cmd.add_mutually_exclusive_group()
    mode.add_argument(
        "--foreground",
        dest="foreground",
        action="store_true",
        default=True,
        help="wait, and stop everything on Ctrl-C (default)",
    )
    mode.add_argument(
        "--background",
        dest="foreground",
        action="store_false",
        help="leave everything running and return (stop it with `down`)",
    )
    up_cmd.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for every /readyz (default 120)",
    )

    commands.add_parser("down", help="stop the services, Kafka and PostgreSQL of `up`")
    commands.add_parser("status", help="show what runs (exit code 1 unless all of it)")

    for name in ("up", "down", "status"):
        commands.choices[name].add_argument(
            "--state-dir", type=Path, default=None, help="default: .state/dev in the repo"
        )

    infra = commands.add_parser(
        "infra", help="start only Kafka + PostgreSQL + the topic; print the connection settings"
    )
    infra.add_argument("--state-dir", type=Path, default=None, help="default: .state/test")
    infra.add_argument("--kafka-port", type=int, default=TEST_KAFKA_PORT)
    infra.add_argument("--controller-port", type=int, default=TEST_CONTROLLER_PORT)
    infra.add_argument("--topic", default=None, help="default: $HELPDESK_TOPIC or helpdesk.events")
    infra.add_argument("--partitions", type=int, default=None, help="default: 12")

    for name, text in (
        ("rebuild", "replay the stream into one service's projection (it keeps running)"),
        ("retry-parked", "apply one service's parked events again after a fix"),
        ("dead-letters", "list one service's outbox rows that can never be published"),
    ):
        command = commands.add_parser(name, help=text)
        # The portal keeps no projection: nothing to rebuild or retry.
        replaying = [spec.name for spec in SERVICES if spec.name != PORTAL]
        command.add_argument("service", choices=replaying)
        command.add_argument("--state-dir", type=Path, default=None, help="default: .state/dev")

    commands.add_parser(
        "create-topic",
        help="create the event topic from HELPDESK_KAFKA_BOOTSTRAP / _TOPIC / _PARTITIONS",
    )

    infra_down = commands.add_parser("infra-down", help="stop what `infra` started")
    infra_down.add_argument("--state-dir", type=Path, default=None, help="default: .state/test")
    return parser


#: What `python -m helpdesk.<service>` runs against the local stack for an operator.
SERVICE_COMMANDS = frozenset({"rebuild", "retry-parked", "dead-letters"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m helpdesk.deploy`; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command in {"up", "down", "status", *SERVICE_COMMANDS}:
            stack = Stack(
                args.state_dir or dev_state_dir(),
                kafka_port=DEV_KAFKA_PORT,
                controller_port=DEV_CONTROLLER_PORT,
                prometheus_port=DEV_PROMETHEUS_PORT,
                mail_port=DEV_MAIL_PORT,
            )
            if args.command == "up":
                return up(stack, foreground=args.foreground, ready_timeout=args.ready_timeout)
            if args.command == "down":
                stack.down()
                return 0
            if args.command in SERVICE_COMMANDS:
                stack.service_command(args.service, args.command)
                return 0
            lines, all_up = stack.status_lines()
            print("\n".join(lines))
            return 0 if all_up else 1
        if args.command == "infra":
            stack = Stack(
                args.state_dir or state_dir_for_tests(),
                kafka_port=args.kafka_port,
                controller_port=args.controller_port,
                topic=args.topic,
                partitions=args.partitions,
            )
            infra = stack.start_infra()
            print(f"HELPDESK_KAFKA_BOOTSTRAP={infra.bootstrap}")
            print(f"DATABASE_URL={infra.database_url}")
            return 0
        if args.command == "create-topic":
            # What docker-compose's `migrate` job runs: the broker is another container.
            settings = Settings()
            asyncio.run(
                ensure_topic(
                    settings.kafka_bootstrap,
                    settings.topic,
                    settings.partitions,
                    replication_factor=settings.replication_factor,
                    min_insync_replicas=settings.min_insync_replicas,
                )
            )
            print(f"topic {settings.topic} ready ({settings.partitions} partitions)")
            return 0
        if args.command == "infra-down":
            Stack(args.state_dir or state_dir_for_tests()).stop_infra()
            return 0
    except DeployError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
