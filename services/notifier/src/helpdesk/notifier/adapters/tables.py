"""The notifier's tables in schema `notifier`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="notifier")
runtime = runtime_tables(metadata)

# What the notifier owes people: one row per message, derived from an event.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("ticket_id", pg.UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("recipient_contact_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

projection_tables = [notifications]
