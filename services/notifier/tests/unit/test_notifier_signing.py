"""Standard Webhooks signatures, verified with the reference `standardwebhooks` library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from helpdesk.notifier.domain.signing import (
    InvalidSecretError,
    SigningSecrets,
    delivery_headers,
    new_secret,
    secret_key,
    sign,
)

pytestmark = pytest.mark.unit

SECRET_A = new_secret(bytes(range(32)))
SECRET_B = new_secret(bytes(range(100, 132)))
BODY = b'{"type":"ticket.opened","data":{"number":"HD-000123","subject":"Caf\xc3\xa9"}}'


def _now() -> datetime:
    # Webhook.verify checks the timestamp against the real clock (5 minutes tolerance).
    return datetime.now(UTC)


def test_new_secret_is_whsec_base64_of_the_random_bytes() -> None:
    secret = new_secret(b"\x01" * 32)
    assert secret.startswith("whsec_")
    assert secret_key(secret) == b"\x01" * 32
    with pytest.raises(InvalidSecretError):
        new_secret(b"short")


@pytest.mark.parametrize("bad", ["", "whsec_", "sk_abc", "whsec_***"])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecretError):
        secret_key(bad)


def test_headers_verify_with_the_reference_library() -> None:
    headers = delivery_headers(msg_id="msg_1", at=_now(), body=BODY, secrets=[SECRET_A])
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET_A).verify(BODY, headers) == {
        "type": "ticket.opened",
        "data": {"number": "HD-000123", "subject": "Café"},
    }


def test_signature_matches_the_reference_signer() -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    ours = sign(SECRET_A, "msg_2", int(at.timestamp()), BODY)
    assert ours == Webhook(SECRET_A).sign("msg_2", at, BODY.decode())


def test_a_tampered_body_or_wrong_secret_fails_verification() -> None:
    headers = delivery_headers(msg_id="msg_3", at=_now(), body=BODY, secrets=[SECRET_A])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_B).verify(BODY, headers)


def test_rotation_signs_with_both_secrets_during_the_overlap() -> None:
    now = _now()
    rotated = SigningSecrets(current=SECRET_A).rotate(SECRET_B, now, timedelta(hours=24))
    active = rotated.active(now + timedelta(hours=1))
    assert active == (SECRET_B, SECRET_A)
    headers = delivery_headers(msg_id="msg_4", at=now, body=BODY, secrets=active)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET_A, SECRET_B):
        Webhook(secret).verify(BODY, headers)
    # After the overlap only the new secret signs; the old one no longer verifies.
    later = rotated.active(now + timedelta(hours=24))
    assert later == (SECRET_B,)
    headers = delivery_headers(msg_id="msg_5", at=now, body=BODY, secrets=later)
    Webhook(SECRET_B).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY, headers)


def test_rotation_needs_a_different_secret_and_an_overlap_end() -> None:
    with pytest.raises(InvalidSecretError):
        SigningSecrets(current=SECRET_A).rotate(SECRET_A, _now())
    with pytest.raises(ValueError, match="overlap"):
        SigningSecrets(current=SECRET_A, previous=SECRET_B)
    assert SigningSecrets(SECRET_A).rotate(SECRET_B, _now(), timedelta(0)).previous is None


def test_headers_refuse_naive_instants_and_bad_ids() -> None:
    with pytest.raises(ValueError, match="aware"):
        delivery_headers(msg_id="m", at=datetime(2025, 1, 1), body=b"", secrets=[SECRET_A])  # noqa: DTZ001
    with pytest.raises(ValueError, match="whitespace"):
        delivery_headers(msg_id="m 1", at=_now(), body=b"", secrets=[SECRET_A])
    with pytest.raises(InvalidSecretError):
        delivery_headers(msg_id="m", at=_now(), body=b"", secrets=[])


@given(key=st.binary(min_size=24, max_size=64), body=st.binary(max_size=300))
def test_any_secret_and_utf8_body_verifies(key: bytes, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace").encode()
    secret = new_secret(key)
    assert base64.b64decode(secret[6:]) == key
    headers = delivery_headers(msg_id="msg_h", at=_now(), body=text, secrets=[secret])
    Webhook(secret).verify(text, headers, json_parse=False)
