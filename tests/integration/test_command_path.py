"""The command path stays on the event loop (docs/adr/0007)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import pytest

from helpdesk.shared.settings import Settings
from tests.support import in_process

pytestmark = pytest.mark.integration


async def test_commands_hand_nothing_to_the_thread_pool(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the `Runtime` dependency was a plain function, which FastAPI runs in its thread
    pool: every command handed it to a worker thread and waited for the hand-off back, a third
    of a command's time on a busy 2-core machine. Now opening a ticket, commenting and logging
    time run on the event loop alone: nothing reaches the thread pool."""
    handed: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handed.append(getattr(func, "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    async with in_process("intake", settings) as intake:
        account = (await intake.http.post("/v1/accounts", json={"name": "Loop"})).json()["id"]
        monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
        opened = await intake.http.post(
            "/v1/tickets", json={"account_id": account, "subject": "Printer", "priority": "P3"}
        )
        assert opened.status_code == 201, opened.text
        ticket = opened.json()["id"]
        commented = await intake.http.post(f"/v1/tickets/{ticket}/comments", json={"body": "On it"})
        assert commented.status_code == 200, commented.text
        entry = {"minutes": 5, "work_type": "remote", "worked_at": datetime.now(UTC).isoformat()}
        logged = await intake.http.post(f"/v1/tickets/{ticket}/time-entries", json=entry)
        assert logged.status_code == 200, logged.text
    assert handed == []
