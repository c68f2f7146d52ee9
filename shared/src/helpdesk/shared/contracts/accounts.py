"""`account.*` events, written by intake."""

from __future__ import annotations

from uuid import UUID

from helpdesk.shared.contracts.common import AccountStatus, Payload
from helpdesk.shared.events import registry


@registry.register("account.opened")
class AccountOpened(Payload):
    """A customer account was created."""

    account_id: UUID
    number: str
    name: str
    timezone: str
    status: AccountStatus = "active"
