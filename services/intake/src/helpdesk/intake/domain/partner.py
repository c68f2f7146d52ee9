"""Seed 001's partner rules: warn on excessive partner-resolvable escalations, revoke the partner
margin when they are excessive again after the warning, until none has happened for
`margin_restore_days`.

Pure: `PartnerStanding` is folded from the account's events; `on_flagged` decides what one more
flagged ticket at instant `at` means.
"""

from __future__ import annotations

import itertools
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
    # Warnings since the last revocation; one older than the rolling window has lapsed.
    warned_at: tuple[datetime, ...] = ()
    restore_on: datetime | None = None

    @property
    def warnings(self) -> int:
        """Warnings issued since the last revocation."""
        return len(self.warned_at)

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

    def to_json(self) -> dict[str, object]:
        """The stored form."""
        return {
            "flagged_at": [t.isoformat() for t in self.flagged_at],
            "warned_at": [t.isoformat() for t in self.warned_at],
            "restore_on": self.restore_on.isoformat() if self.restore_on else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> PartnerStanding:
        """The inverse of `to_json` (an empty dict is a partner never flagged)."""

        def instants(key: str) -> tuple[datetime, ...]:
            values = raw.get(key) or []
            assert isinstance(values, list)
            return tuple(datetime.fromisoformat(str(t)) for t in values)

        restore_on = raw.get("restore_on")
        return cls(
            flagged_at=instants("flagged_at"),
            warned_at=instants("warned_at"),
            restore_on=datetime.fromisoformat(str(restore_on)) if restore_on else None,
        )


def flagged(standing: PartnerStanding, at: datetime) -> PartnerStanding:
    """Fold one more flagged ticket."""
    return replace(standing, flagged_at=(*standing.flagged_at, at))


def fold(standing: PartnerStanding, payload: BaseModel, at: datetime) -> PartnerStanding:
    """Fold a warning, revocation or extension recorded at `at` (a revocation uses the
    warnings up)."""
    match payload:
        case PartnerWarningIssued():
            return replace(standing, warned_at=(*standing.warned_at, at))
        case PartnerMarginRevoked():
            return replace(standing, warned_at=(), restore_on=payload.restore_on)
        case PartnerMarginExtended():
            return replace(standing, restore_on=payload.restore_on)
    return standing


def _stands(
    warned_at: datetime, flagged_at: tuple[datetime, ...], at: datetime, window: timedelta
) -> bool:
    """Whether a warning given at `warned_at` still stands at `at`: no stretch of `window`
    without a flag has passed since (the escalations have not stopped)."""
    points = [warned_at, *sorted(t for t in flagged_at if warned_at < t <= at), at]
    return all(later - earlier <= window for earlier, later in itertools.pairwise(points))


def on_flagged(
    standing: PartnerStanding, at: datetime, rules: PartnerRules, account_id: UUID
) -> list[BaseModel]:
    """What flagging one more ticket at `at` leads to; `standing` already includes it.

    Seed 001: partners "with excessive escalations ... will receive a warning"; one that
    "continues to have excessive escalations" loses its margin until they "have stopped, and
    then for a period of not less than 6 months thereafter". Excessive is the threshold met
    inside the window. After a warning only flags *after* it count, so the margin goes when
    the threshold is met again while the warning stands; a single flag later is not enough.
    A warning stands until the escalations stop: it lapses once `window_days` pass without a
    flag. While the margin is revoked each flag pushes its return back (docs/policies.md,
    seed 001).
    """
    restore_on = at + timedelta(days=rules.margin_restore_days)
    if standing.margin_revoked(at):
        return [PartnerMarginExtended(account_id=account_id, restore_on=restore_on)]
    window = timedelta(days=rules.window_days)
    window_start = at - window
    active_warnings = [w for w in standing.warned_at if _stands(w, standing.flagged_at, at, window)]
    # Only flags inside the window count, none from before a margin came back, and none a
    # standing warning already answered.
    counted_from = window_start
    if standing.restore_on is not None:
        counted_from = max(counted_from, standing.restore_on)
    recent = [t for t in standing.flagged_at if t >= counted_from]
    if active_warnings:
        recent = [t for t in recent if t > max(active_warnings)]
    if len(recent) < rules.excessive_escalation_threshold:
        return []
    if len(active_warnings) < rules.warnings_before_penalty:
        return [
            PartnerWarningIssued(
                account_id=account_id, flagged_in_window=len(recent), window_days=rules.window_days
            )
        ]
    return [PartnerMarginRevoked(account_id=account_id, restore_on=restore_on)]
