"""`notification.*` events, written by the notifier.

Subscription events are keyed by the subscription's account (the provider's nil UUID for a
provider-wide one), so a subscription's changes keep their order on one partition. Delivery
and mail outcomes are keyed by the account of the event they deliver, so they follow that event
on its partition. Webhook secrets never travel: the stream carries a fingerprint only (the
notifier keeps the secrets in a table a rebuild does not touch).
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from helpdesk.shared.contracts.common import Payload
from helpdesk.shared.events import registry


@registry.register("notification.subscription_created")
class SubscriptionCreated(Payload):
    """A webhook subscription: provider-wide (`account_id` None, by staff) or one account's.

    `secret_fingerprint` is the first 16 hex digits of the SHA-256 of the `whsec_` secret, so
    an operator can tell which secret signs without the secret being on the stream.
    """

    subscription_id: UUID
    account_id: UUID | None
    url: str
    event_types: list[str] = Field(min_length=1)
    enabled: bool = True
    description: str = ""
    created_by: str  # the API key id
    secret_fingerprint: str


@registry.register("notification.subscription_updated")
class SubscriptionUpdated(Payload):
    """A subscription's new URL, filters and enabled flag (the whole new state)."""

    subscription_id: UUID
    url: str
    event_types: list[str] = Field(min_length=1)
    enabled: bool
    description: str = ""


@registry.register("notification.subscription_deleted")
class SubscriptionDeleted(Payload):
    """A subscription stops receiving events; nothing pending of it is sent any more."""

    subscription_id: UUID


@registry.register("notification.secret_rotated")
class SecretRotated(Payload):
    """A subscription's new secret; the previous one keeps signing until `previous_expires_at`."""

    subscription_id: UUID
    secret_fingerprint: str
    previous_expires_at: AwareDatetime | None


@registry.register("notification.replay_requested")
class ReplayRequested(Payload):
    """Re-send what a subscription received (or was due) for events in [`since`, `until`).

    Each event gets a new delivery, whose id (the `webhook-id`) derives from `replay_id`.
    """

    replay_id: UUID
    subscription_id: UUID
    since: AwareDatetime
    until: AwareDatetime


@registry.register("notification.delivered")
class Delivered(Payload):
    """A webhook delivery was accepted (2xx) by its endpoint."""

    delivery_id: UUID  # the `webhook-id`
    subscription_id: UUID
    event_id: UUID
    event_type: str
    attempt: int = Field(ge=1)
    status_code: int
    latency_ms: int = Field(ge=0)
    delivered_at: AwareDatetime


@registry.register("notification.failed")
class DeliveryFailed(Payload):
    """A webhook delivery was given up after its last attempt (the endpoint stays enabled)."""

    delivery_id: UUID
    subscription_id: UUID
    event_id: UUID
    event_type: str
    attempt: int = Field(ge=1)
    status_code: int | None = None
    reason: str
    failed_at: AwareDatetime


@registry.register("notification.endpoint_disabled")
class EndpointDisabled(Payload):
    """A subscription was disabled: its endpoint answered 410, or kept failing too long.

    Its pending deliveries wait; re-enabling it (PATCH `enabled: true`) resumes them.
    """

    subscription_id: UUID
    delivery_id: UUID | None = None
    reason: str
    failing_since: AwareDatetime | None = None
    disabled_at: AwareDatetime


@registry.register("notification.mail_sent")
class MailSent(Payload):
    """An e-mail caused by `event_id` was handed to the SMTP relay (or had nobody to go to).

    The managers' daily digest has no causing event: one `mail_sent` per manager and day,
    keyed by the provider's account, whose `event_id` stands for that day's digest
    (`derive_event_id(PROVIDER_ACCOUNT, "digest:{day}")`)."""

    mail_id: UUID
    event_id: UUID
    kind: str
    message_id: str
    recipients: int = Field(ge=0)  # how many addresses; the addresses stay off the stream
    outcome: Literal["sent", "no_recipient"] = "sent"
    sent_at: AwareDatetime


@registry.register("notification.mail_failed")
class MailFailed(Payload):
    """An e-mail caused by `event_id` was given up: the SMTP relay refused it or was unreachable
    on every one of `attempts` submissions (the last error in `reason`). Nothing re-sends it."""

    mail_id: UUID
    event_id: UUID
    kind: str
    message_id: str
    attempts: int = Field(ge=1)
    reason: str
    first_failed_at: AwareDatetime
    failed_at: AwareDatetime
