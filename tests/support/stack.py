"""Fixtures and probes of one in-process stack per test module: its own topic and database,
intake, the SLA timer, the bootstrap admin and a history-import key.

A pytest plugin (the root conftest lists it): a module uses these by naming them, and a module or
conftest that defines a fixture of the same name gets its own instead. Starting a service costs
seconds (consumer group join), so the tests of a module share one and isolate themselves with
accounts of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import As
from tests.support import ADMIN_TOKEN, InProcessService, fresh_stack_settings, in_process


async def new_stack(infra: tuple[str, str]) -> Settings:
    """Settings of a stack of its own: a topic and a database."""
    bootstrap, database_url = infra
    return await fresh_stack_settings(bootstrap, database_url)


async def running_intake(stack: Settings) -> AsyncIterator[InProcessService]:
    """Intake in-process: accounts, agreements, keys and tickets go through its API."""
    async with in_process("intake", stack) as service:
        yield service


def bootstrap_admin(intake: InProcessService) -> As:
    """The bootstrap admin, on intake."""
    return As(intake.http, ADMIN_TOKEN)


# One stack per module; a package that shares one makes these fixtures at package scope from
# the same functions (intake's and billing's conftest).
stack = pytest.fixture(scope="module", name="stack")(new_stack)
intake = pytest.fixture(scope="module", name="intake")(running_intake)
admin = pytest.fixture(scope="module", name="admin")(bootstrap_admin)


@pytest.fixture(scope="module")
async def sla(stack: Settings, intake: InProcessService) -> AsyncIterator[InProcessService]:
    """The SLA timer in-process, next to intake."""
    async with in_process("sla_timer", stack) as service:
        yield service


@pytest.fixture(scope="module")
async def importer(admin: As) -> As:
    """A history-import key, on intake (back-dated tickets and events)."""
    key = (await admin.post("/v1/api-keys", {"role": "import"})).json()
    return As(admin.http, key["token"])


def iso(at: datetime) -> str:
    """An instant as the API takes it."""
    return at.isoformat()


def instant(text: str) -> datetime:
    """An instant as the API shows it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sla_view(
    sla: InProcessService, caller: As, ticket_id: str, ready: Callable[[Any], bool] = bool
) -> Callable[[], Awaitable[Any]]:
    """A probe for `wait_for`: the ticket's SLA view once `ready` holds for it."""

    async def probe() -> Any:
        response = await sla.http.get(
            f"/v1/tickets/{ticket_id}/sla", headers={"Authorization": f"Bearer {caller.token}"}
        )
        if response.status_code != 200:
            return None
        view = response.json()
        return view if ready(view) else None

    return probe
