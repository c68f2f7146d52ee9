"""Each service's rebuild rate against the raw drain rate of the same stream, in one run.

A fresh topic gets a realistic history: accounts with the four-tier agreement, then tickets
whose life is opened, triaged, a public comment, a time entry and resolved (five events each,
seq 1..5). Then:
(a) raw: an AIOKafkaConsumer outside any group drains the topic with getmany (no decoding);
(b) each service's `ServiceRuntime.rebuild()` (shadow tables, per-batch commits, swap) over the
    same topic into its own fresh database.

Target (issue 7): every rebuild at 25 % or more of the raw drain rate. Figures only.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel
from sqlalchemy.engine import make_url

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from bench.outbox_relay import PARTITIONS, Rate, _drop_database
from helpdesk.shared.agreements import get_preset
from helpdesk.shared.contracts.accounts import AccountOpened, AgreementSet
from helpdesk.shared.contracts.tickets import (
    TicketCommented,
    TicketOpened,
    TicketResolved,
    TicketTimeLogged,
    TicketTriaged,
)
from helpdesk.shared.events import Actor, Envelope, new_envelope
from helpdesk.shared.kafka import ensure_topic, reliable_producer
from helpdesk.shared.service import ServiceRuntime, ServiceSpec, tune_garbage_collection
from helpdesk.shared.settings import Settings
from tests.support import SPECS, fresh_stack_settings

DEFAULT_EVENTS = 200_000
ACCOUNTS = 200
TARGET = 0.25
STAFF = Actor(type="staff", id="bench")


def history(events: int) -> list[Envelope]:
    """About `events` envelopes: per account opened + agreement, then 5-event ticket lives."""
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    agreement = get_preset("four_tier_24x7")
    assert agreement is not None
    document = agreement.agreement.model_dump(mode="json")
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    out: list[Envelope] = []
    for index, account in enumerate(accounts):
        out.append(
            wrap(
                AccountOpened(
                    account_id=account,
                    number=f"AC-{index}",
                    name=f"Account {index}",
                    timezone="Europe/Amsterdam",
                ),
                account,
                start,
            )
        )
        out.append(
            wrap(AgreementSet(account_id=account, version=1, agreement=document), account, start)
        )
    tickets = max(1, (events - len(out)) // 5)
    for number in range(tickets):
        account = accounts[number % ACCOUNTS]
        ticket = uuid.uuid4()
        opened_at = start + timedelta(minutes=number)
        for seq, (at, payload) in enumerate(ticket_life(ticket, number, account, opened_at), 1):
            out.append(wrap(payload, account, at, ticket, seq))
    return out


def ticket_life(
    ticket: uuid.UUID, number: int, account: uuid.UUID, at: datetime
) -> list[tuple[datetime, BaseModel]]:
    """Opened, triaged, answered, 25 minutes worked, resolved: ten minutes apart."""
    step = [at + timedelta(minutes=10 * i) for i in range(5)]
    return [
        (
            step[0],
            TicketOpened(
                ticket_id=ticket,
                number=f"HD-{number:06d}",
                account_id=account,
                subject="VPN drops at the Rotterdam office",
                description="Since this morning the VPN drops every few minutes.",
                channel="email",
                priority="P2",
                affected_users=25,
                reported_at=step[0],
            ),
        ),
        (
            step[1],
            TicketTriaged(priority="P2", previous_priority="P2", kind="incident", scope="in"),
        ),
        (
            step[2],
            TicketCommented(
                comment_id=uuid.uuid4(),
                body="Looking into it now.",
                public=True,
                by_staff=True,
                author="staff:bench",
            ),
        ),
        (
            step[3],
            TicketTimeLogged(
                entry_id=uuid.uuid4(),
                minutes=25,
                work_type="remote",
                scope="out",
                after_hours=False,
                worked_at=step[3],
                technician="bob",
                kind="incident",
            ),
        ),
        (step[4], TicketResolved(resolution="fix", summary="Replaced the edge router's config.")),
    ]


def wrap(
    payload: BaseModel,
    account: uuid.UUID,
    at: datetime,
    ticket: uuid.UUID | None = None,
    seq: int | None = None,
) -> Envelope:
    return new_envelope(
        payload,
        account_id=account,
        actor=STAFF,
        occurred_at=at,
        recorded_at=at,
        correlation_id="bench",
        ticket_id=ticket,
        seq=seq,
    )


async def produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    """Put the history on the topic, in order per account."""
    producer = reliable_producer(bootstrap)
    await producer.start()
    try:
        for begin in range(0, len(envelopes), 5000):
            futures = [
                await producer.send(
                    topic, e.to_bytes(), key=str(e.account_id).encode(), headers=e.headers()
                )
                for e in envelopes[begin : begin + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_drain(bootstrap: str, topic: str) -> Rate:
    """(a) getmany over every partition to the end, records counted, nothing decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        read = 0
        started = time.perf_counter()
        while read < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            read += sum(len(records) for records in batches.values())
        return Rate(read, time.perf_counter() - started)
    finally:
        await consumer.stop()


async def rebuild_rate(spec: ServiceSpec, settings: Settings) -> Rate:
    """(b) One service's rebuild over the whole topic."""
    runtime = ServiceRuntime(spec, settings)
    try:
        started = time.perf_counter()
        read = await runtime.rebuild()
        return Rate(read, time.perf_counter() - started)
    finally:
        await runtime.engine.dispose()


async def run(bootstrap: str, database_url: str, events: int = DEFAULT_EVENTS) -> None:
    """Build the history, then print the raw drain rate and every service's rebuild rate."""
    envelopes = history(events)
    topic = f"bench.rebuild.{uuid.uuid4().hex[:8]}"
    await ensure_topic(bootstrap, topic, PARTITIONS)
    await produce(bootstrap, topic, envelopes)
    print(f"rebuild bench: {len(envelopes)} events ({ACCOUNTS} accounts, 5-event ticket lives)")
    # Measured as a service process runs: without the generated history on the heap (every
    # garbage collection would rescan it) and with the collector set up as `run_cli` does.
    del envelopes
    gc.collect()
    tune_garbage_collection()
    raw = await raw_drain(bootstrap, topic)
    print(f"  (a) raw getmany drain: {raw.per_second:>9,.0f} events/s ({raw.seconds:.2f} s)")
    for name, make_spec in SPECS.items():
        settings = await fresh_stack_settings(bootstrap, database_url)
        settings = settings.model_copy(update={"topic": topic})
        database = make_url(settings.database_url).database or ""
        try:
            rate = await rebuild_rate(make_spec(), settings)
        finally:
            await _drop_database(database_url, database)
        ratio = rate.per_second / raw.per_second
        verdict = "meets" if ratio >= TARGET else "BELOW"
        print(
            f"  (b) {name:<9} rebuild: {rate.per_second:>9,.0f} events/s ({rate.seconds:.2f} s) "
            f"= {ratio:.0%} of raw (target >= {TARGET:.0%}: {verdict})"
        )
