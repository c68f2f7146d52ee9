"""The webhook sender: one signed POST per attempt, an attempt record whatever happens.

- The URL is checked (http/https, no credentials), the host resolved, and every address it
  resolves to checked by the SSRF guard before anything connects. The connection then goes
  to a checked address (the URL's host kept in the Host header and as the TLS server name),
  so a DNS answer that changes between check and connect (rebinding) cannot redirect it.
- Redirects are not followed, proxies from the environment are ignored, and the whole
  attempt (resolution, connection, headers and excerpt) is bounded by one timeout.
- Only the first `excerpt_bytes` of a response body are read, and decoded leniently.
"""

from __future__ import annotations

import asyncio
import codecs
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx

from helpdesk.notifier.domain.retry import AttemptOutcome
from helpdesk.notifier.domain.signing import delivery_headers
from helpdesk.notifier.domain.ssrf import (
    AllowList,
    IPAddress,
    TargetRejectedError,
    check_addresses,
    check_url,
)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
Clock = Callable[[], datetime]

DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_EXCERPT_BYTES = 1024
USER_AGENT = "Helpdesk-Webhooks/1.0"


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address `host` resolves to, in the system resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebhookMessage:
    """One message to deliver: its stable id (`webhook-id`), the URL and the JSON body."""

    msg_id: str
    url: str
    body: bytes


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt did; stored as a delivery row and shown to the subscriber."""

    msg_id: str
    url: str
    started_at: datetime
    latency_ms: int
    status_code: int | None = None
    response_excerpt: str = ""
    error: str | None = None
    timed_out: bool = False
    blocked: bool = False
    retry_after: str | None = None
    address: str | None = None  # the address connected to

    @property
    def outcome(self) -> AttemptOutcome:
        """The part the retry rules classify."""
        return AttemptOutcome(
            status_code=self.status_code,
            error=self.error,
            timed_out=self.timed_out,
            blocked=self.blocked,
            retry_after=self.retry_after,
        )

    @property
    def succeeded(self) -> bool:
        """A 2xx within the timeout."""
        return self.outcome.succeeded


def decode_excerpt(data: bytes, charset: str | None = None) -> str:
    """Bytes of a (possibly truncated) body as text: never raises, no control characters.

    A multi-byte character cut at the end is dropped rather than shown as garbage.
    """
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=False)
    return "".join(c for c in text if c in "\n\t" or (c.isprintable() and c != "\x7f"))


class WebhookSender:
    """Sends webhook attempts with one shared `httpx.AsyncClient`; use as a context manager."""

    def __init__(
        self,
        *,
        allow: AllowList | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        excerpt_bytes: int = DEFAULT_EXCERPT_BYTES,
        resolver: Resolver = system_resolver,
        clock: Clock = _utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        if timeout <= 0 or excerpt_bytes < 0:
            raise ValueError("timeout is positive and excerpt_bytes not negative")
        self._allow = allow or AllowList()
        self._timeout = timeout
        self._excerpt_bytes = excerpt_bytes
        self._resolver = resolver
        self._clock = clock
        self._user_agent = user_agent
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            trust_env=False,  # an environment proxy would connect by name, past the guard
            transport=transport,
        )

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(self, message: WebhookMessage, secrets: Sequence[str]) -> AttemptRecord:
        """Make one attempt; every failure mode becomes a record, never an exception."""
        started_at = self._clock()
        started = time.perf_counter()
        headers = delivery_headers(
            msg_id=message.msg_id, at=started_at, body=message.body, secrets=secrets
        )
        headers["user-agent"] = self._user_agent
        base = AttemptRecord(
            msg_id=message.msg_id, url=message.url, started_at=started_at, latency_ms=0
        )
        try:
            async with asyncio.timeout(self._timeout):
                host, addresses = await self._checked_addresses(message.url)
                result = await self._post(message, headers, host, addresses, base)
        except TargetRejectedError as exc:
            result = replace(base, error=str(exc), blocked=True)
        except (TimeoutError, httpx.TimeoutException):
            result = replace(base, error=f"timed out after {self._timeout:g} s", timed_out=True)
        except OSError as exc:  # resolution failures (socket.gaierror) and the like
            result = replace(base, error=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            result = replace(base, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        return replace(result, latency_ms=round((time.perf_counter() - started) * 1000))

    async def _checked_addresses(self, url: str) -> tuple[str, tuple[IPAddress, ...]]:
        """The URL's host and the addresses to try, every one of them allowed."""
        target = check_url(url, self._allow)
        literal = target.address
        resolved: Sequence[IPAddress | str]
        if literal is not None:
            resolved = [literal]
        else:
            resolved = await self._resolver(target.host, target.port)
        return target.host, check_addresses(target.host, resolved, self._allow)

    async def _post(
        self,
        message: WebhookMessage,
        headers: dict[str, str],
        host: str,
        addresses: tuple[IPAddress, ...],
        base: AttemptRecord,
    ) -> AttemptRecord:
        url = httpx.URL(message.url)
        headers = {**headers, "host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        last_error: httpx.ConnectError | None = None
        for address in addresses:
            request = self._client.build_request(
                "POST",
                url.copy_with(host=str(address)),
                content=message.body,
                headers=headers,
                extensions=extensions,
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc  # try the host's next address
                continue
            try:
                excerpt = await self._excerpt(response)
            finally:
                await response.aclose()
            return replace(
                base,
                status_code=response.status_code,
                response_excerpt=excerpt,
                retry_after=response.headers.get("retry-after"),
                address=str(address),
            )
        assert last_error is not None  # check_addresses never returns an empty tuple
        raise last_error

    async def _excerpt(self, response: httpx.Response) -> str:
        if self._excerpt_bytes == 0:
            return ""
        chunks = bytearray()
        async for chunk in response.aiter_bytes():
            chunks += chunk
            if len(chunks) >= self._excerpt_bytes:
                break
        return decode_excerpt(bytes(chunks[: self._excerpt_bytes]), response.charset_encoding)
