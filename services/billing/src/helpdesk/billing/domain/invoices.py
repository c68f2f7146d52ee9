"""Invoices: lines made from a rating, adjustments to final invoices, and the CSV export.

Line amounts are integer cents. Time lines are priced with `price_cents` (exact arithmetic,
rounded half up once per line), so aggregating pieces into a line before pricing means one
rounding per line, never per entry. Fee shares are rounded once per line as well.

Lines (kind: what it is):
- `fee`: a plan version's share of the monthly fee (prorated by local day);
- `top_up`: included minutes bought mid-period;
- `overage`: out-of-scope minutes beyond the allowance, one line per rate and discount;
- `time_and_materials`, `after_hours`: work billed separately, one line per ticket (and kind,
  rate, discount);
- `flat_fee`: a flat-fee ticket (the fee in its first period, zero afterwards);
- `included`, `in_scope`: covered work, at zero price, so the customer sees it;
- `adjustment`: a difference to a final invoice of an earlier period.

Whether an invoice is draft or final, and its id, are the service's business.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import get_args
from uuid import UUID

from helpdesk.billing.domain.periods import local_date, period_of
from helpdesk.billing.domain.rating import (
    MarginRevocation,
    PeriodRating,
    PlanVersion,
    RatedPiece,
    Rounding,
    TimeEntry,
    price_cents,
    rate_ticket,
)
from helpdesk.shared.contracts.billing import InvoiceLineKind

#: The contract's line kinds, in the order an invoice lists them.
LineKind = InvoiceLineKind
_ORDER: tuple[LineKind, ...] = get_args(LineKind)


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice (the public API's invoice lines).

    `unit_price_cents` is the undiscounted hourly rate for time lines, the monthly fee for fee
    lines and the fee for flat-fee lines; `amount_cents` is what the line bills. Adjustment lines
    carry negative figures when the corrected invoice is lower, and say which period and which
    kind of line they correct.
    """

    kind: LineKind
    description: str
    quantity_minutes: int
    unit_price_cents: int
    discount_percent: int
    amount_cents: int
    ticket_id: UUID | None = None
    adjusts_period: str | None = None
    adjusts_kind: LineKind | None = None


@dataclass(frozen=True)
class Invoice:
    """An account's invoice for a period: the monthly one, or (with `ticket_id`) the invoice of
    one resolved ticket on an hourly plan."""

    account_id: UUID
    period: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    ticket_id: UUID | None = None

    @property
    def total_cents(self) -> int:
        """Sum of the line amounts."""
        return sum(line.amount_cents for line in self.lines)


_KIND_NAMES = {
    "incident": "incident",
    "service_request": "service request",
    "solution_design": "solution design",
}


def _hours(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


def work_lines(pieces: Iterable[RatedPiece], *, by_ticket: bool = False) -> list[InvoiceLine]:
    """Time lines for `pieces` (flat-fee pieces excluded: see `monthly_invoice`).

    Overage, included and in-scope minutes are summed into one line per price point, unless
    `by_ticket`; separately billed work always gets a line per ticket.
    """
    sums: dict[tuple[LineKind, str, UUID | None, int, int], int] = {}
    for p in pieces:
        if p.treatment == "flat_fee":
            continue
        kind: LineKind = p.treatment
        per_ticket = by_ticket or kind in ("time_and_materials", "after_hours")
        ticket = p.ticket_id if per_ticket else None
        # Zero-priced lines carry no rate: they show the minutes, not a notional price.
        rate, discount = (p.hourly_rate_cents, p.discount_percent) if p.time_billed else (0, 0)
        # The label keeps apart work classified for different reasons, so each line says why.
        label = (
            f"{p.kind}|{p.kind_reason}|{p.after_hours_reason or ''}"
            if kind in ("time_and_materials", "after_hours")
            else ""
        )
        key = (kind, label, ticket, rate, discount)
        sums[key] = sums.get(key, 0) + p.minutes
    lines = []
    for (kind, label, ticket, rate, discount), minutes in sums.items():
        lines.append(
            InvoiceLine(
                kind=kind,
                description=_work_description(kind, label, minutes),
                quantity_minutes=minutes,
                unit_price_cents=rate,
                discount_percent=discount,
                amount_cents=price_cents(minutes, rate, discount),
                ticket_id=ticket,
            )
        )
    return lines


_KIND_REASONS = {
    "after_resolution": "incident work after its resolution",
    "marked_solution_design": "marked so by the technician",
    "marked_incident": "after its resolution, marked incident work by the technician",
}
_AFTER_HOURS_REASONS = {
    "flagged": "flagged after hours by the technician",
    "outside_business_hours": "worked outside business hours",
}


def explanation(kind: str, kind_reason: str, after_hours_reason: str | None) -> str:
    """Why billing classified work as it did, in words: its kind ("solution design: incident
    work after its resolution" when billing or the technician made it so), then why it is after
    hours ("worked outside business hours", "flagged after hours by the technician")."""
    name = _KIND_NAMES.get(kind, kind)
    reasons = [f"{name}: {_KIND_REASONS[kind_reason]}" if kind_reason in _KIND_REASONS else name]
    if after_hours_reason:
        reasons.append(_AFTER_HOURS_REASONS.get(after_hours_reason, after_hours_reason))
    return "; ".join(reasons)


def _work_description(kind: LineKind, label: str, minutes: int) -> str:
    time = _hours(minutes)
    if kind == "overage":
        return f"Out-of-scope work beyond the included allowance, {time}"
    if kind == "included":
        return f"Out-of-scope work within the included allowance, {time} (no charge)"
    if kind == "in_scope":
        return f"Work covered by the plan, {time} (no charge)"
    ticket_kind, kind_reason, after_hours_reason = label.split("|")
    why = explanation(ticket_kind, kind_reason, after_hours_reason or None)
    if kind == "after_hours":
        return f"After-hours work ({why}), {time}"
    return f"Time and materials ({why}), {time}"


def _line_order(line: InvoiceLine) -> tuple[int, str, int, int, str]:
    if line.kind in ("fee", "top_up"):
        # Built in date order already; the stable sort keeps them so.
        return (_ORDER.index(line.kind), "", 0, 0, "")
    return (
        _ORDER.index(line.kind),
        str(line.ticket_id or ""),
        line.discount_percent,
        -line.unit_price_cents,
        line.description,
    )


def _sorted_lines(lines: Iterable[InvoiceLine]) -> tuple[InvoiceLine, ...]:
    # A fixed order makes an invoice (and its CSV) the same bytes whatever order entries came in.
    return tuple(sorted(lines, key=_line_order))


def monthly_invoice(
    account_id: UUID, rating: PeriodRating, adjustments: Sequence[InvoiceLine] = ()
) -> Invoice:
    """The monthly invoice of a rated period: its `monthly_lines`, then `adjustments` (from
    `adjustment_lines`) carried onto this invoice."""
    return Invoice(
        account_id=account_id,
        period=rating.period,
        currency=rating.currency,
        lines=monthly_lines(rating) + tuple(adjustments),
    )


def monthly_lines(rating: PeriodRating) -> tuple[InvoiceLine, ...]:
    """The lines of a rated period: fee shares, top-ups, time lines (work under an hourly plan
    excepted: it is on per-ticket invoices), flat fees, in a fixed order."""
    lines: list[InvoiceLine] = []
    for fee in rating.fees:
        name = f" ({fee.label})" if fee.label else ""
        share = "" if fee.days == fee.period_days else f", {fee.days} of {fee.period_days} days"
        lines.append(
            InvoiceLine(
                kind="fee",
                description=f"Monthly fee{name}{share}",
                quantity_minutes=0,
                unit_price_cents=fee.monthly_fee_cents,
                discount_percent=0,
                amount_cents=fee.amount_cents,
            )
        )
    for rated in rating.top_ups:
        top_up = rated.top_up
        lines.append(
            InvoiceLine(
                kind="top_up",
                description=(
                    f"Allowance top-up, {_hours(top_up.minutes)} from "
                    f"{local_date(top_up.effective_at, rating.timezone).isoformat()}"
                ),
                quantity_minutes=top_up.minutes,
                unit_price_cents=rated.hourly_rate_cents,
                discount_percent=rated.discount_percent,
                amount_cents=rated.amount_cents,
            )
        )
    lines.extend(work_lines(p for p in rating.pieces if not p.per_ticket))
    for charge in rating.flat_fees:
        kind_name = _KIND_NAMES.get(charge.kind, charge.kind)
        already = (
            "" if charge.charged_in == rating.period else f" (invoiced in {charge.charged_in})"
        )
        lines.append(
            InvoiceLine(
                kind="flat_fee",
                description=f"Flat fee ({kind_name}), {_hours(charge.minutes)}{already}",
                quantity_minutes=charge.minutes,
                unit_price_cents=charge.fee_cents if not already else 0,
                discount_percent=0,
                amount_cents=charge.amount_cents,
                ticket_id=charge.ticket_id,
            )
        )
    return _sorted_lines(lines)


def ticket_invoice(
    account_id: UUID,
    ticket_id: UUID,
    resolved_at: datetime,
    timezone: str,
    entries: Iterable[TimeEntry],
    plans: Sequence[PlanVersion],
    *,
    revocations: Sequence[MarginRevocation] = (),
    rounding: Rounding = "per_entry",
) -> Invoice:
    """The invoice of one resolved ticket on an hourly plan (seed 000, "charged upon completion
    of service"): its out-of-scope (and billable after-hours) work as time and materials, and its
    in-scope work at zero price. The resolved instant decides the period; every line carries the
    ticket. A reopened and re-resolved ticket is rated again and corrected with
    `adjustment_lines`."""
    pieces = rate_ticket(ticket_id, entries, plans, revocations=revocations, rounding=rounding)
    currency = {p.currency for p in (v.plan for v in plans)}
    if len(currency) != 1:
        raise ValueError(f"plans mix currencies {sorted(currency)}")
    return Invoice(
        account_id=account_id,
        period=period_of(resolved_at, timezone),
        currency=currency.pop(),
        lines=_sorted_lines(work_lines(pieces, by_ticket=True)),
        ticket_id=ticket_id,
    )


_Key = tuple[LineKind, UUID | None, int, int]


def _key(line: InvoiceLine) -> _Key:
    kind = line.adjusts_kind if line.kind == "adjustment" else line.kind
    assert kind is not None, "an adjustment line must say which kind of line it adjusts"
    return (kind, line.ticket_id, line.unit_price_cents, line.discount_percent)


def adjustment_lines(
    final: Invoice, recomputed: Invoice, issued: Sequence[InvoiceLine] = ()
) -> tuple[InvoiceLine, ...]:
    """Lines that bring a final invoice up to date, for the next open invoice.

    `final` is the invoice as finalised (it is never edited), `recomputed` the same period rated
    again with what is known now, `issued` the adjustment lines already issued for that period
    on later invoices. Lines are matched by kind, ticket, unit price and discount; for each the
    difference in minutes and cents between `recomputed` and final-plus-issued becomes one
    `adjustment` line (negative when the customer was over-billed). Adjustment lines that
    `final` itself carries correct earlier periods and are left out of the comparison.
    """
    if (final.account_id, final.period, final.currency, final.ticket_id) != (
        recomputed.account_id,
        recomputed.period,
        recomputed.currency,
        recomputed.ticket_id,
    ):
        raise ValueError("a final invoice can only be compared with the same invoice recomputed")
    billed: dict[_Key, tuple[int, int]] = {}
    descriptions: dict[_Key, str] = {}

    def add(line: InvoiceLine, sign: int) -> None:
        key = _key(line)
        minutes, cents = billed.get(key, (0, 0))
        billed[key] = (minutes + sign * line.quantity_minutes, cents + sign * line.amount_cents)
        if line.kind != "adjustment":
            descriptions.setdefault(key, line.description)

    for line in recomputed.lines:
        if line.kind != "adjustment":
            add(line, 1)
    for line in final.lines:
        if line.kind != "adjustment":
            add(line, -1)
    for line in issued:
        if line.kind == "adjustment" and line.adjusts_period == final.period:
            add(line, -1)
    adjustments = []
    for key, (minutes, cents) in billed.items():
        if minutes == 0 and cents == 0:
            continue
        kind, ticket, rate, discount = key
        adjustments.append(
            InvoiceLine(
                kind="adjustment",
                description=f"Adjustment to {final.period}: {descriptions.get(key, kind)}",
                quantity_minutes=minutes,
                unit_price_cents=rate,
                discount_percent=discount,
                amount_cents=cents,
                ticket_id=ticket,
                adjusts_period=final.period,
                adjusts_kind=kind,
            )
        )
    return tuple(adjustments)


# --- CSV ---------------------------------------------------------------------------------------

#: ISO 4217 minor units where they are not 2 (for the decimal `amount` column).
_MINOR_UNITS = {
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip

CSV_COLUMNS = (
    "invoice_id",
    "account_id",
    "period",
    "currency",
    "line",
    "kind",
    "description",
    "ticket_id",
    "quantity_minutes",
    "unit_price_cents",
    "discount_percent",
    "amount_cents",
    "amount",
    "adjusts_period",
)


def _decimal(cents: int, currency: str) -> str:
    """`cents` in major units as text, with integer arithmetic only ("-0.05", "560.00")."""
    digits = _MINOR_UNITS.get(currency, 2)
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"


def _text(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def invoice_csv(invoice: Invoice, invoice_id: str = "") -> str:
    """The invoice as CSV for accounting import (RFC 4180: comma, CRLF, quoted as needed).

    A header row, one row per line (numbered from 1), and a final `total` row. Money is given
    twice: integer minor units (`amount_cents`) and a decimal in major units (`amount`).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    common = [invoice_id, str(invoice.account_id), invoice.period, invoice.currency]
    for number, line in enumerate(invoice.lines, start=1):
        writer.writerow(
            [
                *common,
                number,
                line.kind,
                _text(line.description),
                str(line.ticket_id) if line.ticket_id else "",
                line.quantity_minutes,
                line.unit_price_cents,
                line.discount_percent,
                line.amount_cents,
                _decimal(line.amount_cents, invoice.currency),
                line.adjusts_period or "",
            ]
        )
    writer.writerow(
        [
            *common,
            "",
            "total",
            "Total",
            str(invoice.ticket_id) if invoice.ticket_id else "",
            "",
            "",
            "",
            invoice.total_cents,
            _decimal(invoice.total_cents, invoice.currency),
            "",
        ]
    )
    return out.getvalue()
