"""The notifier baseline schema (docs/adr/0001: created from the table metadata until release 1).

Revision ID: 0001
"""

from helpdesk.notifier.adapters.tables import metadata
from helpdesk.shared.db import create_baseline

revision = "0001"
down_revision = None


def upgrade() -> None:
    """Create every table of the `notifier` schema."""
    create_baseline(metadata)
