"""Intake's read side: the queries of the GET routes and the views they answer with.

Read-only, on a connection outside any command; tenancy is applied here as in the commands
(another account's ids are `NotFound`; a contact with visibility "own" sees only their tickets).
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import accounts, agreements, contacts, staff, ticket_events
from helpdesk.intake.adapters.tables import tickets as ticket_rows
from helpdesk.intake.domain import partner
from helpdesk.intake.domain.tickets import audience_history, audience_view
from helpdesk.shared.agreements import Agreement
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts.common import Priority, TicketStatus
from helpdesk.shared.errors import Forbidden, InvalidField, NotFound


def account_view(account: Any, at: datetime) -> dict[str, Any]:
    """An account (a row or an `AccountRecord`) as the API shows it at instant `at`."""
    standing = partner.PartnerStanding.from_json(account.partner or {})
    return {
        "id": account.id,
        "number": account.number,
        "name": account.name,
        "timezone": account.timezone,
        "country": account.country,
        "status": account.status,
        "agreement_version": account.agreement_version,
        "partner": standing.view(at),
    }


async def account(conn: AsyncConnection, principal: Principal, account_id: UUID) -> Any:
    """The account row if the caller may see it, else `NotFound`."""
    if not principal.can_see_account(account_id):
        raise NotFound.of("account")
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        raise NotFound.of("account")
    return row


async def account_list(conn: AsyncConnection, principal: Principal) -> list[Any]:
    """Every account (staff), or the caller's own (a contact), by number."""
    query = sa.select(accounts).order_by(accounts.c.number)
    if not principal.is_staff:
        query = query.where(accounts.c.id == principal.account_id)
    return list(await conn.execute(query))


def agreement_view(agreement: Agreement, version: int, at: datetime) -> dict[str, Any]:
    """An agreement as the API shows it: the document, its version, and per calendar the
    holidays it resolved to from 1 January of the current year (at `at`, in the calendar's
    zone) to 31 December of the next, so a provider can check them against its own list."""
    holidays: dict[str, dict[str, Any]] = {}
    for name, calendar in agreement.calendars.items():
        year = at.astimezone(calendar.zone).year
        first, last = date(year, 1, 1), date(year + 1, 12, 31)
        holidays[name] = {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "days": [
                {"date": day.isoformat(), "name": names}
                for day, names in calendar.holidays_between(first, last)
            ],
        }
    return {**agreement.model_dump(mode="json"), "version": version, "resolved_holidays": holidays}


async def agreement(
    conn: AsyncConnection, principal: Principal, account_id: UUID, at: datetime
) -> dict[str, Any]:
    """The account's current agreement with its version and resolved holidays at `at`."""
    await account(conn, principal, account_id)
    row = (
        await conn.execute(
            sa.select(agreements)
            .where(agreements.c.account_id == account_id)
            .order_by(agreements.c.version.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        raise NotFound("The account has no agreement yet.")
    return agreement_view(Agreement.model_validate(row.agreement), row.version, at)


async def contact_list(
    conn: AsyncConnection, principal: Principal, account_id: UUID
) -> list[dict[str, Any]]:
    """The account's contacts, by name. A contact who sees only their own tickets sees only
    themselves: they have no use for their colleagues' names and e-mail addresses."""
    await account(conn, principal, account_id)
    query = sa.select(contacts).where(contacts.c.account_id == account_id)
    if principal.role == "contact" and principal.visibility == "own":
        query = query.where(contacts.c.id == principal.contact_id)
    rows = await conn.execute(query.order_by(contacts.c.name))
    return [dict(row._mapping) for row in rows]


async def staff_list(conn: AsyncConnection, principal: Principal) -> list[dict[str, Any]]:
    """The provider's staff, by name (staff only)."""
    if not principal.is_staff:
        raise Forbidden("Only staff see the staff list.")
    rows = await conn.execute(sa.select(staff).order_by(staff.c.name))
    return [dict(row._mapping) for row in rows]


async def ticket(conn: AsyncConnection, principal: Principal, ticket_id: UUID) -> Any:
    """The ticket row if the caller may see it, else `NotFound`."""
    row = (await conn.execute(sa.select(ticket_rows).where(ticket_rows.c.id == ticket_id))).first()
    if row is None or not principal.can_see_ticket(row.account_id, row.contact_id):
        raise NotFound.of("ticket")
    return row


async def ticket_list(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: UUID | None,
    status: TicketStatus | None,
    priority: Priority | None,
    assignee: str | None,
    text: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """Tickets the caller may see, newest first, filtered; `next_cursor` pages on."""
    query = (
        sa.select(ticket_rows.c.id, ticket_rows.c.state)
        .order_by(ticket_rows.c.id.desc())
        .limit(limit + 1)
    )
    query = principal.visible_tickets(query, ticket_rows.c.account_id, ticket_rows.c.contact_id)
    filters = {
        ticket_rows.c.account_id: account_id,
        ticket_rows.c.status: status,
        ticket_rows.c.priority: priority,
        ticket_rows.c.assignee: assignee,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(ticket_rows.c.subject.ilike(pattern), ticket_rows.c.description.ilike(pattern))
        )
    if cursor:
        try:
            after = UUID(bytes=base64.urlsafe_b64decode(cursor.encode() + b"=="))
        except ValueError as exc:
            raise InvalidField(
                "cursor", "not a cursor from this API", "One or more fields are invalid."
            ) from exc
        query = query.where(ticket_rows.c.id < after)
    rows = (await conn.execute(query)).all()
    page = rows[:limit]
    next_cursor = (
        base64.urlsafe_b64encode(page[-1].id.bytes).decode().rstrip("=")
        if len(rows) > limit
        else None
    )
    items = [audience_view(row.state, staff=principal.is_staff) for row in page]
    return {"items": items, "next_cursor": next_cursor}


async def ticket_history(
    conn: AsyncConnection, principal: Principal, ticket_id: UUID
) -> list[dict[str, Any]]:
    """The ticket's audit history, oldest first, for the caller's audience."""
    await ticket(conn, principal, ticket_id)
    rows = await conn.execute(
        sa.select(ticket_events.c.envelope)
        .where(ticket_events.c.ticket_id == ticket_id)
        .order_by(ticket_events.c.seq)
    )
    return audience_history([row.envelope for row in rows], staff=principal.is_staff)
