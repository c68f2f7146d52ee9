"""Reading Authentication-Results (RFC 8601) from the relays intake trusts."""

from __future__ import annotations

import pytest

from helpdesk.intake.domain.mail_authentication import (
    authentication_failure,
    parse_authentication_results,
)

pytestmark = pytest.mark.unit

TRUSTED = {"mx.provider.example"}


def test_a_header_is_read_past_comments_quotes_and_versions() -> None:
    """RFC 8601's examples: comments (nested), a version after the authserv-id, quoted values
    holding `;` and `=`, and a method version (`dkim/1`)."""
    header = parse_authentication_results(
        'MX.Provider.Example. 1; (checked (twice)) spf=fail smtp.mailfrom="a;b=c@x.example";'
        " dkim/1=none (no sig; really); dmarc = fail header.from=x.example"
    )
    assert header is not None
    assert header.authserv_id == "mx.provider.example"
    assert header.results == (("spf", "fail"), ("dkim", "none"), ("dmarc", "fail"))


@pytest.mark.parametrize(
    ("value", "failure"),
    [
        ("mx.provider.example; dmarc=fail", "dmarc=fail according to mx.provider.example"),
        ("mx.provider.example; spf=fail; dkim=pass; dmarc=fail", "dmarc=fail"),
        ("mx.provider.example; spf=fail; dkim=none", "spf=fail without a passing dkim"),
        ("mx.provider.example; spf=fail", "spf=fail without a passing dkim"),
        ("mx.provider.example; spf=fail; dkim=pass", None),
        ("mx.provider.example; spf=fail; dmarc=pass", None),
        ("mx.provider.example; spf=softfail; dkim=none", None),
        ("mx.provider.example; none", None),
        ("mx.provider.example (dmarc=fail); spf=pass", None),  # a comment is no result
        ("mx.evil.example; dmarc=fail", None),  # not a relay intake trusts
        ("", None),
    ],
)
def test_only_a_trusted_relays_failure_counts(value: str, failure: str | None) -> None:
    found = authentication_failure([value], TRUSTED)
    if failure is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(failure)


def test_any_trusted_failure_wins_over_a_pass_written_by_the_sender() -> None:
    """A sender can add its own header claiming the relay's pass above the relay's real one; a
    failure in any trusted header refuses the message."""
    headers = ["mx.provider.example; dmarc=pass", "mx.provider.example; dmarc=fail"]
    assert authentication_failure(headers, TRUSTED) == (
        "dmarc=fail according to mx.provider.example"
    )
