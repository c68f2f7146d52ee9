"""Intake's tables in schema `intake`: the ticket event store and the read models."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="intake")
runtime = runtime_tables(metadata)

# The write model of tickets: (ticket_id, seq) is the optimistic-concurrency guard.
ticket_events = sa.Table(
    "ticket_events",
    metadata,
    sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("envelope", pg.JSONB, nullable=False),
)

ticket_numbers = sa.Sequence("ticket_number", start=100001, metadata=metadata)
account_numbers = sa.Sequence("account_number", start=1001, metadata=metadata)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    # The name as uniqueness compares it (domain.names.name_key): no two accounts differ
    # only by case, white space or character width.
    sa.Column("name_key", sa.Text, nullable=False, unique=True),
    sa.Column("timezone", sa.Text, nullable=False),
    # ISO 3166-1 alpha-2; None: the presets' business hours observe US public holidays.
    sa.Column("country", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("agreement_version", sa.Integer, nullable=True),
    # Seed 001's partner standing, folded from account.partner_* and flagged tickets.
    sa.Column("partner", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
)

agreements = sa.Table(
    "agreements",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("agreement", pg.JSONB, nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    # Lower-cased; unique, because an inbound e-mail is routed by its sender.
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("roles", pg.JSONB, nullable=False),
    sa.Column("visibility", sa.Text, nullable=False),
)

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),
    # The escalation tier the member works in (engineering, ...), None for the front line.
    sa.Column("tier", sa.Text, nullable=True),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("contact_id", pg.UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("priority", sa.Text, nullable=True),
    sa.Column("assignee", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("state", pg.JSONB, nullable=False),
)

# Every inbound e-mail and what became of it (not a projection: it is not on the stream).
inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sender", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=True),
)

projection_tables = [accounts, agreements, contacts, staff, tickets]

# Sign-in state (not projections and not on the stream: a password hash is nobody else's
# business, and a rebuild keeps these). A person is a contact or a staff member.
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("person_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, index=True),
    # argon2id, in its PHC string form (parameters and salt included)
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
)

invitations = sa.Table(
    "invitations",
    metadata,
    # SHA-256 of the link's token (256 random bits): the token itself is never stored
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("person_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    # A password reset's link (asked for by anyone knowing the address), not an invitation
    sa.Column("reset", sa.Boolean, nullable=False, server_default=sa.false()),
)

sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, index=True),
    # SHA-256 of the client's network address (None when unknown): limited too
    sa.Column("client_hash", sa.Text, nullable=True, index=True),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
)
