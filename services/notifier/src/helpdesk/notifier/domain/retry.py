"""When to try a webhook delivery again, and when to stop: pure decisions on an attempt.

Nothing here reads a clock or draws a random number: `now`, the endpoint's failure clock
(`first_failure_at`, kept in the database) and a jitter draw in [0, 1) are parameters.

Rules:
- 2xx (within the sender's timeout) delivers. Anything else is a failure; 3xx is a failure
  too, because redirects are never followed (they would bypass the SSRF guard).
- 410 Gone disables the endpoint at once.
- 429 and 503 with a `Retry-After` (delta-seconds or HTTP-date) retry at that instant instead
  of the schedule's, capped at `max_retry_after`; the attempt still counts.
- Otherwise the n-th failed attempt waits `schedule[n-1]`, scaled by a jitter factor in
  `[1 - jitter, 1 + jitter)`; after the last step the message is given up.
- An endpoint failing without a single success for `disable_after` (measured from the first
  failure of the current run) is disabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

# In the spirit of Standard Webhooks / Svix: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 10 h: eight attempts over about 27.6 hours.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
DEFAULT_JITTER = 0.1
DEFAULT_DISABLE_AFTER = timedelta(days=5)
DEFAULT_MAX_RETRY_AFTER = timedelta(hours=10)
HONOURS_RETRY_AFTER = frozenset({429, 503})


class Verdict(StrEnum):
    """What follows an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"  # this message failed for good; the endpoint stays enabled
    DISABLE_ENDPOINT = "disable_endpoint"  # stop delivering anything to this endpoint


@dataclass(frozen=True)
class RetryPolicy:
    """The retry schedule and the limits; configurable per deployment."""

    schedule: tuple[timedelta, ...] = DEFAULT_SCHEDULE
    jitter: float = DEFAULT_JITTER
    disable_after: timedelta = DEFAULT_DISABLE_AFTER
    max_retry_after: timedelta = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if any(step < timedelta(0) for step in self.schedule):
            raise ValueError("retry delays are not negative")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter is a share in [0, 1)")
        if self.disable_after <= timedelta(0) or self.max_retry_after < timedelta(0):
            raise ValueError("disable_after is positive and max_retry_after not negative")

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one per schedule step."""
        return 1 + len(self.schedule)


def exponential_schedule(
    first: timedelta, factor: float, cap: timedelta, steps: int
) -> tuple[timedelta, ...]:
    """A schedule of `steps` delays growing by `factor` from `first`, none above `cap`."""
    if steps < 0 or factor < 1.0 or first < timedelta(0):
        raise ValueError("steps >= 0, factor >= 1 and a non-negative first delay")
    return tuple(min(cap, first * factor**i) for i in range(steps))


def jittered(delay: timedelta, jitter: float, draw: float) -> timedelta:
    """`delay` scaled by `1 + jitter * (2 * draw - 1)`; `draw` is uniform in [0, 1)."""
    if not 0.0 <= draw < 1.0:
        raise ValueError("the jitter draw is in [0, 1)")
    return delay * (1.0 + jitter * (2.0 * draw - 1.0))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A `Retry-After` value (delta-seconds or HTTP-date) as a delay from `now`.

    None when absent or unreadable; a date in the past is a zero delay.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # `-0000` or an obsolete zone: HTTP-dates are GMT
        return None
    return max(timedelta(0), when - now)


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt observed; `status_code` is None when no response came."""

    status_code: int | None
    error: str | None = None
    timed_out: bool = False
    blocked: bool = False  # refused by the SSRF guard before connecting
    retry_after: str | None = None  # the raw `Retry-After` header of the response

    @property
    def succeeded(self) -> bool:
        """A 2xx answer within the timeout."""
        return (
            self.status_code is not None
            and 200 <= self.status_code < 300
            and not self.timed_out
            and self.error is None
        )


@dataclass(frozen=True)
class Decision:
    """The verdict on an attempt, and the endpoint's failure clock to store.

    `first_failure_at` is the new value of the endpoint's clock: None after a success, the
    earlier value (or `now`) after a failure.
    """

    verdict: Verdict
    reason: str
    next_attempt_at: datetime | None = None
    first_failure_at: datetime | None = None


def decide(
    outcome: AttemptOutcome,
    *,
    attempt: int,
    now: datetime,
    first_failure_at: datetime | None,
    jitter_draw: float,
    policy: RetryPolicy | None = None,
) -> Decision:
    """Classify attempt number `attempt` (1-based) of one message, made at `now`."""
    policy = policy or RetryPolicy()
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if outcome.succeeded:
        return Decision(Verdict.DELIVERED, f"HTTP {outcome.status_code}")

    failing_since = first_failure_at if first_failure_at is not None else now
    reason = describe_failure(outcome)
    if outcome.status_code == 410:
        return Decision(Verdict.DISABLE_ENDPOINT, "HTTP 410 Gone", first_failure_at=failing_since)
    if now - failing_since >= policy.disable_after:
        return Decision(
            Verdict.DISABLE_ENDPOINT,
            f"failing continuously since {failing_since.isoformat()}: {reason}",
            first_failure_at=failing_since,
        )
    if attempt >= policy.max_attempts:
        return Decision(
            Verdict.GIVE_UP,
            f"{attempt} attempts failed, last: {reason}",
            first_failure_at=failing_since,
        )

    delay = jittered(policy.schedule[attempt - 1], policy.jitter, jitter_draw)
    if outcome.status_code in HONOURS_RETRY_AFTER:
        asked = parse_retry_after(outcome.retry_after, now)
        if asked is not None:
            delay = min(asked, policy.max_retry_after)
    return Decision(
        Verdict.RETRY, reason, next_attempt_at=now + delay, first_failure_at=failing_since
    )


def describe_failure(outcome: AttemptOutcome) -> str:
    """A short human-readable cause of a failed attempt."""
    if outcome.blocked:
        return f"target refused: {outcome.error or 'not allowed'}"
    if outcome.timed_out:
        return "timed out"
    if outcome.error is not None and outcome.status_code is None:
        return f"network error: {outcome.error}"
    if outcome.status_code is not None and 300 <= outcome.status_code < 400:
        return f"HTTP {outcome.status_code} (redirects are not followed)"
    if outcome.status_code is not None:
        return f"HTTP {outcome.status_code}"
    return "no response"


def attempts_left(attempt: int, policy: RetryPolicy | None = None) -> int:
    """How many attempts remain after attempt number `attempt`."""
    return max(0, (policy or RetryPolicy()).max_attempts - attempt)


def schedule_offsets(schedule: Sequence[timedelta]) -> tuple[timedelta, ...]:
    """Each attempt's offset from the first, without jitter (for docs and dashboards)."""
    offsets = [timedelta(0)]
    for step in schedule:
        offsets.append(offsets[-1] + step)
    return tuple(offsets)


@dataclass(frozen=True)
class MailRetryPolicy:
    """When a mail whose SMTP submission failed is tried again, and when it is given up.

    The n-th failed submission waits `first * factor**(n-1)`, at most `cap`; the mail is given
    up after `max_attempts` submissions or once it has failed for `give_up_after` (measured
    from its first failure), whichever comes first.
    """

    first: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10
    give_up_after: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.first < timedelta(0) or self.factor < 1.0 or self.max_attempts < 1:
            raise ValueError("a non-negative first delay, factor >= 1 and at least one attempt")


def next_mail_attempt(
    policy: MailRetryPolicy, *, attempt: int, first_failed_at: datetime, now: datetime
) -> datetime | None:
    """After failed submission number `attempt` (1-based) at `now`: when to try again, or
    None to give the mail up."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if attempt >= policy.max_attempts or now - first_failed_at >= policy.give_up_after:
        return None
    return now + min(policy.cap, policy.first * policy.factor ** (attempt - 1))
