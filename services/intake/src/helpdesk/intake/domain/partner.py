"""Seed 001's partner rules: warn on excessive partner-resolvable escalations, then revoke the
partner margin until none has happened for `margin_restore_days`.

Pure: `PartnerStanding` is folded from the account's events; `on_flagged` decides what one more
flagged ticket at instant `at` means.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel

from helpdesk.shared.agreements import PartnerRules
from helpdesk.shared.contracts.accounts import (
    PartnerMarginExtended,
    PartnerMarginRevoked,
    PartnerWarningIssued,
)


@dataclass(frozen=True)
class PartnerStanding:
    """Where a partner account stands: its flagged tickets, warnings and margin."""

    flagged_at: tuple[datetime, ...] = ()
    warnings: int = 0
    restore_on: datetime | None = None

    def margin_revoked(self, at: datetime) -> bool:
        """Whether the partner is billed at full price at instant `at`."""
        return self.restore_on is not None and at < self.restore_on

    def view(self, at: datetime) -> dict[str, object]:
        """The standing as the account shows it at instant `at`."""
        revoked = self.margin_revoked(at)
        return {
            "flagged_tickets": len(self.flagged_at),
            "warnings": self.warnings,
            "margin": "revoked" if revoked else "granted",
            "margin_restored_on": self.restore_on.isoformat()
            if revoked and self.restore_on
            else None,
        }


def flagged(standing: PartnerStanding, at: datetime) -> PartnerStanding:
    """Fold one more flagged ticket."""
    return replace(standing, flagged_at=(*standing.flagged_at, at))


def fold(standing: PartnerStanding, payload: BaseModel) -> PartnerStanding:
    """Fold a warning, revocation or extension (a revocation uses the warnings up)."""
    match payload:
        case PartnerWarningIssued():
            return replace(standing, warnings=standing.warnings + 1)
        case PartnerMarginRevoked():
            return replace(standing, warnings=0, restore_on=payload.restore_on)
        case PartnerMarginExtended():
            return replace(standing, restore_on=payload.restore_on)
    return standing


def on_flagged(
    standing: PartnerStanding, at: datetime, rules: PartnerRules, account_id: UUID
) -> list[BaseModel]:
    """What flagging one more ticket at `at` leads to; `standing` already includes it."""
    restore_on = at + timedelta(days=rules.margin_restore_days)
    if standing.margin_revoked(at):
        return [PartnerMarginExtended(account_id=account_id, restore_on=restore_on)]
    if 0 < rules.warnings_before_penalty <= standing.warnings:
        # Warned already: a further such ticket costs the margin.
        return [PartnerMarginRevoked(account_id=account_id, restore_on=restore_on)]
    # Only flags inside the window count, and none from before a margin came back.
    window_start = at - timedelta(days=rules.window_days)
    if standing.restore_on is not None:
        window_start = max(window_start, standing.restore_on)
    recent = [t for t in standing.flagged_at if t >= window_start]
    if len(recent) < rules.excessive_escalation_threshold:
        return []
    if standing.warnings < rules.warnings_before_penalty:
        return [
            PartnerWarningIssued(
                account_id=account_id, flagged_in_window=len(recent), window_days=rules.window_days
            )
        ]
    return [PartnerMarginRevoked(account_id=account_id, restore_on=restore_on)]
