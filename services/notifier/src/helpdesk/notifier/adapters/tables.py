"""The notifier's tables in schema `notifier`.

Projection tables (rebuilt from the stream): people, accounts and tickets the mails need, the
SLA clocks the daily digest lists, subscriptions, deliveries and mails. Request state a rebuild
keeps: webhook secrets (never on the stream), the attempt log, and the retry state of
deliveries, endpoints and mails.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from helpdesk.shared.db import runtime_tables

metadata = sa.MetaData(schema="notifier")
runtime = runtime_tables(metadata)
_UUID = pg.UUID(as_uuid=True)
_TS = sa.DateTime(timezone=True)

# -- projection ---------------------------------------------------------------------------

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", _UUID, primary_key=True),
    sa.Column("account_id", _UUID, nullable=False),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("contact_id", _UUID, nullable=True),
    sa.Column("priority", sa.Text, nullable=True),
    # The resolution cycle (a reopen starts the next) and whether it is closed: the digest
    # lists the clocks of open tickets' current cycle.
    sa.Column("cycle", sa.Integer, nullable=False, default=1, server_default="1"),
    sa.Column("closed", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", _UUID, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)

# The response and resolution clocks the SLA timer warned about, breached or met, for the
# managers' daily digest. Each column is what one `sla.*` event says, so they commute.
sla_clocks = sa.Table(
    "sla_clocks",
    metadata,
    sa.Column("ticket_id", _UUID, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("cycle", sa.Integer, primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("priority", sa.Text, nullable=True),
    sa.Column("due_at", _TS, nullable=False),
    sa.Column("warned_at", _TS, nullable=True),
    sa.Column("breached_at", _TS, nullable=True),
    sa.Column("met_at", _TS, nullable=True),
    # Set by `sla.breach_retracted`: the breach was wrong (the clock was met or stopped in time).
    sa.Column("retracted_at", _TS, nullable=True),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("contact_id", _UUID, primary_key=True),
    sa.Column("account_id", _UUID, nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("roles", pg.ARRAY(sa.Text), nullable=False),
)

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("staff_id", _UUID, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # The provider's partition (staff events are keyed by it): its owner sends the digests.
    sa.Column("partition", sa.Integer, nullable=True),
)

# A deleted subscription stays as a tombstone, so events recorded before its deletion are
# still judged against it during a rebuild, whatever order partitions are replayed in.
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("subscription_id", _UUID, primary_key=True),
    sa.Column("account_id", _UUID, nullable=True, index=True),  # None: provider-wide
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event_types", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("secret_fingerprint", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("deleted_at", _TS, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
)

# One row per (subscription, event) or per (replay, event). Every column but the id and the
# status is nullable: an outcome (`notification.delivered`) may be applied before the row that
# schedules it (a replay during a rebuild), and both writes commute.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", _UUID, primary_key=True),  # the `webhook-id`
    sa.Column("subscription_id", _UUID, nullable=True, index=True),
    sa.Column("replay_id", _UUID, nullable=True),
    sa.Column("event_id", _UUID, nullable=True),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("account_id", _UUID, nullable=True),
    sa.Column("ticket_id", _UUID, nullable=True),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("source_offset", sa.BigInteger, nullable=True),  # orders a ticket's events
    sa.Column("occurred_at", _TS, nullable=True),
    sa.Column("due_at", _TS, nullable=True),
    sa.Column("body", pg.JSONB, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=True),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("finished_at", _TS, nullable=True),
    sa.Index("deliveries_due", "partition", "status"),
)

# What the notifier owes people by e-mail: one row per (event, mail intent).
mails = sa.Table(
    "mails",
    metadata,
    sa.Column("mail_id", _UUID, primary_key=True),
    sa.Column("event_id", _UUID, nullable=True),
    sa.Column("account_id", _UUID, nullable=True, index=True),
    sa.Column("ticket_id", _UUID, nullable=True, index=True),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("kind", sa.Text, nullable=True),
    sa.Column("recipient_role", sa.Text, nullable=True),
    sa.Column("recipient_contact_id", _UUID, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("intent", pg.JSONB, nullable=True),  # template, threading headers, context
    sa.Column("status", sa.Text, nullable=False),  # queued | sent | no_recipient | failed
    sa.Column("created_at", _TS, nullable=True),
    sa.Column("sent_at", _TS, nullable=True),
    sa.Index("mails_due", "partition", "status"),
)

projection_tables = [
    tickets,
    accounts,
    sla_clocks,
    contacts,
    staff,
    subscriptions,
    deliveries,
    mails,
]

# -- request state (kept by a rebuild) ---------------------------------------------------------

# Secrets never travel on the stream; this table is written with the subscription's events.
subscription_secrets = sa.Table(
    "subscription_secrets",
    metadata,
    sa.Column("subscription_id", _UUID, primary_key=True),
    sa.Column("current", sa.Text, nullable=False),
    sa.Column("previous", sa.Text, nullable=True),
    sa.Column("previous_expires_at", _TS, nullable=True),
)

# Retry state of one delivery: attempts made, when the next is due, and the sender's lease.
delivery_state = sa.Table(
    "delivery_state",
    metadata,
    sa.Column("delivery_id", _UUID, primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", _TS, nullable=True),
    sa.Column("claimed_until", _TS, nullable=True),
)

# A mail's sender lease or back-off after a failed submission, and its failures so far: not
# business state, so not in the projection (a rebuild keeps it, and the projection stays byte
# for byte reproducible). A digest decided empty for a day is leased until the next one.
mail_leases = sa.Table(
    "mail_leases",
    metadata,
    sa.Column("mail_id", _UUID, primary_key=True),
    sa.Column("not_before", _TS, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("first_failed_at", _TS, nullable=True),
)

# The replays asked of each subscription: their rate limit (HELPDESK_NOTIFIER_REPLAYS_PER_HOUR).
replay_requests = sa.Table(
    "replay_requests",
    metadata,
    sa.Column("replay_id", _UUID, primary_key=True),
    sa.Column("subscription_id", _UUID, nullable=False, index=True),
    sa.Column("requested_at", _TS, nullable=False),
)

# An endpoint's failure clock: since when it fails without a single success.
endpoint_state = sa.Table(
    "endpoint_state",
    metadata,
    sa.Column("subscription_id", _UUID, primary_key=True),
    sa.Column("failing_since", _TS, nullable=True),
)

# Every attempt, as shown by GET /v1/subscriptions/{id}/deliveries.
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("subscription_id", _UUID, nullable=False, index=True),
    sa.Column("delivery_id", _UUID, nullable=False, index=True),
    sa.Column("event_id", _UUID, nullable=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("response_excerpt", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("next_attempt_at", _TS, nullable=True),
)
