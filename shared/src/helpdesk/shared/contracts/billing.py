"""`billing.*` events, written by billing."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.contracts.common import Payload
from helpdesk.shared.events import registry
from helpdesk.shared.months import PERIOD_PATTERN

InvoiceLineKind = Literal[
    "fee",
    "top_up",
    "overage",
    "time_and_materials",
    "after_hours",
    "flat_fee",
    "included",
    "in_scope",
    "adjustment",
]
FairUseCap = Literal["per_day", "per_ticket"]


class InvoiceLine(Payload):
    """One line of a final invoice, frozen as it was billed.

    `unit_price_cents` is the undiscounted hourly rate of a time line, the monthly fee of a fee
    line, the fee of a flat-fee line; `amount_cents` is what the line bills (negative for an
    adjustment that credits). An adjustment line names the period and kind of line it corrects.
    """

    kind: InvoiceLineKind
    description: str
    quantity_minutes: int
    unit_price_cents: int
    discount_percent: int = Field(ge=0, le=100)
    amount_cents: int
    ticket_id: UUID | None = None
    adjusts_period: str | None = None
    adjusts_kind: InvoiceLineKind | None = None


@registry.register("billing.invoice_finalized")
class InvoiceFinalized(Payload):
    """An invoice became final and will never change (later work becomes adjustment lines).

    A monthly invoice of an account (`ticket_id` null) after its period and grace period, or
    the invoice of one resolved ticket on an hourly plan (`ticket_id` set; `period` is the
    month of the resolution). The notifier mails the account's billing contacts.
    """

    invoice_id: UUID
    account_id: UUID
    period: str = Field(pattern=PERIOD_PATTERN)
    ticket_id: UUID | None = None
    currency: str
    total_cents: int
    lines: list[InvoiceLine]
    finalized_at: AwareDatetime


@registry.register("billing.fair_use_exceeded")
class FairUseExceeded(Payload):
    """A fair-use cap of the agreement was exceeded (seed 002); the time is still billed.

    `key` names what the cap counts ("per_day:2026-03-10" or "per_ticket:<ticket id>"): one
    event per key. `ticket_id`, `entry_id` and `worked_at` are those of the entry that took the
    count over; `day` is the account-local date for a per-day cap, null for a per-ticket cap.
    `imported` says the time entry that raised it came from a history import: the record is
    kept, and nobody is told about history (seed 002's notice goes to the contact otherwise).
    """

    account_id: UUID
    cap: FairUseCap
    key: str
    limit_minutes: int
    used_minutes: int
    ticket_id: UUID
    entry_id: UUID
    worked_at: AwareDatetime
    day: date | None = None
    imported: bool = False


class KindReview(Payload):
    """One ticket kind's share of a quarter in a budget review."""

    minutes: int
    #: Minutes the fee (or the allowance) covered, and their value at the discounted rate.
    covered_minutes: int
    covered_value_cents: int
    #: Minutes billed on top of the fee, and what they were invoiced for.
    billed_minutes: int
    billed_cents: int


@registry.register("billing.budget_reviewed")
class BudgetReviewed(Payload):
    """Seed 004's quarterly budget review ("reviewed regularly and may be adjusted quarterly").

    Produced once per account and quarter for a plan reviewed every 3 months, when the quarter
    has ended and its last month's invoice grace period has passed (so it agrees with the final
    invoices). `budget_cents` is what the quarter's fees billed, `covered_value_cents` the
    covered work at the discounted rate; `next_budget_cents` the fees of the next quarter as
    agreed so far (a budget change takes effect from a quarter's start). `catching_up` marks a
    review given for a quarter before the latest ended one (history imported, reviews switched
    on later): the notifier mails the latest review to the account's billing contacts only.
    """

    account_id: UUID
    quarter: str = Field(pattern=r"^\d{4}-Q[1-4]$")
    periods: list[str]
    currency: str
    budget_cents: int
    covered_value_cents: int
    balance_cents: int
    next_budget_cents: int
    by_kind: dict[str, KindReview]
    reviewed_at: AwareDatetime
    catching_up: bool = False
    #: The plan's Technical Account Manager (a staff id), mailed the review too; None: none.
    technical_account_manager: UUID | None = None
