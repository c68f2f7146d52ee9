"""The SLA timer's tables in schema `sla_timer`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="sla_timer")
runtime = runtime_tables(metadata)

# One row per ticket; `partition` says which replica's live loop owns its timers.
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
)

projection_tables = [sla_tickets]
