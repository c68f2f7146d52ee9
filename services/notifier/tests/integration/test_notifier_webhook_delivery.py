"""The webhook sender against a real HTTP receiver on 127.0.0.1.

The receiver is a tiny asyncio HTTP/1.1 server started in the test on a free port; it answers
from a script and records every request, which is then verified with `standardwebhooks`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from helpdesk.notifier.adapters.webhooks import WebhookMessage, WebhookSender
from helpdesk.notifier.domain.retry import RetryPolicy, Verdict, decide
from helpdesk.notifier.domain.signing import SigningSecrets, new_secret
from helpdesk.notifier.domain.ssrf import AllowList

pytestmark = pytest.mark.integration

SECRET = new_secret(bytes(range(32)))
NEW_SECRET = new_secret(bytes(range(50, 82)))
LOOPBACK = AllowList.parse(["127.0.0.0/8", "::1/128"])
BODY = b'{"type":"ticket.opened","data":{"number":"HD-000123"}}'


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False  # never answer (until the server closes)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Answers requests in order from `script` (the last reply repeats)."""

    def __init__(self, script: Sequence[Reply]) -> None:
        self.script = list(script)
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self._never = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            reply = self.script[min(len(self.requests), len(self.script)) - 1]
            if reply.hang:
                await self._never.wait()
            reason = {200: "OK", 302: "Found", 410: "Gone"}.get(reply.status, "Status")
            out = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Length: {len(reply.body)}"]
            out += [f"{k}: {v}" for k, v in reply.headers.items()]
            out += ["Connection: close", "", ""]
            writer.write("\r\n".join(out).encode() + reply.body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


MakeReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[MakeReceiver]:
    started: list[Receiver] = []

    async def make(*script: Reply) -> Receiver:
        receiver = Receiver(script)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.close()


def _verify(received: Received, secret: str = SECRET) -> object:
    return Webhook(secret).verify(received.body, received.headers)


async def test_fails_twice_then_succeeds(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(
        Reply(500, body=b"boom"),
        Reply(503, headers={"Retry-After": "0"}),
        Reply(204),
    )
    policy = RetryPolicy(schedule=(timedelta(0),) * 3, jitter=0)
    message = WebhookMessage(msg_id="msg_0001", url=receiver.url, body=BODY)
    first_failure_at: datetime | None = None
    verdicts = []
    records = []
    async with WebhookSender(allow=LOOPBACK, timeout=5) as sender:
        for attempt in range(1, 10):
            record = await sender.send(message, [SECRET])
            records.append(record)
            decision = decide(
                record.outcome,
                attempt=attempt,
                now=datetime.now(UTC),
                first_failure_at=first_failure_at,
                jitter_draw=0.5,
                policy=policy,
            )
            verdicts.append(decision.verdict)
            first_failure_at = decision.first_failure_at
            if decision.verdict is not Verdict.RETRY:
                break
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.DELIVERED]
    assert [r.status_code for r in records] == [500, 503, 204]
    assert records[0].response_excerpt == "boom"
    assert records[1].retry_after == "0"
    assert all(r.latency_ms >= 0 and r.error is None for r in records)
    assert first_failure_at is None
    assert len(receiver.requests) == 3
    for received in receiver.requests:
        assert received.method == "POST"
        assert received.headers["webhook-id"] == "msg_0001"  # stable across attempts
        assert received.headers["content-type"] == "application/json"
        assert _verify(received) == {"type": "ticket.opened", "data": {"number": "HD-000123"}}


async def test_rotation_both_secrets_verify_on_the_wire(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(Reply(200))
    now = datetime.now(UTC)
    secrets = SigningSecrets(SECRET).rotate(NEW_SECRET, now, timedelta(hours=1)).active(now)
    async with WebhookSender(allow=LOOPBACK) as sender:
        record = await sender.send(WebhookMessage("msg_rot", receiver.url, BODY), secrets)
    assert record.succeeded
    (received,) = receiver.requests
    _verify(received, SECRET)
    _verify(received, NEW_SECRET)


async def test_a_redirect_is_a_failure_and_not_followed(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(Reply(302, headers={"Location": "/elsewhere"}), Reply(200))
    async with WebhookSender(allow=LOOPBACK) as sender:
        record = await sender.send(WebhookMessage("msg_302", receiver.url, BODY), [SECRET])
    assert record.status_code == 302
    assert not record.succeeded
    assert [r.path for r in receiver.requests] == ["/hooks"]  # /elsewhere never requested
    decision = decide(
        record.outcome, attempt=1, now=datetime.now(UTC), first_failure_at=None, jitter_draw=0
    )
    assert decision.verdict is Verdict.RETRY
    assert "redirect" in decision.reason


async def test_a_timeout_produces_an_attempt_record(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(Reply(200, hang=True))
    async with WebhookSender(allow=LOOPBACK, timeout=0.5) as sender:
        record = await sender.send(WebhookMessage("msg_slow", receiver.url, BODY), [SECRET])
    assert record.timed_out
    assert record.status_code is None
    assert record.error is not None
    assert "timed out" in record.error
    assert record.latency_ms >= 400
    assert len(receiver.requests) == 1
    decision = decide(
        record.outcome, attempt=1, now=datetime.now(UTC), first_failure_at=None, jitter_draw=0
    )
    assert decision.verdict is Verdict.RETRY


async def test_gone_disables_and_retry_after_date_is_read(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(
        Reply(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}), Reply(410)
    )
    async with WebhookSender(allow=LOOPBACK) as sender:
        limited = await sender.send(WebhookMessage("m1", receiver.url, BODY), [SECRET])
        gone = await sender.send(WebhookMessage("m2", receiver.url, BODY), [SECRET])
    now = datetime.now(UTC)
    later = decide(limited.outcome, attempt=1, now=now, first_failure_at=None, jitter_draw=0)
    assert later.next_attempt_at == now + RetryPolicy().max_retry_after  # capped
    assert gone.status_code == 410
    disabled = decide(gone.outcome, attempt=1, now=now, first_failure_at=None, jitter_draw=0)
    assert disabled.verdict is Verdict.DISABLE_ENDPOINT


async def test_response_excerpt_is_bounded(receiver_factory: MakeReceiver) -> None:
    big = ("é" * 3000).encode()
    receiver = await receiver_factory(
        Reply(500, headers={"Content-Type": "text/plain; charset=utf-8"}, body=big)
    )
    async with WebhookSender(allow=LOOPBACK, excerpt_bytes=1024) as sender:
        record = await sender.send(WebhookMessage("m", receiver.url, BODY), [SECRET])
    assert record.status_code == 500
    assert len(record.response_excerpt.encode()) <= 1024
    assert set(record.response_excerpt) == {"é"}


async def test_ssrf_guard_refuses_before_connecting(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(Reply(200))
    async with WebhookSender() as sender:  # no allow-list: loopback is refused
        record = await sender.send(WebhookMessage("m", receiver.url, BODY), [SECRET])
        mapped = await sender.send(
            WebhookMessage("m", f"http://[::ffff:127.0.0.1]:{receiver.port}/", BODY), [SECRET]
        )
        scheme = await sender.send(WebhookMessage("m", "file:///etc/passwd", BODY), [SECRET])
    for refused in (record, mapped, scheme):
        assert refused.blocked
        assert refused.status_code is None
    assert receiver.requests == []


async def test_every_resolved_address_is_checked(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(Reply(200))

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "10.0.0.1"]

    async def pinned(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    url = f"http://hooks.test:{receiver.port}/hooks"
    async with WebhookSender(allow=LOOPBACK, resolver=rebinding) as sender:
        refused = await sender.send(WebhookMessage("m", url, BODY), [SECRET])
    assert refused.blocked
    assert refused.error is not None
    assert "10.0.0.1" in refused.error
    assert receiver.requests == []
    async with WebhookSender(allow=LOOPBACK, resolver=pinned) as sender:
        record = await sender.send(WebhookMessage("m", url, BODY), [SECRET])
    assert record.status_code == 200
    assert record.address == "127.0.0.1"
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"


async def test_localhost_resolves_and_falls_back_across_addresses(
    receiver_factory: MakeReceiver,
) -> None:
    receiver = await receiver_factory(Reply(200))

    async def both(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]  # nothing listens on ::1 at this port

    url = f"http://localhost:{receiver.port}/hooks"
    async with WebhookSender(allow=LOOPBACK, resolver=both) as sender:
        record = await sender.send(WebhookMessage("m", url, BODY), [SECRET])
    assert record.status_code == 200
    assert record.address == "127.0.0.1"


async def test_connection_refused_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WebhookSender(allow=LOOPBACK) as sender:
        record = await sender.send(WebhookMessage("m", f"http://127.0.0.1:{port}/", BODY), [SECRET])
    assert record.status_code is None
    assert not record.timed_out
    assert not record.blocked
    assert record.error is not None
    assert "ConnectError" in record.error
