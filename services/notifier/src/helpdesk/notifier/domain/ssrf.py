"""The SSRF guard, pure: which webhook URLs and resolved addresses may be contacted.

Only `http` and `https` URLs with a host and no credentials are accepted. Every address a
host resolves to must be a public unicast address: private, loopback, link-local, multicast,
reserved, unspecified, shared (CGNAT), documentation and benchmark ranges are refused, for
IPv4 and IPv6 alike, and IPv6 addresses that embed an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address too. The settings
may allow-list networks (CIDRs or single addresses) and host names; tests allow loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class TargetRejectedError(ValueError):
    """The URL or one of its addresses may not be contacted."""


@dataclass(frozen=True)
class AllowList:
    """Networks and host names exempt from the guard (from settings)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Entries are CIDRs (`127.0.0.0/8`, `::1/128`), addresses, or host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                hosts.add(_normalise_host(text))
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        """Whether the host name itself is allow-listed."""
        return _normalise_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """Whether the address (or the IPv4 address it embeds) is in an allowed network."""
        candidates = [address, *_embedded_ipv4(address)]
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


@dataclass(frozen=True)
class Target:
    """A checked webhook URL, split into what a connection needs."""

    scheme: str
    host: str  # a name, or an address without brackets
    port: int

    @property
    def address(self) -> IPAddress | None:
        """The host as an address if the URL names one literally."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    # IPv4-compatible (deprecated `::a.b.c.d`) addresses are inside ::/96, reserved anyway.
    return embedded


def blocked_reason(address: IPAddress) -> str | None:
    """Why an address may not be contacted, or None for a public unicast address."""
    for inner in _embedded_ipv4(address):
        inner_reason = blocked_reason(inner)
        if inner_reason is not None:
            return f"{inner_reason} (embedded IPv4 {inner})"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared address space"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def check_address(address: IPAddress | str, allow: AllowList = AllowList()) -> IPAddress:
    """The address, if it may be contacted; else raise `TargetRejectedError`."""
    parsed = ipaddress.ip_address(address.strip("[]")) if isinstance(address, str) else address
    if allow.allows_address(parsed):
        return parsed
    reason = blocked_reason(parsed)
    if reason is not None:
        raise TargetRejectedError(f"{parsed} is {reason}")
    return parsed


def check_addresses(
    host: str, addresses: Sequence[IPAddress | str], allow: AllowList = AllowList()
) -> tuple[IPAddress, ...]:
    """Every address `host` resolved to, if all may be contacted (an allow-listed host may)."""
    if not addresses:
        raise TargetRejectedError(f"{host} resolves to no address")
    if allow.allows_host(host):
        return tuple(
            ipaddress.ip_address(a.strip("[]")) if isinstance(a, str) else a for a in addresses
        )
    return tuple(check_address(address, allow) for address in addresses)


def check_url(url: str, allow: AllowList = AllowList()) -> Target:
    """Parse a webhook URL: http(s), a host, no credentials; a literal address is checked.

    A host name still has to be resolved and its addresses passed to `check_addresses`.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRejectedError(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise TargetRejectedError(f"scheme {scheme or '(none)'!r} is not http or https")
    if parts.username is not None or parts.password is not None:
        raise TargetRejectedError("credentials in the URL are not accepted")
    host = _normalise_host(parts.hostname or "")
    if not host:
        raise TargetRejectedError("the URL has no host")
    target = Target(scheme, host, port or (443 if scheme == "https" else 80))
    literal = target.address
    if literal is not None:
        if not allow.allows_host(host):
            check_address(literal, allow)
    elif (
        # RFC 6761: `localhost` is always loopback, whatever a resolver says.
        (host == "localhost" or host.endswith(".localhost"))
        and not allow.allows_host(host)
        and not allow.allows_address(ipaddress.IPv4Address("127.0.0.1"))
    ):
        raise TargetRejectedError(f"{host} is loopback")
    return target
