"""Vocabulary shared by several event families."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Priority = Literal["P1", "P2", "P3", "P4"]
Channel = Literal["api", "web", "phone", "chat", "email"]
TicketKind = Literal["incident", "service_request", "solution_design"]
Scope = Literal["in", "out"]
AccountStatus = Literal["active", "on_hold", "expired"]


class Payload(BaseModel):
    """Base of every event payload: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
