"""Billing's replay and rating rate against the raw drain rate of the same stream, in one run.

A fresh topic gets a month of billable work: accounts (in a few time zones) on the
cloud_platform preset with its Starter plan, then tickets of one `ticket.opened` and ten
`ticket.time_logged` events each, scope out and in alternating, worked_at spread over March 2026
in the account's own time zone. Then:
(a) raw: an AIOKafkaConsumer outside any group drains the topic with getmany (no decoding);
(b) billing's `ServiceRuntime.rebuild()` over the topic into a fresh database;
(c) rating: every account's usage of that month through the usage route's own function, on the
    rebuilt database (load the book, rate the period, price it), one account after another.

Issue 11: entries per second next to the raw drain rate. Figures only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

import helpdesk.shared.contracts  # noqa: F401 - registers every event type
from bench.outbox_relay import PARTITIONS, Rate, _drop_database
from bench.rebuild import produce, raw_drain, wrap
from helpdesk.billing.adapters.books import load_books
from helpdesk.billing.api.routes import usage
from helpdesk.billing.domain.usage import period_usage
from helpdesk.shared.agreements import resolve_agreement
from helpdesk.shared.auth import Principal
from helpdesk.shared.contracts.accounts import AccountOpened, AgreementSet
from helpdesk.shared.contracts.tickets import TicketOpened, TicketTimeLogged
from helpdesk.shared.events import Envelope
from helpdesk.shared.service import ServiceRuntime
from tests.support import SPECS, fresh_stack_settings

DEFAULT_ENTRIES = 500_000
ACCOUNTS = 200
ENTRIES_PER_TICKET = 10
PERIOD = "2026-03"
#: Time zones on both sides of UTC, two of them changing to summer time within the month.
TIMEZONES = ("Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
#: Produced in chunks, so the whole history never sits in memory at once.
CHUNK = 50_000
#: The bench reads as staff: the route's tenancy check passes for every account.
STAFF = Principal(key_id="bench", role="admin")


def _month_utc(timezone: str) -> tuple[datetime, datetime]:
    """PERIOD's local [start, end) in UTC (aware arithmetic in one zone ignores DST shifts)."""
    year, month = (int(part) for part in PERIOD.split("-"))
    zone = ZoneInfo(timezone)
    start = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone).astimezone(UTC)
    return start, end


def account_events(accounts: list[uuid.UUID]) -> list[Envelope]:
    """Each account opened, then its Starter agreement, set a month before PERIOD."""
    document = resolve_agreement("cloud_platform", {"plan_variant": "starter"}).model_dump(
        mode="json"
    )
    set_at = _month_utc("UTC")[0] - timedelta(days=28)
    out = []
    for index, account in enumerate(accounts):
        opened = AccountOpened(
            account_id=account,
            number=f"AC-{index}",
            name=f"Account {index}",
            timezone=TIMEZONES[index % len(TIMEZONES)],
        )
        out.append(wrap(opened, account, set_at))
        agreement = AgreementSet(account_id=account, version=1, agreement=document)
        out.append(wrap(agreement, account, set_at))
    return out


def ticket_events(accounts: list[uuid.UUID], tickets: int) -> Iterator[Envelope]:
    """`tickets` tickets dealt over the accounts, each opened then worked ENTRIES_PER_TICKET
    times (50 minutes apart), the tickets of an account spread evenly over its local month."""
    per_account = -(-tickets // len(accounts))
    months = [_month_utc(TIMEZONES[i % len(TIMEZONES)]) for i in range(len(accounts))]
    work_span = timedelta(minutes=50 * (ENTRIES_PER_TICKET + 1))
    for number in range(tickets):
        index = number % len(accounts)
        account, (start, end) = accounts[index], months[index]
        # The last ticket's last entry still falls before the month's end.
        opened_at = start + (end - start - work_span) * ((number // len(accounts)) / per_account)
        ticket = uuid.uuid4()
        opened = TicketOpened(
            ticket_id=ticket,
            number=f"HD-{number:06d}",
            account_id=account,
            subject="Backup job failing on the file server",
            description="The nightly backup reports a failure since the last update.",
            channel="web",
            priority="P3",
            reported_at=opened_at,
            agreement_version=1,
        )
        yield wrap(opened, account, opened_at, ticket, 1)
        for entry in range(ENTRIES_PER_TICKET):
            worked_at = opened_at + timedelta(minutes=50 * (entry + 1))
            logged = TicketTimeLogged(
                entry_id=uuid.uuid4(),
                minutes=10 + (number * 7 + entry * 13) % 50,
                work_type="remote",
                scope="out" if entry % 2 == 0 else "in",
                after_hours=False,
                worked_at=worked_at,
                technician="bob",
                kind="incident",
            )
            yield wrap(logged, account, worked_at, ticket, entry + 2)


async def run(bootstrap: str, database_url: str, entries: int = DEFAULT_ENTRIES) -> None:
    """Build the month, then print the raw drain, billing's rebuild and its rating rates."""
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    tickets = max(1, entries // ENTRIES_PER_TICKET)
    entries = tickets * ENTRIES_PER_TICKET
    # A fresh database with every schema migrated, and a fresh topic of its own.
    settings = await fresh_stack_settings(bootstrap, database_url, PARTITIONS)
    runtime = ServiceRuntime(SPECS["billing"](), settings)
    try:
        await produce(bootstrap, settings.topic, account_events(accounts))
        stream = ticket_events(accounts, tickets)
        while chunk := list(islice(stream, CHUNK)):
            await produce(bootstrap, settings.topic, chunk)
        events = 2 * ACCOUNTS + tickets * (ENTRIES_PER_TICKET + 1)
        print(
            f"billing rating bench: {entries} time entries, {events} events ({ACCOUNTS} "
            f"accounts, cloud_platform Starter, {tickets} tickets of {ENTRIES_PER_TICKET} "
            f"entries, {PERIOD})"
        )
        raw = await raw_drain(bootstrap, settings.topic)
        print(f"  (a) raw getmany drain: {raw.per_second:>9,.0f} events/s ({raw.seconds:.2f} s)")
        started = time.perf_counter()
        read = await runtime.rebuild()
        rebuilt = Rate(read, time.perf_counter() - started)
        replayed = Rate(entries, rebuilt.seconds)
        print(
            f"  (b) billing rebuild:   {rebuilt.per_second:>9,.0f} events/s "
            f"= {rebuilt.per_second / raw.per_second:.0%} of raw; "
            f"{replayed.per_second:>9,.0f} entries/s ({rebuilt.seconds:.2f} s)"
        )
        await rate_usage(runtime, accounts, entries, raw)
    finally:
        await runtime.engine.dispose()
        await _drop_database(database_url, make_url(settings.database_url).database or "")


async def rate_usage(
    runtime: ServiceRuntime, accounts: list[uuid.UUID], entries: int, raw: Rate
) -> None:
    """(c) Print the rating rate: the whole route, and the pure domain part of it."""
    minutes = 0
    started = time.perf_counter()
    for account in accounts:
        figures = await usage(account, runtime, STAFF, PERIOD)
        minutes += figures["minutes"]["in_scope"] + figures["minutes"]["out_of_scope"]
    whole = Rate(entries, time.perf_counter() - started)
    async with runtime.engine.connect() as conn:
        books = await load_books(conn, accounts)
    started = time.perf_counter()
    for book in books.values():
        period_usage(book.rating(PERIOD))
    pure = Rate(entries, time.perf_counter() - started)
    print(
        f"  (c) usage route:       {whole.per_second:>9,.0f} entries/s "
        f"= {whole.per_second / raw.per_second:.0%} of raw ({whole.seconds:.2f} s, "
        f"{len(accounts)} accounts, {minutes:,} billing minutes)"
    )
    print(
        f"      of which rating:   {pure.per_second:>9,.0f} entries/s "
        f"= {pure.per_second / raw.per_second:.0%} of raw ({pure.seconds:.2f} s, "
        f"pure domain on loaded books)"
    )
