"""The notifier as a service: subscriptions over HTTP, webhooks and mails from real events.

One stack (topic, database, intake and notifier in-process) serves every test here; each test
makes its own accounts and subscriptions. Receivers are real HTTP servers on 127.0.0.1 and the
mail relay a real aiosmtpd server; signatures are checked with `standardwebhooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiosmtpd.smtp import SMTP
from standardwebhooks.webhooks import Webhook

from helpdesk.notifier.adapters.settings import NotifierSettings
from helpdesk.notifier.main import build_spec
from helpdesk.shared.contracts.accounts import PROVIDER_ACCOUNT
from helpdesk.shared.outbox import partition_of
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import (
    As,
    contact_key,
    new_account,
    new_ticket,
    ok,
    problem_fields,
    signed_in,
    unique,
)
from services.notifier.tests.integration.test_notifier_smtp import Inbox
from services.notifier.tests.integration.test_notifier_webhook_delivery import (
    Receiver,
    Reply,
)
from tests.support import ADMIN_TOKEN, fresh_stack_settings, in_process, wait_for

pytestmark = pytest.mark.integration


class Stack:
    """Intake and the notifier on one topic and database, plus the mail sink."""

    def __init__(self, intake: As, notifier: httpx.AsyncClient, runtime: ServiceRuntime) -> None:
        self.admin = intake
        self.notifier = notifier
        self.runtime = runtime
        self.inbox = Inbox()

    def on_notifier(self, caller: As) -> As:
        """The same caller, talking to the notifier."""
        return As(self.notifier, caller.token)

    async def key_known(self, caller: As) -> As:
        """The caller on the notifier, once its key reached the notifier."""
        there = self.on_notifier(caller)

        async def known() -> bool:
            return (await there.get("/v1/subscriptions")).status_code == 200

        await wait_for(known, timeout=10)
        return there


@contextlib.asynccontextmanager
async def _notifier(settings: Settings, own: NotifierSettings) -> AsyncIterator[Any]:
    runtime = ServiceRuntime(build_spec(own), settings)
    app = runtime.app()
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:

        async def caught_up() -> bool:
            return runtime.consumer.is_caught_up()

        await wait_for(caught_up, timeout=60)
        yield runtime, client
    finally:
        await client.aclose()
        await runtime.stop()


@pytest.fixture(scope="module")
async def stack(infra: tuple[str, str]) -> AsyncIterator[Stack]:
    bootstrap, database_url = infra
    settings = await fresh_stack_settings(bootstrap, database_url)
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
    own = NotifierSettings(
        allow_targets="127.0.0.1",
        retry_schedule_seconds="0.2,0.2,0.2,0.2",
        retry_jitter=0,
        smtp_relay_port=smtp.sockets[0].getsockname()[1],
        mail_retry_seconds=0.5,
        portal_url="https://portal.example/",
    )
    try:
        async with (
            in_process("intake", settings) as intake,
            _notifier(settings, own) as (runtime, client),
        ):
            built = Stack(As(intake.http, ADMIN_TOKEN), client, runtime)
            built.inbox = inbox
            yield built
    finally:
        smtp.close()
        await smtp.wait_closed()


@contextlib.asynccontextmanager
async def receiving(*script: Reply) -> AsyncIterator[Receiver]:
    receiver = Receiver(script)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


def _types(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.requests]


async def _deliveries(stack: Stack, subscription_id: str) -> list[dict[str, Any]]:
    admin = stack.on_notifier(stack.admin)
    result: list[dict[str, Any]] = ok(
        await admin.get(f"/v1/subscriptions/{subscription_id}/deliveries")
    )
    return result


async def test_ssrf_guard_and_tenancy_at_creation(stack: Stack) -> None:
    admin = stack.on_notifier(stack.admin)
    refused = await admin.post(
        "/v1/subscriptions", {"url": "http://10.0.0.7/hooks", "event_types": ["*"]}
    )
    assert problem_fields(refused) == ["url"]
    assert "private" in refused.json()["errors"][0]["reason"]
    bad_filter = await admin.post(
        "/v1/subscriptions", {"url": "http://127.0.0.1:9/h", "event_types": ["ticket.*.x"]}
    )
    assert problem_fields(bad_filter) == ["event_types"]

    account = await new_account(stack.admin)
    other = await new_account(stack.admin)
    _, customer = await contact_key(stack.admin, account["id"], visibility="account")
    customer = await stack.key_known(customer)
    foreign = await customer.post(
        "/v1/subscriptions",
        {"url": "http://127.0.0.1:9/h", "event_types": ["*"], "account_id": other["id"]},
    )
    assert foreign.status_code == 404
    created = ok(
        await customer.post(
            "/v1/subscriptions", {"url": "http://127.0.0.1:9/h", "event_types": ["ticket.*"]}
        ),
        201,
    )
    assert created["account_id"] == account["id"]
    assert created["secret"].startswith("whsec_")
    shown = ok(await customer.get(f"/v1/subscriptions/{created['id']}"))
    assert "secret" not in shown
    _, stranger = await contact_key(stack.admin, other["id"], visibility="account")
    stranger = await stack.key_known(stranger)
    assert (await stranger.get(f"/v1/subscriptions/{created['id']}")).status_code == 404
    assert ok(await stranger.get("/v1/subscriptions")) == []


async def test_every_creating_route_answers_the_same_with_and_without_an_idempotency_key(
    stack: Stack,
) -> None:
    """Issue 21, point 4: a keyed create used to answer 404 although the subscription was
    created, because it read its own uncommitted write on another connection."""
    admin = stack.on_notifier(stack.admin)
    account = await new_account(stack.admin)
    _, customer = await contact_key(stack.admin, account["id"], visibility="account")
    customer = await stack.key_known(customer)
    for caller in (admin, customer):
        for headers in (None, {"Idempotency-Key": unique("sub")}):
            body = {"url": "http://127.0.0.1:9/h", "event_types": ["ticket.*"]}
            created = ok(await caller.post("/v1/subscriptions", body, headers), 201)
            assert created["secret"].startswith("whsec_"), headers
            path = f"/v1/subscriptions/{created['id']}"
            assert ok(await caller.get(path))["secret_fingerprint"] == created["secret_fingerprint"]
            if headers is not None:  # a retry creates nothing; the secret is not shown again
                listed = len(ok(await caller.get("/v1/subscriptions")))
                again = await caller.post("/v1/subscriptions", body, headers)
                assert again.status_code == 409, again.text
                assert len(ok(await caller.get("/v1/subscriptions"))) == listed
            rotated = ok(await caller.post(f"{path}/rotate-secret", None, _key(headers)))
            assert rotated["secret"].startswith("whsec_")
            assert ok(await caller.get(path))["secret_fingerprint"] != created["secret_fingerprint"]
            window = {"from": "2020-01-01T00:00:00Z", "to": _now()}
            replay = ok(await caller.post(f"{path}/replay", window, _key(headers)), 202)
            assert replay["deliveries"] == 0


def _key(headers: dict[str, str] | None) -> dict[str, str] | None:
    return None if headers is None else {"Idempotency-Key": unique("again")}


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def test_a_replay_window_lies_between_1970_and_now(stack: Stack) -> None:
    """Issue 21, point 5: `from: 0` was taken as 1970, and year 1 at +14:00 answered 500."""
    admin = stack.on_notifier(stack.admin)
    body = {"url": "http://127.0.0.1:9/h", "event_types": ["*"]}
    created = ok(await admin.post("/v1/subscriptions", body), 201)
    replay = f"/v1/subscriptions/{created['id']}/replay"
    for since in (0, "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59Z"):
        assert problem_fields(await admin.post(replay, {"from": since, "to": _now()})) == [
            "from"
        ], since
    assert problem_fields(await admin.post(replay, {"from": _now(), "to": 1.5})) == ["to"]


async def test_a_subscription_is_replayed_at_most_ten_times_an_hour(stack: Stack) -> None:
    """Issue 21, point 8: each replay re-sends everything, and a contact could ask without
    limit. Ten an hour per subscription (HELPDESK_NOTIFIER_REPLAYS_PER_HOUR); concurrent
    requests are counted one after the other."""
    account = await new_account(stack.admin)
    _, customer = await contact_key(stack.admin, account["id"], visibility="account")
    customer = await stack.key_known(customer)
    body = {"url": "http://127.0.0.1:9/h", "event_types": ["*"]}
    created = ok(await customer.post("/v1/subscriptions", body), 201)
    replay = f"/v1/subscriptions/{created['id']}/replay"
    window = {"from": "2020-01-01T00:00:00Z", "to": _now()}
    answers = await asyncio.gather(*(customer.post(replay, window) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [202] * 10 + [429] * 2
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 3000 < int(refused.headers["retry-after"]) <= 3600
    # another subscription has its own share
    other = ok(await customer.post("/v1/subscriptions", body), 201)
    ok(await customer.post(f"/v1/subscriptions/{other['id']}/replay", window), 202)


async def test_retries_until_accepted_in_ticket_order_then_survives_a_rebuild(
    stack: Stack,
) -> None:
    admin = stack.on_notifier(stack.admin)
    account = await new_account(stack.admin)
    async with receiving(Reply(500, body=b"down"), Reply(502), Reply(200, body=b"thanks")) as rx:
        sub = ok(
            await admin.post(
                "/v1/subscriptions",
                {"url": rx.url, "event_types": ["ticket.*"], "account_id": account["id"]},
            ),
            201,
        )
        ticket = await new_ticket(stack.admin, account["id"])
        ok(
            await stack.admin.post(
                f"/v1/tickets/{ticket['id']}/comments", {"body": "on it", "public": True}
            )
        )

        async def both_delivered() -> bool:
            rows = await _deliveries(stack, sub["id"])
            return len(rows) == 2 and all(r["status"] == "delivered" for r in rows)

        await wait_for(both_delivered, timeout=30)
        # Three attempts of ticket.opened (one webhook-id), then the comment: the later event
        # of the ticket waited for the earlier one to be accepted.
        assert _types(rx) == ["ticket.opened"] * 3 + ["ticket.commented"]
        ids = [r.headers["webhook-id"] for r in rx.requests]
        assert len(set(ids[:3])) == 1
        assert ids[3] != ids[0]
        for received in rx.requests:
            Webhook(sub["secret"]).verify(received.body, received.headers)
        opened = next(r for r in await _deliveries(stack, sub["id"]) if r["id"] == ids[0])
        assert [a["status_code"] for a in opened["attempts"]] == [500, 502, 200]
        assert opened["attempts"][0]["response_excerpt"] == "down"
        assert [a["verdict"] for a in opened["attempts"]] == ["retry", "retry", "delivered"]

        # A rebuild restores the subscription and knows what was delivered.
        await stack.runtime.rebuild()
        assert ok(await admin.get(f"/v1/subscriptions/{sub['id']}"))["url"] == rx.url
        later = await new_ticket(stack.admin, account["id"])

        async def later_arrived() -> bool:
            return any(later["id"] in r.body.decode() for r in rx.requests)

        await wait_for(later_arrived, timeout=30)
        assert [r.headers["webhook-id"] for r in rx.requests].count(ids[0]) == 3
        assert _types(rx) == ["ticket.opened"] * 3 + ["ticket.commented", "ticket.opened"]
        Webhook(sub["secret"]).verify(rx.requests[-1].body, rx.requests[-1].headers)
        latencies = [a["latency_ms"] for a in opened["attempts"]]
        print(f"\n{len(rx.requests)} requests; ticket.opened attempts took {latencies} ms")


async def test_account_subscription_sees_only_its_public_events(stack: Stack) -> None:
    account = await new_account(stack.admin)
    other = await new_account(stack.admin)
    _, customer = await contact_key(stack.admin, account["id"], visibility="account")
    async with receiving(Reply(200)) as rx:
        sub = ok(
            await (await stack.key_known(customer)).post(
                "/v1/subscriptions", {"url": rx.url, "event_types": ["*"]}
            ),
            201,
        )
        await new_ticket(stack.admin, other["id"], subject="not yours")
        ticket = await new_ticket(stack.admin, account["id"], subject="yours")
        for body in ({"body": "internal note", "public": False}, {"body": "hello", "public": True}):
            ok(await stack.admin.post(f"/v1/tickets/{ticket['id']}/comments", body))

        async def public_comment_arrived() -> bool:
            return "ticket.commented" in _types(rx)

        await wait_for(public_comment_arrived, timeout=30)
        assert _types(rx) == ["ticket.opened", "ticket.commented"]
        bodies = [json.loads(r.body)["data"] for r in rx.requests]
        assert {b["account_id"] for b in bodies} == {account["id"]}
        assert bodies[1]["payload"]["public"] is True
        # Issue 21, point 8: the provider's people by display name, never a key or staff id
        assert [b["actor"] for b in bodies] == [{"type": "staff", "name": "Support"}] * 2
        assert bodies[1]["payload"]["author"] == "Support"
        Webhook(sub["secret"]).verify(rx.requests[0].body, rx.requests[0].headers)

        # A test ping is answered with its attempt; a replay re-sends under new webhook-ids.
        there = await stack.key_known(customer)
        ping = ok(await there.post(f"/v1/subscriptions/{sub['id']}/test"))
        assert (ping["status"], ping["status_code"]) == ("delivered", 200)
        assert _types(rx)[-1] == "notification.test"
        window = {"from": ticket["reported_at"], "to": _now()}
        replay = ok(await there.post(f"/v1/subscriptions/{sub['id']}/replay", window), 202)
        assert replay["deliveries"] == 2

        async def replayed() -> bool:
            return len(rx.requests) == 5

        await wait_for(replayed, timeout=30)
        assert _types(rx)[3:] == ["ticket.opened", "ticket.commented"]
        first_ids = {r.headers["webhook-id"] for r in rx.requests[:2]}
        assert first_ids.isdisjoint(r.headers["webhook-id"] for r in rx.requests[3:])

        async def all_recorded() -> Any:
            # The receiver has the request a moment before the notifier records its answer.
            listed = ok(await there.get(f"/v1/subscriptions/{sub['id']}/deliveries"))
            return listed if all(d["status"] == "delivered" for d in listed) else None

        listed = await wait_for(all_recorded, timeout=10)
        assert len(listed) == 5


async def test_ticket_number_mail_reaches_the_contact(stack: Stack) -> None:
    account = await new_account(stack.admin)
    contact, _ = await contact_key(stack.admin, account["id"])
    ticket = await new_ticket(
        stack.admin, account["id"], contact_id=contact["id"], subject="Printer jammed"
    )

    async def mail_for_contact() -> Any:
        for envelope in stack.inbox.envelopes:
            if contact["email"] in envelope.rcpt_tos:
                assert isinstance(envelope.content, bytes)
                return message_from_bytes(envelope.content, policy=default)
        return None

    message = await wait_for(mail_for_contact, timeout=30)
    assert message["Subject"].startswith(f"[{ticket['number']}]")
    assert ticket["number"] in message.get_body(("plain",)).get_content()

    async def listed_as_sent() -> Any:
        rows = ok(
            await stack.on_notifier(stack.admin).get(f"/v1/tickets/{ticket['id']}/notifications")
        )
        return rows if rows and rows[0]["status"] == "sent" else None

    rows = await wait_for(listed_as_sent, timeout=10)
    assert rows[0]["kind"] == "ticket_opened"


async def test_a_password_reset_link_is_mailed_to_its_person_and_to_no_webhook(
    stack: Stack,
) -> None:
    """Before, a forgotten password had no way to a person. Now intake's reset request reaches
    the person's address as a link into the portal (HELPDESK_NOTIFIER_PORTAL_URL) that sets a
    new password, while the account's catch-all webhook never receives the link."""
    account = await new_account(stack.admin)
    contact, customer = await contact_key(stack.admin, account["id"], visibility="account")
    await signed_in(stack.admin, contact["id"])
    async with receiving(Reply(200)) as rx:
        ok(
            await (await stack.key_known(customer)).post(
                "/v1/subscriptions", {"url": rx.url, "event_types": ["*"]}
            ),
            201,
        )
        answer = await stack.admin.http.post(
            "/v1/password-resets", json={"email": contact["email"]}
        )
        assert answer.status_code == 202
        # Later on the account's partition: once its webhook has it, the reset was handled.
        later = await new_ticket(stack.admin, account["id"])

        async def reset_mail() -> Any:
            for envelope in stack.inbox.envelopes:
                content = envelope.content
                if contact["email"] in envelope.rcpt_tos and isinstance(content, bytes):
                    message = message_from_bytes(content, policy=default)
                    if message["Subject"] == "Choose a new password":
                        return message
            return None

        async def later_arrived() -> bool:
            return any(later["id"] in r.body.decode() for r in rx.requests)

        message = await wait_for(reset_mail, timeout=30)
        await wait_for(later_arrived, timeout=30)
        assert "account.password_reset_requested" not in _types(rx)
    text = message.get_body(("plain",)).get_content()
    link = re.search(r"https://portal\.example/password-resets/(\S+)", text)
    assert link is not None, text
    assert link.group(0) in message.get_body(("html",)).get_content()
    accept = f"/v1/invitations/{link.group(1)}/accept"
    assert (
        ok(await stack.admin.http.post(accept, json={"password": "my new long password"}))["email"]
        == contact["email"]
    )


async def test_a_rebuild_keeps_a_provider_subscriptions_pending_delivery(
    infra: tuple[str, str],
) -> None:
    """A provider-wide subscription lives on the provider's partition, the events it matches on
    their accounts'. A rebuild replays the provider's partition first: otherwise an account on
    a lower partition (applied first within a batch) would meet no subscription, and its
    delivery, still waiting for a retry, would be dropped."""
    bootstrap, database_url = infra
    settings = await fresh_stack_settings(bootstrap, database_url)
    partitions = range(settings.partitions)
    own = NotifierSettings(allow_targets="127.0.0.1", retry_schedule_seconds="3600")
    async with (
        in_process("intake", settings) as intake,
        _notifier(settings, own) as (runtime, client),
        receiving(Reply(503)) as rx,
    ):
        admin = As(intake.http, ADMIN_TOKEN)
        account = await new_account(admin)
        while partition_of(UUID(account["id"]), partitions) >= partition_of(
            PROVIDER_ACCOUNT, partitions
        ):
            account = await new_account(admin)
        on_notifier = As(client, ADMIN_TOKEN)
        sub = ok(
            await on_notifier.post(
                "/v1/subscriptions", {"url": rx.url, "event_types": ["ticket.*"]}
            ),
            201,
        )
        await new_ticket(admin, account["id"])

        async def retrying() -> list[dict[str, Any]] | None:
            rows: list[dict[str, Any]] = ok(
                await on_notifier.get(f"/v1/subscriptions/{sub['id']}/deliveries")
            )
            return rows if rows and rows[0]["attempts"] else None

        before = await wait_for(retrying, timeout=30)
        assert [r["status"] for r in before] == ["pending"]  # its next attempt in an hour
        await runtime.rebuild()
        after = ok(await on_notifier.get(f"/v1/subscriptions/{sub['id']}/deliveries"))
        assert [(r["id"], r["status"]) for r in after] == [(before[0]["id"], "pending")]
