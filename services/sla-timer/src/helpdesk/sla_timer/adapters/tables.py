"""The SLA timer's tables in schema `sla_timer`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="sla_timer")
runtime = runtime_tables(metadata)

# The account's time zone: reports and availability count calendar months in it.
sla_accounts = sa.Table(
    "sla_accounts",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("timezone", sa.Text, nullable=False),
)

# Every agreement version, as set: a ticket keeps the version it was opened with.
sla_agreements = sa.Table(
    "sla_agreements",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("agreement", pg.JSONB, nullable=False),
)

# Contacts, for the VIP treatment of their tickets.
sla_contacts = sa.Table(
    "sla_contacts",
    metadata,
    sa.Column("contact_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("vip", sa.Boolean, nullable=False),
)

# One row per ticket: its history as the fold needs it (`history`: a list of {type,
# occurred_at, payload}), and the clocks folded as of its last event. `partition` says which
# replica's live loop owns its timers.
sla_tickets = sa.Table(
    "sla_tickets",
    metadata,
    sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("contact_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=True),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("effective_priority", sa.Text, nullable=True),
    sa.Column("vip", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("assignee", sa.Text, nullable=True),
    sa.Column("affected_users", sa.BigInteger, nullable=True),
    sa.Column("agreement_version", sa.Integer, nullable=True),
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_occurred_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
    # The queue key's rank and instant under the agreement's queue_order (domain/queue.py);
    # queue_at is null when the ticket has no deadline to sort by.
    sa.Column("queue_rank", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue_at", sa.DateTime(timezone=True), nullable=True),
    # When an import key last recorded an event of the ticket (None: never imported); timers
    # due before the import settles fire as imported history (domain/imports.py).
    sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("clocks", pg.JSONB, nullable=False, server_default="[]"),
    sa.Column("history", pg.JSONB, nullable=False, server_default="[]"),
)
sa.Index(
    "sla_tickets_queue", sla_tickets.c.status, sla_tickets.c.queue_rank, sla_tickets.c.queue_at
)

# Durable timers: what fires when. Unfired rows follow the ticket's latest fold; a fired row
# is history and never changes (its event id is derived from ticket, action and key).
# A row of action `retraction` (always fired) records that the fired breach of the same key was
# retracted (`sla.breach_retracted`: a late event showed the clock met or stopped in time).
sla_timers = sa.Table(
    "sla_timers",
    metadata,
    sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("action", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=True),
    sa.Column("cycle", sa.Integer, nullable=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    # When the live loop fires it: `due_at`, or for imported history once the import settled.
    sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
    # Imported history: the event goes out with an import actor (no e-mail, webhooks marked).
    sa.Column("imported", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
)
sa.Index(
    "sla_timers_due",
    sla_timers.c.partition,
    sla_timers.c.fire_at,
    postgresql_where=sla_timers.c.fired_at.is_(None),
)

projection_tables = [sla_accounts, sla_agreements, sla_contacts, sla_tickets, sla_timers]
