"""One intake + billing stack for the billing integration tests here.

Starting services costs seconds, so the tests share one stack and isolate themselves by their
own accounts. Its grace period is far longer than any back-dated month the tests use, so no
invoice becomes final under them; the finalisation test runs a stack of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helpdesk.shared.settings import Settings
from services.billing.tests.integration._support import Stack, grace_hours
from services.intake.tests.integration._support import As
from tests.support import ADMIN_TOKEN, in_process
from tests.support.stack import new_stack

#: This package's topic and database.
stack_settings = pytest.fixture(scope="package", name="stack_settings")(new_stack)


@pytest.fixture(scope="package")
async def stack(stack_settings: Settings) -> AsyncIterator[Stack]:
    """Intake and billing in-process (billing with a grace period of ten years)."""
    async with in_process("intake", stack_settings) as intake:
        with grace_hours(24 * 3650):
            billing_service = in_process("billing", stack_settings)
            billing = await billing_service.__aenter__()
        try:
            yield Stack(intake, billing, As(intake.http, ADMIN_TOKEN))
        finally:
            await billing_service.__aexit__(None, None, None)
