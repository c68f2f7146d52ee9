"""Fault injection across real processes: kill -9 a consumer, a broker, a replica.

Each test prints its figures (events, how many applied, duplicates, time to recover); run with
`-s` to see them.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from helpdesk.deploy._proc import free_port as free_low_port
from helpdesk.deploy.kafka import LocalKafka
from helpdesk.intake.adapters.tables import runtime as intake_tables
from helpdesk.shared.events import Envelope
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import runtime as sla_tables
from helpdesk.sla_timer.adapters.tables import sla_tickets
from tests.support import ServiceProcess, fresh_stack_settings, publish, ticket_opened, wait_for

pytestmark = pytest.mark.e2e

PARTITIONS = 12
Counter = collections.Counter[int]


# -- helpers -------------------------------------------------------------------------------------


def _tickets(count: int, accounts: int = 240, start: int = 0) -> list[Envelope]:
    """`count` ticket.opened envelopes, each its own ticket, over `accounts` accounts."""
    account_ids = [uuid.uuid4() for _ in range(accounts)]
    return [ticket_opened(account_ids[i % accounts], number=start + i) for i in range(count)]


async def _scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a service's /metrics as (name, labels, value)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics", timeout=5)).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


async def _metric(url: str, name: str, **labels: str) -> float:
    """One sample's value (0 if the series does not exist yet)."""
    for sample, sample_labels, value in await _scrape(url):
        if sample == name and sample_labels == labels:
            return value
    return 0.0


async def _owned(url: str) -> frozenset[int]:
    """The partitions a replica owns: its `helpdesk_consumer_lag{partition}` series."""
    return frozenset(
        int(labels["partition"])
        for name, labels, _ in await _scrape(url)
        if name == "helpdesk_consumer_lag"
    )


@dataclass
class Projection:
    """What the SLA timer's schema holds, for the exactly-once assertions."""

    rows: int
    distinct: int
    ticket_ids: set[uuid.UUID]
    processed: int
    offsets: dict[int, int] = field(default_factory=dict)


async def _sla_state(engine: AsyncEngine, topic: str) -> Projection:
    offsets = sla_tables.consumer_offsets
    async with engine.connect() as conn:
        rows = await conn.scalar(sa.select(sa.func.count()).select_from(sla_tickets))
        distinct = await conn.scalar(sa.select(sa.func.count(sa.distinct(sla_tickets.c.ticket_id))))
        ids = set((await conn.execute(sa.select(sla_tickets.c.ticket_id))).scalars())
        processed = await conn.scalar(
            sa.select(sa.func.count()).select_from(sla_tables.processed_events)
        )
        stored = dict(
            (
                await conn.execute(
                    sa.select(offsets.c.partition, offsets.c.next_offset).where(
                        offsets.c.consumer == "sla_timer", offsets.c.topic == topic
                    )
                )
            ).all()
        )
    return Projection(rows or 0, distinct or 0, ids, processed or 0, stored)


async def _count(engine: AsyncEngine, table: sa.Table, where: Any = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        stmt = stmt.where(where)
    async with engine.connect() as conn:
        return int(await conn.scalar(stmt) or 0)


async def _writing_transactions(engine: AsyncEngine) -> set[tuple[int, str]]:
    """(backend pid, xid) of other sessions' transactions in this database that have written."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT pid, backend_xid::text FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_xid IS NOT NULL"
            )
        )
        return {(int(pid), str(xid)) for pid, xid in rows}


def _all_waiting_on_client(engine: AsyncEngine) -> Any:
    """A probe: no other session of this database is running a statement right now.

    A backend of the frozen client may stay "active" without running anything: blocked writing
    a large result to the stopped client (wait event type Client), or waiting on a lock that the
    frozen process's other connection holds (type Lock). Neither can change what is committed.
    """

    async def probe() -> bool:
        async with engine.connect() as conn:
            return not await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state = 'active'"
                    " AND coalesce(wait_event_type, '') NOT IN ('Client', 'Lock')"
                )
            )

    return probe


def _ended(engine: AsyncEngine, transactions: set[tuple[int, str]]) -> Any:
    """A probe: every one of `transactions` has committed or rolled back.

    After a kill -9, the dead process's open transaction rolls back once its backend reads EOF
    (or commits, if the COMMIT was already on the wire): only then is "what it committed" final.
    """

    async def probe() -> bool:
        return not (await _writing_transactions(engine)) & transactions

    return probe


async def _xact_status(engine: AsyncEngine, transactions: set[tuple[int, str]]) -> list[str]:
    """committed / aborted / in progress, for each of `transactions` (recent xids only)."""
    statuses = []
    async with engine.connect() as conn:
        for _, xid in sorted(transactions):
            status = await conn.scalar(
                sa.text(
                    "SELECT pg_xact_status((((pg_snapshot_xmax(pg_current_snapshot())::text"
                    "::bigint >> 32) << 32) + CAST(:xid AS bigint))::text::xid8)"
                ),
                {"xid": int(xid)},
            )
            statuses.append(str(status))
    return statuses


async def _topic_records(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (its partitions' end offsets summed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The test's own connections to the stack's database."""
    engine = create_async_engine(settings.database_url)
    yield engine
    await engine.dispose()


# -- 1. kill -9 a consumer mid-batch -------------------------------------------------------------


async def test_consumer_killed_mid_batch_resumes_exactly_once(
    settings: Settings, engine: AsyncEngine, log_dir: Path
) -> None:
    events = 20_000
    envelopes = _tickets(events)
    first = ServiceProcess("sla_timer", settings, log_dir)
    first.start()
    second = ServiceProcess("sla_timer", settings, log_dir)
    try:
        await first.wait_ready()
        per_partition = await publish(settings.kafka_bootstrap, settings.topic, envelopes)

        assert first.process is not None
        pid = first.process.pid

        async def frozen_mid_batch() -> tuple[int, set[tuple[int, str]]] | None:
            """SIGSTOP the consumer while a batch transaction is open; SIGCONT if it was not.

            Frozen, the process can neither commit nor start another batch, so "mid-batch"
            is a fact when the SIGKILL comes, not a guess raced against the consumer.
            """
            if not 0 < await _count(engine, sla_tickets) < events:
                return None
            if not await _writing_transactions(engine):
                return None
            os.kill(pid, signal.SIGSTOP)
            # Its backends finish the statement in hand, then wait for the frozen client.
            await wait_for(_all_waiting_on_client(engine), timeout=10, interval=0.01)
            open_now = await _writing_transactions(engine)
            applied = await _count(engine, sla_tickets)
            if open_now and 0 < applied < events:
                return applied, open_now
            os.kill(pid, signal.SIGCONT)  # the batch committed just before the stop: again
            return None

        seen_at_kill, open_at_kill = await wait_for(frozen_mid_batch, timeout=120, interval=0.01)
        first.kill()
        await wait_for(_ended(engine, open_at_kill), timeout=30, interval=0.01)
        # What became of the batch transaction that was open when the process died.
        fate = await _xact_status(engine, open_at_kill)
        committed = await _count(engine, sla_tickets)

        restarted_at = time.monotonic()
        second.start()

        async def progressed() -> bool:
            return await _count(engine, sla_tickets) > committed

        await wait_for(progressed, timeout=120, interval=0.05)
        first_progress = time.monotonic() - restarted_at

        async def all_applied() -> bool:
            return await _count(engine, sla_tickets) >= events

        await wait_for(all_applied, timeout=180, interval=0.05)
        recovered = time.monotonic() - restarted_at
        await second.wait_ready()  # caught up: every applied batch is counted in its metrics
        consumed = await _metric(second.url, "helpdesk_events_consumed_total", type="ticket.opened")
        duplicates = await _metric(second.url, "helpdesk_duplicate_events_total")
        gaps = await _metric(second.url, "helpdesk_sequence_gaps_total")
        state = await _sla_state(engine, settings.topic)
    finally:
        if first.process is not None and first.process.poll() is None:
            os.kill(first.process.pid, signal.SIGCONT)  # a failure left it frozen
        first.stop()
        second.stop()
    print(
        f"\n[consumer kill -9] events={events} over {len(per_partition)} partitions; "
        f"rows seen at kill={seen_at_kill}, committed at kill={committed}, "
        f"batch transaction open at the kill: {', '.join(fate)}; "
        f"restart: first progress after {first_progress:.1f} s, all {events} applied after "
        f"{recovered:.1f} s; applied by the restarted process={consumed:.0f} "
        f"(expected {events - committed}), duplicates skipped={duplicates:.0f}, "
        f"sequence gaps={gaps:.0f}; rows={state.rows} distinct={state.distinct} "
        f"processed_events={state.processed} stored offsets sum={sum(state.offsets.values())}"
    )
    assert fate == ["aborted"] * len(open_at_kill)  # the open batch died with the process
    assert committed == seen_at_kill
    assert 0 < committed < events
    assert state.rows == events
    assert state.distinct == events
    assert state.ticket_ids == {e.ticket_id for e in envelopes}
    assert state.processed == events
    assert state.offsets == dict(per_partition)
    assert sum(state.offsets.values()) == events
    # Exactly once, not "at least once and deduplicated": what the dead process committed is
    # not applied again, and what it had not committed is applied by its successor.
    assert consumed == events - committed
    assert duplicates == 0
    assert gaps == 0


# -- 2. kill -9 the Kafka broker under load ------------------------------------------------------


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own (the shared one must never be killed)."""
    kafka = LocalKafka(
        tmp_path_factory.mktemp("kafka"), port=free_low_port(), controller_port=free_low_port()
    )
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


@dataclass
class Load:
    """A bounded stream of ticket POSTs to intake, and what came of them."""

    intake_url: str
    accounts: list[str]
    total: int
    deadline: float
    accepted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self, workers: int = 8) -> None:
        async with httpx.AsyncClient(
            base_url=self.intake_url,
            headers={"Authorization": "Bearer test-admin-token"},
            timeout=30,
        ) as client:
            await asyncio.gather(*(self._worker(client, w) for w in range(workers)))

    async def _worker(self, client: httpx.AsyncClient, worker: int) -> None:
        n = worker
        while len(self.accepted) < self.total and time.monotonic() < self.deadline:
            account = self.accounts[n % len(self.accounts)]
            n += 1
            try:
                response = await client.post(
                    "/v1/tickets",
                    json={"account_id": account, "subject": f"load {n}", "priority": "P3"},
                )
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
                continue
            if response.status_code == 201:
                body = response.json()
                self.accepted.append(str(body.get("ticket_id") or body["id"]))
            else:
                self.failures.append(f"{response.status_code} {response.text[:200]}")


async def test_broker_killed_under_load_loses_nothing(
    own_kafka: LocalKafka, infra: tuple[str, str], log_dir: Path
) -> None:
    _, database_url = infra
    settings = await fresh_stack_settings(own_kafka.bootstrap, database_url)
    engine = create_async_engine(settings.database_url)
    intake = ServiceProcess("intake", settings, log_dir)
    sla = ServiceProcess("sla_timer", settings, log_dir)
    outbox = intake_tables.outbox
    for service in (intake, sla):
        service.start()
    try:
        for service in (intake, sla):
            await service.wait_ready()
        async with intake.client() as client:
            accounts = []
            for i in range(PARTITIONS):
                created = await client.post("/v1/accounts", json={"name": f"Broker kill {i}"})
                assert created.status_code == 201, created.text
                accounts.append(str(created.json()["id"]))
        load = Load(intake.url, accounts, total=2500, deadline=time.monotonic() + 150)
        loading = asyncio.create_task(load.run())

        async def accepted(at_least: int) -> bool:
            if loading.done():
                loading.result()  # surfaces a crashed load loop
                raise AssertionError(f"load ended early: {len(load.accepted)} accepted")
            return len(load.accepted) >= at_least

        await wait_for(lambda: accepted(400), timeout=60)
        accepted_before = len(load.accepted)
        failures_before = len(load.failures)
        killed_at = time.monotonic()
        await asyncio.to_thread(own_kafka.kill)
        # The broker is down: intake must go on accepting tickets (a POST writes Postgres only).
        await wait_for(lambda: accepted(accepted_before + 400), timeout=60)
        async with engine.connect() as conn:
            backlog_at_restart = int(
                await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0
            )
            newest_at_restart = await conn.scalar(sa.select(sa.func.max(outbox.c.id)))
        restart_at = time.monotonic()
        await own_kafka.astart()
        up_at = time.monotonic()
        outage = up_at - killed_at
        accepted_while_down = len(load.accepted) - accepted_before
        failures_during_outage = len(load.failures) - failures_before

        async def backlog_published() -> bool:
            # Every row the outage left behind is gone (the load keeps adding new ones).
            return await _count(engine, outbox, outbox.c.id <= newest_at_restart) == 0

        await wait_for(backlog_published, timeout=120, interval=0.05)
        drain = time.monotonic() - up_at
        await loading
        load_ended = time.monotonic()

        async def drained() -> bool:
            return await _count(engine, outbox) == 0

        await wait_for(drained, timeout=120, interval=0.05)
        expected = set(load.accepted)

        async def all_in_sla() -> bool:
            return await _count(engine, sla_tickets) >= len(expected)

        await wait_for(all_in_sla, timeout=180, interval=0.1)
        caught_up = time.monotonic() - load_ended
        await sla.wait_ready()
        state = await _sla_state(engine, settings.topic)
        leftover = await _count(engine, outbox)
        duplicates = await _metric(sla.url, "helpdesk_duplicate_events_total")
        records = await _topic_records(own_kafka.bootstrap, settings.topic)
    finally:
        intake.stop()
        sla.stop()
        await engine.dispose()
    published = len(expected) + len(accounts)
    print(
        f"\n[broker kill -9] accepted={len(load.accepted)} tickets "
        f"(failed POSTs={len(load.failures)}, during the outage={failures_during_outage}); "
        f"broker down {outage:.1f} s (kill to ready; the restart itself took "
        f"{up_at - restart_at:.1f} s), {accepted_while_down} tickets accepted "
        f"while it was down, outbox backlog at restart={backlog_at_restart}; relay drained "
        f"{drain:.1f} s after the broker was ready; sla_timer had all tickets {caught_up:.1f} s "
        f"after the load ended; sla rows={state.rows} distinct={state.distinct}; records on the "
        f"stream={records} for {published} events (republished copies={records - published}), "
        f"duplicates skipped by sla_timer={duplicates:.0f}"
    )
    assert load.failures == []
    assert accepted_while_down >= 400
    assert leftover == 0
    assert state.rows == len(expected)
    assert state.distinct == len(expected)
    assert {str(t) for t in state.ticket_ids} == expected
    assert records >= published


# -- 3. two replicas; kill one; the other takes over ---------------------------------------------


async def test_replica_killed_its_partitions_are_taken_over(
    settings: Settings, engine: AsyncEngine, log_dir: Path
) -> None:
    replicas = [ServiceProcess("sla_timer", settings, log_dir) for _ in range(2)]
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            await replica.wait_ready()

        async def split() -> tuple[frozenset[int], frozenset[int]] | None:
            a, b = [await _owned(r.url) for r in replicas]
            if a and b and not a & b and len(a | b) == PARTITIONS:
                return a, b
            return None

        survivor_owned, victim_owned = await wait_for(split, timeout=60, interval=0.1)
        survivor, victim = replicas

        before = _tickets(6000, start=0)
        produced = await publish(settings.kafka_bootstrap, settings.topic, before)

        async def victim_busy() -> bool:
            return await _count(engine, sla_tickets, sla_tickets.c.partition.in_(victim_owned)) > 0

        await wait_for(victim_busy, timeout=60, interval=0.01)
        victim.kill()
        killed_at = time.monotonic()
        await wait_for(_ended(engine, await _writing_transactions(engine)), timeout=30)
        victim_applied = await _count(
            engine, sla_tickets, sla_tickets.c.partition.in_(victim_owned)
        )
        after = _tickets(6000, start=6000)
        produced += await publish(settings.kafka_bootstrap, settings.topic, after)
        events = len(before) + len(after)

        async def took_over() -> bool:
            return await _owned(survivor.url) == frozenset(range(PARTITIONS))

        await wait_for(took_over, timeout=60, interval=0.1)
        takeover = time.monotonic() - killed_at

        async def all_applied() -> bool:
            return await _count(engine, sla_tickets) >= events

        await wait_for(all_applied, timeout=120, interval=0.05)
        complete = time.monotonic() - killed_at
        await survivor.wait_ready()
        consumed = await _metric(
            survivor.url, "helpdesk_events_consumed_total", type="ticket.opened"
        )
        duplicates = await _metric(survivor.url, "helpdesk_duplicate_events_total")
        owned_at_end = await _owned(survivor.url)
        state = await _sla_state(engine, settings.topic)
    finally:
        for replica in replicas:
            replica.stop()
    print(
        f"\n[replica kill -9] split {sorted(survivor_owned)} | {sorted(victim_owned)}; "
        f"events={events} ({len(before)} before the kill, {len(after)} after); the killed "
        f"replica had applied {victim_applied}; survivor owned all {PARTITIONS} partitions "
        f"{takeover:.1f} s after the kill, every event applied after {complete:.1f} s; "
        f"survivor applied {consumed:.0f} (expected {events - victim_applied}), duplicates "
        f"skipped={duplicates:.0f}; rows={state.rows} distinct={state.distinct} "
        f"processed_events={state.processed}"
    )
    assert survivor_owned
    assert victim_owned
    assert owned_at_end == frozenset(range(PARTITIONS))
    assert state.rows == events
    assert state.distinct == events
    assert state.ticket_ids == {e.ticket_id for e in before + after}
    assert state.processed == events
    assert state.offsets == dict(produced)
    assert consumed == events - victim_applied
    assert duplicates == 0
