"""Retry schedule, jitter, outcome classification, Retry-After, disabling failing endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.notifier.domain.retry import (
    DEFAULT_SCHEDULE,
    AttemptOutcome,
    RetryPolicy,
    Verdict,
    decide,
    exponential_schedule,
    jittered,
    parse_retry_after,
    schedule_offsets,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(jitter=0.0)


def _decide(outcome: AttemptOutcome, attempt: int = 1, **kw: object) -> object:
    defaults: dict[str, object] = {
        "now": NOW,
        "first_failure_at": None,
        "jitter_draw": 0.5,
        "policy": NO_JITTER,
    }
    defaults.update(kw)
    return decide(outcome, attempt=attempt, **defaults)  # type: ignore[arg-type]


def test_default_schedule_is_eight_attempts_over_about_a_day() -> None:
    assert DEFAULT_SCHEDULE[0] == timedelta(seconds=5)
    assert DEFAULT_SCHEDULE[-1] == timedelta(hours=10)
    assert RetryPolicy().max_attempts == 8
    assert schedule_offsets(DEFAULT_SCHEDULE)[-1] == timedelta(hours=27, minutes=35, seconds=5)


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_2xx_delivers_and_resets_the_failure_clock(code: int) -> None:
    decision = _decide(AttemptOutcome(code), first_failure_at=NOW - timedelta(days=1))
    assert decision.verdict is Verdict.DELIVERED  # type: ignore[attr-defined]
    assert decision.first_failure_at is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [301, 302, 307, 308, 400, 404, 500, 502])
def test_non_2xx_retries_on_the_schedule(code: int) -> None:
    for attempt, step in enumerate(DEFAULT_SCHEDULE, start=1):
        decision = decide(
            AttemptOutcome(code),
            attempt=attempt,
            now=NOW,
            first_failure_at=NOW,
            jitter_draw=0.5,
            policy=NO_JITTER,
        )
        assert decision.verdict is Verdict.RETRY
        assert decision.next_attempt_at == NOW + step
        assert decision.first_failure_at == NOW
    last = decide(AttemptOutcome(code), attempt=8, now=NOW, first_failure_at=NOW, jitter_draw=0.5)
    assert last.verdict is Verdict.GIVE_UP


def test_3xx_is_a_failure_that_mentions_redirects() -> None:
    decision = decide(AttemptOutcome(302), attempt=1, now=NOW, first_failure_at=None, jitter_draw=0)
    assert decision.verdict is Verdict.RETRY
    assert "redirect" in decision.reason
    assert decision.first_failure_at == NOW  # the clock starts at the first failure


def test_410_disables_the_endpoint() -> None:
    decision = decide(AttemptOutcome(410), attempt=1, now=NOW, first_failure_at=None, jitter_draw=0)
    assert decision.verdict is Verdict.DISABLE_ENDPOINT


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_seconds_is_honoured(code: int) -> None:
    outcome = AttemptOutcome(code, retry_after="120")
    decision = decide(outcome, attempt=3, now=NOW, first_failure_at=NOW, jitter_draw=0.9)
    assert decision.verdict is Verdict.RETRY
    assert decision.next_attempt_at == NOW + timedelta(seconds=120)


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_http_date_is_honoured(code: int) -> None:
    outcome = AttemptOutcome(code, retry_after="Mon, 02 Jun 2025 12:45:00 GMT")
    decision = decide(outcome, attempt=1, now=NOW, first_failure_at=None, jitter_draw=0.1)
    assert decision.next_attempt_at == NOW + timedelta(minutes=45)


def test_retry_after_is_capped_and_ignored_for_other_codes() -> None:
    far = AttemptOutcome(429, retry_after=str(7 * 24 * 3600))
    capped = decide(far, attempt=1, now=NOW, first_failure_at=None, jitter_draw=0.5)
    assert capped.next_attempt_at == NOW + timedelta(hours=10)
    other = AttemptOutcome(500, retry_after="3600")
    plain = decide(other, attempt=1, now=NOW, first_failure_at=None, jitter_draw=0.5)
    assert plain.next_attempt_at == NOW + timedelta(seconds=5)
    unreadable = AttemptOutcome(503, retry_after="soon")
    fallback = decide(unreadable, attempt=2, now=NOW, first_failure_at=None, jitter_draw=0.5)
    assert fallback.next_attempt_at == NOW + timedelta(minutes=5)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("0", NOW) == timedelta(0)
    assert parse_retry_after(" 30 ", NOW) == timedelta(seconds=30)
    assert parse_retry_after("Mon, 02 Jun 2025 11:00:00 GMT", NOW) == timedelta(0)  # past
    assert parse_retry_after("Monday, 02-Jun-25 12:00:10 GMT", NOW) == timedelta(seconds=10)
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("", NOW) is None
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after("tomorrow", NOW) is None


@pytest.mark.parametrize(
    "outcome",
    [
        AttemptOutcome(None, error="timed out after 15 s", timed_out=True),
        AttemptOutcome(200, timed_out=True),
        AttemptOutcome(None, error="ConnectError: refused"),
        AttemptOutcome(None, error="10.0.0.1 is private", blocked=True),
    ],
)
def test_timeouts_network_errors_and_blocked_targets_retry(outcome: AttemptOutcome) -> None:
    decision = decide(outcome, attempt=1, now=NOW, first_failure_at=None, jitter_draw=0.5)
    assert decision.verdict is Verdict.RETRY
    assert decision.reason


def test_continuous_failure_disables_after_the_configured_time() -> None:
    policy = RetryPolicy(disable_after=timedelta(days=5))
    started = NOW - timedelta(days=5)
    disabled = decide(
        AttemptOutcome(500),
        attempt=2,
        now=NOW,
        first_failure_at=started,
        jitter_draw=0.5,
        policy=policy,
    )
    assert disabled.verdict is Verdict.DISABLE_ENDPOINT
    assert disabled.first_failure_at == started
    not_yet = decide(
        AttemptOutcome(500),
        attempt=2,
        now=NOW - timedelta(seconds=1),
        first_failure_at=started,
        jitter_draw=0.5,
        policy=policy,
    )
    assert not_yet.verdict is Verdict.RETRY
    # A success in between resets the clock: the endpoint is judged afresh.
    ok = decide(AttemptOutcome(204), attempt=1, now=NOW, first_failure_at=started, jitter_draw=0)
    assert ok.first_failure_at is None


def test_custom_schedule() -> None:
    policy = RetryPolicy(schedule=(timedelta(seconds=1), timedelta(seconds=2)), jitter=0)
    first = decide(
        AttemptOutcome(500), attempt=1, now=NOW, first_failure_at=None, jitter_draw=0, policy=policy
    )
    assert first.next_attempt_at == NOW + timedelta(seconds=1)
    third = decide(
        AttemptOutcome(500), attempt=3, now=NOW, first_failure_at=None, jitter_draw=0, policy=policy
    )
    assert third.verdict is Verdict.GIVE_UP
    assert exponential_schedule(timedelta(seconds=5), 4, timedelta(hours=1), 5) == (
        timedelta(seconds=5),
        timedelta(seconds=20),
        timedelta(seconds=80),
        timedelta(seconds=320),
        timedelta(seconds=1280),
    )
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.0)
    with pytest.raises(ValueError, match="from 1"):
        decide(AttemptOutcome(500), attempt=0, now=NOW, first_failure_at=None, jitter_draw=0)


@given(draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_jitter_stays_within_its_share(draw: float) -> None:
    base = timedelta(minutes=30)
    delay = jittered(base, 0.1, draw)
    assert base * 0.9 <= delay < base * 1.1 + timedelta(microseconds=1)
    decision = decide(
        AttemptOutcome(500), attempt=3, now=NOW, first_failure_at=None, jitter_draw=draw
    )
    assert decision.next_attempt_at is not None
    assert NOW + base * 0.9 <= decision.next_attempt_at <= NOW + base * 1.1


def test_jitter_draw_must_be_in_unit_interval() -> None:
    with pytest.raises(ValueError, match="draw"):
        jittered(timedelta(seconds=5), 0.1, 1.0)
