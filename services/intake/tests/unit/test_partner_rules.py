"""Seed 001's partner rules: warning, revocation, extension, windows and restoration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpdesk.intake.domain import partner
from helpdesk.intake.domain.partner import PartnerStanding
from helpdesk.shared.agreements import PartnerRules
from helpdesk.shared.contracts.accounts import (
    PartnerMarginExtended,
    PartnerMarginRevoked,
    PartnerWarningIssued,
)

pytestmark = pytest.mark.unit

ACCOUNT = uuid4()
T0 = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
RULES = PartnerRules(
    excessive_escalation_threshold=3, window_days=30, warnings_before_penalty=1,
    margin_restore_days=183,
)  # fmt: skip


def flag(
    standing: PartnerStanding, at: datetime, rules: PartnerRules = RULES
) -> tuple[PartnerStanding, list[BaseModel]]:
    """One more flagged ticket, as intake folds it: the flag, then what it leads to."""
    standing = partner.flagged(standing, at)
    decided = partner.on_flagged(standing, at, rules, ACCOUNT)
    for payload in decided:
        standing = partner.fold(standing, payload, at)
    return standing, decided


def flag_all(
    times: list[datetime], rules: PartnerRules = RULES, standing: PartnerStanding | None = None
) -> tuple[PartnerStanding, list[list[BaseModel]]]:
    standing = standing or PartnerStanding()
    outcomes = []
    for at in times:
        standing, decided = flag(standing, at, rules)
        outcomes.append(decided)
    return standing, outcomes


def days(n: float) -> timedelta:
    return timedelta(days=n)


#: Three flags earn the warning (day 2), three more after it revoke the margin (day 5).
TO_REVOCATION = [T0 + days(i) for i in range(6)]
REVOKED_AT = T0 + days(5)


def test_a_warning_once_the_threshold_is_reached_in_the_window() -> None:
    standing, outcomes = flag_all([T0, T0 + days(1), T0 + days(2)])
    assert outcomes[:2] == [[], []]
    (warning,) = outcomes[2]
    assert isinstance(warning, PartnerWarningIssued)
    assert (warning.flagged_in_window, warning.window_days, warning.account_id) == (3, 30, ACCOUNT)
    assert standing.warnings == 1
    assert not standing.margin_revoked(T0 + days(2))
    assert standing.view(T0 + days(2)) == {
        "flagged_tickets": 3,
        "warnings": 1,
        "margin": "granted",
        "margin_restored_on": None,
    }


def test_excessive_escalations_again_after_the_warning_revoke_the_margin() -> None:
    """Seed 001: "If the partner ... continues to have excessive escalations ... will have their
    accounts reverted to a full price account": the threshold met again after the warning."""
    standing, outcomes = flag_all(TO_REVOCATION[:5])
    assert [[type(p) for p in o] for o in outcomes] == [[], [], [PartnerWarningIssued], [], []]
    assert not standing.margin_revoked(TO_REVOCATION[4])
    at = REVOKED_AT
    standing, decided = flag(standing, at)
    (revoked,) = decided
    assert isinstance(revoked, PartnerMarginRevoked)
    assert revoked.restore_on == at + days(183)
    assert standing.warnings == 0
    assert standing.margin_revoked(at)
    view = standing.view(at)
    assert view["margin"] == "revoked"
    assert view["margin_restored_on"] == (at + days(183)).isoformat()


def test_a_single_flag_after_the_warning_does_not_revoke() -> None:
    """Seed 001: "continues to have excessive escalations" - after the warning, a single flag a
    month later, with only 3 flags inside the 30-day window (threshold 5), keeps the margin."""
    rules = RULES.model_copy(update={"excessive_escalation_threshold": 5})
    standing, outcomes = flag_all([T0 + days(i) for i in range(5)], rules)
    assert [type(p) for p in outcomes[-1]] == [PartnerWarningIssued]
    later = T0 + days(33)  # the flags of days 3, 4 and 33 are inside the window
    standing, decided = flag(standing, later, rules)
    assert decided == []
    assert not standing.margin_revoked(later)
    # Excessive again after the warning (five flags after it inside the window) revokes.
    standing, outcomes = flag_all([later + days(i) for i in (1, 2, 3, 4)], rules, standing)
    assert [[type(p) for p in o] for o in outcomes] == [[], [], [], [PartnerMarginRevoked]]


def test_a_warning_lapses_once_the_escalations_stop_for_a_window() -> None:
    """Seed 001 revokes for partners that "continue": after 30 days without a flag the warning
    has lapsed, and excessive escalations later earn a new warning, not a revocation."""
    standing, _ = flag_all([T0, T0 + days(1), T0 + days(2)])
    resumed = T0 + days(2 + 31)
    standing, outcomes = flag_all([resumed + days(i) for i in range(3)], standing=standing)
    assert [[type(p) for p in o] for o in outcomes] == [[], [], [PartnerWarningIssued]]


def test_a_flag_while_revoked_extends_the_revocation() -> None:
    standing, _ = flag_all(TO_REVOCATION)
    assert standing.restore_on == REVOKED_AT + days(183)
    at = T0 + days(100)
    standing, decided = flag(standing, at)
    (extended,) = decided
    assert isinstance(extended, PartnerMarginExtended)
    assert extended.restore_on == at + days(183)
    assert standing.restore_on == at + days(183)
    assert standing.margin_revoked(REVOKED_AT + days(183))  # the old date no longer restores it


def test_flags_spread_wider_than_the_window_never_warn() -> None:
    _, outcomes = flag_all([T0 + days(31 * i) for i in range(10)])
    assert all(decided == [] for decided in outcomes)


def test_a_flag_exactly_window_days_old_still_counts() -> None:
    _, outcomes = flag_all([T0, T0 + days(15), T0 + days(30)])
    assert [type(p) for p in outcomes[2]] == [PartnerWarningIssued]


def test_a_flag_just_older_than_the_window_does_not_count() -> None:
    _, outcomes = flag_all([T0, T0 + days(15), T0 + days(30) + timedelta(seconds=1)])
    assert outcomes[2] == []


def test_the_margin_comes_back_after_margin_restore_days() -> None:
    standing, _ = flag_all(TO_REVOCATION)
    restore_on = REVOKED_AT + days(183)
    assert standing.margin_revoked(restore_on - timedelta(seconds=1))
    assert not standing.margin_revoked(restore_on)
    assert standing.view(restore_on) == {
        "flagged_tickets": 6,
        "warnings": 0,
        "margin": "granted",
        "margin_restored_on": None,
    }


def test_after_restoration_the_count_starts_afresh() -> None:
    standing, _ = flag_all(TO_REVOCATION)
    restored = REVOKED_AT + days(183)
    # Old flags do not count, and the warning was used up by the revocation: it takes the full
    # threshold again for a warning, and the threshold again after it for a revocation.
    standing, outcomes = flag_all([restored + days(i) for i in range(6)], standing=standing)
    assert [[type(p) for p in o] for o in outcomes] == [
        [],
        [],
        [PartnerWarningIssued],
        [],
        [],
        [PartnerMarginRevoked],
    ]


def test_flags_from_before_the_restoration_do_not_count_even_inside_the_window() -> None:
    standing, _ = flag_all(TO_REVOCATION)
    restored = REVOKED_AT + days(183)
    # two flags in the last days before restoration extend it; the count after it is fresh
    standing, outcomes = flag_all([restored - days(2), restored - days(1)], standing=standing)
    assert [[type(p) for p in o] for o in outcomes] == [[PartnerMarginExtended]] * 2
    new_restore = restored - days(1) + days(183)
    standing, outcomes = flag_all([new_restore, new_restore + days(1)], standing=standing)
    assert outcomes == [[], []]


def test_without_warnings_the_threshold_revokes_at_once() -> None:
    rules = RULES.model_copy(update={"warnings_before_penalty": 0})
    _, outcomes = flag_all([T0, T0 + days(1), T0 + days(2)], rules)
    assert [type(p) for p in outcomes[2]] == [PartnerMarginRevoked]


def test_several_warnings_before_the_penalty() -> None:
    rules = RULES.model_copy(update={"warnings_before_penalty": 2})
    standing, outcomes = flag_all([T0 + days(i) for i in range(9)], rules)
    assert [[type(p) for p in o] for o in outcomes] == [
        [], [], [PartnerWarningIssued],
        [], [], [PartnerWarningIssued],
        [], [], [PartnerMarginRevoked],
    ]  # fmt: skip
    assert standing.margin_revoked(T0 + days(8))


def test_a_zero_day_restoration_period_never_revokes_for_long() -> None:
    rules = RULES.model_copy(update={"margin_restore_days": 0})
    standing, outcomes = flag_all(TO_REVOCATION, rules)
    assert [type(p) for p in outcomes[5]] == [PartnerMarginRevoked]
    assert not standing.margin_revoked(REVOKED_AT)


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
@settings(max_examples=200, deadline=None)
def test_no_revocation_without_a_warning_first(offsets: list[int]) -> None:
    standing = PartnerStanding()
    warned = False
    since_warning: list[datetime] = []
    for hours in sorted(offsets):
        at = T0 + timedelta(hours=hours * 12)
        revoked_before = standing.margin_revoked(at)
        standing, decided = flag(standing, at)
        since_warning.append(at)
        for payload in decided:
            if isinstance(payload, PartnerWarningIssued):
                assert not revoked_before
                warned = True
                since_warning = []
            elif isinstance(payload, PartnerMarginRevoked):
                assert warned
                # Excessive again after the warning: the threshold met inside the window.
                in_window = [t for t in since_warning if t >= at - days(RULES.window_days)]
                assert len(in_window) >= RULES.excessive_escalation_threshold
                assert not revoked_before
                assert payload.restore_on == at + days(183)
                warned = False
            else:
                assert isinstance(payload, PartnerMarginExtended)
                assert revoked_before
        assert len(decided) <= 1
    assert len(standing.flagged_at) == len(offsets)


def test_a_warning_older_than_the_window_lapses() -> None:
    """Seed 001 revokes for partners that *continue*: a lone flag months later does not."""
    standing, decided = flag_all([T0, T0 + timedelta(days=1), T0 + timedelta(days=2)])
    assert isinstance(decided[-1][0], PartnerWarningIssued)
    later = T0 + timedelta(days=2 + RULES.window_days + 1)
    standing, outcome = flag(standing, later)
    assert outcome == []
    assert not standing.margin_revoked(later)
    # Excessive again: a new warning; excessive once more while it stands: revoked.
    standing, decided = flag_all(
        [later + timedelta(days=1), later + timedelta(days=2)], standing=standing
    )
    assert isinstance(decided[-1][0], PartnerWarningIssued)
    standing, decided = flag_all(
        [later + days(3), later + days(4), later + days(5)], standing=standing
    )
    assert [[type(p) for p in o] for o in decided] == [[], [], [PartnerMarginRevoked]]


def test_the_seed_001_preset_withholds_the_margin_for_at_least_six_calendar_months() -> None:
    """The longest six calendar months run July to December (184 days): escalations that stop on
    1 July keep the margin withheld through 31 December, and it is back on 1 January."""
    rules = PartnerRules(
        excessive_escalation_threshold=1, window_days=30, warnings_before_penalty=1
    )
    last = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    standing, outcomes = flag_all([last - days(1), last], rules)
    assert isinstance(outcomes[-1][0], PartnerMarginRevoked)
    assert standing.margin_revoked(datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert not standing.margin_revoked(datetime(2027, 1, 1, 9, 0, tzinfo=UTC))
