"""The event contracts: a golden sample per type and version, and upcasting of old versions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel, ValidationError

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from helpdesk.shared.contracts.accounts import AccountUpdated
from helpdesk.shared.events import (
    Actor,
    Envelope,
    EventRegistry,
    UnknownEventTypeError,
    decode,
    derive_event_id,
    new_envelope,
    registry,
)

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent.parent / "golden"


def _golden(type_: str) -> Path:
    return GOLDEN / f"{type_}.v{registry.spec(type_).version}.json"


@pytest.mark.parametrize("type_", registry.types())
def test_every_type_has_a_golden_sample_that_decodes(type_: str) -> None:
    path = _golden(type_)
    assert path.exists(), f"add a golden sample {path.name} for {type_}"
    raw = path.read_bytes()
    event = decode(raw)
    assert event.type == type_
    assert isinstance(event.payload, registry.spec(type_).model)


@pytest.mark.parametrize("type_", registry.types())
def test_golden_samples_round_trip_byte_for_byte(type_: str) -> None:
    raw = json.loads(_golden(type_).read_text())
    envelope = Envelope.model_validate(raw)
    assert json.loads(envelope.to_bytes()) == raw
    # The payload survives its own model unchanged (no field silently dropped or renamed).
    payload = registry.decode_payload(envelope)
    assert json.loads(payload.model_dump_json()) == raw["payload"]


@pytest.mark.parametrize("type_", registry.types())
def test_decoding_with_the_type_known_gives_the_same_event_in_one_pass(type_: str) -> None:
    raw = _golden(type_).read_bytes()
    general, typed = decode(raw), decode(raw, 3, 42, type_=type_)
    assert isinstance(typed.envelope.payload, BaseModel)  # the one-pass path was taken
    assert typed.payload is typed.envelope.payload
    assert typed.payload == general.payload
    assert (typed.partition, typed.offset) == (3, 42)
    assert typed.envelope.document() == general.envelope.payload
    # A consumer that forwards the envelope (the notifier's webhook body) sends the same JSON.
    assert json.loads(typed.envelope.to_bytes()) == json.loads(raw)
    for field in Envelope.model_fields.keys() - {"payload"}:
        assert getattr(typed.envelope, field) == getattr(general.envelope, field)


def test_a_field_this_build_does_not_know_takes_the_tolerant_path_with_the_type_known() -> None:
    raw = json.loads(_golden("account.updated").read_text())
    raw["payload"]["colour"] = "blue"  # added by a producer deployed first
    event = decode(json.dumps(raw).encode(), type_="account.updated")
    assert event.payload == AccountUpdated.model_validate(
        {k: v for k, v in raw["payload"].items() if k != "colour"}
    )
    assert event.envelope.document()["colour"] == "blue"  # the wire form is kept as it came


def test_a_newer_version_or_a_wrong_type_header_is_not_decoded_by_the_one_pass_path() -> None:
    raw = json.loads(_golden("account.updated").read_text())
    newer = json.dumps({**raw, "version": 2}).encode()
    with pytest.raises(UnknownEventTypeError):
        decode(newer, type_="account.updated")
    # The body decides the type: a header naming another type only misses the fast path.
    event = decode(json.dumps(raw).encode(), type_="ticket.opened")
    assert isinstance(event.payload, AccountUpdated)
    assert decode(json.dumps(raw).encode(), type_="no.such.type").type == "account.updated"


def test_headers_carry_type_version_event_id_and_ticket_sequence() -> None:
    envelope = Envelope.model_validate(json.loads(_golden("ticket.resolved").read_text()))
    headers = dict(envelope.headers())
    assert headers["type"] == b"ticket.resolved"
    assert headers["version"] == b"1"
    assert headers["event_id"] == str(envelope.event_id).encode()
    assert headers["seq"] == str(envelope.seq).encode()


class _V2(BaseModel):
    subject: str
    priority: str


def _local_registry() -> EventRegistry:
    local = EventRegistry()
    local.register("demo.happened", version=2)(_V2)

    @local.upcaster("demo.happened", from_version=1)
    def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        # v1 called it "title" and had no priority.
        return {"subject": payload["title"], "priority": "P3"}

    return local


def _envelope(version: int, payload: dict[str, Any]) -> Envelope:
    return Envelope(
        event_id=UUID(int=1),
        type="demo.happened",
        version=version,
        occurred_at="2026-01-01T00:00:00Z",
        recorded_at="2026-01-01T00:00:00Z",
        account_id=UUID(int=2),
        actor={"type": "system", "id": "t"},
        correlation_id="c",
        payload=payload,
    )


def test_an_old_version_is_upcast_to_the_current_model() -> None:
    payload = _local_registry().decode_payload(_envelope(1, {"title": "VPN down"}))
    assert payload == _V2(subject="VPN down", priority="P3")


def test_a_version_newer_than_this_build_is_refused() -> None:
    with pytest.raises(UnknownEventTypeError):
        _local_registry().decode_payload(_envelope(3, {"subject": "x", "priority": "P1"}))


def test_a_consumer_ignores_an_optional_field_it_does_not_know_yet() -> None:
    """Producers may be deployed before consumers: an added optional field must not poison."""
    envelope = new_envelope(
        AccountUpdated(account_id=uuid.uuid4(), name="Acme", timezone="UTC"),
        account_id=uuid.uuid4(),
        actor=Actor(type="system", id="test"),
        occurred_at=datetime.now(UTC),
        recorded_at=datetime.now(UTC),
        correlation_id="c",
    )
    newer = envelope.model_copy(update={"payload": {**envelope.document(), "colour": "blue"}})
    decoded = registry.decode_payload(newer)
    assert decoded == AccountUpdated.model_validate(envelope.payload)
    with pytest.raises(ValidationError):
        AccountUpdated.model_validate(newer.payload)  # a producer stays strict


FUTURE = {"x_future": {"added": "by a newer producer"}}


def _with_future_fields(model: Any, dumped: Any) -> Any:
    """`dumped` (the JSON of `model`) with a field no build knows added to every object that is
    a model, at every level (maps keyed by data, like calendars by name, keep their keys)."""
    if isinstance(model, BaseModel):
        out = dict(dumped)
        for name, field in type(model).model_fields.items():
            key = field.alias or name
            if key in out:
                out[key] = _with_future_fields(getattr(model, name), out[key])
        return out | FUTURE
    if isinstance(model, list | tuple) and isinstance(dumped, list):
        return [_with_future_fields(item, raw) for item, raw in zip(model, dumped, strict=True)]
    if isinstance(model, dict) and isinstance(dumped, dict):
        return {k: _with_future_fields(model[k], v) if k in model else v for k, v in dumped.items()}
    return dumped


@pytest.mark.parametrize("type_", registry.types())
def test_a_consumer_reads_a_future_event_with_new_fields_at_every_level(type_: str) -> None:
    """Tolerant reading stopped at the payload's top level: a new field in the envelope, the
    actor, an invoice line or an agreement's calendar parked the event. A v1 consumer now reads
    what it knows of such an event, at every level."""
    raw = json.loads(_golden(type_).read_text())
    expected = decode(json.dumps(raw).encode())
    future = raw | FUTURE
    future["actor"] = raw["actor"] | FUTURE
    future["payload"] = _with_future_fields(expected.payload, raw["payload"])
    for type_known in (None, type_):
        decoded = decode(json.dumps(future).encode(), type_=type_known)
        assert decoded.envelope.actor == expected.envelope.actor
        assert decoded.envelope.event_id == expected.envelope.event_id
        assert decoded.payload == expected.payload
    with pytest.raises(ValidationError):
        Envelope.model_validate(future)  # a producer stays strict


def test_a_derived_event_id_is_the_uuid5_of_its_cause_and_purpose() -> None:
    # Ids already on the stream were derived with uuid5(); the faster spelling must not move them.
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://helpdesk.local/event-id")
    cause = UUID("0190f5a2-4b6c-7d8e-9f00-112233445566")
    for purpose in ("breach:response:1", "warning:resolution:2", "échéance", ""):
        expected = uuid.uuid5(namespace, f"{cause}/{purpose}")
        assert derive_event_id(cause, purpose) == expected
        assert derive_event_id(str(cause), purpose) == expected
    assert derive_event_id(cause, "a").version == 5
