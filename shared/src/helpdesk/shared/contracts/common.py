"""Vocabulary shared by several event families."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Priority = Literal["P1", "P2", "P3", "P4"]
Channel = Literal["api", "web", "phone", "chat", "email"]
TicketKind = Literal["incident", "service_request", "solution_design"]
Scope = Literal["in", "out"]
AccountStatus = Literal["active", "on_hold", "expired"]
TicketStatus = Literal[
    "new", "open", "waiting_on_customer", "waiting_on_vendor", "resolved", "closed"
]
EscalationTier = Literal["engineering", "vendor", "management"]
WorkType = Literal["remote", "onsite"]
Resolution = Literal["fix", "workaround"]
CloseReason = Literal[
    "confirmed", "no_response", "contract_expired", "account_on_hold", "duplicate"
]


class Payload(BaseModel):
    """Base of every event payload: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
