"""The consumer runtime applies each event once, and a rebuild reaches the same state."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from helpdesk.shared.db import table_digest
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import sla_tickets
from tests.support import in_process, publish, ticket_opened, wait_for

pytestmark = pytest.mark.integration


async def test_same_event_published_twice_is_applied_once(settings: Settings) -> None:
    envelope = ticket_opened(uuid.uuid4())
    await publish(settings.kafka_bootstrap, settings.topic, [envelope, envelope])
    async with in_process("sla_timer", settings) as sla:
        metrics = sla.runtime.metrics
        await wait_for(lambda: _value(metrics.duplicates_skipped._value.get()))
        async with sla.runtime.engine.connect() as conn:
            rows = await conn.scalar(sa.select(sa.func.count()).select_from(sla_tickets))
        consumed = metrics.events_consumed.labels("ticket.opened")._value.get()
        print(
            f"\npublished 2 copies: applied rows={rows}, consumed={consumed}, duplicates skipped=1"
        )
        assert rows == 1
        assert consumed == 1


async def _value(value: float) -> float:
    return value


async def test_rebuild_reaches_the_same_rows(settings: Settings) -> None:
    async with in_process("intake", settings) as intake, in_process("sla_timer", settings) as sla:
        account = (await intake.http.post("/v1/accounts", json={"name": "Acme"})).json()
        for i in range(30):
            response = await intake.http.post(
                "/v1/tickets",
                json={"account_id": account["id"], "subject": f"t{i}", "priority": "P3"},
            )
            assert response.status_code == 201

        async def all_tracked() -> bool:
            async with sla.runtime.engine.connect() as conn:
                return await conn.scalar(sa.select(sa.func.count()).select_from(sla_tickets)) == 30

        await wait_for(all_tracked)
        tables = sla.runtime.spec.projection.tables
        async with sla.runtime.engine.connect() as conn:
            before = await table_digest(conn, tables)
    # The services are stopped: rebuild from the stream.
    from helpdesk.shared.service import ServiceRuntime
    from tests.support import SPECS

    runtime = ServiceRuntime(SPECS["sla_timer"](), settings)
    try:
        read = await runtime.rebuild()
        async with runtime.engine.connect() as conn:
            after = await table_digest(conn, tables)
    finally:
        await runtime.engine.dispose()
    print(f"\nrebuild replayed {read} events; digest before {before[:12]} after {after[:12]}")
    assert read == 31  # account.opened + 30 ticket.opened
    assert after == before
