"""Session-wide fixtures: one Kafka broker and one PostgreSQL server for the whole run.

Where they come from is decided by helpdesk.deploy.testing (environment, testcontainers, or
the local no-Docker provisioning on ports that never collide with `make up`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpdesk.deploy.testing import provision_test_infra, teardown_test_infra
from helpdesk.shared.settings import Settings
from tests.support import fresh_stack_settings

# `stack`, `intake`, `sla`, `admin`, `importer`: one in-process stack per test module.
pytest_plugins = ("tests.support.stack",)


@pytest.fixture(scope="session")
def infra() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, PostgreSQL URL) shared by every test of the session."""
    yield provision_test_infra()
    teardown_test_infra()


@pytest.fixture
async def settings(infra: tuple[str, str]) -> Settings:
    """Settings of an isolated stack: a topic and a database of this test's own."""
    bootstrap, database_url = infra
    return await fresh_stack_settings(bootstrap, database_url)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Where service processes of this test write their logs."""
    return tmp_path
