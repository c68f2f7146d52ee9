"""Kafka and PostgreSQL for a test session, wherever the tests run.

Use from a conftest.py:

    @pytest.fixture(scope="session")
    def infra() -> Iterator[tuple[str, str]]:
        yield provision_test_infra()
        teardown_test_infra()

The first of these that applies is used:

1. HELPDESK_KAFKA_BOOTSTRAP and DATABASE_URL are both set (CI, or `python -m helpdesk.deploy
   infra` run by hand): use them as they are, start nothing.
2. A Docker engine answers `docker info`: testcontainers (Kafka and PostgreSQL 18 images),
   removed again by teardown_test_infra().
3. Otherwise the local provisioning of helpdesk.deploy: state in `.state/test`, Kafka on
   19092/19093, so it never collides with the `make up` stack (9092/9093, `.state/dev`).
   A test broker and server that already run are reused, and teardown leaves them running for
   the next session (set HELPDESK_TEST_KEEP_INFRA=0 to stop them at the end; stop them by hand
   with `python -m helpdesk.deploy infra-down`).

HELPDESK_TEST_INFRA=env|docker|local forces one branch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpdesk.deploy._proc import DeployError, log, repo_root, run_sync

TEST_KAFKA_PORT = 19092
TEST_CONTROLLER_PORT = 19093
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # what testcontainers' KafkaContainer drives (KRaft)
POSTGRES_IMAGE = "postgres:18"


def state_dir_for_tests() -> Path:
    """`.state/test` under the repository root."""
    return repo_root() / ".state" / "test"


@dataclass
class _Session:
    kind: str
    bootstrap: str
    database_url: str
    containers: list[Any] = field(default_factory=list)


_session: _Session | None = None


def docker_available(timeout: float = 5.0) -> bool:
    """True if a Docker engine answers within `timeout` seconds."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"], capture_output=True, timeout=timeout, check=False
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """An inter-process lock, so parallel pytest processes (xdist, two terminals) do not race
    to format or start the same broker."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _topic() -> tuple[str, int]:
    return (
        os.environ.get("HELPDESK_TOPIC") or "helpdesk.events",
        int(os.environ.get("HELPDESK_PARTITIONS") or 12),
    )


def _provision_docker() -> _Session:
    # Imported only here: testcontainers is a dev dependency, and importing it talks to Docker.
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.9 had no community namespace
        from testcontainers.kafka import KafkaContainer
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
    postgres = PostgresContainer(POSTGRES_IMAGE, driver="asyncpg", dbname="helpdesk")
    session = _Session("docker", "", "", containers=[])
    try:
        kafka.start()
        session.containers.append(kafka)
        postgres.start()
        session.containers.append(postgres)
    except BaseException:
        for container in reversed(session.containers):
            with contextlib.suppress(Exception):
                container.stop()
        raise
    session.bootstrap = kafka.get_bootstrap_server()
    session.database_url = postgres.get_connection_url()
    return session


def _provision_local() -> _Session:
    from helpdesk.deploy.stack import Stack

    state_dir = state_dir_for_tests()
    topic, partitions = _topic()
    stack = Stack(
        state_dir,
        kafka_port=TEST_KAFKA_PORT,
        controller_port=TEST_CONTROLLER_PORT,
        topic=topic,
        partitions=partitions,
    )
    with _exclusive(state_dir / ".provision.lock"):
        infra = stack.start_infra()  # reattaches to a running broker and server
    return _Session("local", infra.bootstrap, infra.database_url)


def provision_test_infra() -> tuple[str, str]:
    """Kafka bootstrap servers and an asyncpg SQLAlchemy URL for this test session.

    Idempotent within a process: a second call returns the same pair.
    """
    global _session
    if _session is not None:
        return _session.bootstrap, _session.database_url
    forced = os.environ.get("HELPDESK_TEST_INFRA", "").strip().lower()
    given_bootstrap = os.environ.get("HELPDESK_KAFKA_BOOTSTRAP")
    given_db = os.environ.get("DATABASE_URL")
    if forced == "env" or (not forced and given_bootstrap and given_db):
        if not (given_bootstrap and given_db):
            raise DeployError(
                "HELPDESK_TEST_INFRA=env needs HELPDESK_KAFKA_BOOTSTRAP and DATABASE_URL"
            )
        _session = _Session("env", given_bootstrap, given_db)
    elif forced == "docker" or (not forced and docker_available()):
        log("test infrastructure: Docker (testcontainers)")
        _session = _provision_docker()
        topic, partitions = _topic()
        from helpdesk.shared.kafka import ensure_topic

        run_sync(ensure_topic(_session.bootstrap, topic, partitions))
    elif forced in {"", "local"}:
        _session = _provision_local()
    else:
        raise DeployError(f"HELPDESK_TEST_INFRA={forced!r}: expected env, docker or local")
    return _session.bootstrap, _session.database_url


def provisioned_kind() -> str | None:
    """Which branch provision_test_infra() took in this process: env, docker, local, or None."""
    return _session.kind if _session is not None else None


def teardown_test_infra() -> None:
    """Release what provision_test_infra() set up: containers are removed; a local broker and
    server stay up for the next session unless HELPDESK_TEST_KEEP_INFRA=0."""
    global _session
    session, _session = _session, None
    if session is None:
        return
    if session.kind == "docker":
        for container in reversed(session.containers):
            with contextlib.suppress(Exception):
                container.stop()
    elif session.kind == "local" and os.environ.get("HELPDESK_TEST_KEEP_INFRA", "1") == "0":
        from helpdesk.deploy.stack import Stack

        Stack(state_dir_for_tests()).stop_infra()
