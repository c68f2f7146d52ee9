"""Which failures of a handler are worth retrying, in one place.

A transient failure says nothing about the event: the same work in a new transaction, a moment
later, can succeed. The runtime retries it with backoff (a live batch from its stored offsets,
retry-parked per event) a few times before it parks the event. Every other exception is
deterministic: the event is parked at once, and retried only by an operator after a fix.

Transient:
- PostgreSQL's serialisation failure (40001) and deadlock (40P01), and a lock or statement
  timeout (55P03, 57014);
- a lost or refused connection (the database restarted, a network blip);
- a prepared statement made stale by a rebuild's swap (asyncpg's InvalidCachedStatementError);
- `helpdesk.shared.errors.Conflict`: a concurrent command changed what the handler read (intake's
  auto-close against a technician's reply), and a new transaction sees the new state.
"""

from __future__ import annotations

import sqlalchemy as sa

from helpdesk.shared.errors import Conflict

#: How many times a transient failure of one event is retried before the event is parked.
TRANSIENT_ATTEMPTS = 3

_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
# asyncpg's, by name (the runtime does not import the driver): a lost connection, and a
# prepared statement whose table a rebuild's swap replaced (it is prepared again next time).
_TRANSIENT_CLASSES = frozenset(
    {"ConnectionDoesNotExistError", "InterfaceError", "InvalidCachedStatementError"}
)
_STALE_PLAN = "cached statement plan is invalid"


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is a failure a later attempt may not meet."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Conflict | ConnectionError | TimeoutError):
            return True
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return True
        if getattr(current, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        if type(current).__name__ in _TRANSIENT_CLASSES or _STALE_PLAN in str(current):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False
