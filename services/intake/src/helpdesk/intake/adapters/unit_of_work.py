"""Intake's unit of work on PostgreSQL: one transaction of the runtime, with its repositories."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from pydantic import BaseModel

from helpdesk.intake.adapters.event_store import PostgresTicketStore
from helpdesk.intake.adapters.repositories import PostgresAccounts, PostgresPeople
from helpdesk.shared.consumer import UnitOfWork
from helpdesk.shared.errors import Conflict
from helpdesk.shared.events import Event


class PostgresUnitOfWork:
    """`application.ports.IntakeUnitOfWork` on a runtime unit of work (an API command's
    `runtime.unit_of_work()`, or the one a reaction runs in)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        #: the transaction, for what the use cases do not cover (the inbound message log)
        self.conn = uow.conn
        self.tickets = PostgresTicketStore(uow.conn)
        self.accounts = PostgresAccounts(uow.conn)
        self.people = PostgresPeople(uow.conn)

    async def emit(self, events: Sequence[Event[BaseModel]]) -> None:
        """Apply to intake's read models and queue for the stream, in this transaction.

        A unique column of a read model taken by a concurrent command is a `Conflict`; the
        transaction is aborted either way.
        """
        try:
            await self.uow.emit(events)
        except sa.exc.IntegrityError as exc:
            raise Conflict(
                "A concurrent request took the same unique value; nothing was changed."
            ) from exc
