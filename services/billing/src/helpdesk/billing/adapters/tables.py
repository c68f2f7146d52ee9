"""Billing's tables in schema `billing`.

Everything here but the runtime tables is projection: rows as the stream says (accounts,
agreement versions, contacts, tickets, time entries, margin revocations, fair-use events and
final invoices). Usage and draft invoices are computed on read from these rows with the pure
domain, so a rebuild reproduces every figure.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="billing")
runtime = runtime_tables(metadata)

billing_accounts = sa.Table(
    "billing_accounts",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("timezone", sa.Text, nullable=False),
    # The Kafka partition of the account's events: the finalisation loop acts per partition.
    sa.Column("partition", sa.Integer, nullable=True, index=True),
)

billing_agreements = sa.Table(
    "billing_agreements",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    # When the version takes effect for billing: its effective_from, else when it was set.
    sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("agreement", pg.JSONB, nullable=False),
)

billing_contacts = sa.Table(
    "billing_contacts",
    metadata,
    sa.Column("contact_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("roles", pg.JSONB, nullable=False),
)

billing_tickets = sa.Table(
    "billing_tickets",
    metadata,
    sa.Column("ticket_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    # The latest resolution; cleared by a reopen (an hourly ticket is invoiced when resolved).
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    # Every span the ticket stood resolved: [{"resolved_at", "reopened_at"}], in order. Work on
    # an incident inside one is solution design (seed 004).
    sa.Column("resolutions", pg.JSONB, nullable=False, server_default="[]"),
    # When the contact first approved a quote for the ticket's out-of-scope work (seed 000).
    sa.Column("quote_approved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("partition", sa.Integer, nullable=True),
)

billing_entries = sa.Table(
    "billing_entries",
    metadata,
    sa.Column("entry_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("minutes", sa.Integer, nullable=False),
    sa.Column("work_type", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    # The ticket's scope when the entry was logged: an entry that followed it follows a re-triage.
    sa.Column("ticket_scope", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # The technician's marks; null lets billing classify the entry (domain/classification.py).
    sa.Column("after_hours", sa.Boolean, nullable=True),
    sa.Column("solution_design", sa.Boolean, nullable=True),
    sa.Column("worked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
)

billing_margin_revocations = sa.Table(
    "billing_margin_revocations",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("restore_on", sa.DateTime(timezone=True), nullable=False),
)

billing_partner_warnings = sa.Table(
    "billing_partner_warnings",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("warned_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("flagged_in_window", sa.Integer, nullable=False),
    sa.Column("window_days", sa.Integer, nullable=False),
)

billing_fair_use_events = sa.Table(
    "billing_fair_use_events",
    metadata,
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("cap", sa.Text, nullable=False),
    sa.Column("limit_minutes", sa.BigInteger, nullable=False),
    sa.Column("used_minutes", sa.BigInteger, nullable=False),
    sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("entry_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("worked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("day", sa.Date, nullable=True),
)

billing_invoices = sa.Table(
    "billing_invoices",
    metadata,
    sa.Column("invoice_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    # "monthly:YYYY-MM" or "ticket:<ticket id>": one final invoice per key, ever.
    sa.Column("invoice_key", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("lines", pg.JSONB, nullable=False),
    sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("account_id", "invoice_key", name="billing_invoices_account_key"),
)

billing_budget_reviews = sa.Table(
    "billing_budget_reviews",
    metadata,
    # One review per account and quarter, ever: the live loop claims it here (seed 004).
    sa.Column("account_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("quarter", sa.Text, primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("review", pg.JSONB, nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
)

projection_tables = [
    billing_accounts,
    billing_agreements,
    billing_contacts,
    billing_tickets,
    billing_entries,
    billing_margin_revocations,
    billing_partner_warnings,
    billing_fair_use_events,
    billing_invoices,
    billing_budget_reviews,
]
