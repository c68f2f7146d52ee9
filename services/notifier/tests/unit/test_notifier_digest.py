"""The managers' daily digest: which clocks it lists, and which day is due when; and when a
mail that keeps failing is tried again or given up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from helpdesk.notifier.domain.digest import (
    ClockState,
    digest_due,
    digest_items,
    digest_status,
    next_digest,
)
from helpdesk.notifier.domain.messages import daily_digest
from helpdesk.notifier.domain.retry import MailRetryPolicy, next_mail_attempt

pytestmark = pytest.mark.unit

DUE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CLOCK = ClockState(
    number="HD-000001",
    subject="Mail down",
    account_name="Acme",
    priority="P1",
    clock="resolution",
    due_at=DUE,
    warned=False,
    breached=False,
    met=False,
    ticket_closed=False,
)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),  # running, not warned about
        ({"warned": True}, "at_risk"),
        ({"warned": True, "met": True}, None),  # met in time
        ({"warned": True, "breached": True}, "breached"),
        ({"breached": True}, "breached"),
        ({"warned": True, "breached": True, "met": True}, "breached"),  # met late, still open
        ({"warned": True, "ticket_closed": True}, None),
        ({"breached": True, "ticket_closed": True}, None),
        ({"breached": True, "clock": "next_reply"}, None),  # reported to no one
        ({"warned": True, "clock": "response"}, "at_risk"),
        # Retracted: a late event showed the clock met (or stopped) before its deadline.
        ({"warned": True, "breached": True, "met": True, "retracted": True}, None),
        ({"warned": True, "breached": True, "retracted": True}, None),
    ],
)
def test_which_clocks_the_digest_lists(changes: dict[str, object], expected: str | None) -> None:
    assert digest_status(replace(CLOCK, **changes)) == expected  # type: ignore[arg-type]


def test_digest_lines_breached_first_then_at_risk_by_due_time() -> None:
    states = [
        replace(CLOCK, number="HD-3", warned=True, due_at=DUE + timedelta(hours=1)),
        replace(CLOCK, number="HD-2", warned=True, due_at=DUE),
        replace(CLOCK, number="HD-1", breached=True, due_at=DUE + timedelta(hours=5)),
        replace(CLOCK, number="HD-9", warned=True, met=True),
    ]
    items = digest_items(states)
    assert [(i.number, i.status) for i in items] == [
        ("HD-3", "at_risk"),
        ("HD-2", "at_risk"),
        ("HD-1", "breached"),
    ]
    intent = daily_digest(date(2026, 11, 30), items)
    assert intent is not None
    assert [i["number"] for i in intent.context["items"]] == ["HD-1", "HD-2", "HD-3"]
    assert intent.subject.endswith("1 breached, 2 at risk")
    assert intent.message_id == "<digest.2026-11-30@helpdesk.local>"
    assert daily_digest(date(2026, 11, 30), digest_items([CLOCK])) is None


def test_the_day_due_is_the_latest_whose_hour_has_passed_in_the_zone() -> None:
    # 05:59 UTC is 06:59 in Berlin (CET): the 07:00 digest of the day before is the one due.
    day, at = digest_due(datetime(2026, 11, 30, 5, 59, tzinfo=UTC), 7, BERLIN)
    assert (day, at) == (date(2026, 11, 29), datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    day, at = digest_due(datetime(2026, 11, 30, 6, 0, tzinfo=UTC), 7, BERLIN)
    assert (day, at) == (date(2026, 11, 30), datetime(2026, 11, 30, 6, 0, tzinfo=UTC))
    assert next_digest(day, 7, BERLIN) == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    # Summer time: 07:00 in Berlin is 05:00 UTC.
    assert digest_due(datetime(2026, 7, 1, 5, 0, tzinfo=UTC), 7, BERLIN)[0] == date(2026, 7, 1)
    # UTC by default; the hour is checked.
    assert digest_due(DUE, 7, ZoneInfo("UTC"))[1] == datetime(2026, 11, 30, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"0\.\.23"):
        digest_due(DUE, 24, BERLIN)


def test_a_digest_hour_in_a_dst_gap_moves_forward() -> None:
    # 2026-03-29 02:00 does not exist in Berlin: the digest goes at 03:00 CEST (01:00 UTC).
    _, at = digest_due(datetime(2026, 3, 29, 12, tzinfo=UTC), 2, BERLIN)
    assert at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_a_failing_mail_backs_off_exponentially_then_is_given_up() -> None:
    policy = MailRetryPolicy(
        first=timedelta(seconds=60),
        cap=timedelta(minutes=5),
        max_attempts=5,
        give_up_after=timedelta(hours=1),
    )
    first = DUE
    waits = [
        next_mail_attempt(policy, attempt=n, first_failed_at=first, now=first) for n in range(1, 6)
    ]
    assert waits == [
        first + timedelta(seconds=60),
        first + timedelta(seconds=120),
        first + timedelta(seconds=240),
        first + timedelta(minutes=5),  # capped
        None,  # the fifth failed submission was the last
    ]
    late = first + timedelta(hours=1)
    assert next_mail_attempt(policy, attempt=2, first_failed_at=first, now=late) is None
    with pytest.raises(ValueError, match="count from 1"):
        next_mail_attempt(policy, attempt=0, first_failed_at=first, now=first)
    with pytest.raises(ValueError, match="at least one attempt"):
        MailRetryPolicy(max_attempts=0)
