"""A ticket's stored history (what the fold needs, as JSON) and the SLA view of a fold.

The history is a list of `{type, occurred_at, payload}` items, one per ticket event the clocks,
follow-ups or availability depend on, in seq order; payloads are read back with the event
registry, so an upcast payload folds like a fresh one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from helpdesk.shared.agreements import Agreement, Priority
from helpdesk.shared.contracts.tickets import (
    TicketClosed,
    TicketCommented,
    TicketConfirmed,
    TicketCustomerReplied,
    TicketEscalated,
    TicketInfoRequested,
    TicketOpened,
    TicketReopened,
    TicketResolved,
    TicketTriaged,
    TicketVendorReturned,
)
from helpdesk.shared.events import registry
from helpdesk.sla_timer.domain.clocks import (
    SlaClock,
    TicketEvent,
    TicketSla,
    fold_ticket,
    vip_priority,
)

#: The ticket events an SLA fold, a follow-up schedule or an outage depends on.
FOLDED: tuple[type[BaseModel], ...] = (
    TicketOpened,
    TicketTriaged,
    TicketCommented,
    TicketInfoRequested,
    TicketCustomerReplied,
    TicketEscalated,
    TicketVendorReturned,
    TicketResolved,
    TicketConfirmed,
    TicketClosed,
    TicketReopened,
)


def history_item(type_: str, occurred_at: dt.datetime, payload: BaseModel) -> dict[str, Any]:
    """One stored history item."""
    return {
        "type": type_,
        "occurred_at": occurred_at.astimezone(dt.UTC).isoformat(),
        "payload": payload.model_dump(mode="json"),
    }


def decode_history(items: Iterable[Mapping[str, Any]]) -> list[TicketEvent]:
    """The stored history as the fold's `TicketEvent`s."""
    return [
        TicketEvent(
            dt.datetime.fromisoformat(item["occurred_at"]),
            registry.spec(item["type"]).model.model_validate(item["payload"]),
        )
        for item in items
    ]


def current_priority(events: Iterable[TicketEvent]) -> Priority | None:
    """The ticket's priority after `events` (None while untriaged)."""
    priority: Priority | None = None
    for event in events:
        if isinstance(event.payload, TicketOpened | TicketTriaged):
            priority = event.payload.priority
    return priority


def fold(
    events: list[TicketEvent], agreement: Agreement, as_of: dt.datetime, *, vip_contact: bool
) -> TicketSla:
    """Fold a ticket under `agreement`, with the VIP treatment and next-reply clock it gives."""
    vip = vip_contact and agreement.vip_treatment == "next_higher_priority"
    priority = current_priority(events)
    next_reply = None
    if priority is not None:
        effective = vip_priority(priority) if vip else priority
        next_reply = agreement.target(effective).next_reply_minutes
    return fold_ticket(events, agreement, as_of, vip=vip, next_reply_minutes=next_reply)


def _instant(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def clock_view(clock: SlaClock) -> dict[str, Any]:
    """One clock as the SLA view shows it.

    A clock closed before it was met or due shows `stopped` (with `stopped_at`, and `met_at`
    null), as the SLA report counts it: neither met nor breached.
    """
    return {
        "kind": clock.kind.value,
        "cycle": clock.cycle,
        "ordinal": clock.ordinal,
        "tier": clock.tier,
        "priority": clock.priority,
        "target_minutes": clock.target_minutes,
        "target_business_days": clock.target_business_days,
        "calendar": clock.calendar,
        "started_at": _instant(clock.started_at),
        "warning_at": _instant(clock.warning_at),
        "due_at": _instant(clock.due_at),
        "paused": clock.paused,
        "elapsed_minutes": clock.elapsed_minutes,
        "remaining_minutes": clock.remaining_minutes,
        "status": clock.status.value,
        "met_at": _instant(clock.met_at),
        "breached_at": _instant(clock.breached_at),
        "stopped_at": _instant(clock.stopped_at),
    }


def pauses_view(sla: TicketSla) -> list[dict[str, Any]]:
    """The ticket's pauses: why, from when, until when (None while it lasts)."""
    return [
        {"reason": p.reason.value, "start": _instant(p.start), "end": _instant(p.end)}
        for p in sla.pauses
    ]
