"""The portal in a real browser (Debian's chromium, driven by Playwright): a contact invited by
the provider sets a password, reports a problem through the support form, follows it, and talks
with a technician; what they may not see or send is refused.

Seed 003: "Employees eligible to access your account's customer portal will be issued a user
name and password", problems are reported through an "online support form", and a contact sees
"strictly his/her requests".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import subprocess
import tarfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any, Literal

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from helpdesk.intake.adapters.tables import sign_in_failures
from helpdesk.intake.application.sessions import CLIENT_FAILURE_LIMIT
from helpdesk.portal.app import create_app
from helpdesk.portal.settings import PortalSettings
from helpdesk.shared.auth import hash_token
from helpdesk.shared.settings import Settings
from services.intake.tests.integration._support import As, new_account, ok, unique
from tests.support import InProcessService, events_on_topic, free_port, in_process, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a long enough password"
#: The accessibility engine the tests inject, from the npm registry (npm's own client).
AXE_CORE = "axe-core@4.11.0"
AXE_CACHE = Path(__file__).resolve().parents[2] / ".state" / "test" / "axe"


@contextlib.asynccontextmanager
async def serving(
    app: Any, *, lifespan: Literal["on", "off"] = "on", host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port in this event loop; yields its base URL."""
    port = free_port() if host == "127.0.0.1" else free_port_on(host)
    # As the services run (no access log: an invitation link's path holds its token).
    config = uvicorn.Config(
        app, host=host, port=port, lifespan=lifespan, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await wait_for(started, timeout=20)
        yield f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def free_port_on(host: str) -> int:
    """A port free on `host` (an IPv6 address too)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def billing(stack: Settings, intake: InProcessService) -> AsyncIterator[InProcessService]:
    """Billing in-process, next to intake."""
    async with in_process("billing", stack) as service:
        yield service


@pytest.fixture(scope="module")
async def portal(
    intake: InProcessService, sla: InProcessService, billing: InProcessService
) -> AsyncIterator[str]:
    """The portal over real HTTP, in front of intake, the SLA timer and billing (their runtimes
    are already started, so their apps run without a lifespan)."""
    async with (
        serving(intake.runtime.app(), lifespan="off") as intake_url,
        serving(sla.runtime.app(), lifespan="off") as sla_url,
        serving(billing.runtime.app(), lifespan="off") as billing_url,
    ):
        settings = PortalSettings(
            intake_url=intake_url,
            sla_timer_url=sla_url,
            billing_url=billing_url,
            secure_cookies=False,
        )
        async with serving(create_app(settings)) as url:
            yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium (no browser is downloaded)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core's browser bundle, packed by npm once and kept under .state/test."""
    AXE_CACHE.mkdir(parents=True, exist_ok=True)
    name = AXE_CORE.replace("@", "-") + ".tgz"
    if not (AXE_CACHE / name).exists():
        subprocess.run(
            ["npm", "pack", AXE_CORE, "--silent", "--pack-destination", str(AXE_CACHE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    with tarfile.open(AXE_CACHE / name) as packed:
        member = packed.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


class Accessibility:
    """Runs axe-core on pages and keeps what it found, for the closing note."""

    def __init__(self, source: str, shots: Path) -> None:
        self.source = source
        self.report = shots / "axe.json"
        self.found: dict[str, list[dict[str, Any]]] = {}

    async def check(self, page: Page, name: str) -> None:
        """No serious or critical violation on the page (lesser ones are recorded)."""
        # Evaluated over the DevTools protocol, which the page's CSP does not govern.
        await page.evaluate(self.source)
        result = await page.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
            "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length})))"
        )
        self.found[name] = result
        self.report.write_text(json.dumps(self.found, indent=2))
        grave = [v for v in result if v["impact"] in ("serious", "critical")]
        assert grave == [], (name, grave)


@pytest.fixture(scope="module")
def axe(axe_source: str, shots: Path) -> Accessibility:
    """The accessibility check of the module's pages (its findings in axe.json beside the
    screenshots)."""
    return Accessibility(axe_source, shots)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of the main pages are kept (a test artefact)."""
    return tmp_path_factory.mktemp("portal-screenshots")


async def invite(admin: As, **person: str) -> str:
    """An invitation link's path for a contact or a staff member."""
    return str(ok(await admin.post("/v1/invitations", person), 201)["path"])


async def accept_in_browser(context: BrowserContext, portal: str, path: str) -> Page:
    """Open an invitation link, choose the password: signed in."""
    page = await context.new_page()
    await page.goto(portal + path)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("The same password again").fill(PASSWORD)
    await page.get_by_role("button", name="Set password and sign in").click()
    return page


async def test_a_contact_and_a_technician_hold_a_conversation_on_a_ticket(
    portal: str,
    browser: Browser,
    admin: As,
    shots: Path,
    axe: Accessibility,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = await new_account(admin, timezone="Europe/Amsterdam")
    ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", {"preset": "four_tier_24x7"}))
    alice = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Alice", "email": f"{unique('alice')}@example.com", "visibility": "own"},
        ),
        201,
    )
    bob = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Bob", "email": f"{unique('bob')}@example.com", "visibility": "own"},
        ),
        201,
    )
    tess = ok(
        await admin.post(
            "/v1/staff",
            {"name": "Tess", "email": f"{unique('tess')}@msp.example", "role": "technician"},
        ),
        201,
    )

    # Invitation -> password -> signed in.
    contact = await browser.new_context()
    alice_link = await invite(admin, contact_id=alice["id"])
    invitation_page = await contact.new_page()
    answer = await invitation_page.goto(portal + alice_link)
    assert answer is not None
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    await axe.check(invitation_page, "invitation")
    await invitation_page.close()
    page = await accept_in_browser(contact, portal, alice_link)
    await expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
    assert page.url == f"{portal}/tickets"
    cookie = next(c for c in await contact.cookies() if c["name"] == "hd_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"

    # The support form asks for the agreement's required field; missing, it is named beside it.
    await page.get_by_role("link", name="Report a problem").first.click()
    await page.get_by_label("Subject").fill("Mail server down")
    await page.get_by_label("What happened?").fill("Nobody receives mail since 9:00.")
    await page.get_by_label("How urgent is it?").select_option("P2")
    await page.get_by_role("button", name="Send").click()
    error = page.locator("#affected_users-error")
    await expect(error).to_be_visible()
    await expect(page.get_by_label("Number of affected users")).to_have_attribute(
        "aria-invalid", "true"
    )
    await page.screenshot(path=shots / "support-form-error.png", full_page=True)
    await axe.check(page, "support form with an error")
    await page.get_by_label("Number of affected users").fill("40")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("heading", name=re.compile("Mail server down"))).to_be_visible()
    ticket_id = page.url.rsplit("/", 1)[-1]
    ticket_url = page.url

    # The list shows it with its next due time, in the account's zone, once the SLA timer has it.
    listed = await contact.new_page()

    async def due_shown() -> str | None:
        await listed.goto(f"{portal}/tickets")
        due = (await listed.locator("td.due").first.inner_text()).strip()
        return due if due != "—" else None

    due = await wait_for(due_shown, timeout=30, interval=0.5)
    assert re.search(r"\d{2}:\d{2} CET$", due), due
    await expect(listed.get_by_role("cell", name="Mail server down")).to_be_visible()
    await listed.screenshot(path=shots / "contact-tickets.png", full_page=True)
    await axe.check(listed, "my tickets")
    await listed.close()

    # A technician signs in and answers from the queue; the contact's open page shows it.
    tech_link = await invite(admin, staff_id=tess["id"])
    staff = await browser.new_context()
    console = await accept_in_browser(staff, portal, tech_link)
    await expect(console.get_by_role("heading", name="Work queue")).to_be_visible()
    await expect(console.get_by_role("cell", name="Mail server down")).to_be_visible()
    await console.screenshot(path=shots / "staff-queue.png", full_page=True)
    await axe.check(console, "staff queue")
    await console.goto(f"{portal}/tickets/{ticket_id}")
    await console.get_by_label("Reply or note").fill("We are restarting the mail relay now.")
    await console.get_by_role("button", name="Send").click()
    await expect(console.get_by_text("We are restarting the mail relay now.")).to_be_visible()
    await console.screenshot(path=shots / "staff-ticket.png", full_page=True)
    await axe.check(console, "staff ticket page")

    await expect(page.get_by_text("We are restarting the mail relay now.")).to_be_visible(
        timeout=15_000
    )
    await expect(page.locator("#live")).to_contain_text("due by")
    await page.screenshot(path=shots / "contact-ticket.png", full_page=True)
    await axe.check(page, "contact ticket page")

    # Two tabs on one ticket: the second logs time and triages it; the first's reply, written
    # on the older version, meets a conflict message and keeps its text, then goes through.
    second = await staff.new_page()
    await second.goto(f"{portal}/tickets/{ticket_id}")
    await second.get_by_text("Triage, assign, ask, escalate, log time").click()
    await second.get_by_label("Minutes worked (now)").fill("45")
    await second.get_by_role("button", name="Log time").click()
    await second.get_by_text("Triage, assign, ask, escalate, log time").click()
    await second.get_by_label("Priority").select_option("P1")
    await second.get_by_role("button", name="Triage").click()
    await expect(second.locator("#live")).to_contain_text("Priority: P1")
    await second.get_by_text("Triage, assign, ask, escalate, log time").click()
    await axe.check(second, "staff ticket page, every command open")
    await console.get_by_label("Reply or note").fill("Mail should flow again.")
    await console.get_by_role("button", name="Send").click()
    await expect(console.get_by_role("alert")).to_contain_text("Someone changed this ticket")
    await expect(console.get_by_label("Reply or note")).to_have_value("Mail should flow again.")
    await console.get_by_role("button", name="Send").click()
    await expect(page.get_by_text("Mail should flow again.")).to_be_visible(timeout=15_000)
    await second.close()

    # The technician resolves; the contact confirms.
    await console.get_by_label("Summary for the customer").fill("The relay runs again.")
    await console.get_by_role("button", name="Resolve").click()
    await expect(console.get_by_text("Resolved: The relay runs again.")).to_be_visible()
    await page.reload()
    await page.get_by_role("button", name="Confirm the problem is solved").click()
    await expect(page.locator("#live")).to_contain_text("closed")

    # A form without the CSRF token is refused and changes nothing.
    refused = await contact.request.post(
        f"{portal}/tickets/{ticket_id}/reply", form={"body": "planted reply"}
    )
    assert refused.status == 403
    assert "Form refused" in await refused.text()
    await page.reload()
    await expect(page.get_by_text("planted reply")).to_have_count(0)

    # A colleague who sees only their own tickets gets the not-found page for Alice's.
    colleague = await browser.new_context()
    other = await accept_in_browser(colleague, portal, await invite(admin, contact_id=bob["id"]))
    await expect(other.get_by_role("heading", name="My tickets")).to_be_visible()
    answer = await other.goto(ticket_url)
    assert answer is not None
    assert answer.status == 404
    await expect(other.get_by_role("heading", name="Not found")).to_be_visible()
    await axe.check(other, "not found")
    await expect(other.get_by_text("Mail server down")).to_have_count(0)

    # No log line carries an invitation's or a session's token. (Uvicorn's access log, which
    # names paths, is off in the services and the portal; pytest's capture turns it back on.)
    logged = "\n".join(
        f"{record.getMessage()} {record.args}"
        for record in caplog.records
        if record.name != "uvicorn.access"
    )
    assert logged  # the debug logs of every library were captured
    assert alice_link.rsplit("/", 1)[-1] not in logged
    assert cookie["value"].rpartition(".")[0] not in logged
    for context in (contact, staff, colleague):
        await context.close()
    print(f"\nportal screenshots in {shots}")
    for name in ("contact-ticket.png", "staff-queue.png"):
        assert (shots / name).stat().st_size > 10_000


async def sign_in(context: BrowserContext, portal: str, email: str, password: str) -> Page:
    """The sign-in form, filled and sent."""
    page = await context.new_page()
    await page.goto(f"{portal}/sign-in")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    return page


async def test_the_admin_invites_a_contact_and_only_billing_contacts_see_invoices(
    portal: str,
    browser: Browser,
    admin: As,
    billing: InProcessService,
    shots: Path,
    axe: Accessibility,
) -> None:
    """Seed 000: usage is billed monthly; the invoice is for the account's billing contact."""
    account = await new_account(admin, timezone="Europe/Amsterdam")
    ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", {"preset": "managed_budget"}))
    ada = ok(
        await admin.post(
            "/v1/staff", {"name": "Ada", "email": f"{unique('ada')}@msp.example", "role": "admin"}
        ),
        201,
    )
    nina_email = f"{unique('nina')}@example.com"
    nina = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts", {"name": "Nina", "email": nina_email}
        ),
        201,
    )

    # The admin adds a billing contact in the portal and hands over the invitation link.
    staff = await browser.new_context()
    console = await accept_in_browser(staff, portal, await invite(admin, staff_id=ada["id"]))
    await console.get_by_role("link", name="People").click()
    section = console.get_by_role("region", name=re.compile(account["name"]))
    await section.get_by_label("New contact's name").fill("Bill")
    await section.get_by_label("E-mail address").fill(f"{unique('bill')}@example.com")
    await section.get_by_label("Billing contact (sees invoices)").check()
    await section.get_by_role("button", name="Add contact").click()
    await console.get_by_role("button", name="Invite Bill").click()
    link = await console.get_by_label("Invitation link").input_value()
    assert link.startswith(f"{portal}/invitations/")
    await console.screenshot(path=shots / "staff-invitation.png", full_page=True)
    await axe.check(console, "invitation link")
    await console.get_by_role("link", name="People", exact=True).click()
    await axe.check(console, "people")

    # Work on a service request (outside the managed fee, seed 004) is on this month's invoice.
    request = {"account_id": account["id"], "subject": "New laptop", "kind": "service_request"}
    ticket = ok(await admin.post("/v1/tickets", request), 201)
    entry = {"minutes": 90, "work_type": "remote", "worked_at": datetime.now(UTC).isoformat()}
    ok(await admin.post(f"/v1/tickets/{ticket['id']}/time-entries", entry))
    billing_admin = As(billing.http, admin.token)

    async def invoiced() -> bool:
        answer = await billing_admin.get(f"/v1/accounts/{account['id']}/invoices")
        return answer.status_code == 200 and any(i["total_cents"] for i in answer.json()["items"])

    await wait_for(invoiced, timeout=30)

    bill = await browser.new_context()
    page = await bill.new_page()
    await page.goto(link)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("The same password again").fill(PASSWORD)
    await page.get_by_role("button", name="Set password and sign in").click()
    await page.get_by_role("link", name="Billing").click()
    await expect(page.locator("tr.invoice").first).to_contain_text("USD 225.00")
    # This month's usage (seed 000) and this quarter's budget (seed 004) beside the invoices.
    usage = page.get_by_role("region", name=re.compile("Usage in"))
    await expect(usage.locator("dd.amount")).to_contain_text("USD 225.00")
    await expect(usage).to_contain_text("90 minutes")
    budget = page.get_by_role("region", name=re.compile("Budget in"))
    await expect(budget).to_contain_text("Next quarter's budget")
    await page.screenshot(path=shots / "contact-billing.png", full_page=True)
    await axe.check(page, "billing")

    # A contact without the billing role is told so, and sees no amount.
    colleague = await browser.new_context()
    other = await accept_in_browser(colleague, portal, await invite(admin, contact_id=nina["id"]))
    answer = await other.goto(f"{portal}/billing")
    assert answer is not None
    assert answer.status == 403
    await expect(other.get_by_text("shown to your account's billing contacts")).to_be_visible()
    await expect(other.locator("tr.invoice")).to_have_count(0)

    # Nor does anyone open another account's ticket by its URL.
    elsewhere = ok(
        await admin.post(
            "/v1/tickets", {"account_id": (await new_account(admin))["id"], "subject": "x"}
        ),
        201,
    )
    answer = await page.goto(f"{portal}/tickets/{elsewhere['id']}")
    assert answer is not None
    assert answer.status == 404

    # Signing out ends the session at the services, not only in the browser.
    token = next(c for c in await bill.cookies() if c["name"] == "hd_session")["value"]
    await page.goto(f"{portal}/tickets")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    signed_out = As(admin.http, token.rpartition(".")[0])
    assert (await signed_out.get("/v1/me")).status_code == 401

    # Sign-in is limited per address: after five wrong passwords even the right one waits.
    stranger = await browser.new_context()
    for _ in range(5):
        wrong = await sign_in(stranger, portal, nina_email, "not her password")
        await expect(wrong.get_by_role("alert")).to_contain_text("wrong")
        await wrong.close()
    limited = await sign_in(stranger, portal, nina_email, PASSWORD)
    await expect(limited.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    await axe.check(limited, "sign-in refused")
    assert limited.url == f"{portal}/sign-in"
    for context in (staff, bill, colleague, stranger):
        await context.close()


async def test_a_session_is_refreshed_while_used(
    intake: InProcessService, sla: InProcessService, admin: As, browser: Browser
) -> None:
    """A page seen when the session nears its end swaps it for a new one (here: always)."""
    account = await new_account(admin)
    dora = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Dora", "email": f"{unique('dora')}@example.com"},
        ),
        201,
    )
    async with (
        serving(intake.runtime.app(), lifespan="off") as intake_url,
        serving(sla.runtime.app(), lifespan="off") as sla_url,
    ):
        settings = PortalSettings(
            intake_url=intake_url,
            sla_timer_url=sla_url,
            secure_cookies=False,
            refresh_below_hours=24,
        )
        async with serving(create_app(settings)) as url:
            context = await browser.new_context()
            page = await accept_in_browser(context, url, await invite(admin, contact_id=dora["id"]))
            await expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
            before = next(c for c in await context.cookies() if c["name"] == "hd_session")
            await page.reload()
            await expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
            after = next(c for c in await context.cookies() if c["name"] == "hd_session")
            old, new = before["value"].rpartition(".")[0], after["value"].rpartition(".")[0]
            assert old != new
            assert (await As(admin.http, old).get("/v1/me")).status_code == 401
            assert ok(await As(admin.http, new).get("/v1/me"))["contact_id"] == dora["id"]
            await context.close()


async def test_a_service_not_answering_is_a_clear_page(
    intake: InProcessService, admin: As, browser: Browser
) -> None:
    """The SLA timer down (nothing listens on its port): a plain message, no stack trace."""
    account = await new_account(admin)
    carol = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Carol", "email": f"{unique('carol')}@example.com"},
        ),
        201,
    )
    async with serving(intake.runtime.app(), lifespan="off") as intake_url:
        settings = PortalSettings(
            intake_url=intake_url,
            sla_timer_url=f"http://127.0.0.1:{free_port()}",
            secure_cookies=False,
        )
        async with serving(create_app(settings)) as url:
            context = await browser.new_context()
            page = await accept_in_browser(
                context, url, await invite(admin, contact_id=carol["id"])
            )
            await expect(
                page.get_by_role("heading", name="Temporarily unavailable")
            ).to_be_visible()
            await expect(page.get_by_text("The SLA timer is not answering")).to_be_visible()
            assert "Traceback" not in await page.content()
            await context.close()


async def reset_link(stack: Settings, email: str) -> str:
    """The path of the reset link the notifier mails to `email` (read off the stream)."""

    async def requested() -> str | None:
        for event in await events_on_topic(stack, "account.password_reset_requested"):
            if event.document()["email"] == email:
                return str(event.document()["path"])
        return None

    return await wait_for(requested, timeout=30)


async def test_a_forgotten_password_is_reset_through_the_mailed_link(
    portal: str,
    browser: Browser,
    admin: As,
    stack: Settings,
    shots: Path,
    axe: Accessibility,
) -> None:
    """Before, a contact who forgot their password had to ask for a new invitation. Now the
    sign-in page links to a form that says the same for any address; the link the notifier
    mails sets a new password, which ends the sessions open elsewhere."""
    account = await new_account(admin)
    email = f"{unique('fay')}@example.com"
    fay = ok(
        await admin.post(f"/v1/accounts/{account['id']}/contacts", {"name": "Fay", "email": email}),
        201,
    )
    laptop = await browser.new_context()
    signed_in = await accept_in_browser(laptop, portal, await invite(admin, contact_id=fay["id"]))
    await expect(signed_in.get_by_role("heading", name="My tickets")).to_be_visible()

    async def ask(context: BrowserContext, address: str) -> str:
        """The page's answer to a reset asked for `address` (the address itself left out)."""
        page = await context.new_page()
        await page.goto(f"{portal}/sign-in")
        await page.get_by_role("link", name="Forgot your password?").click()
        await page.get_by_label("E-mail address").fill(address)
        await page.get_by_role("button", name="Send the link").click()
        await expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
        text = await page.locator(".message").inner_text()
        await page.close()
        return text.replace(address, "ADDRESS")

    phone = await browser.new_context()
    forgot = await phone.new_page()
    await forgot.goto(f"{portal}/password-resets")
    await forgot.screenshot(path=shots / "forgot-password.png", full_page=True)
    await axe.check(forgot, "forgot password")
    assert await ask(phone, f"{unique('nobody')}@example.com") == await ask(phone, email)

    page = await phone.new_page()
    await page.goto(portal + await reset_link(stack, email))
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    await axe.check(page, "choose a new password")
    await page.get_by_label("Password", exact=True).fill("a fresh long password")
    await page.get_by_label("The same password again").fill("a fresh long password")
    await page.get_by_role("button", name="Set password and sign in").click()
    await expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
    # The session on the laptop ended with the old password.
    await signed_in.reload()
    await expect(signed_in.get_by_role("heading", name="Sign in")).to_be_visible()
    for opened in (laptop, phone):
        await opened.close()


async def test_sign_in_is_limited_per_client_address_through_the_portal(
    intake: InProcessService,
    sla: InProcessService,
    admin: As,
    browser: Browser,
    stack: Settings,
) -> None:
    """Before, a browser could try a password on any number of addresses. Now the portal names
    the browser's address to intake, which refuses it after CLIENT_FAILURE_LIMIT failures, even
    with another person's right password, and announces the lockout. The browser comes over
    IPv6 loopback while the portal calls intake over IPv4: the lockout names the browser's."""
    account = await new_account(admin)
    gus = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Gus", "email": f"{unique('gus')}@example.com"},
        ),
        201,
    )
    browser_address = "::1"

    async def forget_failures() -> None:
        async with intake.runtime.engine.begin() as conn:
            await conn.execute(
                sign_in_failures.delete().where(
                    sign_in_failures.c.client_hash == hash_token(browser_address)
                )
            )

    async with (
        serving(intake.runtime.app(), lifespan="off") as intake_url,
        serving(sla.runtime.app(), lifespan="off") as sla_url,
    ):
        settings = PortalSettings(
            intake_url=intake_url, sla_timer_url=sla_url, secure_cookies=False
        )
        async with serving(create_app(settings), host=browser_address) as url:
            context = await browser.new_context()
            # Gus has a password (set before the guessing starts).
            await (
                await accept_in_browser(context, url, await invite(admin, contact_id=gus["id"]))
            ).close()
            await context.clear_cookies()
            await forget_failures()
            try:
                for _ in range(CLIENT_FAILURE_LIMIT):
                    guess = await sign_in(context, url, f"{unique('guess')}@example.com", "guess!")
                    await expect(guess.get_by_role("alert")).to_contain_text("wrong")
                    await guess.close()
                refused = await sign_in(context, url, gus["email"], PASSWORD)
                await expect(refused.get_by_role("alert")).to_contain_text("network address")
                assert refused.url == f"{url}/sign-in"
            finally:
                await forget_failures()  # the other tests' browsers come from there too
            await context.close()

    async def locked_out() -> bool:
        return any(
            e.document()["address_hash"] == hash_token(browser_address)
            for e in await events_on_topic(stack, "account.sign_in_locked_out")
        )

    await wait_for(locked_out, timeout=30)


async def test_a_manager_sees_an_account_s_sla_report_and_availability(
    portal: str,
    browser: Browser,
    admin: As,
    sla: InProcessService,
    shots: Path,
    axe: Accessibility,
) -> None:
    """Before, the SLA timer's monthly report and availability had no page. Now a manager picks
    an account and a month under Reports and sees both; a month that is none is refused beside
    its field; a technician has no such page."""
    account = await new_account(admin, {"preset": "four_tier_24x7"})
    request = {
        "account_id": account["id"],
        "subject": "Server down",
        "priority": "P1",
        "affected_users": 1,
    }
    ok(await admin.post("/v1/tickets", request), 201)
    period = f"{datetime.now(UTC):%Y-%m}"
    on_sla = As(sla.http, admin.token)

    async def counted() -> bool:
        answer = await on_sla.get(f"/v1/accounts/{account['id']}/sla-report", period=period)
        return answer.status_code == 200 and answer.json()["tickets"] >= 1

    await wait_for(counted, timeout=30)
    people = {
        role: ok(
            await admin.post(
                "/v1/staff",
                {"name": role.title(), "email": f"{unique(role)}@msp.example", "role": role},
            ),
            201,
        )
        for role in ("manager", "technician")
    }
    manager = await browser.new_context()
    page = await accept_in_browser(
        manager, portal, await invite(admin, staff_id=people["manager"]["id"])
    )
    await page.get_by_role("link", name="Reports").click()
    await page.get_by_label("Account").select_option(account["id"])
    await page.get_by_label("Month (YYYY-MM)").fill(period)
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("heading", name=f"Service levels of {period}")).to_contain_text(
        "(1 ticket, times in"
    )
    await expect(page.locator("table.report")).to_contain_text("P1")
    await expect(page.get_by_role("heading", name=f"Availability of {period}")).to_be_visible()
    await page.screenshot(path=shots / "staff-report.png", full_page=True)
    await axe.check(page, "SLA report")

    await page.get_by_label("Month (YYYY-MM)").fill("2026-13")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#period-error")).to_be_visible()
    assert await page.get_by_label("Month (YYYY-MM)").get_attribute("aria-invalid") == "true"

    technician = await browser.new_context()
    console = await accept_in_browser(
        technician, portal, await invite(admin, staff_id=people["technician"]["id"])
    )
    await expect(console.get_by_role("link", name="Queue")).to_be_visible()
    await expect(console.get_by_role("link", name="Reports")).to_have_count(0)
    answer = await console.goto(f"{portal}/reports")
    assert answer is not None
    assert answer.status == 403
    for context in (manager, technician):
        await context.close()


async def test_a_contact_sees_the_files_their_e_mail_brought(
    portal: str, browser: Browser, admin: As
) -> None:
    """Before, the ticket page did not show attachments. Now the files an e-mail opened the
    ticket with (intake keeps their names, types and sizes) are listed on it."""
    account = await new_account(admin)
    email = f"{unique('hal')}@example.com"
    hal = ok(
        await admin.post(f"/v1/accounts/{account['id']}/contacts", {"name": "Hal", "email": email}),
        201,
    )
    mail = EmailMessage()
    mail["From"] = email
    mail["To"] = "support@provider.example"
    mail["Subject"] = "Screen flickers"
    mail["Message-ID"] = f"<{unique('m')}@example.com>"
    mail.set_content("See the photo.")
    mail.add_attachment(bytes(2000), maintype="image", subtype="png", filename="screen.png")
    opened = ok(
        await admin.http.post(
            "/v1/inbound/email",
            content=mail.as_bytes(policy=SMTP),
            headers={"Content-Type": "message/rfc822", "Authorization": f"Bearer {admin.token}"},
        ),
        201,
    )
    context = await browser.new_context()
    page = await accept_in_browser(context, portal, await invite(admin, contact_id=hal["id"]))
    await page.goto(f"{portal}/tickets/{opened['ticket_id']}")
    await expect(page.get_by_role("heading", name="Attachments")).to_be_visible()
    await expect(page.locator("ul.attachments")).to_contain_text("screen.png (image/png, 2.0 KB)")
    await context.close()


async def test_staff_quote_out_of_scope_work_and_the_contact_approves_it(
    portal: str, browser: Browser, admin: As, axe: Accessibility, shots: Path
) -> None:
    """Seed 000: "For out-of-scope items we will respond with a statement of work". A
    technician quotes an out-of-scope ticket in the console (an amount that is no amount is
    named beside its field), and the contact sees the quote on the ticket page and approves it
    there."""
    account = await new_account(admin)
    ok(await admin.put(f"/v1/accounts/{account['id']}/agreement", {"preset": "cloud_platform"}))
    quinn = ok(
        await admin.post(
            f"/v1/accounts/{account['id']}/contacts",
            {"name": "Quinn", "email": f"{unique('quinn')}@example.com"},
        ),
        201,
    )
    opening = {"account_id": account["id"], "contact_id": quinn["id"], "subject": "Migrate mail"}
    ticket = ok(await admin.post("/v1/tickets", opening), 201)
    triage = {"priority": "P3", "kind": "service_request", "scope": "out"}
    ok(await admin.post(f"/v1/tickets/{ticket['id']}/triage", triage))
    tom = ok(
        await admin.post(
            "/v1/staff",
            {"name": "Tom", "email": f"{unique('tom')}@msp.example", "role": "technician"},
        ),
        201,
    )

    staff = await browser.new_context()
    console = await accept_in_browser(staff, portal, await invite(admin, staff_id=tom["id"]))
    await console.goto(f"{portal}/tickets/{ticket['id']}")
    await console.locator("summary").first.click()
    await console.get_by_label("Quote: minutes of out-of-scope work").fill("240")
    await console.get_by_label("Quote: amount (e.g. 600.00)").fill("six hundred")
    await console.get_by_label("Quote: what the work is").fill("Move 40 mailboxes")
    await console.get_by_role("button", name="Send the quote").click()
    # Refused, the form stays open with the error beside the amount and the rest kept.
    await expect(console.locator("#amount-error")).to_be_visible()
    await expect(console.get_by_label("Quote: minutes of out-of-scope work")).to_have_value("240")
    await console.get_by_label("Quote: amount (e.g. 600.00)").fill("600.00")
    await console.get_by_role("button", name="Send the quote").click()
    await expect(console.locator("#amount-error")).to_have_count(0)

    customer = await browser.new_context()
    page = await accept_in_browser(customer, portal, await invite(admin, contact_id=quinn["id"]))
    await page.goto(f"{portal}/tickets/{ticket['id']}")
    quote = page.get_by_role("region", name="A quote for your approval")
    await expect(quote).to_contain_text("240 minutes of work for 600.00: Move 40 mailboxes")
    await axe.check(page, "contact ticket page with a quote")
    await page.screenshot(path=shots / "contact-quote.png", full_page=True)
    await quote.get_by_role("button", name="Approve the quote").click()
    await expect(page.get_by_role("region", name="A quote for your approval")).to_have_count(0)
    stored = ok(await admin.get(f"/v1/tickets/{ticket['id']}"))["quote"]
    assert (stored["status"], stored["minutes"], stored["amount_cents"]) == (
        "approved",
        240,
        60_000,
    )
    await staff.close()
    await customer.close()
