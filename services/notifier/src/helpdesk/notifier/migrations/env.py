"""Alembic environment of notifier: runs on the connection `helpdesk.shared.db.migrate` gives."""

from alembic import context

from helpdesk.shared.db import run_migrations_online

run_migrations_online(context)
