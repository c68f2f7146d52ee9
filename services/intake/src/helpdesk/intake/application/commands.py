"""Intake's typed commands: the request bodies of its public API, validated at the edge.

A use case takes one of these as it is (field names are the public API's contract); each ticket
command is dispatched by its class (`application.tickets.HANDLERS`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    Strict,
    ValidationInfo,
    create_model,
    field_validator,
)

from helpdesk.shared.agreements.models import (
    MAX_CENTS,
    known_country,
    known_time_zone,
    place_time_zones,
    supported_countries,
)
from helpdesk.shared.contracts.accounts import ContactRole, KeyRole, StaffRole, Visibility
from helpdesk.shared.contracts.common import (
    AccountStatus,
    Channel,
    CloseReason,
    EscalationTier,
    Priority,
    Resolution,
    Scope,
    TicketKind,
    WorkType,
)
from helpdesk.shared.contracts.tickets import MAX_AFFECTED_USERS, MAX_ENTRY_MINUTES
from helpdesk.shared.validation import Instant

# The limits below keep any one event far below the topic's 1 MB message limit whatever the
# text holds (a character may take up to 6 bytes in JSON, `\u001f`): a ticket.opened carries at
# most a 500-character subject, a 64 KiB description and 32 KiB of fields (under 450 KB in the
# worst case); every other event carries one text of at most 64 KiB. docs/policies.md lists them.
#: Characters in a description, a comment, a reply, a resolution summary, a reopen reason.
MAX_TEXT = 65_536
#: Characters in a note (vendor return, time entry, partner flag).
MAX_NOTE = 10_000
#: Free-form `fields`: entries at the top level, characters in a key or any string inside,
#: and bytes of the whole object encoded as compact UTF-8 JSON.
MAX_FIELDS = 100
MAX_FIELD_KEY = 100
MAX_FIELD_STRING = 4_096
MAX_FIELDS_BYTES = 32_768

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Note = Annotated[str, Field(max_length=MAX_NOTE)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _integral(value: Any) -> Any:
    # JSON (and JSON Schema's "integer") does not tell 1.0 from 1; 1.5 stays a float, refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# JSON true is not 1, and "3" is not 3: numbers and booleans are taken as they are typed.
StrictInt = Annotated[int, Strict()]
#: After a StrictInt's bounds (so that OpenAPI still states them): 1.0 is taken as 1.
Integral = BeforeValidator(_integral)
StrictBool = Annotated[bool, Strict()]


def _bounded_fields(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form fields within the limits: each string, and the encoded whole."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_FIELD_STRING:
                raise ValueError(f"holds a string longer than {MAX_FIELD_STRING} characters")
        elif isinstance(item, dict):
            if any(len(key) > MAX_FIELD_KEY for key in item):
                raise ValueError(f"holds a key longer than {MAX_FIELD_KEY} characters")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if len(encoded) > MAX_FIELDS_BYTES:
        raise ValueError(f"is {len(encoded)} bytes as JSON, more than {MAX_FIELDS_BYTES}")
    return value


#: Free-form ticket fields (also what the agreement's required fields name).
Fields = Annotated[
    dict[Annotated[str, Field(max_length=MAX_FIELD_KEY)], Any],
    Field(
        max_length=MAX_FIELDS,
        description=(
            f"Free-form: at most {MAX_FIELDS} entries, keys of at most {MAX_FIELD_KEY} "
            f"characters, strings of at most {MAX_FIELD_STRING} characters at any depth, and "
            f"at most {MAX_FIELDS_BYTES} bytes as compact UTF-8 JSON."
        ),
    ),
    AfterValidator(_bounded_fields),
]


#: An IANA time zone of a place; OpenAPI lists them.
TimeZone = Annotated[
    str, Field(json_schema_extra={"enum": list(place_time_zones())}, examples=["Europe/Berlin"])
]


class Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _known_zone(value: str | None) -> str | None:
    return None if value is None else known_time_zone(value)


def _known_country(value: str | None) -> str | None:
    return None if value is None else known_country(value)


#: Whose public holidays the presets' business hours observe; none means US.
Country = Annotated[
    str, Field(json_schema_extra={"enum": supported_countries()}, examples=["US", "GB"])
]


class AccountCreate(Body):
    """POST /v1/accounts."""

    name: Name
    number: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    timezone: TimeZone = "UTC"
    country: Country | None = None

    _zone = field_validator("timezone")(_known_zone)
    _country = field_validator("country")(_known_country)


class AccountPatch(Body):
    """PATCH /v1/accounts/{id}: any of name, time zone, country, status."""

    name: Name | None = None
    timezone: TimeZone | None = None
    country: Country | None = None
    status: AccountStatus | None = None

    _zone = field_validator("timezone")(_known_zone)
    _country = field_validator("country")(_known_country)


class ContactCreate(Body):
    """POST /v1/accounts/{id}/contacts."""

    name: Name
    email: EmailStr
    roles: list[ContactRole] = Field(default_factory=list)
    visibility: Visibility = "own"


class StaffCreate(Body):
    """POST /v1/staff."""

    name: Name
    email: EmailStr
    role: StaffRole
    #: The escalation tier the member works in (seed 001: Engineering); omit for the front line.
    tier: EscalationTier | None = None


class ApiKeyCreate(Body):
    """POST /v1/api-keys: a staff member's key, a contact's key, or an import key."""

    role: KeyRole
    account_id: UUID | None = None
    contact_id: UUID | None = None
    staff_id: UUID | None = None
    scopes: list[Annotated[str, Field(pattern=r"^import$")]] = Field(default_factory=list)


class Imported(Body):
    """Every command may carry `occurred_at` when the key has the import scope."""

    occurred_at: Instant | None = None


class TicketCreate(Imported):
    """POST /v1/tickets."""

    account_id: UUID
    contact_id: UUID | None = None
    subject: Annotated[str, Field(min_length=1, max_length=500)]
    description: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    channel: Channel = "api"
    priority: Priority | None = None
    kind: TicketKind = "incident"
    scope: Scope = "in"
    category: Annotated[str, Field(max_length=100)] | None = None
    severity: Annotated[str, Field(max_length=100)] | None = None
    affected_users: Annotated[StrictInt, Field(ge=0, le=MAX_AFFECTED_USERS), Integral] | None = None
    service_class: Annotated[str, Field(max_length=100)] | None = None
    fields: Fields = Field(default_factory=dict)
    reported_at: Instant | None = None


class Triage(Imported):
    """POST /v1/tickets/{id}/triage."""

    priority: Priority
    kind: TicketKind | None = None
    scope: Scope | None = None
    category: Annotated[str, Field(max_length=100)] | None = None


class Assign(Imported):
    """POST /v1/tickets/{id}/assign."""

    technician: Name


class Comment(Imported):
    """POST /v1/tickets/{id}/comments: public comments are responses to the customer."""

    body: Text
    public: StrictBool = False
    #: States that this escalation tier responded (e.g. relaying Engineering's answer): meets
    #: the tier's escalation clock. Needs an escalation of the ticket to that tier.
    responds_for: EscalationTier | None = None


class RequestInfo(Imported):
    """POST /v1/tickets/{id}/request-info."""

    body: Text


class CustomerReply(Imported):
    """POST /v1/tickets/{id}/customer-reply."""

    body: Text


def _vendor_only_on_vendor_tier(schema: dict[str, Any]) -> None:
    # What the validator below checks, stated for clients: tier vendor, or no vendor.
    schema["anyOf"] = [
        {"properties": {"tier": {"const": "vendor"}}},
        {"properties": {"vendor": {"type": "null"}}},
    ]


class Escalate(Imported):
    """POST /v1/tickets/{id}/escalate; `vendor` names the vendor of a `vendor` escalation."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_vendor_only_on_vendor_tier)

    tier: EscalationTier
    vendor: Name | None = None
    fields: Fields = Field(default_factory=dict)

    @field_validator("vendor")
    @classmethod
    def _vendor_tier_only(cls, vendor: str | None, info: ValidationInfo) -> str | None:
        if vendor is not None and info.data.get("tier") != "vendor":
            raise ValueError("is named only on an escalation to tier vendor")
        return vendor


class VendorReturn(Imported):
    """POST /v1/tickets/{id}/vendor-return: the vendor handed the ticket back."""

    note: Note = ""


class TimeEntry(Imported):
    """POST /v1/tickets/{id}/time-entries.

    `after_hours` and `solution_design` are the technician's marks, each an override both ways;
    left out (or null), billing classifies the entry: after hours when `worked_at` lies outside
    the agreement's business-hours calendar, solution design when an incident is worked on
    after its resolution (docs/policies.md, seed 004).
    """

    minutes: Annotated[StrictInt, Field(gt=0, le=MAX_ENTRY_MINUTES), Integral]
    work_type: WorkType
    scope: Scope | None = None
    after_hours: StrictBool | None = None
    solution_design: StrictBool | None = None
    worked_at: Instant
    note: Note = ""


class Resolve(Imported):
    """POST /v1/tickets/{id}/resolve."""

    resolution: Resolution
    summary: Text


class Confirm(Imported):
    """POST /v1/tickets/{id}/confirm."""


class Close(Imported):
    """POST /v1/tickets/{id}/close."""

    reason: CloseReason


class Reopen(Imported):
    """POST /v1/tickets/{id}/reopen."""

    reason: Text


class QuoteCreate(Imported):
    """POST /v1/tickets/{id}/quote: an estimate for out-of-scope work (seed 000's statement of
    work), in minutes and in cents of the account's plan currency."""

    minutes: Annotated[StrictInt, Field(gt=0, le=MAX_ENTRY_MINUTES), Integral]
    amount_cents: Annotated[StrictInt, Field(ge=0, le=MAX_CENTS), Integral]
    note: Note = ""


class QuoteApproval(Imported):
    """POST /v1/tickets/{id}/approve-quote: the contact approves the pending quote."""


class QuoteDecline(Imported):
    """POST /v1/tickets/{id}/decline-quote: the contact declines the pending quote."""

    reason: Note = ""


class PartnerResolvable(Imported):
    """POST /v1/tickets/{id}/partner-resolvable (seed 001)."""

    note: Note = ""


#: The path segment of each lifecycle command: POST /v1/tickets/{id}/<segment>; in a history
#: import, a step's `command`.
TICKET_COMMANDS: dict[str, type[Imported]] = {
    "triage": Triage,
    "assign": Assign,
    "comments": Comment,
    "request-info": RequestInfo,
    "customer-reply": CustomerReply,
    "escalate": Escalate,
    "vendor-return": VendorReturn,
    "time-entries": TimeEntry,
    "resolve": Resolve,
    "confirm": Confirm,
    "close": Close,
    "reopen": Reopen,
    "partner-resolvable": PartnerResolvable,
    "quote": QuoteCreate,
    "approve-quote": QuoteApproval,
    "decline-quote": QuoteDecline,
}

#: Steps of one imported history; its events must fit one request body (1 MiB).
MAX_IMPORT_STEPS = 1_000


def _import_step(segment: str, command: type[Imported]) -> type[Imported]:
    """`command` with the `command` tag naming it in a history, and `occurred_at` required."""
    step: type[Imported] = create_model(
        f"{command.__name__}Step",
        __base__=command,
        __doc__=f"A `{segment}` step of an imported history (body of {command.__doc__})",
        command=(Literal[segment], ...),  # type: ignore[arg-type]
        occurred_at=(Instant, ...),
    )
    return step


#: Each lifecycle command as a step of an imported history, by segment.
IMPORT_STEPS = {segment: _import_step(segment, c) for segment, c in TICKET_COMMANDS.items()}

if TYPE_CHECKING:
    HistoryStep = Imported
else:
    HistoryStep = Annotated[Union[tuple(IMPORT_STEPS.values())], Field(discriminator="command")]  # noqa: UP007 - a Union of a computed tuple


def step_command(step: Imported) -> Imported:
    """The lifecycle command a step of an imported history gives."""
    command = TICKET_COMMANDS[getattr(step, "command")]  # noqa: B009 - a tag of dynamic steps
    return command.model_construct(**{name: getattr(step, name) for name in command.model_fields})


class TicketImport(Body):
    """POST /v1/ticket-imports: a ticket and its whole history, applied in one transaction."""

    ticket: TicketCreate
    history: Annotated[list[HistoryStep], Field(max_length=MAX_IMPORT_STEPS)] = Field(
        default_factory=list
    )


class SessionCreate(Body):
    """POST /v1/sessions: sign in."""

    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _one_person(schema: dict[str, Any]) -> None:
    # Exactly one of the two, and an id, not null: what the route checks, stated for clients.
    schema["oneOf"] = [{"required": ["contact_id"]}, {"required": ["staff_id"]}]
    for name in ("contact_id", "staff_id"):
        schema["properties"][name] = {"type": "string", "format": "uuid"}


class InvitationCreate(Body):
    """POST /v1/invitations: a link for a contact or a staff member (exactly one of them) to set
    a password."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_person)

    contact_id: UUID | None = None
    staff_id: UUID | None = None


class PasswordResetCreate(Body):
    """POST /v1/password-resets: the address of the person who forgot their password."""

    email: Annotated[str, Field(min_length=1, max_length=320)]


class InvitationAccept(Body):
    """POST /v1/invitations/{token}/accept: the new password."""

    password: Annotated[str, Field(min_length=12, max_length=1024)]
