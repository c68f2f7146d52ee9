"""The per-ticket seq check: a ticket event that is not its ticket's last seq + 1 is held back
until the gap fills (with an alert), never applied out of order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from helpdesk.shared.events import Actor, Envelope, registry
from helpdesk.shared.settings import Settings
from helpdesk.sla_timer.adapters.tables import runtime as sla_runtime_tables
from tests.support import InProcessService, in_process, publish, ticket_opened, wait_for

pytestmark = pytest.mark.integration


def _unhandled(
    type_: str, account_id: uuid.UUID, ticket_id: uuid.UUID, seq: int, event_id: uuid.UUID
) -> Envelope:
    """A ticket event of a type the consumer does not handle (so it never decodes the body)."""
    now = datetime.now(UTC)
    return Envelope(
        event_id=event_id,
        type=type_,
        version=1,
        occurred_at=now,
        recorded_at=now,
        account_id=account_id,
        ticket_id=ticket_id,
        seq=seq,
        actor=Actor(type="system", id="test"),
        correlation_id="c",
        payload={},
    )


def _skipped_type(service: InProcessService) -> str:
    """A ticket event type the SLA timer does not handle: one a newer producer might add (the
    SLA timer folds every ticket type this build registers)."""
    type_ = "ticket.annotated_by_a_newer_build"
    assert type_ not in registry.types()
    assert not service.runtime.consumer.applier.handles_type(type_)
    return type_


async def _scrape(service: InProcessService) -> dict[str, float]:
    """The service's /metrics as {sample name: value} (unlabelled samples only)."""
    text = (await service.http.get("/metrics")).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                samples[sample.name] = sample.value
    return samples


async def _wait_offsets(service: InProcessService, topic: str, records: int) -> None:
    """Wait until the stored offsets cover `records` records (every one was processed)."""
    offsets = sla_runtime_tables.consumer_offsets

    async def stored() -> bool:
        async with service.runtime.engine.connect() as conn:
            total: Any = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(offsets.c.next_offset), 0)).where(
                    offsets.c.consumer == "sla_timer", offsets.c.topic == topic
                )
            )
        return int(total) == records

    await wait_for(stored, timeout=30)


async def test_seq_3_after_seq_1_is_held_until_seq_2_arrives(settings: Settings) -> None:
    account = uuid.uuid4()
    gapped, orderly = uuid.uuid4(), uuid.uuid4()
    missing = ticket_opened(account, ticket_id=gapped, seq=2)
    envelopes = [
        ticket_opened(account, ticket_id=orderly, seq=1),
        ticket_opened(account, ticket_id=orderly, seq=2),  # last + 1: no alert
        ticket_opened(account, ticket_id=gapped, seq=1),
        ticket_opened(account, ticket_id=gapped, seq=3),  # seq 2 missing: held, one alert
    ]
    processed = sla_runtime_tables.processed_events
    sequence = sla_runtime_tables.ticket_sequence
    parked = sla_runtime_tables.parked_events

    async def state(sla: InProcessService) -> tuple[int, dict[Any, Any], list[Any]]:
        async with sla.runtime.engine.connect() as conn:
            claimed = await conn.scalar(sa.select(sa.func.count()).select_from(processed))
            last_seq = dict(
                (await conn.execute(sa.select(sequence.c.ticket_id, sequence.c.last_seq))).all()
            )
            held = (await conn.execute(sa.select(parked.c.seq, parked.c.reason))).all()
        return int(claimed or 0), last_seq, [tuple(row) for row in held]

    async with in_process("sla_timer", settings) as sla:
        before = (await _scrape(sla)).get("helpdesk_sequence_gaps_total")
        await publish(settings.kafka_bootstrap, settings.topic, envelopes)
        await _wait_offsets(sla, settings.topic, len(envelopes))
        gaps = (await _scrape(sla))["helpdesk_sequence_gaps_total"]
        claimed, last_seq, held = await state(sla)
        ready = await sla.http.get("/readyz")
        await publish(settings.kafka_bootstrap, settings.topic, [missing])
        await _wait_offsets(sla, settings.topic, len(envelopes) + 1)
        claimed_after, last_after, held_after = await state(sla)
    print(
        f"\nseq 1,2 and seq 1,3: applied={claimed}, gaps {before} -> {gaps}, held={held}; "
        f"after seq 2 arrived: applied={claimed_after}, last seq {sorted(last_after.values())}"
    )
    assert before == 0
    assert gaps == 1
    assert claimed == len(envelopes) - 1  # seq 3 is not applied out of order
    assert last_seq == {orderly: 2, gapped: 1}
    assert held == [(3, "held")]
    assert ready.json()["checks"]["no_parked_events"] is False
    assert claimed_after == len(envelopes) + 1  # seq 2, then the held seq 3
    assert last_after == {orderly: 2, gapped: 3}
    assert held_after == []


async def test_ticket_events_the_service_does_not_handle_still_count_in_the_sequence(
    settings: Settings,
) -> None:
    """sla_timer skips most ticket.* types unparsed; their seq still advances the ticket's.

    Without that, every handled event after an unhandled one would raise a false alarm.
    A republished copy of a skipped event (the relay is at-least-once) is no alarm either;
    a real hole is.
    """
    account, ticket = uuid.uuid4(), uuid.uuid4()
    republished = uuid.uuid4()
    async with in_process("sla_timer", settings) as sla:
        skipped_type = _skipped_type(sla)
        orderly = [
            ticket_opened(account, ticket_id=ticket, seq=1),
            _unhandled(skipped_type, account, ticket, 2, republished),
            ticket_opened(account, ticket_id=ticket, seq=3),  # follows seq 2: no alert
            _unhandled(skipped_type, account, ticket, 2, republished),  # the relay's 2nd copy
        ]
        await publish(settings.kafka_bootstrap, settings.topic, orderly)
        await _wait_offsets(sla, settings.topic, len(orderly))
        gaps_orderly = (await _scrape(sla))["helpdesk_sequence_gaps_total"]
        hole = _unhandled(skipped_type, account, ticket, 5, uuid.uuid4())  # seq 4 missing
        await publish(settings.kafka_bootstrap, settings.topic, [hole])
        await _wait_offsets(sla, settings.topic, len(orderly) + 1)
        gaps_hole = (await _scrape(sla))["helpdesk_sequence_gaps_total"]
        sequence = sla_runtime_tables.ticket_sequence
        async with sla.runtime.engine.connect() as conn:
            last = await conn.scalar(
                sa.select(sequence.c.last_seq).where(sequence.c.ticket_id == ticket)
            )
    print(
        f"\nseq 1 (opened), 2 ({skipped_type}, skipped), 3 (opened), 2 again: "
        f"helpdesk_sequence_gaps_total={gaps_orderly}; then seq 5 (skipped type): "
        f"{gaps_hole}; last seq={last}"
    )
    assert gaps_orderly == 0
    assert gaps_hole == 1
    assert last == 5


async def test_events_applied_before_they_came_back_still_count_in_the_sequence(
    settings: Settings,
) -> None:
    """The writing service applies its own events at once (apply_own claims their ids).

    When the relay's copies come back they are skipped as duplicates, and their seq still
    advances the ticket's: the writer's next event of a type it does not handle is no gap.
    """
    account, ticket = uuid.uuid4(), uuid.uuid4()
    own = [
        ticket_opened(account, ticket_id=ticket, seq=1),
        ticket_opened(account, ticket_id=ticket, seq=3),
    ]
    async with in_process("sla_timer", settings) as sla:
        skipped_type = _skipped_type(sla)
        async with sla.runtime.engine.begin() as conn:
            await conn.execute(
                sla_runtime_tables.processed_events.insert(),
                [{"event_id": e.event_id} for e in own],
            )
        envelopes = [
            own[0],
            _unhandled(skipped_type, account, ticket, 2, uuid.uuid4()),
            own[1],
            _unhandled(skipped_type, account, ticket, 4, uuid.uuid4()),
        ]
        await publish(settings.kafka_bootstrap, settings.topic, envelopes)
        await _wait_offsets(sla, settings.topic, len(envelopes))
        samples = await _scrape(sla)
        sequence = sla_runtime_tables.ticket_sequence
        async with sla.runtime.engine.connect() as conn:
            last = await conn.scalar(
                sa.select(sequence.c.last_seq).where(sequence.c.ticket_id == ticket)
            )
    gaps = samples["helpdesk_sequence_gaps_total"]
    duplicates = samples["helpdesk_duplicate_events_total"]
    print(
        f"\nseq 1 (own, claimed), 2 ({skipped_type}), 3 (own, claimed), 4 ({skipped_type}): "
        f"duplicates skipped={duplicates}, helpdesk_sequence_gaps_total={gaps}, last seq={last}"
    )
    assert duplicates == 2
    assert gaps == 0
    assert last == 4
