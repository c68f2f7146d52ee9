"""Intake's use cases against the in-memory unit of work: the service layer without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from helpdesk.intake.application import accounts, people, tickets
from helpdesk.intake.application.commands import (
    TICKET_COMMANDS,
    AccountCreate,
    AccountPatch,
    ApiKeyCreate,
    Comment,
    Confirm,
    ContactCreate,
    CustomerReply,
    Escalate,
    Imported,
    PartnerResolvable,
    Reopen,
    RequestInfo,
    Resolve,
    StaffCreate,
    TicketCreate,
    TimeEntry,
    Triage,
)
from helpdesk.intake.application.context import command_context
from helpdesk.intake.domain.tickets import Ticket
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts.sla import AutoCloseRequested
from helpdesk.shared.contracts.tickets import TicketCommented
from helpdesk.shared.errors import Conflict, Forbidden, Invalid, InvalidField, NotFound
from helpdesk.shared.events import Actor
from helpdesk.shared.web import Problem
from services.intake.tests.unit.memory import MemoryIntake

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADMIN = Principal(key_id="admin", role="admin")
TECH = Principal(key_id="tech-key", role="technician", staff_id=uuid4())
IMPORT = Principal(key_id="import-key", role="import")


class World:
    """An intake in memory with one account (a preset agreement, with `overrides`) and one
    contact."""

    def __init__(self, preset: str = "four_tier_24x7", **overrides: Any) -> None:
        self.intake = MemoryIntake()
        self.preset = preset
        self.overrides = overrides
        self.account_id: UUID
        self.contact: Principal

    async def setup(self) -> World:
        async with self.intake.unit_of_work() as uow:
            ctx = command_context(ADMIN, None, T0)
            account = await accounts.create_account(uow, ADMIN, AccountCreate(name="Acme"), ctx)
            body = {"preset": self.preset, **self.overrides}
            await accounts.set_agreement(uow, ADMIN, account.id, body, ctx)
            added = await people.add_contact(
                uow, ADMIN, account.id, ContactCreate(name="Ann", email="ann@example.com"), ctx
            )
        self.account_id = account.id
        self.contact = self.contact_of(added.contact_id)
        return self

    def contact_of(self, contact_id: UUID, visibility: str = "own") -> Principal:
        return Principal(
            key_id=f"contact-{contact_id}",
            role="contact",
            account_id=self.account_id,
            contact_id=contact_id,
            visibility="own" if visibility == "own" else "account",
        )

    async def do(self, use_case: Any, *args: Any) -> Any:
        """Run a use case in a unit of work of its own."""
        async with self.intake.unit_of_work() as uow:
            return await use_case(uow, *args)

    async def open(self, principal: Principal = TECH, at: datetime = T0, **body: Any) -> Ticket:
        """Open a ticket for the contact; `body` overrides the request's fields."""
        fields = {
            "account_id": self.account_id,
            "contact_id": self.contact.contact_id,
            "subject": "printer on fire",
            "affected_users": 3,
            **body,
        }
        command = TicketCreate(**fields)
        async with self.intake.unit_of_work() as uow:
            ctx = command_context(principal, command.occurred_at, at)
            return await tickets.open_ticket(uow, principal, command, ctx)

    async def run(
        self,
        ticket_id: UUID,
        command: Imported,
        principal: Principal = TECH,
        at: datetime = T0,
    ) -> Ticket:
        async with self.intake.unit_of_work() as uow:
            ctx = command_context(principal, command.occurred_at, at)
            return await tickets.run(uow, principal, ticket_id, command, ctx)


@pytest.fixture
async def world() -> World:
    return await World().setup()


def test_every_ticket_command_of_the_api_has_a_handler() -> None:
    assert set(tickets.HANDLERS) == set(TICKET_COMMANDS.values())


# -- opening ----------------------------------------------------------------------------------


async def test_open_records_the_ticket_and_its_opening(world: World) -> None:
    ticket = await world.open(priority="P2")
    assert (ticket.status, ticket.priority, ticket.seq) == ("open", "P2", 1)
    opened = world.intake.published[-1]
    assert opened.type == "ticket.opened"
    assert (opened.envelope.ticket_id, opened.envelope.seq) == (ticket.id, 1)
    assert opened.payload.agreement_version == 1  # type: ignore[attr-defined]


async def test_a_contact_opens_for_themselves(world: World) -> None:
    ticket = await world.open(world.contact, contact_id=uuid4())
    assert ticket.contact_id == world.contact.contact_id


async def test_required_fields_on_open_are_named_and_e_mail_is_exempt(world: World) -> None:
    before = len(world.intake.published)
    with pytest.raises(Invalid) as refused:
        await world.open(affected_users=None)
    assert refused.value.errors == [
        {"field": "affected_users", "reason": "required by the agreement"}
    ]
    assert len(world.intake.published) == before  # nothing recorded
    emailed = await world.open(affected_users=None, channel="email")
    assert emailed.status == "new"


async def test_open_refuses_an_unknown_or_foreign_account_and_a_stopped_one(world: World) -> None:
    with pytest.raises(NotFound):
        await world.open(account_id=uuid4())
    stranger = Principal(key_id="x", role="contact", account_id=uuid4(), contact_id=uuid4())
    with pytest.raises(NotFound):
        await world.open(stranger)
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(ADMIN, None, T0)
        await accounts.change_account(
            uow, ADMIN, world.account_id, AccountPatch(status="on_hold"), ctx
        )
    with pytest.raises(Conflict, match="on_hold"):
        await world.open()


async def test_a_staff_member_names_only_a_contact_of_the_account(world: World) -> None:
    with pytest.raises(InvalidField) as refused:
        await world.open(contact_id=uuid4())
    assert refused.value.field == "contact_id"


# -- lifecycle --------------------------------------------------------------------------------


async def test_comment_resolve_confirm_reopen(world: World) -> None:
    ticket = await world.open(priority="P3")
    ticket = await world.run(ticket.id, Comment(body="looking", public=True))
    assert ticket.public_comments == 1
    ticket = await world.run(ticket.id, Resolve(resolution="fix", summary="unplugged"))
    assert ticket.status == "resolved"
    ticket = await world.run(ticket.id, Confirm(), world.contact)
    assert (ticket.status, ticket.close_reason, ticket.seq) == ("closed", "confirmed", 5)
    ticket = await world.run(ticket.id, Reopen(reason="on fire again"), world.contact)
    assert (ticket.status, ticket.cycle) == ("open", 2)
    assert world.intake.types()[-6:] == [
        "ticket.opened",
        "ticket.commented",
        "ticket.resolved",
        "ticket.confirmed",
        "ticket.closed",
        "ticket.reopened",
    ]


async def test_the_customer_answering_resumes_a_waiting_ticket(world: World) -> None:
    ticket = await world.open(priority="P3")
    ticket = await world.run(ticket.id, RequestInfo(body="which printer?"))
    assert ticket.status == "waiting_on_customer"
    ticket = await world.run(ticket.id, CustomerReply(body="the red one"), world.contact)
    assert ticket.status == "open"


async def test_staff_commands_are_forbidden_to_contacts(world: World) -> None:
    ticket = await world.open()
    before = len(world.intake.published)
    with pytest.raises(Forbidden, match="Only staff may comment"):
        await world.run(ticket.id, Comment(body="me too"), world.contact)
    assert len(world.intake.published) == before


async def test_a_transition_the_state_does_not_allow_is_a_conflict(world: World) -> None:
    ticket = await world.open()
    with pytest.raises(Conflict, match="only a resolved ticket can be confirmed"):
        await world.run(ticket.id, Confirm(), world.contact)


async def test_a_ticket_the_caller_may_not_see_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.run(uuid4(), Comment(body="hello"))
    ticket = await world.open(world.contact)
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(ADMIN, None, T0)
        colleague = await people.add_contact(
            uow, ADMIN, world.account_id, ContactCreate(name="Bo", email="bo@example.com"), ctx
        )
    with pytest.raises(NotFound):
        await world.run(ticket.id, Confirm(), world.contact_of(colleague.contact_id))
    account_wide = world.contact_of(colleague.contact_id, visibility="account")
    with pytest.raises(Conflict):  # seen, but not resolved
        await world.run(ticket.id, Confirm(), account_wide)


async def test_an_unknown_category_is_an_invalid_field(world: World) -> None:
    ticket = await world.open()
    with pytest.raises(InvalidField) as refused:
        await world.run(ticket.id, Triage(priority="P2", category="astrology"))
    assert refused.value.field == "category"
    assert "scope catalogue" in refused.value.reason


async def test_the_precondition_sees_the_current_version(world: World) -> None:
    ticket = await world.open()
    seen: list[str] = []
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(TECH, None, T0)
        await tickets.run(uow, TECH, ticket.id, Comment(body="x"), ctx, seen.append)
    assert seen == ["1"]


async def test_a_concurrent_append_is_a_conflict_and_records_nothing(world: World) -> None:
    stale = await world.open()
    await world.run(stale.id, Comment(body="first"))
    before = len(world.intake.published)
    ctx = command_context(TECH, None, T0)
    payload = TicketCommented(
        comment_id=uuid4(), body="second", public=False, by_staff=True, author="x"
    )
    with pytest.raises(Conflict, match="changed meanwhile"):
        await world.do(tickets.record, stale, [payload], ctx)
    assert len(world.intake.published) == before


async def test_a_live_command_never_lies_before_the_last_event(world: World) -> None:
    ticket = await world.open(at=T0 + timedelta(minutes=5))
    # The clock was read just before a concurrent command committed.
    ticket = await world.run(ticket.id, Comment(body="late"), at=T0)
    assert ticket.last_occurred_at == T0 + timedelta(minutes=5)
    assert world.intake.published[-1].envelope.occurred_at == T0 + timedelta(minutes=5)


async def flag_partner_tickets(partner_world: World, count: int) -> None:
    """Open, resolve, confirm and flag partner-resolvable `count` tickets."""
    body = {
        name: "x"
        for name in (
            "partner_domain",
            "customer_name",
            "customer_domain",
            "details",
            "steps_taken",
            "error_messages",
        )
    }
    for _ in range(count):
        ticket = await partner_world.open(fields=body)
        await partner_world.run(ticket.id, Resolve(resolution="fix", summary="done"))
        await partner_world.run(ticket.id, Confirm(), partner_world.contact)
        await partner_world.run(ticket.id, PartnerResolvable())


async def test_partner_flags_lead_to_a_warning(world: World) -> None:
    partner_world = await World("partner_reseller", plan={"discount_percent": 20}).setup()
    await flag_partner_tickets(partner_world, 5)  # the preset's threshold in its window
    assert "account.partner_warning_issued" in partner_world.intake.types()
    closed = await world.open()
    await world.run(closed.id, Resolve(resolution="fix", summary="done"))
    await world.run(closed.id, Confirm(), world.contact)
    with pytest.raises(Conflict, match="no partner rules"):
        await world.run(closed.id, PartnerResolvable())


async def test_a_partner_with_the_end_user_support_plan_is_exempt_from_the_rule() -> None:
    """Seed 001: 'Partners not signed up for a LogicCloud IT partner end-user support plan with
    excessive escalations ... will receive a warning ... and then ... reverted to a full price
    account'. Signed up, twice the threshold of flags brings neither."""
    plan = {"partner_rules": {"end_user_support_plan": True}, "plan": {"discount_percent": 20}}
    partner_world = await World("partner_reseller", **plan).setup()
    await flag_partner_tickets(partner_world, 10)
    types = partner_world.intake.types()
    assert types.count("ticket.flagged_partner_resolvable") == 10
    assert "account.partner_warning_issued" not in types
    assert "account.partner_margin_revoked" not in types


# -- e-mail and the SLA timer -----------------------------------------------------------------


async def test_an_e_mail_reply_reopens_a_closed_ticket_and_records_the_reply(world: World) -> None:
    ticket = await world.open()
    await world.run(ticket.id, Resolve(resolution="fix", summary="done"))
    await world.run(ticket.id, Confirm(), world.contact)
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(world.contact, None, T0)
        after = await tickets.email_reply(uow, world.contact, ticket.id, "still broken", ctx)
    assert (after.status, after.cycle, after.comments) == ("open", 2, 1)
    reopened, replied = world.intake.published[-2:]
    assert (reopened.type, replied.type) == ("ticket.reopened", "ticket.customer_replied")
    assert [reopened.envelope.seq, replied.envelope.seq] == [after.seq - 1, after.seq]
    assert replied.payload.channel == "email"  # type: ignore[attr-defined]


async def test_auto_close_closes_a_ticket_still_waiting_and_only_once(world: World) -> None:
    ticket = await world.open(priority="P3")
    ticket = await world.run(ticket.id, RequestInfo(body="which printer?"))
    request = command_context(TECH, None, T0).event(
        AutoCloseRequested(ticket_id=ticket.id, ticket_seq=ticket.seq, unanswered_follow_ups=2),
        account_id=world.account_id,
    )
    for _ in range(2):
        async with world.intake.unit_of_work() as uow:
            await tickets.auto_close(uow, request, T0 + timedelta(days=7))
    closed = [e for e in world.intake.published if e.type == "ticket.closed"]
    assert len(closed) == 1
    assert closed[0].envelope.actor == Actor(type="system", id="intake")
    assert closed[0].payload.reason == "no_response"  # type: ignore[attr-defined]


async def test_auto_close_closes_a_resolved_ticket_nobody_confirmed(world: World) -> None:
    """Seed 003 § 4.2.2: "We will close a ticket if you do not respond to repeated inquires (3+)
    by our technicians to confirm whether the problem has been satisfactorily resolved"."""
    ticket = await world.open(priority="P3")
    ticket = await world.run(ticket.id, Resolve(resolution="fix", summary="done"))
    request = command_context(TECH, None, T0).event(
        AutoCloseRequested(ticket_id=ticket.id, ticket_seq=ticket.seq, unanswered_follow_ups=3),
        account_id=world.account_id,
    )
    for _ in range(2):
        async with world.intake.unit_of_work() as uow:
            await tickets.auto_close(uow, request, T0 + timedelta(days=4))
    closed = [e for e in world.intake.published if e.type == "ticket.closed"]
    assert [e.payload.reason for e in closed] == ["no_response"]  # type: ignore[attr-defined]


async def test_only_engineering_staff_or_an_explicit_statement_answer_for_engineering(
    world: World,
) -> None:
    """Seed 001: "Tickets that must be forward to Engineering, are allotted a 72 business hour
    response time": a comment is Engineering's response when its author works in Engineering
    (and it is public), or when it states so explicitly; a front-line reply is not."""
    added = await world.do(
        people.add_staff,
        ADMIN,
        StaffCreate(
            name="Eng", email="eng@provider.example", role="technician", tier="engineering"
        ),
        command_context(ADMIN, None, T0),
    )
    engineer = Principal(key_id="eng-key", role="technician", staff_id=added.staff_id)
    ticket = await world.open(priority="P3")
    with pytest.raises(Conflict, match="not escalated to engineering"):
        await world.run(ticket.id, Comment(body="eng says", responds_for="engineering"))
    ticket = await world.run(ticket.id, Escalate(tier="engineering"))
    await world.run(ticket.id, Comment(body="forwarded to Engineering", public=True))
    await world.run(ticket.id, Comment(body="looking", public=False), engineer)
    await world.run(ticket.id, Comment(body="fixed upstream", public=True), engineer)
    await world.run(ticket.id, Comment(body="eng says", responds_for="engineering"))
    comments = [e.payload for e in world.intake.published if e.type == "ticket.commented"]
    assert [c.tier_response for c in comments] == [  # type: ignore[attr-defined]
        None,
        None,
        "engineering",
        "engineering",
    ]


# -- history import ---------------------------------------------------------------------------


async def test_an_import_back_dates_the_opening_and_its_commands(world: World) -> None:
    reported = T0 - timedelta(days=30)
    ticket = await world.open(IMPORT, reported_at=reported)
    assert (ticket.reported_at, ticket.last_occurred_at) == (reported, reported)
    worked = TimeEntry(minutes=30, work_type="remote", worked_at=reported, occurred_at=reported)
    ticket = await world.run(ticket.id, worked, IMPORT)
    assert world.intake.published[-1].envelope.occurred_at == reported
    earlier = reported - timedelta(hours=1)
    with pytest.raises(InvalidField) as refused:
        await world.run(ticket.id, Comment(body="x", occurred_at=earlier), IMPORT)
    assert (refused.value.field, refused.value.reason) == (
        "occurred_at",
        "is before the ticket's last recorded event",
    )
    entry = TimeEntry(minutes=5, work_type="remote", worked_at=earlier)
    with pytest.raises(InvalidField) as refused:
        await world.run(ticket.id, entry, IMPORT)
    assert refused.value.field == "worked_at"


async def test_only_an_import_key_back_dates_and_never_into_the_future(world: World) -> None:
    with pytest.raises(Forbidden) as forbidden:
        await world.open(occurred_at=T0 - timedelta(days=1))
    assert forbidden.value.errors[0]["field"] == "occurred_at"
    with pytest.raises(Forbidden) as forbidden:
        await world.open(reported_at=T0 - timedelta(days=1))
    assert forbidden.value.errors[0]["field"] == "reported_at"
    with pytest.raises(InvalidField, match="reported_at lies in the future"):
        await world.open(IMPORT, at=T0 - timedelta(days=2), reported_at=T0 - timedelta(days=1))
    with pytest.raises(InvalidField, match="occurred_at lies in the future"):
        await world.open(IMPORT, at=T0 - timedelta(days=2), occurred_at=T0 - timedelta(days=1))


# -- accounts and people ----------------------------------------------------------------------


async def test_a_taken_account_name_is_a_conflict_naming_the_field(world: World) -> None:
    ctx = command_context(ADMIN, None, T0)
    with pytest.raises(Conflict) as clash:
        await world.do(accounts.create_account, ADMIN, AccountCreate(name="Acme"), ctx)
    assert clash.value.errors == [{"field": "name", "reason": "already taken"}]


async def test_putting_an_account_on_hold_closes_its_open_tickets(world: World) -> None:
    first, second = await world.open(), await world.open()
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(ADMIN, None, T0)
        patch = AccountPatch(status="on_hold", name="Acme Ltd")
        changed = await accounts.change_account(uow, ADMIN, world.account_id, patch, ctx)
    assert (changed.status, changed.name) == ("on_hold", "Acme Ltd")
    async with world.intake.unit_of_work() as uow:
        for ticket_id in (first.id, second.id):
            closed = await uow.tickets.load(ticket_id)
            assert closed is not None
            assert (closed.status, closed.close_reason) == ("closed", "account_on_hold")


async def test_an_invalid_agreement_names_its_fields(world: World) -> None:
    ctx = command_context(ADMIN, None, T0)
    with pytest.raises(accounts.InvalidAgreement) as refused:
        await world.do(accounts.set_agreement, ADMIN, world.account_id, {"preset": "nope"}, ctx)
    assert refused.value.title == "Invalid agreement"
    assert refused.value.errors[0]["field"] == "preset"


async def test_a_preset_keeps_business_hours_in_the_accounts_time_zone(world: World) -> None:
    ctx = command_context(ADMIN, None, T0)
    tokyo = await world.do(
        accounts.create_account, ADMIN, AccountCreate(name="Kaisha", timezone="Asia/Tokyo"), ctx
    )
    body = {"preset": "small_business_remote"}
    agreement, _ = await world.do(accounts.set_agreement, ADMIN, tokyo.id, body, ctx)
    assert agreement.calendars["business_hours"].timezone == "Asia/Tokyo"
    # The first account was opened without a zone (UTC): the preset's own zone stays.
    agreement, _ = await world.do(accounts.set_agreement, ADMIN, world.account_id, body, ctx)
    assert agreement.calendars["business_hours"].timezone == "America/New_York"


async def test_keys_are_issued_to_people_of_the_right_role_and_revoked_once(world: World) -> None:
    async with world.intake.unit_of_work() as uow:
        ctx = command_context(ADMIN, None, T0)
        member = await people.add_staff(
            uow, ADMIN, StaffCreate(name="Tess", email="tess@example.org", role="technician"), ctx
        )
        key = await people.issue_key(
            uow, ADMIN, ApiKeyCreate(role="technician", staff_id=member.staff_id), ctx
        )
        wrong = ApiKeyCreate(role="manager", staff_id=member.staff_id)
        with pytest.raises(InvalidField) as refused:
            await people.issue_key(uow, ADMIN, wrong, ctx)
        assert refused.value.errors == [{"field": "staff_id", "reason": "no manager with this id"}]
        again = StaffCreate(name="T2", email="tess@example.org", role="technician")
        with pytest.raises(Conflict):
            await people.add_staff(uow, ADMIN, again, ctx)
        await people.revoke_key(uow, ADMIN, key.issued.key_id, ctx)
        await people.revoke_key(uow, ADMIN, key.issued.key_id, ctx)
        with pytest.raises(NotFound):
            await people.revoke_key(uow, ADMIN, "no-such-key", ctx)
        with pytest.raises(Problem):  # roles are checked at the edge's Principal
            await people.revoke_key(uow, TECH, key.issued.key_id, ctx)
    assert key.token.startswith(f"hd_{key.issued.key_id}_")
    assert world.intake.types().count("account.api_key_revoked") == 1
