"""Sign-in state on PostgreSQL (`application.sessions.SignIns`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import (
    contacts,
    credentials,
    invitations,
    sign_in_failures,
    staff,
)
from helpdesk.intake.adapters.tables import runtime as runtime_tables
from helpdesk.intake.application.sessions import Person, PersonKind
from helpdesk.shared.auth import SESSION_SCOPE


class PostgresSignIns:
    """Credentials, invitations and failed sign-ins, in the command's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def person(self, kind: PersonKind, person_id: UUID) -> Person | None:
        """The contact or staff member, as they are now."""
        if kind == "contact":
            query = sa.select(contacts).where(contacts.c.id == person_id)
        else:
            query = sa.select(staff).where(staff.c.id == person_id)
        row = (await self.conn.execute(query)).first()
        return None if row is None else _person(kind, row)

    async def credentials(self, email: str) -> list[tuple[Person, str]]:
        """The people with this address and a password, with its hash."""
        rows = await self.conn.execute(
            sa.select(credentials.c.kind, credentials.c.person_id, credentials.c.password_hash)
            .where(credentials.c.email == email)
            .order_by(credentials.c.kind.desc())  # staff first, should an address be both
        )
        found = []
        for row in rows.all():
            person = await self.person(row.kind, row.person_id)
            if person is not None:
                found.append((person, str(row.password_hash)))
        return found

    async def failures_since(self, email: str, since: datetime) -> int:
        """Failed sign-ins of this address since `since`."""
        count = await self.conn.scalar(
            sa.select(sa.func.count())
            .select_from(sign_in_failures)
            .where(sign_in_failures.c.email == email, sign_in_failures.c.failed_at >= since)
        )
        return int(count or 0)

    async def client_failures_since(self, client_hash: str, since: datetime) -> int:
        """Failed sign-ins from this client address (its SHA-256) since `since`."""
        count = await self.conn.scalar(
            sa.select(sa.func.count())
            .select_from(sign_in_failures)
            .where(
                sign_in_failures.c.client_hash == client_hash,
                sign_in_failures.c.failed_at >= since,
            )
        )
        return int(count or 0)

    async def record_failure(self, email: str, client_hash: str | None, at: datetime) -> None:
        """Count a failed sign-in of this address, from this client address if known."""
        await self.conn.execute(
            sign_in_failures.insert().values(email=email, client_hash=client_hash, failed_at=at)
        )

    async def clear_failures(self, email: str) -> None:
        """Forget the address's failed sign-ins."""
        await self.conn.execute(sign_in_failures.delete().where(sign_in_failures.c.email == email))

    async def save_invitation(
        self, token_hash: str, person: Person, expires_at: datetime, *, reset: bool = False
    ) -> None:
        """Keep a new invitation (or a password reset's link)."""
        await self.conn.execute(
            invitations.insert().values(
                token_hash=token_hash,
                kind=person.kind,
                person_id=person.id,
                email=person.email,
                expires_at=expires_at,
                reset=reset,
            )
        )

    async def open_resets(self, person: Person, at: datetime) -> int:
        """The person's password reset links unused and unexpired at `at`."""
        count = await self.conn.scalar(
            sa.select(sa.func.count())
            .select_from(invitations)
            .where(
                invitations.c.kind == person.kind,
                invitations.c.person_id == person.id,
                invitations.c.reset.is_(True),
                invitations.c.used_at.is_(None),
                invitations.c.expires_at > at,
            )
        )
        return int(count or 0)

    async def take_invitation(self, token_hash: str, at: datetime) -> Person | None:
        """The invitation's person if unused and unexpired, marking it used (once: two
        concurrent accepts of one link, one wins)."""
        row = (
            await self.conn.execute(
                invitations.update()
                .where(
                    invitations.c.token_hash == token_hash,
                    invitations.c.used_at.is_(None),
                    invitations.c.expires_at > at,
                )
                .values(used_at=at)
                .returning(invitations.c.kind, invitations.c.person_id)
            )
        ).first()
        return None if row is None else await self.person(row.kind, row.person_id)

    async def set_password(self, person: Person, password_hash: str, at: datetime) -> None:
        """Store (or replace) the person's password hash."""
        values = {"email": person.email, "password_hash": password_hash, "set_at": at}
        await self.conn.execute(
            pg_insert(credentials)
            .values(kind=person.kind, person_id=person.id, **values)
            .on_conflict_do_update(index_elements=["kind", "person_id"], set_=values)
        )

    async def open_sessions(self, person: Person) -> list[str]:
        """The key ids of the person's sessions not revoked yet."""
        keys = runtime_tables.api_keys
        column = keys.c.contact_id if person.kind == "contact" else keys.c.staff_id
        rows = await self.conn.execute(
            sa.select(keys.c.key_id).where(
                column == person.id,
                keys.c.revoked.is_(False),
                keys.c.scopes.contains([SESSION_SCOPE]),
            )
        )
        return [str(key_id) for key_id in rows.scalars()]


def _person(kind: PersonKind, row: Any) -> Person:
    if kind == "contact":
        return Person(
            kind="contact",
            id=row.id,
            email=row.email,
            role="contact",
            account_id=row.account_id,
            visibility=row.visibility,
        )
    return Person(kind="staff", id=row.id, email=row.email, role=row.role)
