"""Whether a receiving relay we trust found an inbound message's sender forged (RFC 8601).

Anyone can write any `From:`. The provider's receiving relay checks SPF, DKIM and DMARC and
records its findings in an `Authentication-Results` header that starts with its own name (the
authserv-id), and it removes headers that claim that name from incoming mail (RFC 8601, 5).
So only headers whose authserv-id is one of the configured trusted relays are read; any other
is the sender's own word and is ignored.

A message fails when a trusted header says `dmarc=fail`, or, where it gives no DMARC verdict
(`dmarc` absent, `none`, `neutral` or an error), `spf=fail` with no `dkim=pass`. Anything else
(pass, none, softfail, no trusted header at all) is not a failure: intake then treats the message
as before.

Parsed here rather than with `authres` (last released 2019, untyped): only the authserv-id and
each `method=result` are needed. Comments (nested parentheses) are dropped, quoted strings are
respected when splitting on `;`, and a header that does not parse says nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

_RESINFO = re.compile(r"^\s*([a-z0-9][a-z0-9_.-]*)\s*(?:/\s*\d+\s*)?=\s*([a-z0-9_.-]+)", re.I)


@dataclass(frozen=True)
class AuthenticationResults:
    """One `Authentication-Results` header: who wrote it, and each method's results."""

    authserv_id: str
    results: tuple[tuple[str, str], ...]  # (method, result), lower-case, in order

    def of(self, method: str) -> set[str]:
        """The results of `method` (`dmarc`, `spf`, `dkim`) in this header."""
        return {result for name, result in self.results if name == method}


def _without_comments(value: str) -> str:
    """The value without RFC 5322 comments; quoted strings and escapes kept as they are."""
    kept: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif depth == 0 and ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            continue
        elif not quoted and ch == ")" and depth > 0:
            depth -= 1
            continue
        if depth == 0:
            kept.append(ch)
    return "".join(kept)


def _split(value: str) -> list[str]:
    """`value` split on `;` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted, escaped = False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """One header's value, or None when it names no authserv-id."""
    first, *rest = _split(_without_comments(value))
    words = first.split()
    if not words:
        return None
    authserv_id = words[0].strip('"').rstrip(".").lower()
    results = []
    for resinfo in rest:
        found = _RESINFO.match(resinfo)
        if found is not None:
            results.append((found.group(1).lower(), found.group(2).lower()))
    return AuthenticationResults(authserv_id, tuple(results))


def _failure(header: AuthenticationResults) -> str | None:
    dmarc = header.of("dmarc")
    if "fail" in dmarc:
        return "dmarc=fail"
    if "pass" in dmarc:
        return None
    if "fail" in header.of("spf") and "pass" not in header.of("dkim"):
        return "spf=fail without a passing dkim signature"
    return None


def authentication_failure(headers: Iterable[str], trusted: Collection[str]) -> str | None:
    """Why a trusted relay found the sender forged (`dmarc=fail according to mx.example`), or
    None. `trusted` holds the authserv-ids of the relays to believe, lower-case."""
    for value in headers:
        header = parse_authentication_results(value)
        if header is None or header.authserv_id not in trusted:
            continue
        failure = _failure(header)
        if failure is not None:
            return f"{failure} according to {header.authserv_id}"
    return None
