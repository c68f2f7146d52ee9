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

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("state", pg.JSONB, nullable=False),
)

ticket_numbers = sa.Sequence("ticket_number", start=100001, metadata=metadata)
account_numbers = sa.Sequence("account_number", start=1001, metadata=metadata)

projection_tables = [accounts, tickets]
