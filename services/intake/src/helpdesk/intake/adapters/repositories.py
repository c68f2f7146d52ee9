"""Accounts and people as the use cases read them: intake's read models on PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk.intake.adapters.tables import account_numbers, accounts, agreements, contacts, staff
from helpdesk.intake.adapters.tables import runtime as runtime_tables
from helpdesk.intake.application.ports import AccountRecord, ContactRecord, KeyRecord, Opening
from helpdesk.intake.domain.names import name_key
from helpdesk.intake.domain.partner import PartnerStanding
from helpdesk.shared.agreements import Agreement, EscalationTier


def account_record(row: Any) -> AccountRecord:
    """An `accounts` row as the use cases see it."""
    return AccountRecord(
        id=row.id,
        number=row.number,
        name=row.name,
        timezone=row.timezone,
        status=row.status,
        agreement_version=row.agreement_version,
        partner=row.partner or {},
        country=row.country,
    )


class PostgresAccounts:
    """Accounts on the command's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, account_id: UUID, *, lock: bool = False) -> AccountRecord | None:
        """The account, or None; with `lock`, its row is locked until the transaction ends."""
        query = sa.select(accounts).where(accounts.c.id == account_id)
        if lock:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return None if row is None else account_record(row)

    async def clash(self, name: str, number: str | None, exclude: UUID | None = None) -> str | None:
        """`"name"` or `"number"` when another account has it, else None."""
        key = name_key(name)
        clash = sa.or_(accounts.c.name_key == key, accounts.c.number == number)
        query = sa.select(accounts.c.name_key, accounts.c.number).where(clash)
        if exclude is not None:
            query = query.where(accounts.c.id != exclude)
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        return "name" if row.name_key == key else "number"

    async def next_number(self) -> str:
        """A readable account number no account has: numbers clients chose are skipped."""
        while True:
            number = f"AC-{await self.conn.scalar(account_numbers.next_value())}"
            taken = await self.conn.scalar(
                sa.select(accounts.c.id).where(accounts.c.number == number).limit(1)
            )
            if taken is None:
                return number

    async def opening(self, account_id: UUID) -> Opening | None:
        """What opening a ticket needs, in one round trip."""
        required_on_open = (
            sa.select(agreements.c.agreement["required_fields"]["on_open"])
            .where(agreements.c.account_id == accounts.c.id)
            .order_by(agreements.c.version.desc())
            .limit(1)
            .scalar_subquery()
        )
        row = (
            await self.conn.execute(
                sa.select(
                    accounts.c.status,
                    accounts.c.agreement_version,
                    required_on_open.label("required"),
                ).where(accounts.c.id == account_id)
            )
        ).first()
        if row is None:
            return None
        return Opening(row.status, row.agreement_version, list(row.required or []))

    async def agreement(self, account_id: UUID) -> Agreement | None:
        """The account's current agreement, if one was set."""
        raw = await self.conn.scalar(
            sa.select(agreements.c.agreement)
            .where(agreements.c.account_id == account_id)
            .order_by(agreements.c.version.desc())
            .limit(1)
        )
        return Agreement.model_validate(raw) if raw is not None else None

    async def standing(self, account_id: UUID) -> PartnerStanding:
        """The account's partner standing."""
        return await load_standing(self.conn, account_id)


class PostgresPeople:
    """Contacts, staff and keys on the command's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def contact(self, contact_id: UUID) -> ContactRecord | None:
        """The contact, or None."""
        query = sa.select(contacts.c.id, contacts.c.account_id, contacts.c.visibility)
        row = (await self.conn.execute(query.where(contacts.c.id == contact_id))).first()
        return None if row is None else ContactRecord(row.id, row.account_id, row.visibility)

    async def contact_with_email(self, email: str) -> UUID | None:
        """The contact with this address, or None."""
        found: UUID | None = await self.conn.scalar(
            sa.select(contacts.c.id).where(contacts.c.email == email)
        )
        return found

    async def staff_role(self, staff_id: UUID) -> str | None:
        """The role of the staff member, or None."""
        role: str | None = await self.conn.scalar(
            sa.select(staff.c.role).where(staff.c.id == staff_id)
        )
        return role

    async def staff_tier(self, staff_id: UUID) -> EscalationTier | None:
        """The escalation tier the staff member works in, or None."""
        tier: EscalationTier | None = await self.conn.scalar(
            sa.select(staff.c.tier).where(staff.c.id == staff_id)
        )
        return tier

    async def staff_with_email(self, email: str) -> UUID | None:
        """The staff member with this address, or None."""
        found: UUID | None = await self.conn.scalar(
            sa.select(staff.c.id).where(staff.c.email == email)
        )
        return found

    async def key(self, key_id: str) -> KeyRecord | None:
        """The API key, or None."""
        keys = runtime_tables.api_keys
        query = sa.select(keys.c.key_id, keys.c.account_id, keys.c.revoked)
        row = (await self.conn.execute(query.where(keys.c.key_id == key_id))).first()
        return None if row is None else KeyRecord(row.key_id, row.account_id, bool(row.revoked))


async def load_standing(conn: AsyncConnection, account_id: object) -> PartnerStanding:
    """An account's partner standing."""
    raw = await conn.scalar(sa.select(accounts.c.partner).where(accounts.c.id == account_id))
    return PartnerStanding.from_json(raw or {})


async def save_standing(
    conn: AsyncConnection, account_id: object, standing: PartnerStanding
) -> None:
    """Store an account's partner standing."""
    await conn.execute(
        accounts.update().where(accounts.c.id == account_id).values(partner=standing.to_json())
    )
