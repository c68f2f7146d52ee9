"""Intake's service layer: each command loads state, asks the domain, and records events.

A command's events, the read-model rows they imply and the outbox rows that publish them commit
in one transaction. Ticket commands fold the ticket from its event store, and the store's
primary key (ticket_id, seq) turns a concurrent write into a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import (
    account_numbers,
    accounts,
    agreements,
    contacts,
    runtime,
    staff,
    ticket_events,
    ticket_numbers,
    tickets,
)
from helpdesk.intake.domain import partner
from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.tickets import Ticket, TransitionError
from helpdesk.intake.handlers import load_standing, projection
from helpdesk.shared.agreements import Agreement
from helpdesk.shared.auth import Principal
from helpdesk.shared.consumer import AnyEvent, UnitOfWork
from helpdesk.shared.context import Context, new_id, system_actor, utc_now
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT, AccountStatusChanged
from helpdesk.shared.contracts.common import AccountStatus, CloseReason
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.events import Actor, Envelope, Event, registry
from helpdesk.shared.web import Problem, check_if_match

SYSTEM = system_actor("intake")


def now() -> datetime:
    """The current instant (the service layer reads the clock; the domain never does)."""
    return utc_now()


def actor_of(principal: Principal) -> Actor:
    """The envelope actor of a caller."""
    if principal.key_id == "admin":
        return Actor(type="admin", id="admin")
    if principal.role == "import":
        return Actor(type="import", id=principal.key_id)
    if principal.is_staff:
        return Actor(type="staff", id=str(principal.staff_id or principal.key_id))
    return Actor(type="contact", id=str(principal.contact_id or principal.key_id))


def author_of(principal: Principal) -> str:
    """How a comment's author is recorded."""
    actor = actor_of(principal)
    return f"{actor.type}:{actor.id}"


def context(principal: Principal, occurred_at: datetime | None, at: datetime) -> Context:
    """The command context; only a key allowed to import may back-date a command."""
    if occurred_at is None:
        return Context(actor_of(principal), at, at)
    if not principal.may_import:
        raise Problem(
            403,
            "Forbidden",
            "Only a key with the import scope may set occurred_at.",
            errors=[{"field": "occurred_at", "reason": "needs the import scope"}],
        )
    if occurred_at > at:
        raise _invalid("occurred_at", "lies in the future")
    return Context(actor_of(principal), at, occurred_at)


def _invalid(field: str, reason: str, detail: str | None = None) -> Problem:
    return Problem(
        422,
        "Invalid request",
        detail or f"{field} {reason}; nothing was changed.",
        errors=[{"field": field, "reason": reason}],
    )


def _not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"No such {what}.")


def _conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail)


def conflict(detail: str) -> Problem:
    """A 409 with `detail`."""
    return _conflict(detail)


# -- recording events -------------------------------------------------------------------------


async def record(conn: AsyncConnection, events: Sequence[AnyEvent]) -> None:
    """Apply events to intake's read models and queue them for Kafka, in this transaction."""
    if not events:
        return  # e.g. a partner flag below the threshold decides nothing
    await UnitOfWork(conn, runtime, projection).emit(events)


async def record_ticket(
    conn: AsyncConnection,
    ticket: Ticket,
    payloads: Sequence[BaseModel],
    ctx: Context,
    *,
    purpose: str | None = None,
) -> Ticket:
    """Append ticket events after `ticket`'s last seq; a concurrent append is a 409.

    With a `purpose` (a reaction's decision), the event ids derive from the cause and it.
    """
    if ctx.occurred_at < ticket.last_occurred_at:
        if ctx.occurred_at != ctx.recorded_at:
            raise _invalid("occurred_at", "is before the ticket's last recorded event")
        # A live command that read the clock just before a concurrent one committed: it
        # happens right after that one, so the ticket's history never goes backwards.
        ctx = ctx.at(ticket.last_occurred_at)
    events = [
        ctx.event(
            p,
            account_id=ticket.account_id,
            ticket_id=ticket.id,
            seq=ticket.seq + i,
            purpose=f"{purpose}/{i}" if purpose else None,
        )
        for i, p in enumerate(payloads, start=1)
    ]
    await append_to_store(conn, events)
    await record(conn, events)
    state = ticket
    for event in events:
        state = rules.fold(state, event.payload, event.envelope.seq or 0, ctx.occurred_at)
    return state


async def append_to_store(conn: AsyncConnection, events: Sequence[AnyEvent]) -> None:
    """Append to the ticket event store; a taken (ticket_id, seq) means a concurrent write.

    No savepoint: the conflict aborts the command's whole transaction, which is what we want.
    """
    try:
        await conn.execute(
            ticket_events.insert(),
            [
                {
                    "ticket_id": e.envelope.ticket_id,
                    "seq": e.envelope.seq,
                    "event_id": e.envelope.event_id,
                    "account_id": e.envelope.account_id,
                    "type": e.type,
                    "envelope": e.envelope.model_dump(mode="json"),
                }
                for e in events
            ],
        )
    except sa.exc.IntegrityError as exc:
        raise _conflict("The ticket changed meanwhile; reload it and retry.") from exc


async def load_ticket(conn: AsyncConnection, ticket_id: UUID) -> Ticket | None:
    """Fold a ticket from its event store (the write model), or None."""
    rows = await conn.execute(
        sa.select(ticket_events.c.envelope)
        .where(ticket_events.c.ticket_id == ticket_id)
        .order_by(ticket_events.c.seq)
    )
    ticket: Ticket | None = None
    for (raw,) in rows:
        env = Envelope.model_validate(raw)
        payload = registry.decode_payload(env)
        if ticket is None:
            assert isinstance(payload, TicketOpened)
            ticket = rules.start(payload, env.seq or 1, env.occurred_at)
        else:
            ticket = rules.fold(ticket, payload, env.seq or 0, env.occurred_at)
    return ticket


async def visible_ticket(
    conn: AsyncConnection, principal: Principal, ticket_id: UUID, if_match: str | None = None
) -> Ticket:
    """The ticket if the caller may see it (else 404), checked against `If-Match`.

    The ticket's ETag is its version (seq), strong: `If-Match: "5"`, `*` or a list of tags;
    a stale one is a 412 (RFC 9110), a weak one never matches.
    """
    ticket = await load_ticket(conn, ticket_id)
    if ticket is None or not principal.can_see_ticket(ticket.account_id, ticket.contact_id):
        raise _not_found("ticket")
    check_if_match(if_match, str(ticket.seq), "ticket")
    return ticket


async def current_agreement(conn: AsyncConnection, account_id: UUID) -> Agreement | None:
    """The account's current agreement, if one was set."""
    raw = await conn.scalar(
        sa.select(agreements.c.agreement)
        .where(agreements.c.account_id == account_id)
        .order_by(agreements.c.version.desc())
        .limit(1)
    )
    return Agreement.model_validate(raw) if raw is not None else None


# -- accounts ---------------------------------------------------------------------------------


async def account_row(conn: AsyncConnection, principal: Principal, account_id: UUID) -> Any:
    """The account row if the caller may see it, else 404."""
    if not principal.can_see_account(account_id):
        raise _not_found("account")
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        raise _not_found("account")
    return row


def account_view(row: Any, at: datetime) -> dict[str, Any]:
    """An account as the API shows it."""
    standing = partner.PartnerStanding.from_json(row.partner or {})
    return {
        "id": row.id,
        "number": row.number,
        "name": row.name,
        "timezone": row.timezone,
        "status": row.status,
        "agreement_version": row.agreement_version,
        "partner": standing.view(at),
    }


async def unique_account(
    conn: AsyncConnection, name: str, number: str | None, exclude: UUID | None = None
) -> None:
    """409 when another account has this name or number."""
    clash = sa.or_(accounts.c.name == name, accounts.c.number == number)
    query = sa.select(accounts.c.name, accounts.c.number).where(clash)
    if exclude is not None:
        query = query.where(accounts.c.id != exclude)
    row = (await conn.execute(query)).first()
    if row is not None:
        raise name_taken("name" if row.name == name else "number")


def name_taken(field: str = "name") -> Problem:
    """409: another account has this name (or number)."""
    return Problem(
        409,
        "Conflict",
        f"Another account has this {field}.",
        errors=[{"field": field, "reason": "already taken"}],
    )


async def recorded(conn: AsyncConnection, table: sa.Table, row_id: UUID) -> bool:
    """Whether the row a just-emitted event creates is there.

    The read-model handlers insert with ON CONFLICT DO NOTHING on the unique columns (a replay
    must not fail), so a create that lost a race with a concurrent one leaves no row: the
    caller then answers 409 and its transaction, events included, is rolled back.
    """
    return await conn.scalar(sa.select(table.c.id).where(table.c.id == row_id)) is not None


async def next_account_number(conn: AsyncConnection) -> str:
    """A readable account number."""
    return f"AC-{await conn.scalar(account_numbers.next_value())}"


async def next_ticket_number(conn: AsyncConnection) -> str:
    """A ticket number people can read out on the phone: HD- and six digits."""
    return f"HD-{await conn.scalar(ticket_numbers.next_value())}"


async def change_account_status(
    conn: AsyncConnection, row: Any, status: AccountStatus, ctx: Context
) -> None:
    """Record a status change; on hold or expired closes every ticket not yet closed."""
    if status == row.status:
        return
    changed = AccountStatusChanged(account_id=row.id, status=status, previous=row.status)
    await record(conn, [ctx.event(changed, account_id=row.id)])
    if status == "active":
        return
    reason: CloseReason = "account_on_hold" if status == "on_hold" else "contract_expired"
    open_ids = await conn.scalars(
        sa.select(tickets.c.id).where(tickets.c.account_id == row.id, tickets.c.status != "closed")
    )
    for ticket_id in list(open_ids):
        ticket = await load_ticket(conn, ticket_id)
        assert ticket is not None
        await record_ticket(conn, ticket, [rules.close(ticket, reason)], ctx)


# -- tickets ----------------------------------------------------------------------------------


async def contact_of_account(conn: AsyncConnection, contact_id: UUID, account_id: UUID) -> bool:
    """Whether `contact_id` is a contact of `account_id`."""
    found = await conn.scalar(
        sa.select(contacts.c.id).where(
            contacts.c.id == contact_id, contacts.c.account_id == account_id
        )
    )
    return found is not None


async def open_ticket(
    conn: AsyncConnection, principal: Principal, request: dict[str, Any], ctx: Context
) -> Ticket:
    """Open a ticket from a validated request body (API or e-mail)."""
    account_id: UUID = request["account_id"]
    if not principal.can_see_account(account_id):
        raise _not_found("account")
    # One round trip for what opening needs: the account and its agreement's required fields.
    required_on_open = (
        sa.select(agreements.c.agreement["required_fields"]["on_open"])
        .where(agreements.c.account_id == accounts.c.id)
        .order_by(agreements.c.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    account = (
        await conn.execute(
            sa.select(
                accounts.c.status, accounts.c.agreement_version, required_on_open.label("required")
            ).where(accounts.c.id == account_id)
        )
    ).first()
    if account is None:
        raise _not_found("account")
    if account.status != "active":
        raise _conflict(f"The account is {account.status}; it takes no new tickets.")
    contact_id: UUID | None = request.get("contact_id")
    if not principal.is_staff:
        contact_id = principal.contact_id
    elif contact_id is not None and not await contact_of_account(conn, contact_id, account_id):
        raise _invalid("contact_id", "is not a contact of this account")
    if account.required and request["channel"] != "email":
        # E-mail tickets are reviewed by a technician first (seed 003): nothing is refused.
        try:
            rules.check_required(list(account.required), {**request, **request["fields"]})
        except rules.MissingFieldsError as missing:
            raise Problem(
                422,
                "Invalid request",
                "The agreement requires fields that are missing; nothing was changed.",
                errors=[
                    # a top-level ticket field (affected_users) or a key of `fields`
                    {
                        "field": f if f in request else f"fields.{f}",
                        "reason": "required by the agreement",
                    }
                    for f in missing.fields
                ],
            ) from missing
    reported_at: datetime = request.get("reported_at") or ctx.occurred_at
    if request.get("reported_at") is not None and not principal.may_import:
        raise Problem(
            403,
            "Forbidden",
            "Only a key with the import scope may set reported_at.",
            errors=[{"field": "reported_at", "reason": "needs the import scope"}],
        )
    if reported_at > ctx.recorded_at:
        raise _invalid("reported_at", "lies in the future")
    ticket_id = new_id()
    opened = TicketOpened(
        ticket_id=ticket_id,
        number=await next_ticket_number(conn),
        account_id=account_id,
        contact_id=contact_id,
        subject=request["subject"],
        description=request.get("description", ""),
        channel=request["channel"],
        priority=request.get("priority"),
        kind=request.get("kind", "incident"),
        scope=request.get("scope", "in"),
        category=request.get("category"),
        severity=request.get("severity"),
        affected_users=request.get("affected_users"),
        service_class=request.get("service_class"),
        fields=request.get("fields", {}),
        reported_at=reported_at,
        agreement_version=account.agreement_version,
    )
    # An imported ticket opens when it was reported, unless the import says otherwise; else
    # its later back-dated commands would lie before its opening.
    opened_at = reported_at if request.get("occurred_at") is None else ctx.occurred_at
    occurred = Context(ctx.actor, ctx.recorded_at, max(opened_at, reported_at))
    event = occurred.event(opened, account_id=account_id, ticket_id=ticket_id, seq=1)
    await append_to_store(conn, [event])
    await record(conn, [event])
    return rules.start(opened, 1, occurred.occurred_at)


def staff_only(principal: Principal, action: str) -> None:
    """403 for contacts."""
    if not principal.is_staff:
        raise Problem(403, "Forbidden", f"Only staff may {action}.")


async def ticket_command(
    conn: AsyncConnection,
    principal: Principal,
    ticket_id: UUID,
    command: str,
    body: dict[str, Any],
    ctx: Context,
    if_match: str | None,
) -> Ticket:
    """Run one lifecycle command on a ticket; answers the ticket's new state."""
    ticket = await visible_ticket(conn, principal, ticket_id, if_match)
    try:
        payloads = await decide(conn, principal, ticket, command, body)
    except TransitionError as exc:
        raise _conflict(str(exc)) from exc
    except rules.MissingFieldsError as missing:
        raise Problem(
            422,
            "Invalid request",
            "The agreement requires fields on this escalation; nothing was changed.",
            errors=[
                {"field": f"fields.{f}", "reason": "required by the agreement"}
                for f in missing.fields
            ],
        ) from missing
    except ValueError as exc:
        raise _invalid("category", str(exc)) from exc
    updated = await record_ticket(conn, ticket, payloads, ctx)
    if command == "partner-resolvable":
        await apply_partner_rules(conn, updated, ctx)
    return updated


async def decide(
    conn: AsyncConnection, principal: Principal, ticket: Ticket, command: str, body: dict[str, Any]
) -> list[BaseModel]:
    """The domain's answer to `command` on `ticket`."""
    author = author_of(principal)
    if command == "customer-reply":
        return [
            rules.customer_reply(
                ticket,
                comment_id=new_id(),
                body=body["body"],
                author=author,
                channel=body.get("channel", "api"),
            )
        ]
    if command == "confirm":
        return rules.confirm(ticket)
    if command == "reopen":
        return [rules.reopen(ticket, body["reason"])]
    staff_only(principal, command.replace("-", " "))
    agreement = await current_agreement(conn, ticket.account_id)
    match command:
        case "triage":
            catalogue = agreement.scope_catalogue if agreement else None
            return [
                rules.triage(
                    ticket,
                    priority=body["priority"],
                    kind=body.get("kind") or ticket.kind,
                    scope=body.get("scope"),
                    category=body.get("category"),
                    in_scope=list(catalogue.in_scope) if catalogue else [],
                    out_of_scope=list(catalogue.out_of_scope) if catalogue else [],
                )
            ]
        case "assign":
            return [rules.assign(ticket, body["technician"])]
        case "comments":
            return [
                rules.comment(
                    ticket,
                    comment_id=new_id(),
                    body=body["body"],
                    public=body["public"],
                    by_staff=True,
                    author=author,
                )
            ]
        case "request-info":
            return [
                rules.request_info(ticket, comment_id=new_id(), body=body["body"], author=author)
            ]
        case "escalate":
            required = list(agreement.required_fields.on_escalate) if agreement else []
            return [
                rules.escalate(
                    ticket, tier=body["tier"], fields=body.get("fields") or {}, required=required
                )
            ]
        case "vendor-return":
            return [rules.vendor_return(ticket, body.get("note", ""))]
        case "time-entries":
            # Work on a ticket follows its report (an import back-dates both); compared to the
            # minute, since clients send worked_at in whole seconds or minutes.
            if body["worked_at"] < ticket.reported_at.replace(second=0, microsecond=0):
                raise _invalid("worked_at", "lies before the ticket was reported")
            return [
                rules.log_time(
                    ticket,
                    entry_id=new_id(),
                    minutes=body["minutes"],
                    work_type=body["work_type"],
                    scope=body.get("scope"),
                    after_hours=body["after_hours"],
                    worked_at=body["worked_at"],
                    note=body.get("note", ""),
                    technician=author,
                )
            ]
        case "resolve":
            return [rules.resolve(ticket, resolution=body["resolution"], summary=body["summary"])]
        case "close":
            return [rules.close(ticket, body["reason"])]
        case "partner-resolvable":
            if agreement is None or agreement.partner_rules is None:
                raise TransitionError("the account's agreement has no partner rules")
            return [rules.flag_partner_resolvable(ticket, body.get("note", ""))]
    raise _not_found("command")


async def apply_partner_rules(conn: AsyncConnection, ticket: Ticket, ctx: Context) -> None:
    """After a ticket is flagged partner-resolvable: a warning, a revocation, or nothing."""
    agreement = await current_agreement(conn, ticket.account_id)
    assert agreement is not None
    assert agreement.partner_rules is not None
    standing = await load_standing(conn, ticket.account_id)
    decided = partner.on_flagged(
        standing, ctx.occurred_at, agreement.partner_rules, ticket.account_id
    )
    await record(conn, [ctx.event(p, account_id=ticket.account_id) for p in decided])


async def auto_close(uow: UnitOfWork, request: Event[AutoCloseRequested], at: datetime) -> None:
    """The SLA timer's follow-ups went unanswered: close with reason no_response.

    A no-op when the ticket moved on since the request was made (the customer answered). The
    closure's id derives from the request, so deciding it twice records it once.
    """
    ticket = await load_ticket(uow.conn, request.payload.ticket_id)
    if (
        ticket is None
        or ticket.seq != request.payload.ticket_seq
        or ticket.status != "waiting_on_customer"
    ):
        return
    ctx = Context(SYSTEM, at, max(at, ticket.last_occurred_at), request)
    await record_ticket(
        uow.conn, ticket, [rules.close(ticket, "no_response")], ctx, purpose="auto_close"
    )


# -- people and keys --------------------------------------------------------------------------


async def staff_exists(conn: AsyncConnection, staff_id: UUID) -> str | None:
    """The role of staff member `staff_id`, or None."""
    role: str | None = await conn.scalar(sa.select(staff.c.role).where(staff.c.id == staff_id))
    return role


async def contact_account(conn: AsyncConnection, contact_id: UUID) -> Any:
    """The contact row, or None."""
    return (await conn.execute(sa.select(contacts).where(contacts.c.id == contact_id))).first()


def provider(ctx: Context, payload: BaseModel) -> AnyEvent:
    """An event of the provider itself (staff, staff keys)."""
    return ctx.event(payload, account_id=PROVIDER_ACCOUNT)
