"""Billing over HTTP: back-dated tickets and time entries through intake, usage and invoices
from billing (docs/policies.md worked examples and the seeds' plans)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from helpdesk.billing.adapters.tables import billing_entries, billing_fair_use_events
from helpdesk.shared.events import Envelope, derive_event_id
from services.billing.tests.integration._support import (
    Stack,
    account_with,
    billing_contact,
    entries_seen,
    iso,
    log,
    month_start,
    settled,
    ticket_at,
)
from services.intake.tests.integration._support import As, ok, problem_fields, run, staff_key
from tests.support import publish, wait_for

pytestmark = pytest.mark.integration

H = timedelta(hours=1)


def cloud(variant: str, **extra: Any) -> dict[str, Any]:
    """The cloud_platform preset with a plan variant, in force since long before the tests."""
    return {
        "preset": "cloud_platform",
        "plan_variant": variant,
        "effective_from": iso(month_start(6)),
        **extra,
    }


async def starter_month(stack: Stack, variant: str) -> tuple[dict[str, Any], str, str]:
    """docs/policies.md's Starter example, last month: out of scope 195 + 130 (-> 135), 90 in."""
    importer = await stack.importer()
    account = await account_with(stack.admin, cloud(variant))
    start = month_start(1)
    ticket = await ticket_at(importer, account["id"], start + 24 * H)
    # logged out of worked_at order: the 130-minute entry was worked first
    await log(importer, ticket, 195, start + 72 * H, at=start + 100 * H, scope="out")
    await log(importer, ticket, 130, start + 48 * H, at=start + 101 * H, scope="out")
    await log(importer, ticket, 90, start + 50 * H, at=start + 102 * H, scope="in")
    await entries_seen(stack.billing, ticket, 3)
    return account, start.strftime("%Y-%m"), ticket


async def test_starter_example_usage_invoice_csv_what_if_and_a_duplicate(stack: Stack) -> None:
    account, period, ticket = await starter_month(stack, "starter")
    billing = stack.on_billing(stack.admin)
    usage = ok(await billing.get(f"/v1/accounts/{account['id']}/usage", period=period))
    assert usage["minutes"] == {"in_scope": 90, "out_of_scope": 330, "by_kind": {"incident": 420}}
    assert (usage["included_minutes"], usage["included_used_minutes"]) == (300, 300)
    assert (usage["included_remaining_minutes"], usage["billable_minutes"]) == (0, 30)
    assert usage["amount_cents"] == 56000
    assert usage["tickets_opened"] == 1

    invoices = ok(await billing.get(f"/v1/accounts/{account['id']}/invoices"))["items"]
    last_month = next(i for i in invoices if i["period"] == period)
    assert (last_month["status"], last_month["total_cents"]) == ("draft", 56000)
    invoice = ok(await billing.get(f"/v1/invoices/{last_month['id']}"))
    assert invoice == last_month
    kinds = {line["kind"]: line for line in invoice["lines"]}
    assert kinds["fee"]["amount_cents"] == 50000
    assert (kinds["overage"]["quantity_minutes"], kinds["overage"]["amount_cents"]) == (30, 6000)
    assert kinds["overage"]["discount_percent"] == 20
    assert kinds["included"]["quantity_minutes"] == 300
    assert kinds["in_scope"]["quantity_minutes"] == 90

    csv = await billing.get(f"/v1/invoices/{last_month['id']}.csv")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[-1].endswith(",56000,560.00,")

    what_if = await billing.post(
        f"/v1/accounts/{account['id']}/invoices/what-if",
        {"period": period, "plan": "cloud_platform", "plan_variant": "pro"},
    )
    assert ok(what_if)["total_cents"] == 87500 + 30 * 105 * 100 // 60
    custom = {"kind": "monthly", "currency": "USD", "hourly_rate_cents": 10000,
              "monthly_fee_cents": 1000, "included_minutes": 0}  # fmt: skip
    body = ok(await billing.post(
        f"/v1/accounts/{account['id']}/invoices/what-if", {"period": period, "plan": custom}
    ))  # fmt: skip
    assert body["total_cents"] == 1000 + 330 * 10000 // 60
    bad = await billing.post(
        f"/v1/accounts/{account['id']}/invoices/what-if",
        {"period": period, "plan": "cloud_platform", "plan_variant": "gold"},
    )
    assert problem_fields(bad) == ["plan_variant"]

    # the same time entry delivered again (another event id): billed once
    history = ok(await stack.admin.get(f"/v1/tickets/{ticket}/events"))
    logged = next(e for e in history if e["type"] == "ticket.time_logged")
    copy = Envelope.model_validate({**logged, "event_id": str(uuid.uuid4())})
    settings = stack.billing.runtime.settings
    await publish(settings.kafka_bootstrap, settings.topic, [copy])
    processed = stack.billing.runtime.spec.tables.processed_events

    async def consumed() -> bool:
        async with stack.billing.runtime.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count()).where(processed.c.event_id == copy.event_id)
            )
        return found == 1

    await wait_for(consumed)
    again = ok(await billing.get(f"/v1/accounts/{account['id']}/usage", period=period))
    assert again == usage


async def test_pro_plan(stack: Stack) -> None:
    account, period, _ = await starter_month(stack, "pro")
    billing = stack.on_billing(stack.admin)
    usage = ok(await billing.get(f"/v1/accounts/{account['id']}/usage", period=period))
    assert usage["amount_cents"] == 87500 + 5250  # 30 min beyond the 5 h at $105/h


async def test_hourly_ticket_is_invoiced_when_resolved(stack: Stack) -> None:
    importer = await stack.importer()
    account = await account_with(stack.admin, cloud("hourly"))
    start = month_start(1)
    ticket = await ticket_at(importer, account["id"], start + H)
    await log(importer, ticket, 50, start + 2 * H, at=start + 3 * H, scope="out")
    await log(importer, ticket, 20, start + 2 * H, at=start + 3 * H, scope="in")
    billing = stack.on_billing(stack.admin)
    url = f"/v1/accounts/{account['id']}/invoices"
    await entries_seen(stack.billing, ticket, 2)
    before = ok(await billing.get(url))["items"]
    assert not [i for i in before if i["ticket_id"]]
    resolve = {"resolution": "fix", "summary": "done", "occurred_at": iso(start + 4 * H)}
    ok(await run(importer, ticket, "resolve", resolve))
    body = await settled(billing, url, lambda b: any(i["ticket_id"] for i in b["items"]))
    invoice = next(i for i in body["items"] if i["ticket_id"] == ticket)
    assert invoice["status"] == "draft"
    assert invoice["total_cents"] == 15000  # 50 min -> 60 min at $150/h
    assert {line["kind"] for line in invoice["lines"]} == {"time_and_materials", "in_scope"}
    assert all(line["ticket_id"] == ticket for line in invoice["lines"])
    assert ok(await billing.get(f"/v1/invoices/{invoice['id']}")) == invoice


async def test_managed_budget_bills_an_excluded_kind_after_a_re_triage(stack: Stack) -> None:
    importer = await stack.importer()
    agreement = {"preset": "managed_budget", "effective_from": iso(month_start(6)),
                 "plan": {"monthly_fee_cents": 200000}}  # fmt: skip
    account = await account_with(stack.admin, agreement)
    start = month_start(1)
    incident = await ticket_at(importer, account["id"], start + H)
    request = await ticket_at(importer, account["id"], start + H)
    await log(importer, incident, 120, start + 2 * H, at=start + 3 * H)
    await log(importer, request, 60, start + 2 * H, at=start + 3 * H)
    triage = {"priority": "P3", "kind": "service_request", "scope": "in",
              "category": "new_scope_of_work", "occurred_at": iso(start + 4 * H)}  # fmt: skip
    ok(await run(importer, request, "triage", triage))
    billing = stack.on_billing(stack.admin)
    period = start.strftime("%Y-%m")
    usage = await settled(
        billing,
        f"/v1/accounts/{account['id']}/usage?period={period}",
        lambda b: b["minutes"]["by_kind"].get("service_request") == 60,
    )
    assert usage["amount_cents"] == 200000 + 15000
    review = ok(
        await billing.get(
            f"/v1/accounts/{account['id']}/budget-review",
            quarter=f"{start.year}-Q{(start.month - 1) // 3 + 1}",
        )
    )
    assert review["by_kind"]["service_request"]["billed_cents"] == 15000
    assert review["by_kind"]["incident"]["covered_minutes"] == 120


async def test_fair_use_is_raised_once_per_cap_in_worked_order(stack: Stack) -> None:
    importer = await stack.importer()
    agreement = {"preset": "small_business_remote", "effective_from": iso(month_start(6))}
    account = await account_with(stack.admin, agreement)
    start = month_start(1) + 9 * 24 * H
    ticket = await ticket_at(importer, account["id"], start + 9 * H)
    # logged out of worked_at order: the 14:00 entry first, the 10:00 one after it
    await log(importer, ticket, 20, start + 14 * H, at=start + 15 * H)
    await log(importer, ticket, 20, start + 10 * H, at=start + 16 * H)
    await log(importer, ticket, 5, start + 16 * H, at=start + 17 * H)
    await entries_seen(stack.billing, ticket, 3)
    table = billing_fair_use_events

    async def raised() -> list[Any]:
        async with stack.billing.runtime.engine.connect() as conn:
            rows = await conn.execute(sa.select(table).where(table.c.account_id == account["id"]))
            return list(rows)

    rows = await wait_for(lambda: _two(raised))
    async with stack.billing.runtime.engine.connect() as conn:
        crossing = await conn.scalar(
            sa.select(billing_entries.c.entry_id).where(
                billing_entries.c.ticket_id == ticket, billing_entries.c.worked_at == start + 14 * H
            )
        )
    assert {(r.cap, r.used_minutes, r.entry_id) for r in rows} == {
        ("per_day", 40, crossing),
        ("per_ticket", 40, crossing),
    }
    # one event per cap and key, with the id derived from the key
    assert {r.event_id for r in rows} == {
        derive_event_id(uuid.UUID(account["id"]), f"fair_use:{r.key}") for r in rows
    }
    period = start.strftime("%Y-%m")
    billing = stack.on_billing(stack.admin)
    usage = ok(await billing.get(f"/v1/accounts/{account['id']}/usage", period=period))
    assert sorted(x["cap"] for x in usage["fair_use"]) == ["per_day", "per_ticket"]
    assert usage["minutes"]["in_scope"] == 75  # still recorded: 20, 20, 5 -> 30, 30, 15


async def test_fair_use_is_told_on_the_ticket_once_per_cap(stack: Stack) -> None:
    """Seed 002: "If the ticket can't be finished in 30 minutes or less limited support may
    apply". Before, only a mail told the contact; now a public note on the ticket says it too,
    once per cap the entry took over, written by the system (not a staff response: it meets no
    response clock)."""
    agreement = {"preset": "small_business_remote", "effective_from": iso(month_start(6))}
    account = await account_with(stack.admin, agreement)
    _, technician = await staff_key(stack.admin, "technician")
    opening = {"account_id": account["id"], "subject": "s"}
    ticket = ok(await technician.post("/v1/tickets", opening), 201)
    worked = datetime.now(UTC)
    entry = {"minutes": 31, "work_type": "remote", "worked_at": iso(worked)}
    ok(await run(technician, ticket["id"], "time-entries", entry))

    async def notes() -> list[dict[str, Any]]:
        events = ok(await technician.get(f"/v1/tickets/{ticket['id']}/events"))
        found = [e for e in events if e["type"] == "ticket.commented"]
        return found if len(found) == 2 else []

    found = await wait_for(notes, timeout=30)
    assert {(e["payload"]["public"], e["payload"]["by_staff"]) for e in found} == {(True, False)}
    assert {e["payload"]["author"] for e in found} == {"system:billing"}
    bodies = sorted(e["payload"]["body"] for e in found)
    assert bodies[0].startswith("Remote work on ")
    assert "has reached 31 minutes" in bodies[0]
    assert bodies[1].startswith("Work on this ticket has reached 31 minutes")
    assert all(b.endswith("limited support may apply.") for b in bodies)
    view = ok(await technician.get(f"/v1/tickets/{ticket['id']}"))
    assert view["status"] == "new"  # a note is no response: the ticket did not move on


async def test_out_of_scope_work_is_quoted_and_work_before_approval_is_flagged(
    stack: Stack,
) -> None:
    """Seed 000: "For out-of-scope items we will respond with a statement of work". Before,
    nothing modelled it. Now staff quote an out-of-scope ticket (minutes and cents), the
    contact approves or declines it in the API, and the usage lists the out-of-scope work
    logged before the approval."""
    account = await account_with(stack.admin, cloud("starter"))
    contact = await billing_contact(stack.admin, account["id"], [])
    _, technician = await staff_key(stack.admin, "technician")
    opening = {"account_id": account["id"], "subject": "s"}
    ticket = ok(await contact.post("/v1/tickets", opening), 201)
    quote = {"minutes": 120, "amount_cents": 30_000, "note": "Migrate the mailboxes"}
    in_scope = await run(technician, ticket["id"], "quote", quote)
    assert in_scope.status_code == 409, in_scope.text
    triage = {"priority": "P3", "kind": "incident", "scope": "out"}
    ok(await run(technician, ticket["id"], "triage", triage))
    assert (await run(contact, ticket["id"], "quote", quote)).status_code == 403
    before = {"minutes": 30, "work_type": "remote", "worked_at": iso(datetime.now(UTC))}
    ok(await run(technician, ticket["id"], "time-entries", before))
    quoted = ok(await run(technician, ticket["id"], "quote", quote))["quote"]
    assert (quoted["status"], quoted["minutes"], quoted["amount_cents"]) == ("pending", 120, 30_000)
    approved = ok(await run(contact, ticket["id"], "approve-quote", {}))["quote"]
    assert (approved["id"], approved["status"]) == (quoted["id"], "approved")
    assert (await run(contact, ticket["id"], "decline-quote", {})).status_code == 409
    after = {"minutes": 60, "work_type": "remote", "worked_at": iso(datetime.now(UTC))}
    ok(await run(technician, ticket["id"], "time-entries", after))
    await entries_seen(stack.billing, ticket["id"], 2)

    period = datetime.now(UTC).strftime("%Y-%m")
    url = f"/v1/accounts/{account['id']}/usage?period={period}"
    usage = await settled(
        stack.on_billing(stack.admin), url, lambda u: u["minutes"]["out_of_scope"] == 90
    )
    flagged = usage["before_quote_approval"]
    assert [(f["ticket_id"], f["minutes"]) for f in flagged] == [(ticket["id"], 30)]


async def _two(probe: Any) -> Any:
    rows = await probe()
    return rows if len(rows) == 2 else None


async def test_a_revoked_partner_margin_bills_at_full_price(stack: Stack) -> None:
    importer = await stack.importer()
    agreement = {
        "preset": "partner_reseller",
        "effective_from": iso(month_start(6)),
        "plan": {"discount_percent": 20, "hourly_rate_cents": 15000},
        "partner_rules": {"excessive_escalation_threshold": 1, "warnings_before_penalty": 0},
    }
    account = await account_with(stack.admin, agreement)
    fields = {"partner_domain": "p.example", "customer_name": "C", "customer_domain": "c.example",
              "details": "d", "steps_taken": "s", "error_messages": "e"}  # fmt: skip
    start = month_start(1)
    work = await ticket_at(importer, account["id"], start + H, fields=fields)
    await log(importer, work, 60, start + 2 * H, at=start + 3 * H, scope="out")
    flagged = await ticket_at(importer, account["id"], start + 4 * H, fields=fields)
    ok(
        await run(
            importer, flagged, "close", {"reason": "duplicate", "occurred_at": iso(start + 5 * H)}
        )
    )
    ok(await run(importer, flagged, "partner-resolvable", {"occurred_at": iso(start + 6 * H)}))
    await log(importer, work, 60, start + 7 * H, at=start + 8 * H, scope="out")
    billing = stack.on_billing(stack.admin)
    await entries_seen(stack.billing, work, 2)
    url = f"/v1/accounts/{account['id']}/invoices"
    period = start.strftime("%Y-%m")

    def revoked(body: Any) -> bool:
        inv = next((i for i in body["items"] if i["period"] == period), None)
        return inv is not None and len([x for x in inv["lines"] if x["kind"] == "overage"]) == 2

    body = await settled(billing, url, revoked)
    invoice = next(i for i in body["items"] if i["period"] == period)
    overage = sorted(
        (x["discount_percent"], x["amount_cents"])
        for x in invoice["lines"]
        if x["kind"] == "overage"
    )
    assert overage == [(0, 15000), (20, 12000)]


async def test_tenancy_and_bad_periods(stack: Stack) -> None:
    account = await account_with(stack.admin, cloud("starter"))
    other = await account_with(stack.admin, cloud("starter"))
    url = f"/v1/accounts/{account['id']}/usage"
    period = month_start(1).strftime("%Y-%m")
    allowed = stack.on_billing(await billing_contact(stack.admin, account["id"], ["billing"]))
    plain = stack.on_billing(await billing_contact(stack.admin, account["id"], ["key_contact"]))
    stranger = stack.on_billing(await billing_contact(stack.admin, other["id"], ["billing"]))
    await settled(allowed, url + f"?period={period}", lambda b: True)
    await settled(stranger, f"/v1/accounts/{other['id']}/usage?period={period}", lambda b: True)

    async def known(caller: As = plain) -> bool:  # the key reached billing
        return (await caller.get(url, period=period)).status_code != 401

    await wait_for(known)
    assert (await plain.get(url, period=period)).status_code == 403
    assert (await stranger.get(url, period=period)).status_code == 404
    invoices = ok(await allowed.get(f"/v1/accounts/{account['id']}/invoices"))["items"]
    assert invoices
    assert (await stranger.get(f"/v1/invoices/{invoices[0]['id']}")).status_code == 404
    assert (await plain.get(f"/v1/invoices/{invoices[0]['id']}")).status_code == 403
    assert ok(await allowed.get(f"/v1/invoices/{invoices[0]['id']}"))["id"] == invoices[0]["id"]
    for bad in ("0000-01", "9999-12", "2026-13", "2026-1", "x"):
        assert problem_fields(await allowed.get(url, period=bad)) == ["period"], bad
    assert problem_fields(await allowed.get(url)) == ["period"]  # required, as OpenAPI says
    review = f"/v1/accounts/{account['id']}/budget-review"
    assert problem_fields(await allowed.get(review, quarter="2026-Q5")) == ["quarter"]
    assert problem_fields(await allowed.get(review)) == ["quarter"]
