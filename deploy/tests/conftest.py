"""Fixtures of the deploy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpdesk.deploy.testing import provision_test_infra, teardown_test_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, DATABASE_URL) for the session: env, testcontainers or local."""
    yield provision_test_infra()
    teardown_test_infra()
