"""One intake stack (topic, database, in-process service) for every integration test here.

Starting a service costs seconds (consumer group join), so the tests of this package share one
and isolate themselves by creating their own accounts, staff and keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import As
from tests.support import ADMIN_TOKEN, InProcessService, fresh_stack_settings, in_process


@pytest.fixture(scope="package")
async def stack(infra: tuple[str, str]) -> Settings:
    """Settings of this package's stack: its own topic and database."""
    bootstrap, database_url = infra
    return await fresh_stack_settings(bootstrap, database_url)


@pytest.fixture(scope="package")
async def intake(stack: Settings) -> AsyncIterator[InProcessService]:
    """Intake running in-process on the package's stack."""
    async with in_process("intake", stack) as service:
        yield service


@pytest.fixture(scope="package")
def admin(intake: InProcessService) -> As:
    """The bootstrap admin."""
    return As(intake.http, ADMIN_TOKEN)
