"""Helpers of billing's integration tests: accounts with agreements, back-dated tickets and
time entries through intake, and reads from billing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.intake.tests.integration._support import As, new_ticket, ok, run, unique
from tests.support import InProcessService, wait_for


@contextlib.contextmanager
def grace_hours(hours: float) -> Iterator[None]:
    """HELPDESK_BILLING_GRACE_HOURS while a billing spec is built in the block."""
    old = os.environ.get("HELPDESK_BILLING_GRACE_HOURS")
    os.environ["HELPDESK_BILLING_GRACE_HOURS"] = str(hours)
    try:
        yield
    finally:
        if old is None:
            del os.environ["HELPDESK_BILLING_GRACE_HOURS"]
        else:
            os.environ["HELPDESK_BILLING_GRACE_HOURS"] = old


@dataclass
class Stack:
    """Intake and billing in-process, and the bootstrap admin on intake."""

    intake: InProcessService
    billing: InProcessService
    admin: As

    def on_billing(self, caller: As) -> As:
        """The same caller, talking to billing."""
        return As(self.billing.http, caller.token)

    async def importer(self) -> As:
        """A key with the import role (it back-dates commands)."""
        key = ok(await self.admin.post("/v1/api-keys", {"role": "import"}), 201)
        return As(self.admin.http, key["token"])


def month_start(months_back: int, now: datetime | None = None) -> datetime:
    """00:00 UTC on the first of the month `months_back` before this one."""
    now = now or datetime.now(UTC)
    year, month = now.year, now.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat()


async def account_with(admin: As, agreement: dict[str, Any], **body: Any) -> dict[str, Any]:
    """A new account (UTC unless told) with `agreement`."""
    account: dict[str, Any] = ok(
        await admin.post("/v1/accounts", {"name": unique("acct"), "timezone": "UTC", **body}),
        201,
    )
    ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", agreement))
    return account


async def billing_contact(admin: As, account_id: str, roles: list[str]) -> As:
    """A contact of the account with `roles`, and a client with their key (on intake)."""
    contact = ok(
        await admin.post(
            f"/v1/accounts/{account_id}/contacts",
            {
                "name": unique("contact"),
                "email": f"{unique('c')}@example.com",
                "visibility": "account",
                "roles": roles,
            },
        ),
        201,
    )
    key = ok(
        await admin.post("/v1/api-keys", {"role": "contact", "contact_id": contact["id"]}), 201
    )
    return As(admin.http, key["token"])


async def ticket_at(importer: As, account_id: str, reported: datetime, **body: Any) -> str:
    """A ticket reported at `reported` (back-dated)."""
    ticket = await new_ticket(importer, account_id, reported_at=iso(reported), **body)
    return str(ticket["id"])


async def log(
    importer: As,
    ticket_id: str,
    minutes: int,
    worked_at: datetime,
    *,
    at: datetime,
    scope: str | None = None,
    work_type: str = "remote",
    after_hours: bool | None = False,
    solution_design: bool | None = None,
) -> None:
    """Log time on a ticket: worked at `worked_at`, recorded as of `at`. The technician's marks
    are sent unless None (`after_hours=None` lets billing classify by business hours)."""
    body: dict[str, Any] = {
        "minutes": minutes,
        "work_type": work_type,
        "worked_at": iso(worked_at),
        "occurred_at": iso(at),
    }
    marks = {"scope": scope, "after_hours": after_hours, "solution_design": solution_design}
    body.update({name: mark for name, mark in marks.items() if mark is not None})
    ok(await run(importer, ticket_id, "time-entries", body))


async def entries_seen(billing: InProcessService, ticket_id: str, count: int) -> None:
    """Wait until billing has stored `count` entries of the ticket."""
    from helpdesk.billing.adapters.tables import billing_entries

    async def probe() -> bool:
        async with billing.runtime.engine.connect() as conn:
            seen = await conn.scalar(
                sa.select(sa.func.count()).where(billing_entries.c.ticket_id == ticket_id)
            )
        return seen == count

    await wait_for(probe, timeout=20)


async def settled(caller: As, url: str, probe: Any, timeout: float = 20) -> Any:
    """GET `url` until `probe(body)` holds; the body."""

    async def check() -> Any:
        response = await caller.get(url)
        if response.status_code != 200:
            return None
        body = response.json()
        return body if probe(body) else None

    return await wait_for(check, timeout=timeout)


ONE_DAY = timedelta(days=1)


async def topic_types(bootstrap: str, topic: str, partitions: int) -> list[str]:
    """The `type` of every record on the topic, from the beginning to its current end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    types: list[str] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        read = 0
        while read < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    read += 1
                    headers = dict(record.headers or ())
                    types.append(headers.get("type", b"").decode())
    finally:
        await consumer.stop()
    return types
