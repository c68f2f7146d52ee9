"""The tenancy sweep: every endpoint of every service, asked by a contact of another account
about account A's resources, answers 403 or 404, shows nothing of A, and changes nothing.

The routes come from the four services' OpenAPI documents, so an endpoint added later fails this
test until the sweep knows how to call it (`CALLS`). Each write carries a body the endpoint
would accept, so a refusal is the authorization's and not a 422 for the body; the same goes for
A's contact who sees only their own tickets, on the ticket that is a colleague's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import pytest

from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import As, contact_key, new_account, ok, unique
from tests.support import InProcessService, in_process, wait_for

pytestmark = pytest.mark.e2e

PERIOD = datetime.now(UTC).strftime("%Y-%m")

#: Every route of every service but the probes, with the body a caller allowed to would send.
#: `None`: no body. `{names}` are filled with account A's resources (`World.ids`), `{now}` with
#: the time of the call.
CALLS: dict[tuple[str, str, str], Any] = {
    ("intake", "GET", "/v1/accounts"): None,
    ("intake", "POST", "/v1/accounts"): {"name": "Intruder Inc"},
    ("intake", "GET", "/v1/accounts/{account_id}"): None,
    ("intake", "PATCH", "/v1/accounts/{account_id}"): {"name": "Taken over"},
    ("intake", "GET", "/v1/agreement-presets"): None,
    ("intake", "PUT", "/v1/accounts/{account_id}/agreement"): {"preset": "cloud_platform"},
    ("intake", "GET", "/v1/accounts/{account_id}/agreement"): None,
    ("intake", "POST", "/v1/accounts/{account_id}/contacts"): {
        "name": "Mallory",
        "email": "mallory@intruder.example",
    },
    ("intake", "GET", "/v1/accounts/{account_id}/contacts"): None,
    ("intake", "GET", "/v1/staff"): None,
    ("intake", "POST", "/v1/staff"): {
        "name": "Mallory",
        "email": "mallory@intruder.example",
        "role": "manager",
    },
    ("intake", "POST", "/v1/api-keys"): {"role": "contact", "contact_id": "{contact_id}"},
    ("intake", "DELETE", "/v1/api-keys/{key_id}"): None,
    ("intake", "GET", "/v1/me"): None,
    ("intake", "GET", "/v1/admin/dead-letters"): None,
    ("sla_timer", "GET", "/v1/admin/dead-letters"): None,
    ("billing", "GET", "/v1/admin/dead-letters"): None,
    ("notifier", "GET", "/v1/admin/dead-letters"): None,
    ("intake", "POST", "/v1/sessions"): {"email": "{owner_email}", "password": "not the password"},
    ("intake", "POST", "/v1/sessions/current/refresh"): None,
    ("intake", "DELETE", "/v1/sessions/current"): None,
    ("intake", "POST", "/v1/invitations"): {"contact_id": "{contact_id}"},
    ("intake", "POST", "/v1/password-resets"): {"email": "{owner_email}"},
    ("intake", "POST", "/v1/invitations/{token}/accept"): {
        "password": "a password of the intruder"
    },
    ("intake", "POST", "/v1/tickets"): {"account_id": "{account_id}", "subject": "planted"},
    ("intake", "GET", "/v1/tickets"): None,
    ("intake", "GET", "/v1/tickets/{ticket_id}"): None,
    ("intake", "GET", "/v1/tickets/{ticket_id}/events"): None,
    ("intake", "POST", "/v1/tickets/{ticket_id}/triage"): {"priority": "P1"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/assign"): {"technician": "mallory"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/comments"): {"body": "planted"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/request-info"): {"body": "planted"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/customer-reply"): {"body": "planted"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/escalate"): {"tier": "vendor"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/vendor-return"): {},
    ("intake", "POST", "/v1/tickets/{ticket_id}/time-entries"): {
        "minutes": 600,
        "work_type": "remote",
        "worked_at": "{now}",
    },
    ("intake", "POST", "/v1/tickets/{ticket_id}/resolve"): {
        "resolution": "fix",
        "summary": "planted",
    },
    ("intake", "POST", "/v1/tickets/{ticket_id}/confirm"): {},
    ("intake", "POST", "/v1/tickets/{ticket_id}/close"): {"reason": "duplicate"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/reopen"): {"reason": "planted"},
    ("intake", "POST", "/v1/tickets/{ticket_id}/partner-resolvable"): {},
    ("intake", "POST", "/v1/tickets/{ticket_id}/quote"): {"minutes": 60, "amount_cents": 100},
    ("intake", "POST", "/v1/tickets/{ticket_id}/approve-quote"): {},
    ("intake", "POST", "/v1/tickets/{ticket_id}/decline-quote"): {"reason": "planted"},
    ("intake", "POST", "/v1/ticket-imports"): {
        "ticket": {"account_id": "{account_id}", "subject": "planted"},
        "history": [],
    },
    ("intake", "POST", "/v1/inbound/email"): "raw",
    ("intake", "GET", "/v1/inbound/email"): None,
    ("sla_timer", "GET", "/v1/tickets/{ticket_id}/sla"): None,
    ("sla_timer", "GET", "/v1/queue"): None,
    ("sla_timer", "GET", "/v1/accounts/{account_id}/sla-report"): None,
    ("sla_timer", "POST", "/v1/accounts/{account_id}/sla-report/what-if"): {
        "period": PERIOD,
        "agreement": "small_business_remote",
    },
    ("sla_timer", "GET", "/v1/accounts/{account_id}/availability"): None,
    ("billing", "GET", "/v1/accounts/{account_id}/usage"): None,
    ("billing", "GET", "/v1/accounts/{account_id}/invoices"): None,
    ("billing", "GET", "/v1/invoices/{invoice_id}.csv"): None,
    ("billing", "GET", "/v1/invoices/{invoice_id}"): None,
    ("billing", "GET", "/v1/accounts/{account_id}/budget-review"): None,
    ("billing", "POST", "/v1/accounts/{account_id}/invoices/what-if"): {
        "period": PERIOD,
        "plan": "small_business_remote",
    },
    ("notifier", "GET", "/v1/subscriptions"): None,
    ("notifier", "POST", "/v1/subscriptions"): {
        "account_id": "{account_id}",
        "url": "http://127.0.0.1:9/steal",
        "event_types": ["ticket.*"],
    },
    ("notifier", "GET", "/v1/subscriptions/{subscription_id}"): None,
    ("notifier", "PATCH", "/v1/subscriptions/{subscription_id}"): {"enabled": False},
    ("notifier", "DELETE", "/v1/subscriptions/{subscription_id}"): None,
    ("notifier", "POST", "/v1/subscriptions/{subscription_id}/rotate-secret"): None,
    ("notifier", "GET", "/v1/subscriptions/{subscription_id}/deliveries"): None,
    ("notifier", "POST", "/v1/subscriptions/{subscription_id}/replay"): {
        "from": "2020-01-01T00:00:00Z",
        "to": "{now}",
    },
    ("notifier", "POST", "/v1/subscriptions/{subscription_id}/test"): None,
    ("notifier", "GET", "/v1/tickets/{ticket_id}/notifications"): None,
}

#: Query strings the sweep adds: required ones, and those that name an account.
QUERIES: dict[str, dict[str, str]] = {
    "/v1/accounts/{account_id}/usage": {"period": PERIOD},
    "/v1/accounts/{account_id}/budget-review": {"quarter": f"{PERIOD[:4]}-Q1"},
    "/v1/accounts/{account_id}/sla-report": {"period": PERIOD},
    "/v1/accounts/{account_id}/availability": {"period": PERIOD},
    "/v1/tickets": {"account_id": "{account_id}"},
    "/v1/queue": {"account_id": "{account_id}"},
}

PROBES = {"/healthz", "/readyz", "/metrics"}
#: Routes that take no key but a secret of their own (a password, an invitation link): the
#: intruder, who has neither of A's, is refused with a 401 (sign-in) or a 404 (a used link).
#: `{token}` is A's contact's invitation link, used already.
UNAUTHENTICATED = {
    ("intake", "POST", "/v1/sessions"),
    ("intake", "POST", "/v1/invitations/{token}/accept"),
}
#: Routes that answer anyone alike (202) and mail only the person the address belongs to: the
#: intruder learns nothing and changes nothing of A's.
ANSWERED_ALIKE = {("intake", "POST", "/v1/password-resets")}
RAW_MESSAGE = b"From: mallory@intruder.example\r\nTo: help@msp.example\r\nSubject: x\r\n\r\nx\r\n"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture(scope="module")
async def services(
    stack: Settings, intake: InProcessService
) -> AsyncIterator[dict[str, InProcessService]]:
    """The four services in-process, on the module's stack."""
    with _allowing_loopback_targets():
        async with (
            in_process("sla_timer", stack) as sla,
            in_process("billing", stack) as billing,
            in_process("notifier", stack) as notifier,
        ):
            yield {"intake": intake, "sla_timer": sla, "billing": billing, "notifier": notifier}


@contextlib.contextmanager
def _allowing_loopback_targets() -> Iterator[None]:
    # The subscriptions' receivers stand for a provider's; nothing listens on port 9.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HELPDESK_NOTIFIER_ALLOW_TARGETS", "127.0.0.1")
        yield


class World:
    """Account A with a ticket, time, an invoice, notifications and a subscription; the callers
    who must not reach them."""

    def __init__(self, services: dict[str, InProcessService], admin: As) -> None:
        self.services = services
        self.admin = admin
        self.ids: dict[str, str] = {}
        self.intruder = self.colleague = self.owner = admin

    async def build(self) -> None:
        """Create A's resources through the API and wait until every service has them."""
        admin = self.admin
        account = await new_account(admin)
        ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", {"preset": "managed_budget"}))
        owner, self.owner = await contact_key(admin, account["id"], "own")
        _, self.colleague = await contact_key(admin, account["id"], "own")
        other = await new_account(admin)
        ok(await admin.put(f"/v1/accounts/{other['id']}/agreement", {"preset": "managed_budget"}))
        # Every role a contact can hold, so that no check of a role hides a missing account check.
        intruder = {
            "name": "Mallory",
            "email": f"{unique('mallory')}@intruder.example",
            "visibility": "account",
            "roles": ["key_contact", "billing"],
        }
        mallory = ok(await admin.post(f"/v1/accounts/{other['id']}/contacts", intruder), 201)
        key = {"role": "contact", "contact_id": mallory["id"]}
        self.intruder = As(admin.http, ok(await admin.post("/v1/api-keys", key), 201)["token"])
        ticket = ok(
            await self.owner.post(
                "/v1/tickets", {"account_id": account["id"], "subject": unique("printer")}
            ),
            201,
        )
        entry = {"minutes": 30, "work_type": "remote", "worked_at": _now()}
        ok(await admin.post(f"/v1/tickets/{ticket['id']}/time-entries", entry))
        subscription = ok(
            await self.as_admin("notifier").post(
                "/v1/subscriptions",
                {
                    "account_id": account["id"],
                    "url": "http://127.0.0.1:9/a",
                    "event_types": ["ticket.*"],
                },
            ),
            201,
        )
        invitation = ok(await admin.post("/v1/invitations", {"contact_id": owner["id"]}), 201)
        accept = f"/v1/invitations/{invitation['token']}/accept"
        ok(await admin.http.post(accept, json={"password": "the owner's own password"}))
        self.ids = {
            "account_id": account["id"],
            "account_name": account["name"],
            "ticket_id": ticket["id"],
            "contact_id": owner["id"],
            "key_id": owner["key_id"],
            "subscription_id": subscription["id"],
            "owner_email": owner["email"],
            "token": invitation["token"],
        }
        await wait_for(self._everywhere, timeout=60)
        invoices = ok(await self.as_admin("billing").get(f"/v1/accounts/{account['id']}/invoices"))
        self.ids["invoice_id"] = invoices["items"][0]["id"]

    def as_admin(self, service: str) -> As:
        """The bootstrap admin on `service`."""
        return As(self.services[service].http, self.admin.token)

    async def _everywhere(self) -> bool:
        ticket, account = self.ids["ticket_id"], self.ids["account_id"]
        seen = [
            await self.as_admin("sla_timer").get(f"/v1/tickets/{ticket}/sla"),
            await self.as_admin("notifier").get(f"/v1/tickets/{ticket}/notifications"),
            await self.as_admin("billing").get(f"/v1/accounts/{account}/invoices"),
        ]
        if not all(r.status_code == 200 for r in seen) or not seen[-1].json()["items"]:
            return False
        # Every service knows every caller's key: a 401 would refuse before any tenancy check.
        for service, path in (
            ("intake", "/v1/me"),
            ("sla_timer", "/v1/queue"),
            ("billing", f"/v1/accounts/{account}/invoices"),
            ("notifier", "/v1/subscriptions"),
        ):
            for caller in (self.intruder, self.colleague, self.owner):
                http = self.services[service].http
                response = await http.get(path, headers={"Authorization": f"Bearer {caller.token}"})
                if response.status_code == 401:
                    return False
        return True

    def fill(self, template: Any) -> Any:
        """`template` with A's ids put in for their `{names}`."""
        if isinstance(template, str):
            return template.format_map({**self.ids, "now": _now()})
        if isinstance(template, dict):
            return {key: self.fill(value) for key, value in template.items()}
        return template

    async def call(self, caller: As, service: str, method: str, path: str) -> httpx.Response:
        """One request of the sweep, as `caller`."""
        body = CALLS[(service, method, path)]
        headers = {"Authorization": f"Bearer {caller.token}"}
        content: bytes | None = None
        if body == "raw":
            content, headers["content-type"] = RAW_MESSAGE, "message/rfc822"
            body = None
        return await self.services[service].http.request(
            method,
            self.fill(path),
            params=self.fill(QUERIES.get(path)),
            json=self.fill(body),
            content=content,
            headers=headers,
        )

    def leaks(self, response: httpx.Response) -> list[str]:
        """Which of A's ids or its name the response shows, beyond the path it was asked."""
        text = response.text
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            problem = response.json()
            problem.pop("instance", None)  # the request's own path, with the ids it named
            text = json.dumps(problem)
        return [name for name, value in self.ids.items() if value in text]

    async def state(self) -> dict[str, Any]:
        """What the sweep must not change, as the admin and A's contact see it."""
        ticket, account = self.ids["ticket_id"], self.ids["account_id"]
        subscription = self.ids["subscription_id"]
        notifier = self.as_admin("notifier")
        return {
            "events": ok(await self.admin.get(f"/v1/tickets/{ticket}/events")),
            "account": ok(await self.admin.get(f"/v1/accounts/{account}")),
            "agreement": ok(await self.admin.get(f"/v1/accounts/{account}/agreement")),
            "contacts": ok(await self.admin.get(f"/v1/accounts/{account}/contacts")),
            "owner_key": (await self.owner.get("/v1/me")).status_code,
            "subscription": {
                field: value
                for field, value in ok(
                    await notifier.get(f"/v1/subscriptions/{subscription}")
                ).items()
                if field in ("url", "event_types", "enabled", "description")
            },
            "subscriptions": len(ok(await notifier.get("/v1/subscriptions"))),
            "accounts": len(ok(await self.admin.get("/v1/accounts"))),
        }


@pytest.fixture(scope="module")
async def world(services: dict[str, InProcessService], admin: As) -> World:
    """Account A's resources and its would-be intruders."""
    built = World(services, admin)
    await built.build()
    return built


def routes(services: dict[str, InProcessService]) -> list[tuple[str, str, str]]:
    """Every (service, method, path) the services' OpenAPI documents declare, probes aside."""
    found = []
    for name, service in services.items():
        document = service.runtime.app().openapi()
        for path, operations in document["paths"].items():
            if path not in PROBES:
                found += [(name, method.upper(), path) for method in operations]
    return found


async def test_the_sweep_knows_every_route(services: dict[str, InProcessService]) -> None:
    """A route added later must be added to the sweep, with a body its callers would send."""
    assert sorted(set(routes(services)) - set(CALLS)) == []
    assert sorted(set(CALLS) - set(routes(services))) == []


async def test_another_account_s_contact_reaches_nothing_of_account_a(world: World) -> None:
    before = await world.state()
    answers = {}
    for service, method, path in sorted(CALLS):
        response = await world.call(world.intruder, service, method, path)
        answers[(service, method, path)] = response
    after = await world.state()
    refused_or_blind = {
        route: (response.status_code, world.leaks(response))
        for route, response in answers.items()
        # A list answered 200 must hold nothing of A; anything else must be refused outright.
        if not (
            response.status_code in ((401, 404) if route in UNAUTHENTICATED else (403, 404))
            and not world.leaks(response)
        )
        and not (response.status_code == 200 and "{" not in route[2] and not world.leaks(response))
        and not (
            route in ANSWERED_ALIKE and response.status_code == 202 and not world.leaks(response)
        )
    }
    assert refused_or_blind == {}
    assert after == before


async def test_a_contact_who_sees_own_tickets_reaches_nothing_of_a_colleague_s(
    world: World,
) -> None:
    before = await world.state()
    ticket_routes = sorted(route for route in CALLS if "{ticket_id}" in route[2])
    answers = {route: await world.call(world.colleague, *route) for route in ticket_routes}
    after = await world.state()
    assert {route: r.status_code for route, r in answers.items() if r.status_code != 404} == {}
    assert after == before


async def test_the_sweep_s_requests_are_well_formed(
    services: dict[str, InProcessService], world: World
) -> None:
    """Each request carries what its route's OpenAPI document requires, valid by its schema:
    so the refusals above were the authorization's, not a 422 for the request."""
    malformed = []
    for service, method, path in sorted(CALLS):
        document = services[service].runtime.app().openapi()
        operation = document["paths"][path][method.lower()]
        body, query = CALLS[(service, method, path)], world.fill(QUERIES.get(path) or {})
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            if parameter["name"] in query:
                value = query[parameter["name"]]
                malformed += _violations(document, parameter["schema"], value, (path, "query"))
            elif parameter.get("required"):
                malformed.append(f"{path}: no {parameter['name']}")
        content = operation.get("requestBody", {}).get("content", {})
        if body == "raw":
            malformed += [] if "message/rfc822" in content else [f"{path}: takes no message"]
        elif "application/json" in content:
            schema = content["application/json"]["schema"]
            malformed += _violations(document, schema, world.fill(body or {}), (path, "body"))
        elif body is not None:
            malformed.append(f"{path}: takes no body")
    assert malformed == []


def _violations(
    document: dict[str, Any], schema: dict[str, Any], value: Any, where: tuple[str, str]
) -> list[str]:
    # The document's components ride along, for the schema's `#/components/...` references.
    validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    return [f"{where}: {error.message}" for error in validator.iter_errors(value)]
