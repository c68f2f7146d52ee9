"""The SSRF guard: addresses, allow-lists and URLs."""

from __future__ import annotations

import ipaddress

import pytest

from helpdesk.notifier.domain.ssrf import (
    AllowList,
    TargetRejectedError,
    blocked_reason,
    check_address,
    check_addresses,
    check_url,
)

pytestmark = pytest.mark.unit

LOOPBACK_ALLOWED = AllowList.parse(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "shared address space"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "private"),
        ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_blocked(address: str, reason: str) -> None:
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None
    assert found.startswith(reason) or reason in found
    with pytest.raises(TargetRejectedError):
        check_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    assert str(check_address(address)) == address


def test_allow_listed_loopback_passes_in_every_form() -> None:
    for address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        check_address(address, LOOPBACK_ALLOWED)
    with pytest.raises(TargetRejectedError):
        check_address("10.0.0.1", LOOPBACK_ALLOWED)


def test_allow_list_parsing_of_cidrs_addresses_and_hosts() -> None:
    allow = AllowList.parse(["10.1.0.0/16", "192.168.1.5", "[fd00::1]", "Hooks.Internal.", " "])
    assert allow.allows_address(ipaddress.ip_address("10.1.200.3"))
    assert allow.allows_address(ipaddress.ip_address("192.168.1.5"))
    assert not allow.allows_address(ipaddress.ip_address("192.168.1.6"))
    assert allow.allows_address(ipaddress.ip_address("fd00::1"))
    assert allow.allows_host("hooks.internal")


def test_every_resolved_address_is_checked() -> None:
    with pytest.raises(TargetRejectedError, match=r"10\.0\.0\.1"):
        check_addresses("example.com", ["93.184.215.14", "10.0.0.1"])
    with pytest.raises(TargetRejectedError, match="no address"):
        check_addresses("example.com", [])
    assert len(check_addresses("example.com", ["93.184.215.14", "2606:4700::1"])) == 2
    allow = AllowList.parse(["hooks.internal"])
    assert check_addresses("hooks.internal", ["10.0.0.1"], allow) == (
        ipaddress.ip_address("10.0.0.1"),
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com",
        "example.com/hook",
        "http://",
        "http://user:pw@example.com/",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://0.0.0.0/",
        "http://example.com:99999/",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRejectedError):
        check_url(url)


def test_good_urls_are_split() -> None:
    target = check_url("HTTPS://Example.COM/hooks?x=1")
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 443)
    assert target.address is None
    literal = check_url("http://127.0.0.1:8123/x", LOOPBACK_ALLOWED)
    assert literal.port == 8123
    assert str(literal.address) == "127.0.0.1"
    assert check_url("http://localhost:8/", LOOPBACK_ALLOWED).host == "localhost"
