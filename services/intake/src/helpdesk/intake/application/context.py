"""Who runs a command and when: the envelope context of a caller's command."""

from __future__ import annotations

from datetime import datetime

from helpdesk.intake.domain import tickets as rules
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import Context, system_actor
from helpdesk.shared.errors import Forbidden, InvalidField
from helpdesk.shared.events import Actor

#: The actor of what intake decides on its own (an auto-close).
SYSTEM = system_actor("intake")
#: Intake deciding on imported history (an auto-close the SLA timer asked for about it).
IMPORTED_SYSTEM = Actor(type="import", id="intake")


def actor_of(principal: Principal) -> Actor:
    """The envelope actor of a caller."""
    if principal.key_id == "admin":
        return Actor(type="admin", id="admin")
    if principal.role == "import":
        return Actor(type="import", id=principal.key_id)
    if principal.is_staff:
        return Actor(type="staff", id=str(principal.staff_id or principal.key_id))
    return Actor(type="contact", id=str(principal.contact_id or principal.key_id))


def author_of(principal: Principal) -> str:
    """How a comment's author is recorded."""
    actor = actor_of(principal)
    return f"{actor.type}:{actor.id}"


def command_context(principal: Principal, occurred_at: datetime | None, at: datetime) -> Context:
    """The context of a command recorded at `at`; only an import key may back-date it."""
    if occurred_at is None:
        return Context(actor_of(principal), at, at)
    if not principal.may_import:
        raise Forbidden(
            "Only a key with the import scope may set occurred_at.",
            errors=[{"field": "occurred_at", "reason": "needs the import scope"}],
        )
    try:
        rules.not_in_future("occurred_at", occurred_at, at)
    except rules.TimelineError as refused:
        raise InvalidField(refused.field, refused.reason) from refused
    return Context(actor_of(principal), at, occurred_at)
