"""Standard Webhooks signing: `whsec_` secrets, HMAC-SHA256 signatures, delivery headers.

Pure: the random bytes of a new secret and the instant of a delivery are parameters. The
signed content is `{webhook-id}.{webhook-timestamp}.{body}` keyed by the base64-decoded part
of the secret; during a rotation every active secret signs, and the `webhook-signature`
header carries one `v1,<base64>` per secret, space-separated, newest first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)


class InvalidSecretError(ValueError):
    """A string that is not a usable `whsec_` secret."""


def new_secret(random_bytes: bytes) -> str:
    """A `whsec_` secret from 24 to 64 random bytes (the caller draws them from `secrets`)."""
    if not MIN_SECRET_BYTES <= len(random_bytes) <= MAX_SECRET_BYTES:
        raise InvalidSecretError(
            f"a secret needs {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
        )
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecretError("a webhook secret is base64 after its prefix") from exc
    if not key:
        raise InvalidSecretError("a webhook secret may not be empty")
    return key


def unix_timestamp(at: datetime) -> int:
    """Whole seconds since the epoch of an aware instant (the `webhook-timestamp`)."""
    if at.tzinfo is None:
        raise ValueError("a delivery instant must be timezone-aware")
    return int(at.timestamp())


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` signature of `{msg_id}.{timestamp}.{body}`."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: every secret's signature, space-separated."""
    if not secrets:
        raise InvalidSecretError("at least one secret must sign a delivery")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def delivery_headers(
    *, msg_id: str, at: datetime, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The headers of one delivery attempt (`at` is the attempt's instant)."""
    if not msg_id or any(c.isspace() for c in msg_id):
        raise ValueError("a webhook id is a non-empty token without whitespace")
    timestamp = unix_timestamp(at)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


@dataclass(frozen=True)
class SigningSecrets:
    """A subscription's secrets: the current one, and the previous one during an overlap."""

    current: str
    previous: str | None = None
    previous_expires_at: datetime | None = None

    def __post_init__(self) -> None:
        secret_key(self.current)
        if self.previous is not None:
            secret_key(self.previous)
            if self.previous_expires_at is None:
                raise ValueError("a previous secret needs the end of its overlap")

    def active(self, now: datetime) -> tuple[str, ...]:
        """The secrets that sign a delivery at `now`, newest first."""
        if (
            self.previous is not None
            and self.previous_expires_at is not None
            and now < self.previous_expires_at
        ):
            return (self.current, self.previous)
        return (self.current,)

    def rotate(
        self, new: str, now: datetime, overlap: timedelta = DEFAULT_ROTATION_OVERLAP
    ) -> SigningSecrets:
        """`new` becomes current; the old current keeps signing until `now + overlap`."""
        if new == self.current:
            raise InvalidSecretError("a rotation needs a new secret")
        if overlap <= timedelta(0):
            return SigningSecrets(current=new)
        return SigningSecrets(current=new, previous=self.current, previous_expires_at=now + overlap)
