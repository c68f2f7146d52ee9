"""The invoice book: due order, adjustments on the open invoice, stable ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from helpdesk.billing.domain.book import AccountBook, invoice_id, monthly_key, ticket_key
from services.billing.tests.unit.billing_fixtures import (
    ACCOUNT,
    T1,
    TZ,
    at,
    entry,
    preset_plan,
    since,
)

pytestmark = pytest.mark.unit

STARTER = since(preset_plan("cloud_platform", "starter"), "Starter", at(2026, 1, 1, 0))
HOURLY = since(preset_plan("cloud_platform", "hourly"), "", at(2026, 1, 1, 0))
GRACE = timedelta(hours=72)


def finalise_until(book: AccountBook, instant: datetime) -> AccountBook:
    due_at, key = book.next_due(GRACE)
    while due_at <= instant:
        book = book.with_final(key, book.invoice(key))
        due_at, key = book.next_due(GRACE)
    return book


def test_monthly_invoices_fall_due_in_period_order_after_the_grace_period() -> None:
    book = AccountBook(ACCOUNT, TZ, tuple(STARTER))
    assert book.next_due(GRACE) == (at(2026, 2, 1, 0) + GRACE, monthly_key("2026-01"))
    book = finalise_until(book, at(2026, 3, 3, 23))
    assert book.final_periods() == ["2026-01"]  # February is still in its grace period
    book = finalise_until(book, at(2026, 3, 4, 0))
    assert book.final_periods() == ["2026-01", "2026-02"]
    assert book.open_period() == "2026-03"


def test_work_on_a_final_period_becomes_adjustments_on_the_open_invoice() -> None:
    book = finalise_until(AccountBook(ACCOUNT, TZ, tuple(STARTER)), at(2026, 3, 5))
    late = replace(book, entries=(entry(360, at(2026, 2, 10)),))
    assert late.invoice(monthly_key("2026-02")).total_cents == 50000  # final: never edited
    open_ = late.invoice(monthly_key("2026-03"))
    adjustments = [line for line in open_.lines if line.kind == "adjustment"]
    assert {(a.adjusts_period, a.quantity_minutes, a.amount_cents) for a in adjustments} == {
        ("2026-02", 300, 0),
        ("2026-02", 60, 12000),
    }
    # once the open invoice is final, the adjustment is issued and not repeated
    later = finalise_until(late, at(2026, 4, 5))
    assert not [x for x in later.invoice(monthly_key("2026-04")).lines if x.kind == "adjustment"]


def test_an_hourly_ticket_is_invoiced_from_its_resolution() -> None:
    book = AccountBook(
        ACCOUNT,
        TZ,
        tuple(HOURLY),
        entries=(entry(50, at(2026, 1, 5)),),
        resolved={T1: at(2026, 1, 6)},
    )
    assert ticket_key(T1) in book.drafts("2026-01")
    assert book.invoice(ticket_key(T1)).total_cents == 15000
    assert book.next_due(GRACE) == (at(2026, 1, 6) + GRACE, ticket_key(T1))
    assert invoice_id(ACCOUNT, ticket_key(T1)) == invoice_id(ACCOUNT, ticket_key(T1))
    assert invoice_id(ACCOUNT, ticket_key(T1)) != invoice_id(ACCOUNT, monthly_key("2026-01"))
