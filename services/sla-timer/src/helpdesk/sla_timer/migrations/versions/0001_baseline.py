"""The sla_timer baseline schema (docs/adr/0001: created from the table metadata until release 1).

Revision ID: 0001
"""

from helpdesk.shared.db import create_baseline
from helpdesk.sla_timer.adapters.tables import metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    """Create every table of the `sla_timer` schema."""
    create_baseline(metadata)
