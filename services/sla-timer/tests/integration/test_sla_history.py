"""The SLA timer's stored ticket history takes each ticket event once, even if its dedup mark
is gone (issue 20, point 5: marks were once pruned by a clock that could jump ahead)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from helpdesk.shared.context import Context, system_actor
from helpdesk.shared.db import migrate
from helpdesk.shared.events import decode
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import sla_tickets
from helpdesk.sla_timer.main import build_spec
from tests.support import ticket_opened
from tests.support.tickets import reply

pytestmark = pytest.mark.integration


async def test_a_ticket_event_applied_twice_is_in_the_history_once(settings: Settings) -> None:
    """Before, a copy applied again (its mark pruned) was appended a second time."""
    spec = build_spec()
    await migrate(settings.database_url, spec.metadata, spec.migrations)
    runtime = ServiceRuntime(spec, settings)
    account, ticket = uuid.uuid4(), uuid.uuid4()
    opened = ticket_opened(account, ticket_id=ticket)
    now = datetime.now(UTC)
    comment = Context(system_actor("test"), now, now).event(
        reply(), account_id=account, ticket_id=ticket, seq=2
    )
    try:
        for _ in range(2):  # the second time as a copy whose dedup mark was pruned
            async with runtime.unit_of_work() as uow:
                await runtime.projection.dispatch(uow, [decode(opened.to_bytes()), comment])
        async with runtime.engine.connect() as conn:
            history = await conn.scalar(
                sa.select(sla_tickets.c.history).where(sla_tickets.c.ticket_id == ticket)
            )
    finally:
        await runtime.engine.dispose()
    assert history is not None
    assert [item["type"] for item in history] == ["ticket.opened", "ticket.commented"]
