"""`sla.*` events, written by the SLA timer (intake consumes the auto-close request)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from helpdesk.shared.contracts.common import Payload
from helpdesk.shared.events import registry


@registry.register("sla.auto_close_requested")
class AutoCloseRequested(Payload):
    """The follow-up schedule ran out unanswered: intake closes the ticket (reason no_response).

    `ticket_seq` is the ticket's seq the SLA timer saw; intake ignores the request when the
    ticket moved on since (the customer answered meanwhile).
    """

    ticket_id: UUID
    ticket_seq: int
    unanswered_follow_ups: int
    reason: Literal["no_response"] = "no_response"
