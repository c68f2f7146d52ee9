"""E-mail intake against a real Kafka and PostgreSQL: over HTTP and over SMTP (seed 003, 7.2)."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import httpx
import pytest

from helpdesk.shared.settings import Settings
from tests.support import InProcessService, free_port, in_process, wait_for

pytestmark = pytest.mark.integration

SUPPORT = "support@provider.example"


def _email(sender: str, subject: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@customer.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


async def _post(http: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    return await http.post(
        "/v1/inbound/email", content=raw, headers={"Content-Type": "message/rfc822"}
    )


async def _account(http: httpx.AsyncClient) -> str:
    response = await http.post("/v1/accounts", json={"name": f"Acme {uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


async def _contact(
    http: httpx.AsyncClient, account_id: str, email: str, visibility: str = "own"
) -> str:
    response = await http.post(
        f"/v1/accounts/{account_id}/contacts",
        json={"name": "Ann Example", "email": email, "roles": [], "visibility": visibility},
    )
    assert response.status_code == 201, response.text
    contact_id: str = str(response.json()["id"])
    return contact_id


async def _ticket(http: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/tickets/{ticket_id}")
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def _tickets(http: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    response = await http.get("/v1/tickets", params={"account_id": account_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
async def intake(settings: Settings) -> AsyncIterator[InProcessService]:
    """Intake in this process, on a fresh topic and database."""
    async with in_process("intake", settings) as service:
        yield service


async def test_a_contacts_email_opens_an_untriaged_ticket(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    contact_id = await _contact(http, account_id, "ann@customer.example")

    response = await _post(
        http,
        _email('"Ann" <Ann@Customer.Example>', "Printer on fire", "It is on fire.\n3 users."),
    )

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["outcome"] == "opened"
    assert answer["ticket_number"].startswith("HD-")
    assert response.headers["Location"] == f"/v1/tickets/{answer['ticket_id']}"
    ticket = await _ticket(http, answer["ticket_id"])
    assert ticket["status"] == "new"
    assert ticket["priority"] is None
    assert ticket["channel"] == "email"
    assert ticket["contact_id"] == contact_id
    assert ticket["account_id"] == account_id
    assert ticket["number"] == answer["ticket_number"]
    assert ticket["subject"] == "Printer on fire"
    assert ticket["description"] == "It is on fire.\n3 users."


async def test_a_reply_with_the_ticket_number_resumes_a_waiting_ticket(
    intake: InProcessService,
) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    opened = (await _post(http, _email("ann@customer.example", "VPN down", "No VPN."))).json()
    asked = await http.post(
        f"/v1/tickets/{opened['ticket_id']}/request-info", json={"body": "Which client version?"}
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "waiting_on_customer"

    reply = _email(
        "ann@customer.example",
        f"Re: [{opened['ticket_number']}] VPN down",
        "Version 5.2.\n\nOn Mon, Support wrote:\n> Which client version?\n",
    )
    response = await _post(http, reply)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "outcome": "replied",
        "ticket_id": opened["ticket_id"],
        "ticket_number": opened["ticket_number"],
    }
    assert (await _ticket(http, opened["ticket_id"]))["status"] == "open"
    history = (await http.get(f"/v1/tickets/{opened['ticket_id']}/events")).json()
    replied = [e for e in history if e["type"] == "ticket.customer_replied"]
    assert len(replied) == 1
    assert replied[0]["payload"]["channel"] == "email"
    assert replied[0]["payload"]["resumed"] is True
    assert replied[0]["payload"]["body"] == "Version 5.2."  # the quoted original is dropped
    assert len(await _tickets(http, account_id)) == 1


async def test_a_reply_to_a_closed_ticket_reopens_it(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    opened = (await _post(http, _email("ann@customer.example", "Mail bounces", "x"))).json()
    closed = await http.post(
        f"/v1/tickets/{opened['ticket_id']}/close", json={"reason": "duplicate"}
    )
    assert closed.status_code == 200, closed.text

    response = await _post(
        http, _email("ann@customer.example", f"[{opened['ticket_number']}]", "Still bouncing.")
    )

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "replied"
    ticket = await _ticket(http, opened["ticket_id"])
    assert ticket["status"] == "open"
    assert ticket["cycle"] == 2
    history = (await http.get(f"/v1/tickets/{opened['ticket_id']}/events")).json()
    types = [e["type"] for e in history]
    assert types[-2:] == ["ticket.reopened", "ticket.customer_replied"]
    assert history[-2]["payload"]["reason"] == "customer replied by e-mail"
    assert history[-1]["payload"]["body"] == "Still bouncing."


async def test_a_number_the_sender_may_not_see_opens_a_new_ticket(
    intake: InProcessService,
) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    await _contact(http, account_id, "bob@customer.example")  # visibility "own"
    other_account = await _account(http)
    await _contact(http, other_account, "eve@elsewhere.example", visibility="account")
    anns = (await _post(http, _email("ann@customer.example", "Ann's laptop", "x"))).json()
    subject = f"Re: [{anns['ticket_number']}] Ann's laptop"

    bobs = await _post(http, _email("bob@customer.example", subject, "me too"))
    eves = await _post(http, _email("eve@elsewhere.example", subject, "what is this"))

    assert bobs.status_code == 201, bobs.text
    assert eves.status_code == 201, eves.text
    assert bobs.json()["ticket_id"] != anns["ticket_id"]
    assert eves.json()["ticket_id"] != anns["ticket_id"]
    assert (await _ticket(http, anns["ticket_id"]))["comments"] == 0


async def test_an_unknown_sender_is_refused_and_recorded(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    raw = _email("mallory@unknown.example", "Give me a ticket", "please")

    response = await _post(http, raw)

    assert response.status_code == 202, response.text
    assert response.json() == {
        "outcome": "refused",
        "reason": "the sender is not a contact of any account",
    }
    recorded = (await http.get("/v1/inbound/email")).json()
    assert [(m["sender"], m["outcome"], m["ticket_id"]) for m in recorded] == [
        ("mallory@unknown.example", "refused", None)
    ]
    assert recorded[0]["subject"] == "Give me a ticket"
    assert recorded[0]["reason"] == "the sender is not a contact of any account"
    assert (await http.get("/v1/tickets")).json()["items"] == []


async def test_automatic_replies_are_refused(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    opened = (await _post(http, _email("ann@customer.example", "Backup failed", "x"))).json()
    await http.post(f"/v1/tickets/{opened['ticket_id']}/close", json={"reason": "duplicate"})

    out_of_office = _email(
        "ann@customer.example",
        f"Automatic reply: [{opened['ticket_number']}] Backup failed",
        "I am out of the office.",
        Auto_Submitted="auto-replied",
    )
    response = await _post(http, out_of_office)

    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "refused"
    assert (await _ticket(http, opened["ticket_id"]))["status"] == "closed"


async def test_a_redelivered_message_acts_once(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    raw = _email("ann@customer.example", "Disk full", "x")

    first = await _post(http, raw)
    again = await _post(http, raw)

    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(await _tickets(http, account_id)) == 1
    assert len((await http.get("/v1/inbound/email")).json()) == 1


async def test_an_account_on_hold_takes_no_email(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    await _contact(http, account_id, "ann@customer.example")
    held = await http.patch(f"/v1/accounts/{account_id}", json={"status": "on_hold"})
    assert held.status_code == 200, held.text

    response = await _post(http, _email("ann@customer.example", "Help", "x"))

    assert response.status_code == 202, response.text
    assert response.json()["reason"] == "the account is on_hold"
    assert await _tickets(http, account_id) == []


@pytest.mark.parametrize(
    "raw", [b"\x00\xff\xfe\x89PNG\r\n\x1a\n garbage", b"", b"Subject: nobody sent this\r\n\r\nx"]
)
async def test_an_unreadable_message_is_422(intake: InProcessService, raw: bytes) -> None:
    response = await _post(intake.http, raw)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["field"] == "body"
    assert (await intake.http.get("/v1/inbound/email")).json() == []


async def test_inbound_email_is_staff_only(intake: InProcessService) -> None:
    http = intake.http
    account_id = await _account(http)
    contact_id = await _contact(http, account_id, "ann@customer.example")
    key = await http.post(
        "/v1/api-keys", json={"role": "contact", "account_id": account_id, "contact_id": contact_id}
    )
    assert key.status_code == 201, key.text
    as_contact = {"Authorization": f"Bearer {key.json()['token']}"}

    posted = await http.post(
        "/v1/inbound/email",
        content=_email("ann@customer.example", "Hi", "x"),
        headers={**as_contact, "Content-Type": "message/rfc822"},
    )
    listed = await http.get("/v1/inbound/email", headers=as_contact)

    assert posted.status_code == 403, posted.text
    assert listed.status_code == 403, listed.text
    assert await _tickets(http, account_id) == []


# -- SMTP -------------------------------------------------------------------------------------


def _send(port: int, sender: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(sender, [SUPPORT], raw)


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_smtp_delivers_tickets_refusals_and_rejects(settings: Settings) -> None:
    port = free_port()
    async with in_process("intake", settings.model_copy(update={"smtp_port": port})) as intake:
        http = intake.http
        account_id = await _account(http)
        contact_id = await _contact(http, account_id, "ann@customer.example")
        await wait_for(lambda: _listening(port))

        await asyncio.to_thread(
            _send, port, "ann@customer.example", _email("ann@customer.example", "Fax", "Jammed.")
        )

        async def opened() -> list[dict[str, Any]]:
            return await _tickets(http, account_id)

        [ticket] = await wait_for(opened)
        assert (ticket["status"], ticket["priority"], ticket["channel"]) == ("new", None, "email")
        assert ticket["contact_id"] == contact_id
        assert ticket["description"] == "Jammed."

        # A reply over SMTP threads by the number in the subject.
        reply = _email("ann@customer.example", f"Re: [{ticket['number']}] Fax", "Still jammed.")
        await asyncio.to_thread(_send, port, "ann@customer.example", reply)
        assert (await _ticket(http, ticket["id"]))["comments"] == 1

        # An unknown sender is accepted (250) and recorded, not bounced.
        stranger = _email("mallory@unknown.example", "Hello", "x")
        await asyncio.to_thread(_send, port, "mallory@unknown.example", stranger)
        recorded = (await http.get("/v1/inbound/email")).json()
        assert [m["outcome"] for m in recorded] == ["refused", "replied", "opened"]

        # Bytes that are no message are rejected permanently, so the sender's MTA bounces them.
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            await asyncio.to_thread(_send, port, "x@y.example", b"\x00\x01 not a message")
        assert rejected.value.smtp_code == 550
        assert len(await _tickets(http, account_id)) == 1


RELAY = "mx.provider.example"
FORGED = (
    f"{RELAY}; spf=fail smtp.mailfrom=evil.example; dkim=none (no signature);"
    " dmarc=fail (p=reject) header.from=customer.example"
)


async def test_smtp_refuses_mail_a_trusted_relay_found_forged(settings: Settings) -> None:
    """Before: intake took any `From:`, so mail from attacker@evil with `From:` set to a
    contact's address was threaded into that contact's ticket. Now a message whose
    Authentication-Results from a trusted relay say dmarc=fail is refused (recorded with the
    relay's verdict, no reply, no ticket); the same verdict under an authserv-id nobody trusts
    is ignored, and a pass threads as before."""
    port = free_port()
    update = {"smtp_port": port, "email_trusted_relays": [RELAY.upper()]}
    async with in_process("intake", settings.model_copy(update=update)) as intake:
        http = intake.http
        account_id = await _account(http)
        await _contact(http, account_id, "ann@customer.example")
        await wait_for(lambda: _listening(port))
        passed = f"{RELAY}; spf=pass smtp.mailfrom=customer.example; dmarc=pass"
        opening = _email("ann@customer.example", "Fax", "Jammed.", Authentication_Results=passed)
        await asyncio.to_thread(_send, port, "ann@customer.example", opening)
        [ticket] = await wait_for(lambda: _tickets(http, account_id))
        subject = f"Re: [{ticket['number']}] Fax"

        forged = _email(
            "ann@customer.example",
            subject,
            "Send the invoice to evil.",
            Authentication_Results=FORGED,
        )
        await asyncio.to_thread(_send, port, "attacker@evil.example", forged)
        # A new thread in the contact's name is refused just the same.
        forged_new = _email(
            "ann@customer.example", "Reset my password", "x", Authentication_Results=FORGED
        )
        await asyncio.to_thread(_send, port, "attacker@evil.example", forged_new)

        recorded = (await http.get("/v1/inbound/email")).json()
        assert [m["outcome"] for m in recorded[:2]] == ["refused", "refused"]
        for message in recorded[:2]:
            assert message["reason"] == (
                f"the sender failed authentication: dmarc=fail according to {RELAY}"
            )
        assert (await _ticket(http, ticket["id"]))["comments"] == 0
        assert len(await _tickets(http, account_id)) == 1

        # The relay's name written by someone else is the sender's own word: ignored.
        untrusted = FORGED.replace(RELAY, "mx.evil.example")
        reply = _email(
            "ann@customer.example", subject, "Still jammed.", Authentication_Results=untrusted
        )
        await asyncio.to_thread(_send, port, "ann@customer.example", reply)
        assert (await _ticket(http, ticket["id"]))["comments"] == 1
