"""Ticket use cases: open a ticket, run a lifecycle command, take an e-mail reply, auto-close.

Each lifecycle command is a class of `commands` handled by the function registered for it in
`HANDLERS`: it gets the ticket the caller may see and answers the payloads the domain decides.
`run` records them after the ticket's last event; the event store turns a concurrent append to
the same ticket into a 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from helpdesk.intake.application.commands import (
    Assign,
    Close,
    Comment,
    Confirm,
    CustomerReply,
    Escalate,
    Imported,
    PartnerResolvable,
    QuoteApproval,
    QuoteCreate,
    QuoteDecline,
    Reopen,
    RequestInfo,
    Resolve,
    TicketCreate,
    TicketImport,
    TimeEntry,
    Triage,
    VendorReturn,
    step_command,
)
from helpdesk.intake.application.context import (
    IMPORTED_SYSTEM,
    SYSTEM,
    author_of,
    command_context,
)
from helpdesk.intake.application.ports import IntakeUnitOfWork
from helpdesk.intake.domain import partner
from helpdesk.intake.domain import tickets as rules
from helpdesk.intake.domain.tickets import Ticket
from helpdesk.shared.auth import Principal
from helpdesk.shared.context import Context, new_id
from helpdesk.shared.contracts.billing import FairUseExceeded
from helpdesk.shared.contracts.common import CloseReason, EscalationTier
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketOpened
from helpdesk.shared.errors import (
    ApplicationError,
    Conflict,
    Forbidden,
    Invalid,
    InvalidField,
    NotFound,
)
from helpdesk.shared.events import Event

C = TypeVar("C", bound=Imported)
#: Decides a command on a ticket: the payloads of the events to record.
Decide = Callable[[IntakeUnitOfWork, Principal, Ticket, C], Awaitable[list[BaseModel]]]
#: Checks the ticket's current version (its ETag value) against the caller's precondition
#: (If-Match) and raises when it does not hold.
Precondition = Callable[[str], None]


@dataclass(frozen=True)
class Handler:
    """How one ticket command is decided, and who may give it."""

    decide: Decide[Any]
    #: what a contact is told they may not do ("Only staff may …"), or None when contacts may
    #: give the command too
    staff_only: str | None


#: Every ticket command by its class.
HANDLERS: dict[type[Imported], Handler] = {}


def handles(command: type[C], *, staff_only: str | None = None) -> Callable[[Decide[C]], Decide[C]]:
    """Register the decision of `command`; with `staff_only`, contacts may not give it."""

    def register(decide: Decide[C]) -> Decide[C]:
        HANDLERS[command] = Handler(decide, staff_only=staff_only)
        return decide

    return register


# -- opening ----------------------------------------------------------------------------------


async def open_ticket(
    uow: IntakeUnitOfWork, principal: Principal, command: TicketCreate, ctx: Context
) -> Ticket:
    """Open a ticket (from the API or an e-mail)."""
    account_id = command.account_id
    if not principal.can_see_account(account_id):
        raise NotFound.of("account")
    account = await uow.accounts.opening(account_id)
    if account is None:
        raise NotFound.of("account")
    if account.status != "active":
        raise Conflict(f"The account is {account.status}; it takes no new tickets.")
    contact_id = command.contact_id
    if not principal.is_staff:
        contact_id = principal.contact_id
    elif contact_id is not None:
        contact = await uow.people.contact(contact_id)
        if contact is None or contact.account_id != account_id:
            raise InvalidField("contact_id", "is not a contact of this account")
    request = command.model_dump()
    try:
        rules.check_required_on_open(
            account.required_on_open, command.channel, {**request, **command.fields}
        )
    except rules.MissingFieldsError as missing:
        raise Invalid(
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
    if command.reported_at is not None and not principal.may_import:
        raise Forbidden(
            "Only a key with the import scope may set reported_at.",
            errors=[{"field": "reported_at", "reason": "needs the import scope"}],
        )
    try:
        reported_at, opened_at = rules.opening_instant(
            command.reported_at, command.occurred_at, ctx.recorded_at
        )
    except rules.TimelineError as refused:
        raise InvalidField(refused.field, refused.reason) from refused
    ticket_id = new_id()
    opened = TicketOpened(
        ticket_id=ticket_id,
        number=await uow.tickets.next_number(),
        account_id=account_id,
        contact_id=contact_id,
        subject=command.subject,
        description=command.description,
        channel=command.channel,
        priority=command.priority,
        kind=command.kind,
        scope=command.scope,
        category=command.category,
        severity=command.severity,
        affected_users=command.affected_users,
        service_class=command.service_class,
        fields=command.fields,
        reported_at=reported_at,
        agreement_version=account.agreement_version,
    )
    event = ctx.at(opened_at).event(opened, account_id=account_id, ticket_id=ticket_id, seq=1)
    await uow.tickets.append([event])
    await uow.emit([event])
    return rules.start(opened, 1, opened_at)


# -- lifecycle commands -----------------------------------------------------------------------


async def import_ticket(
    uow: IntakeUnitOfWork, principal: Principal, command: TicketImport, at: datetime
) -> Ticket:
    """Open a ticket and run its whole history, in one transaction (import keys only).

    The consumers then receive the history at once, so the SLA timer decides on all of it
    rather than on a ticket whose first reply has not come yet. A step that is refused refuses
    the whole import, its fields named `history.<index>.<field>`; nothing is recorded.
    """
    if not principal.may_import:
        raise Forbidden("Only a key with the import scope may import a ticket's history.")
    opening = command.ticket
    ticket = await open_ticket(
        uow, principal, opening, command_context(principal, opening.occurred_at, at)
    )
    for index, step in enumerate(command.history):
        try:
            ticket = await run(
                uow,
                principal,
                ticket.id,
                step_command(step),
                command_context(principal, step.occurred_at, at),
            )
        except ApplicationError as refused:
            raise _in_step(refused, index) from refused
    return ticket


def _in_step(refused: ApplicationError, index: int) -> ApplicationError:
    """`refused`, its fields and detail naming the history step it came from."""
    where = f"history.{index}"
    refused.errors = [
        {**error, "field": f"{where}.{error['field']}"} for error in refused.errors
    ] or [{"field": where, "reason": refused.detail}]
    refused.detail = f"{where}: {refused.detail}"
    return refused


async def visible_ticket(uow: IntakeUnitOfWork, principal: Principal, ticket_id: UUID) -> Ticket:
    """The ticket if the caller may see it, else `NotFound` (they learn nothing of it)."""
    ticket = await uow.tickets.load(ticket_id)
    if ticket is None or not principal.can_see_ticket(ticket.account_id, ticket.contact_id):
        raise NotFound.of("ticket")
    return ticket


async def run(
    uow: IntakeUnitOfWork,
    principal: Principal,
    ticket_id: UUID,
    command: Imported,
    ctx: Context,
    precondition: Precondition | None = None,
) -> Ticket:
    """Run one lifecycle command on a ticket; answers the ticket's new state."""
    handler = HANDLERS[type(command)]
    ticket = await visible_ticket(uow, principal, ticket_id)
    if precondition is not None:
        precondition(str(rules.version_for(ticket, staff=principal.is_staff)))
    if handler.staff_only is not None and not principal.is_staff:
        raise Forbidden(f"Only staff may {handler.staff_only}.")
    try:
        payloads = await handler.decide(uow, principal, ticket, command)
    except rules.TransitionError as refused:
        raise Conflict(str(refused)) from refused
    updated = await record(uow, ticket, payloads, ctx)
    if isinstance(command, PartnerResolvable):
        await apply_partner_rules(uow, updated, ctx)
    return updated


async def record(
    uow: IntakeUnitOfWork,
    ticket: Ticket,
    payloads: Sequence[BaseModel],
    ctx: Context,
    *,
    purpose: str | None = None,
) -> Ticket:
    """Append ticket events after `ticket`'s last seq and apply them; answers the new state.

    With a `purpose` (a reaction's decision), the event ids derive from the cause and it.
    """
    try:
        occurred_at = rules.command_instant(ticket, ctx.occurred_at, ctx.recorded_at)
    except rules.TimelineError as refused:
        raise InvalidField(refused.field, refused.reason) from refused
    ctx = ctx.at(occurred_at)
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
    await uow.tickets.append(events)
    await uow.emit(events)
    state = ticket
    for event in events:
        state = rules.fold(state, event.payload, event.envelope.seq or 0, occurred_at)
    return state


@handles(CustomerReply)
async def _customer_reply(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: CustomerReply
) -> list[BaseModel]:
    reply = rules.customer_reply(
        ticket, comment_id=new_id(), body=command.body, author=author_of(principal), channel="api"
    )
    return [reply]


@handles(Confirm)
async def _confirm(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Confirm
) -> list[BaseModel]:
    return rules.confirm(ticket)


@handles(Reopen)
async def _reopen(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Reopen
) -> list[BaseModel]:
    return [rules.reopen(ticket, command.reason)]


@handles(Triage, staff_only="triage")
async def _triage(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Triage
) -> list[BaseModel]:
    agreement = await uow.accounts.agreement(ticket.account_id)
    catalogue = agreement.scope_catalogue if agreement else None
    try:
        triaged = rules.triage(
            ticket,
            priority=command.priority,
            kind=command.kind or ticket.kind,
            scope=command.scope,
            category=command.category,
            in_scope=list(catalogue.in_scope) if catalogue else [],
            out_of_scope=list(catalogue.out_of_scope) if catalogue else [],
        )
    except rules.UnknownCategoryError as unknown:
        raise InvalidField("category", str(unknown)) from unknown
    return [triaged]


@handles(Assign, staff_only="assign")
async def _assign(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Assign
) -> list[BaseModel]:
    return [rules.assign(ticket, command.technician)]


@handles(Comment, staff_only="comment")
async def _comment(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Comment
) -> list[BaseModel]:
    tier = rules.tier_response(
        ticket,
        author_tier=await _tier_of(uow, principal),
        public=command.public,
        responds_for=command.responds_for,
    )
    commented = rules.comment(
        ticket,
        comment_id=new_id(),
        body=command.body,
        public=command.public,
        by_staff=True,
        author=author_of(principal),
        tier=tier,
    )
    return [commented]


async def _tier_of(uow: IntakeUnitOfWork, principal: Principal) -> EscalationTier | None:
    """The escalation tier of the staff member calling (None: front line, admin, import)."""
    return None if principal.staff_id is None else await uow.people.staff_tier(principal.staff_id)


@handles(RequestInfo, staff_only="request information")
async def _request_info(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: RequestInfo
) -> list[BaseModel]:
    asked = rules.request_info(
        ticket,
        comment_id=new_id(),
        body=command.body,
        author=author_of(principal),
        tier=rules.tier_response(ticket, author_tier=await _tier_of(uow, principal), public=True),
    )
    return [asked]


@handles(Escalate, staff_only="escalate")
async def _escalate(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Escalate
) -> list[BaseModel]:
    agreement = await uow.accounts.agreement(ticket.account_id)
    required = list(agreement.required_fields.on_escalate) if agreement else []
    try:
        escalated = rules.escalate(
            ticket,
            tier=command.tier,
            vendor=command.vendor,
            fields=command.fields,
            required=required,
        )
        return [escalated]
    except rules.MissingFieldsError as missing:
        raise Invalid(
            "The agreement requires fields on this escalation; nothing was changed.",
            errors=[
                {"field": f"fields.{f}", "reason": "required by the agreement"}
                for f in missing.fields
            ],
        ) from missing


@handles(VendorReturn, staff_only="record a vendor return")
async def _vendor_return(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: VendorReturn
) -> list[BaseModel]:
    return [rules.vendor_return(ticket, command.note)]


@handles(TimeEntry, staff_only="log time")
async def _log_time(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: TimeEntry
) -> list[BaseModel]:
    try:
        rules.check_worked_at(ticket, command.worked_at)
    except rules.TimelineError as refused:
        raise InvalidField(refused.field, refused.reason) from refused
    logged = rules.log_time(
        ticket,
        entry_id=new_id(),
        minutes=command.minutes,
        work_type=command.work_type,
        scope=command.scope,
        after_hours=command.after_hours,
        solution_design=command.solution_design,
        worked_at=command.worked_at,
        note=command.note,
        technician=author_of(principal),
    )
    return [logged]


@handles(Resolve, staff_only="resolve")
async def _resolve(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Resolve
) -> list[BaseModel]:
    return [rules.resolve(ticket, resolution=command.resolution, summary=command.summary)]


@handles(Close, staff_only="close")
async def _close(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: Close
) -> list[BaseModel]:
    return [rules.close(ticket, command.reason)]


@handles(QuoteCreate, staff_only="quote")
async def _quote(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: QuoteCreate
) -> list[BaseModel]:
    return [
        rules.quote(
            ticket,
            quote_id=new_id(),
            minutes=command.minutes,
            amount_cents=command.amount_cents,
            note=command.note,
        )
    ]


@handles(QuoteApproval)
async def _approve_quote(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: QuoteApproval
) -> list[BaseModel]:
    return [rules.approve_quote(ticket)]


@handles(QuoteDecline)
async def _decline_quote(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: QuoteDecline
) -> list[BaseModel]:
    return [rules.decline_quote(ticket, command.reason)]


@handles(PartnerResolvable, staff_only="flag a ticket partner-resolvable")
async def _flag_partner_resolvable(
    uow: IntakeUnitOfWork, principal: Principal, ticket: Ticket, command: PartnerResolvable
) -> list[BaseModel]:
    agreement = await uow.accounts.agreement(ticket.account_id)
    if agreement is None or agreement.partner_rules is None:
        raise rules.TransitionError("the account's agreement has no partner rules")
    return [rules.flag_partner_resolvable(ticket, command.note)]


async def apply_partner_rules(uow: IntakeUnitOfWork, ticket: Ticket, ctx: Context) -> None:
    """After a ticket is flagged partner-resolvable: a warning, a revocation, or nothing."""
    agreement = await uow.accounts.agreement(ticket.account_id)
    assert agreement is not None
    assert agreement.partner_rules is not None
    if agreement.partner_rules.end_user_support_plan:
        return  # seed 001: the rule is for partners "not signed up for" the end-user plan
    standing = await uow.accounts.standing(ticket.account_id)
    decided = partner.on_flagged(
        standing, ctx.occurred_at, agreement.partner_rules, ticket.account_id
    )
    if decided:  # a flag below the threshold decides nothing
        await uow.emit([ctx.event(p, account_id=ticket.account_id) for p in decided])


# -- e-mail and the SLA timer -----------------------------------------------------------------


async def email_reply(
    uow: IntakeUnitOfWork, principal: Principal, ticket_id: UUID, body: str, ctx: Context
) -> Ticket:
    """The customer's e-mail about a ticket they may see; a closed ticket reopens first."""
    ticket = await visible_ticket(uow, principal, ticket_id)
    payloads = rules.email_reply(
        ticket, comment_id=new_id(), body=body, author=author_of(principal)
    )
    return await record(uow, ticket, payloads, ctx)


async def auto_close(
    uow: IntakeUnitOfWork, request: Event[AutoCloseRequested], at: datetime
) -> None:
    """The SLA timer's follow-ups went unanswered: close with reason no_response.

    Applies to a ticket waiting for information and to a resolved one awaiting confirmation
    (`rules.auto_close`); a no-op when the ticket moved on since the request was made (the
    customer answered). The closure's id derives from the request, so deciding it twice
    records it once. It happens when the request says (the history's own instant, also for an
    imported ticket), and a request about imported history closes as imported history (an
    import actor: the notifier mails no one about it).
    """
    ticket = await uow.tickets.load(request.payload.ticket_id)
    closure = None if ticket is None else rules.auto_close(ticket, request.payload.ticket_seq)
    if ticket is None or closure is None:
        return
    actor = IMPORTED_SYSTEM if request.envelope.actor.type == "import" else SYSTEM
    occurred = max(request.envelope.occurred_at, ticket.last_occurred_at)
    ctx = Context(actor, at, occurred, request)
    await record(uow, ticket, [closure], ctx, purpose="auto_close")


async def note_fair_use(
    uow: IntakeUnitOfWork, exceeded: Event[FairUseExceeded], at: datetime
) -> None:
    """Tell the contact on the ticket that fair use was exceeded (seed 002), once per cap and
    entry; not for imported history, nor on a closed ticket (the mail still goes)."""
    payload = exceeded.payload
    ticket = await uow.tickets.load(payload.ticket_id)
    if payload.imported or ticket is None or ticket.status == "closed":
        return
    occurred = max(exceeded.envelope.occurred_at, ticket.last_occurred_at)
    ctx = Context(SYSTEM, at, occurred, exceeded)
    await record(uow, ticket, [rules.fair_use_note(ticket, payload)], ctx, purpose="fair_use_note")


async def close_all(
    uow: IntakeUnitOfWork, account_id: UUID, reason: CloseReason, ctx: Context
) -> None:
    """Close every ticket of the account that is not closed yet (the account stopped)."""
    for ticket_id in await uow.tickets.not_closed(account_id):
        ticket = await uow.tickets.load(ticket_id)
        assert ticket is not None
        await record(uow, ticket, [rules.close(ticket, reason)], ctx)
