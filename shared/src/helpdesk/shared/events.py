"""The event envelope, the registry of typed payloads, and upcasting.

Every event on `helpdesk.events` is one JSON `Envelope`. The payload of each (type, version) is
a pydantic model registered here; consumers decode to the *latest* version, upcasting older
payloads on the way, because a rebuild replays events written years ago.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    create_model,
    field_serializer,
)
from uuid6 import uuid7

ActorType = Literal["admin", "staff", "contact", "system", "import"]


class Actor(BaseModel):
    """Who caused an event: a person's key, a service, or the bootstrap admin token."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: ActorType
    id: str


class Envelope(BaseModel):
    """The wire form of one event; `payload` is the type's model dumped to JSON.

    A consumer's decoded event of the current version holds the payload model itself instead
    (`decode` validates envelope and payload in one pass); `document()` gives the JSON form
    either way, and both serialise to the same bytes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    account_id: UUID
    ticket_id: UUID | None = None
    seq: int | None = Field(default=None, ge=1)
    actor: Actor
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any] | SerializeAsAny[BaseModel] = Field(union_mode="left_to_right")

    @field_serializer("occurred_at", "recorded_at")
    def _utc(self, value: datetime) -> str:
        # RFC 3339 in UTC with a `Z`, so that equal instants serialise to equal bytes.
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def to_bytes(self) -> bytes:
        """The Kafka record value."""
        return self.model_dump_json().encode()

    def document(self) -> dict[str, Any]:
        """The payload as JSON data (what the wire carries, for a current-version event)."""
        if isinstance(self.payload, BaseModel):
            return self.payload.model_dump(mode="json")
        return self.payload

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers that let a consumer skip or sequence-check without parsing the body."""
        headers = [
            ("type", self.type.encode()),
            ("version", str(self.version).encode()),
            ("event_id", str(self.event_id).encode()),
        ]
        if self.ticket_id is not None and self.seq is not None:
            headers += [
                ("ticket_id", str(self.ticket_id).encode()),
                ("seq", str(self.seq).encode()),
            ]
        return headers

    @classmethod
    def from_bytes(cls, value: bytes) -> Envelope:
        """Parse a Kafka record value, ignoring envelope and actor fields this build does not
        know (a newer producer may add some; producers stay strict)."""
        return cls.model_validate(known_fields_only(cls, json.loads(value)))


P = TypeVar("P", bound=BaseModel)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class EventSpec:
    """One registered event type: its current version, payload model and upcasters."""

    name: str
    version: int
    model: type[BaseModel]
    upcasters: dict[int, Upcaster]  # from_version -> payload at from_version + 1


class UnknownEventTypeError(LookupError):
    """An envelope names a type or version this build does not know."""


class EventRegistry:
    """Maps event type names to payload models; one global instance, `registry`."""

    def __init__(self) -> None:
        self._specs: dict[str, EventSpec] = {}
        self._by_model: dict[type[BaseModel], str] = {}
        self._envelopes: dict[str, type[Envelope]] = {}

    def register(self, type_: str, version: int = 1) -> Callable[[type[P]], type[P]]:
        """Class decorator: register `model` as the payload of `type_` at `version`."""

        def decorate(model: type[P]) -> type[P]:
            if type_ in self._specs:
                raise ValueError(f"event type {type_} registered twice")
            self._specs[type_] = EventSpec(type_, version, model, {})
            self._by_model[model] = type_
            return model

        return decorate

    def upcaster(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: a function turning a `from_version` payload into `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._specs[type_].upcasters[from_version] = fn
            return fn

        return decorate

    def spec(self, type_: str) -> EventSpec:
        """The registered spec of `type_`."""
        try:
            return self._specs[type_]
        except KeyError as exc:
            raise UnknownEventTypeError(type_) from exc

    def type_of(self, payload: BaseModel) -> str:
        """The event type a payload model instance belongs to."""
        return self._by_model[type(payload)]

    def type_of_model(self, model: type[BaseModel]) -> str:
        """The event type a payload model class is registered as."""
        try:
            return self._by_model[model]
        except KeyError as exc:
            raise UnknownEventTypeError(model.__name__) from exc

    def types(self) -> list[str]:
        """All registered type names, sorted."""
        return sorted(self._specs)

    @property
    def known(self) -> Mapping[str, EventSpec]:
        """The registered specs by type name."""
        return self._specs

    def envelope_model(self, type_: str) -> type[Envelope]:
        """An `Envelope` whose payload is `type_`'s current model: one validation pass decodes
        a current-version event whole (built on first use; the build costs milliseconds)."""
        model = self._envelopes.get(type_)
        if model is None:
            spec = self.spec(type_)
            exactly: Any = Literal  # of a value known at run time: this type, this version
            model = self._envelopes[type_] = create_model(
                f"{spec.model.__name__}Envelope",
                __base__=Envelope,
                type=(exactly[type_], ...),
                version=(exactly[spec.version], ...),
                payload=(spec.model, ...),
            )
        return model

    def decode_payload(self, envelope: Envelope) -> BaseModel:
        """The envelope's payload as the current version's model, upcast as needed."""
        if isinstance(envelope.payload, BaseModel):
            return envelope.payload  # decoded in one pass as the current version
        spec = self.spec(envelope.type)
        if envelope.version > spec.version:
            newer = f"{envelope.type} v{envelope.version} is newer than this build"
            raise UnknownEventTypeError(newer)
        payload = envelope.payload
        for version in range(envelope.version, spec.version):
            payload = spec.upcasters[version](dict(payload))
        # Tolerant reader: a field this build does not know (a producer deployed first added an
        # optional one), at any level of the payload, is ignored here; producers stay strict
        # (`extra="forbid"`, golden samples).
        return spec.model.model_validate(known_fields_only(spec.model, payload))


registry = EventRegistry()


def known_fields_only(model: type[BaseModel], data: Any) -> Any:
    """`data` without the keys that `model`, and every model nested in its fields, do not know.

    The tolerant reader of every consumer: models forbid unknown fields so that producers are
    strict, and a consumer reads what it knows of a newer producer's event at every level (an
    invoice line, an agreement's calendar, the actor), not only the payload's top level.
    """
    if not isinstance(data, dict):
        return data
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    return {
        key: _known_in(fields[key].annotation, value)
        for key, value in data.items()
        if key in fields
    }


def _known_in(annotation: Any, value: Any) -> Any:
    """`value` pruned by the models its field's `annotation` names (in lists, dicts, unions)."""
    if annotation is BaseModel:
        return value  # any model: nothing to prune by
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return known_fields_only(annotation, value)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _known_in(args[0], value)
    if isinstance(value, list) and origin in (list, tuple, set, frozenset, Sequence):
        return [_known_in(args[0] if args else Any, item) for item in value]
    if isinstance(value, dict) and origin in (dict, Mapping) and len(args) == 2:
        return {key: _known_in(args[1], item) for key, item in value.items()}
    if origin in (Union, UnionType) and isinstance(value, dict):
        if any(get_origin(arm) in (dict, Mapping) or arm is Any for arm in args):
            return value  # a free-form map is one of the choices: keep all it holds
        # The first model of the union that takes what it knows of the value.
        for arm in args:
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                pruned = known_fields_only(arm, value)
                try:
                    arm.model_validate(pruned)
                except ValidationError:
                    continue
                return pruned
            if get_origin(arm) is Annotated:
                return _known_in(arm, value)
    return value


P_co = TypeVar("P_co", bound=BaseModel, covariant=True)


@dataclass(frozen=True)
class Event(Generic[P_co]):
    """A decoded event: the envelope and its typed (current-version) payload."""

    envelope: Envelope
    payload: P_co
    #: Where the event sits on the stream; None for an event its service has just decided.
    partition: int | None = None
    offset: int | None = None

    @property
    def type(self) -> str:
        """The event type name."""
        return self.envelope.type


def new_envelope(
    payload: BaseModel,
    *,
    account_id: UUID,
    actor: Actor,
    occurred_at: datetime,
    recorded_at: datetime,
    correlation_id: str,
    causation_id: str | None = None,
    ticket_id: UUID | None = None,
    seq: int | None = None,
    event_id: UUID | None = None,
) -> Envelope:
    """Wrap a registered payload in an envelope with a fresh UUIDv7 event id."""
    type_ = registry.type_of(payload)
    return Envelope(
        event_id=event_id or UUID(str(uuid7())),
        type=type_,
        version=registry.spec(type_).version,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        account_id=account_id,
        ticket_id=ticket_id,
        seq=seq,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=json.loads(payload.model_dump_json()),
    )


_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://helpdesk.local/event-id")
_EVENT_ID_NAMESPACE_BYTES = _EVENT_ID_NAMESPACE.bytes


def derive_event_id(causation_id: UUID | str, purpose: str) -> UUID:
    """The id of an event decided because of `causation_id`, for one `purpose`.

    Deterministic (UUIDv5), so a reaction or live loop that decides the same thing twice (after
    a crash, on two replicas, after a rebuild) produces the same event id, and every consumer
    drops the second copy. `purpose` names the decision, e.g. "breach:response:1".
    """
    # uuid5() spelled out: the same id, without its argument checks (a rebuild derives one per
    # timer it re-decides). SHA-1 because UUIDv5 is defined with it; nothing secret hangs on it.
    name = _EVENT_ID_NAMESPACE_BYTES + f"{causation_id}/{purpose}".encode()
    digest = hashlib.sha1(name, usedforsecurity=False).digest()
    return UUID(bytes=digest[:16], version=5)


def decode(
    value: bytes,
    partition: int | None = None,
    offset: int | None = None,
    *,
    type_: str | None = None,
) -> Event[BaseModel]:
    """Parse a record value into an `Event` with its payload upcast to the current version.

    With the type known from the record's headers, a current-version event is validated in one
    pass, envelope and payload together: about a third faster than building the payload's dict
    and validating it again, and the cost every consumer pays per event. Anything else (an older
    version to upcast, a field this build does not know, an invalid event) takes the general
    path, which upcasts, ignores unknown fields, or raises the error.
    """
    if type_ is not None and type_ in registry.known:
        try:
            envelope = registry.envelope_model(type_).model_validate_json(value)
        except ValidationError:
            pass
        else:
            return Event(envelope, registry.decode_payload(envelope), partition, offset)
    envelope = Envelope.from_bytes(value)
    return Event(envelope, registry.decode_payload(envelope), partition, offset)
