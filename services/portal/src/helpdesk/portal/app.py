"""The portal's pages: server-rendered HTML over the four public APIs.

It keeps no state of its own but the session cookie (the person's intake session token, which
every API authenticates) and a CSRF seed cookie. What a person may see and do is decided by the
APIs, called with that person's token: the pages only show the answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from helpdesk.portal import views
from helpdesk.portal.client import ApiError, Apis, BackendDown
from helpdesk.portal.settings import PortalSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_COOKIE = "hd_session"
CSRF_COOKIE = "hd_csrf"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PRIORITIES = ["P1", "P2", "P3", "P4"]
#: Who sees an account's monthly SLA report and availability.
REPORT_ROLES = {"manager", "admin"}
#: The header in which intake takes the browser's address from the portal (intake trusts it
#: from HELPDESK_TRUSTED_PROXIES only), to limit failed sign-ins per client address.
CLIENT_ADDRESS_HEADER = "X-Helpdesk-Client-Address"


class SignInNeeded(Exception):  # noqa: N818 - a state, not an error
    """No session, or one the APIs no longer take."""


class CsrfRefused(Exception):  # noqa: N818 - a state, not an error
    """A form without this site's CSRF token."""


#: A plan reviewed every 3 months has a budget review (seed 004).
QUARTERLY = 3


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, as intake's `/v1/me` describes their session."""

    token: str
    role: str
    account_id: str | None
    contact_id: str | None
    staff_id: str | None
    visibility: str | None
    tz: ZoneInfo

    @property
    def is_staff(self) -> bool:
        """Staff see the queue and every account."""
        return self.role != "contact"


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    """The portal app; its lifespan opens and closes the API clients."""
    settings = settings or PortalSettings()
    # httpx logs every request's URL at INFO, and an invitation's URL holds its token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    secret = settings.secret.get_secret_value().encode() or secrets.token_bytes(32)
    apis = Apis(
        {
            "intake": settings.intake_url,
            "sla_timer": settings.sla_timer_url,
            "billing": settings.billing_url,
            "notifier": settings.notifier_url,
        },
        settings.timeout_seconds,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["when"] = views.when
    registry = CollectorRegistry()
    pages = Counter(
        "helpdesk_portal_pages", "Pages served, by status.", ["status"], registry=registry
    )
    down = Counter(
        "helpdesk_portal_backend_down",
        "Pages that met a service not answering, by service.",
        ["service"],
        registry=registry,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await apis.close()

    app = FastAPI(title="Helpdesk portal", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def csrf_token(request: Request) -> str:
        seed: str = request.state.csrf_seed
        return hmac.new(secret, seed.encode(), hashlib.sha256).hexdigest()

    def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("viewer", getattr(request.state, "viewer", None))
        context["csrf"] = csrf_token(request)
        return templates.TemplateResponse(request, template, context, status_code=status)

    def message(request: Request, status: int, title: str, text: str) -> HTMLResponse:
        return render(request, "message.html", status, title=title, text=text)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seed = request.cookies.get(CSRF_COOKIE)
        request.state.csrf_seed = seed or secrets.token_urlsafe(32)
        request.state.session_cookie = None
        response = await call_next(request)
        if seed is None:
            set_cookie(response, CSRF_COOKIE, request.state.csrf_seed)
        if request.state.session_cookie is not None:
            set_cookie(response, SESSION_COOKIE, request.state.session_cookie)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        pages.labels(str(response.status_code)).inc()
        return response

    def set_cookie(response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            path="/",
            max_age=None if value else 0,
        )

    async def form(request: Request) -> dict[str, str]:
        """The posted form, once its CSRF token is this site's."""
        data = await request.form()
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        sent = fields.pop("csrf", "")
        if not hmac.compare_digest(sent.encode(), csrf_token(request).encode()):
            raise CsrfRefused
        return fields

    def start_session(request: Request, session: dict[str, Any]) -> None:
        expires = datetime.fromisoformat(session["expires_at"].replace("Z", "+00:00"))
        request.state.session_cookie = f"{session['token']}.{int(expires.timestamp())}"

    async def viewer_of(request: Request) -> Viewer:
        """The signed-in person (their session refreshed when it nears its end)."""
        cookie = request.cookies.get(SESSION_COOKIE, "")
        token, _, expires = cookie.rpartition(".")
        if not token:
            raise SignInNeeded
        left = int(expires) - time.time() if expires.isdigit() else 0
        if left < settings.refresh_below_hours * 3600:
            try:
                renewed = await apis.json("intake", "POST", "/v1/sessions/current/refresh", token)
            except ApiError as exc:
                raise SignInNeeded from exc
            start_session(request, renewed)
            token = renewed["token"]
        try:
            me = await apis.json("intake", "GET", "/v1/me", token)
        except ApiError as exc:
            raise SignInNeeded from exc
        tz = views.zone(settings.staff_timezone)
        if me["role"] == "contact" and me.get("account_id"):
            account = await apis.json("intake", "GET", f"/v1/accounts/{me['account_id']}", token)
            tz = views.zone(account.get("timezone"))
        viewer = Viewer(
            token=token,
            role=me["role"],
            account_id=me.get("account_id"),
            contact_id=me.get("contact_id"),
            staff_id=me.get("staff_id"),
            visibility=me.get("visibility"),
            tz=tz,
        )
        request.state.viewer = viewer
        return viewer

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        response = RedirectResponse("/sign-in", status_code=303)
        set_cookie(response, SESSION_COOKIE, "")
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return message(
            request,
            403,
            "Form refused",
            "This form did not come from this site, or it has expired. Go back, reload the "
            "page and send it again.",
        )

    @app.exception_handler(BackendDown)
    async def _down(request: Request, exc: BackendDown) -> Response:
        down.labels(exc.service).inc()
        return message(
            request,
            503,
            "Temporarily unavailable",
            f"The {exc.title} is not answering right now. Nothing was lost; please try again "
            "in a minute.",
        )

    @app.exception_handler(ApiError)
    async def _refused(request: Request, exc: ApiError) -> Response:
        if exc.status == 404:
            return message(
                request, 404, "Not found", "There is no such page, or it is not yours to see."
            )
        if exc.status == 403:
            return message(request, 403, "Not allowed", exc.detail)
        return message(request, exc.status, "Refused", exc.detail)

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception) -> Response:
        log.exception("portal page failed: %s %s", request.method, request.url.path)
        return message(
            request, 500, "Something went wrong", "The page could not be shown; try again."
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready once intake answers (sign-in and every page need it)."""
        try:
            await apis.call("intake", "GET", "/healthz", None)
        except (BackendDown, ApiError):
            return Response('{"intake": false}', 503, media_type="application/json")
        return Response('{"intake": true}', media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        viewer = await viewer_of(request)
        return RedirectResponse("/queue" if viewer.is_staff else "/tickets", status_code=303)

    # Sign-in and invitations -------------------------------------------------------------

    @app.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_page(request: Request) -> Response:
        return render(request, "sign_in.html", email="", error=None)

    @app.post("/sign-in", response_class=HTMLResponse)
    async def sign_in(request: Request) -> Response:
        fields = await form(request)
        email = fields.get("email", "").strip()
        client = {CLIENT_ADDRESS_HEADER: request.client.host} if request.client else None
        try:
            session = await apis.json(
                "intake",
                "POST",
                "/v1/sessions",
                None,
                json={"email": email, "password": fields.get("password", "")},
                headers=client,
            )
        except ApiError as exc:
            text = exc.detail if exc.status == 429 else "The e-mail address or password is wrong."
            return render(request, "sign_in.html", exc.status, email=email, error=text)
        start_session(request, session)
        return RedirectResponse("/", status_code=303)

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        await form(request)
        viewer = await viewer_of(request)
        with contextlib.suppress(ApiError):
            await apis.call("intake", "DELETE", "/v1/sessions/current", viewer.token)
        request.state.session_cookie = ""
        return RedirectResponse("/sign-in", status_code=303)

    @app.get("/password-resets", response_class=HTMLResponse)
    async def forgot_page(request: Request) -> Response:
        return render(request, "forgot.html")

    @app.post("/password-resets", response_class=HTMLResponse)
    async def forgot(request: Request) -> Response:
        """Ask intake to mail a reset link; the page says the same whatever the address."""
        fields = await form(request)
        email = fields.get("email", "").strip()
        await apis.call("intake", "POST", "/v1/password-resets", None, json={"email": email})
        return message(
            request,
            200,
            "Check your mail",
            f"If {email} is the address you sign in with, a link to choose a new password is on "
            "its way to it. The link works once, for an hour.",
        )

    # A reset link is an invitation of someone who had a password: the same form and answer.
    @app.get("/invitations/{token}", response_class=HTMLResponse)
    @app.get("/password-resets/{token}", response_class=HTMLResponse)
    async def invitation_page(request: Request, token: str) -> Response:
        return choose_password(request, 200, token, {})

    def choose_password(
        request: Request, status: int, token: str, errors: dict[str, str]
    ) -> HTMLResponse:
        reset = request.url.path.startswith("/password-resets/")
        return render(
            request,
            "invitation.html",
            status,
            token=token,
            errors=errors,
            action=request.url.path,
            heading="Choose a new password" if reset else "Choose your password",
        )

    @app.post("/invitations/{token}", response_class=HTMLResponse)
    @app.post("/password-resets/{token}", response_class=HTMLResponse)
    async def accept_invitation(request: Request, token: str) -> Response:
        fields = await form(request)
        password = fields.get("password", "")
        if password != fields.get("repeat", ""):
            errors = {"repeat": "does not match the password"}
            return choose_password(request, 422, token, errors)
        try:
            accepted = await apis.json(
                "intake",
                "POST",
                f"/v1/invitations/{token}/accept",
                None,
                json={"password": password},
            )
        except ApiError as exc:
            if exc.status == 422:
                return choose_password(request, 422, token, exc.field_errors())
            raise
        session = await apis.json(
            "intake",
            "POST",
            "/v1/sessions",
            None,
            json={"email": accepted["email"], "password": password},
        )
        start_session(request, session)
        return RedirectResponse("/", status_code=303)

    # A contact's pages ----------------------------------------------------------------------

    @app.get("/tickets", response_class=HTMLResponse)
    async def tickets(request: Request) -> Response:
        viewer = await viewer_of(request)
        listed = await apis.json(
            "intake", "GET", "/v1/tickets", viewer.token, params={"limit": 100}
        )
        queue = await apis.json(
            "sla_timer", "GET", "/v1/queue", viewer.token, params={"limit": 500}
        )
        due = {item["ticket_id"]: item.get("next_due_at") for item in queue["items"]}
        rows = [{**t, "next_due_at": due.get(t["id"])} for t in listed["items"]]
        return render(request, "tickets.html", tickets=rows)

    async def required_fields(viewer: Viewer) -> list[str]:
        try:
            agreement = await apis.json(
                "intake", "GET", f"/v1/accounts/{viewer.account_id}/agreement", viewer.token
            )
        except ApiError:
            return []
        return list((agreement.get("required_fields") or {}).get("on_open") or [])

    def support_form(
        request: Request,
        required: list[str],
        values: dict[str, str],
        errors: dict[str, str],
        status: int = 200,
        summary: str | None = None,
    ) -> HTMLResponse:
        extra = [{"name": n, "label": views.field_label(n)} for n in required]
        return render(
            request,
            "new_ticket.html",
            status,
            extra=extra,
            values=values,
            errors=errors,
            priorities=PRIORITIES,
            summary=summary,
        )

    @app.get("/tickets/new", response_class=HTMLResponse)
    async def new_ticket(request: Request) -> Response:
        viewer = await viewer_of(request)
        if viewer.is_staff:
            return message(request, 403, "Not allowed", "Customers report tickets here.")
        return support_form(request, await required_fields(viewer), {}, {})

    @app.post("/tickets/new", response_class=HTMLResponse)
    async def open_ticket(request: Request) -> Response:
        fields = await form(request)
        viewer = await viewer_of(request)
        required = await required_fields(viewer)
        body = views.ticket_body(fields, viewer.account_id or "", required)
        try:
            opened = await apis.json("intake", "POST", "/v1/tickets", viewer.token, json=body)
        except ApiError as exc:
            if exc.status != 422:
                raise
            return support_form(request, required, fields, exc.field_errors(), 422, exc.detail)
        return RedirectResponse(f"/tickets/{opened['id']}", status_code=303)

    async def ticket_parts(viewer: Viewer, ticket_id: str) -> dict[str, Any]:
        answer = await apis.call("intake", "GET", f"/v1/tickets/{ticket_id}", viewer.token)
        ticket = answer.json()
        events = await apis.json("intake", "GET", f"/v1/tickets/{ticket_id}/events", viewer.token)
        try:
            sla = await apis.json("sla_timer", "GET", f"/v1/tickets/{ticket_id}/sla", viewer.token)
        except ApiError:
            sla = None  # the SLA timer has not seen the ticket yet
        return {
            "ticket": ticket,
            "attachments": views.attachments(ticket),
            "quote": views.pending_quote(ticket),
            "etag": answer.headers.get("etag", ""),
            "clocks": views.clock_sentences(sla, viewer.tz),
            "messages": views.conversation(events, viewer.tz),
        }

    async def ticket_page(
        request: Request,
        ticket_id: str,
        status: int = 200,
        errors: dict[str, str] | None = None,
        notice: str | None = None,
        values: dict[str, str] | None = None,
    ) -> HTMLResponse:
        viewer = await viewer_of(request)
        parts = await ticket_parts(viewer, ticket_id)
        return render(
            request,
            "ticket.html",
            status,
            errors=errors or {},
            notice=notice,
            values=values or {},
            **parts,
        )

    @app.get("/tickets/{ticket_id}", response_class=HTMLResponse)
    async def ticket(request: Request, ticket_id: str) -> Response:
        return await ticket_page(request, ticket_id)

    @app.get("/tickets/{ticket_id}/live", response_class=HTMLResponse)
    async def ticket_live(request: Request, ticket_id: str) -> Response:
        """The changing part of the ticket page, which the page polls."""
        viewer = await viewer_of(request)
        return render(request, "live.html", **await ticket_parts(viewer, ticket_id))

    async def command(
        request: Request,
        ticket_id: str,
        segment: str,
        body: Callable[[dict[str, str]], Any],
        errors_as: dict[str, str] | None = None,
    ) -> Response:
        """Send a ticket command with the page's `If-Match`; show a refusal on the page.

        `errors_as` names the form field of an API field where the page has several (two
        text boxes whose text is the API's `body`).
        """
        fields = await form(request)
        viewer = await viewer_of(request)
        headers = {"If-Match": fields["etag"]} if fields.get("etag") else {}
        try:
            await apis.call(
                "intake",
                "POST",
                f"/v1/tickets/{ticket_id}/{segment}",
                viewer.token,
                json=body(fields),
                headers=headers,
            )
        except ApiError as exc:
            if exc.status == 412:
                notice = (
                    "Someone changed this ticket while you were writing; this is it as it is "
                    "now. Your text is kept below: check it and send it again."
                )
                return await ticket_page(request, ticket_id, 409, notice=notice, values=fields)
            if exc.status in (409, 422):
                errors = {(errors_as or {}).get(k, k): v for k, v in exc.field_errors().items()}
                return await ticket_page(
                    request, ticket_id, exc.status, errors, exc.detail, values=fields
                )
            raise
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)

    def text_command(segment: str, field: str | None) -> Callable[..., Awaitable[Response]]:
        """A ticket command whose body is one text field of the form (or none)."""

        def body(form: dict[str, str]) -> dict[str, str]:
            return {} if field is None else {field: form.get(field, "")}

        async def run(request: Request, ticket_id: str) -> Response:
            return await command(request, ticket_id, segment, body)

        return run

    # Form route -> (the API's command, its one text field). The reason a quote is declined
    # is named on the form apart from a reopen's.
    for route, segment, field in (
        ("reply", "customer-reply", "body"),
        ("confirm", "confirm", None),
        ("reopen", "reopen", "reason"),
        ("approve-quote", "approve-quote", None),
    ):
        app.add_api_route(
            f"/tickets/{{ticket_id}}/{route}", text_command(segment, field), methods=["POST"]
        )

    @app.post("/tickets/{ticket_id}/decline-quote")
    async def decline_quote(request: Request, ticket_id: str) -> Response:
        return await command(
            request, ticket_id, "decline-quote", lambda f: {"reason": f.get("decline_reason", "")}
        )

    @app.post("/tickets/{ticket_id}/quote")
    async def quote(request: Request, ticket_id: str) -> Response:
        def terms(f: dict[str, str]) -> dict[str, Any]:
            minutes = f.get("quote_minutes", "")
            return {
                "minutes": int(minutes) if minutes.isdigit() else minutes,
                "amount_cents": views.cents(f.get("amount", "")),
                "note": f.get("quote_note", ""),
            }

        fields = {"minutes": "quote_minutes", "amount_cents": "amount", "note": "quote_note"}
        return await command(request, ticket_id, "quote", terms, errors_as=fields)

    @app.post("/tickets/{ticket_id}/triage")
    async def triage(request: Request, ticket_id: str) -> Response:
        return await command(
            request, ticket_id, "triage", lambda f: {"priority": f.get("priority", "")}
        )

    @app.post("/tickets/{ticket_id}/assign")
    async def assign(request: Request, ticket_id: str) -> Response:
        return await command(
            request, ticket_id, "assign", lambda f: {"technician": f.get("technician", "")}
        )

    @app.post("/tickets/{ticket_id}/request-info")
    async def request_info(request: Request, ticket_id: str) -> Response:
        return await command(
            request,
            ticket_id,
            "request-info",
            lambda f: {"body": f.get("info", "")},
            errors_as={"body": "info"},
        )

    @app.post("/tickets/{ticket_id}/escalate")
    async def escalate(request: Request, ticket_id: str) -> Response:
        return await command(request, ticket_id, "escalate", lambda f: {"tier": f.get("tier")})

    @app.post("/tickets/{ticket_id}/time")
    async def log_time(request: Request, ticket_id: str) -> Response:
        def entry(f: dict[str, str]) -> dict[str, Any]:
            minutes = f.get("minutes", "")
            return {
                "minutes": int(minutes) if minutes.isdigit() else minutes,
                "work_type": f.get("work_type", "remote"),
                "worked_at": datetime.now(UTC).isoformat(),
            }

        return await command(request, ticket_id, "time-entries", entry)

    @app.post("/tickets/{ticket_id}/comment")
    async def comment(request: Request, ticket_id: str) -> Response:
        return await command(
            request,
            ticket_id,
            "comments",
            lambda f: {"body": f.get("body", ""), "public": f.get("visibility") == "public"},
        )

    @app.post("/tickets/{ticket_id}/resolve")
    async def resolve(request: Request, ticket_id: str) -> Response:
        return await command(
            request,
            ticket_id,
            "resolve",
            lambda f: {"resolution": f.get("resolution", "fix"), "summary": f.get("summary", "")},
        )

    @app.get("/billing", response_class=HTMLResponse)
    async def billing(request: Request) -> Response:
        """The account's invoices, this month's usage (seed 000) and this quarter's use of the
        budget (seed 004), for contacts with the billing role (billing decides)."""
        viewer = await viewer_of(request)
        if viewer.is_staff:
            return RedirectResponse("/queue", status_code=303)
        account = f"/v1/accounts/{viewer.account_id}"
        # This month and quarter on the account's own calendar, as billing counts them.
        today = datetime.now(viewer.tz)
        period = f"{today.year:04d}-{today.month:02d}"
        quarter = f"{today.year:04d}-Q{(today.month - 1) // 3 + 1}"
        try:
            invoices = await apis.json("billing", "GET", f"{account}/invoices", viewer.token)
            usage = await apis.json(
                "billing", "GET", f"{account}/usage", viewer.token, params={"period": period}
            )
            agreement = await apis.json("intake", "GET", f"{account}/agreement", viewer.token)
            # A budget reviewed each quarter (seed 004): its use so far this quarter.
            review = (
                await apis.json(
                    "billing",
                    "GET",
                    f"{account}/budget-review",
                    viewer.token,
                    params={"quarter": quarter},
                )
                if agreement["plan"].get("review_every_months") == QUARTERLY
                else None
            )
        except ApiError as exc:
            if exc.status != 403:
                raise
            return message(
                request,
                403,
                "Billing",
                "Invoices and usage are shown to your account's billing contacts.",
            )
        return render(
            request,
            "billing.html",
            invoices=invoices["items"],
            usage=usage,
            period=period,
            review=review,
            money=views.money,
        )

    # Staff pages ----------------------------------------------------------------------------

    @app.get("/people", response_class=HTMLResponse)
    async def people(request: Request) -> Response:
        """Accounts with their contacts, and the staff: add contacts, hand out invitations."""
        viewer = await viewer_of(request)
        if not viewer.is_staff:
            return RedirectResponse("/tickets", status_code=303)
        accounts = await apis.json("intake", "GET", "/v1/accounts", viewer.token)
        for account in accounts:
            account["contacts"] = await apis.json(
                "intake", "GET", f"/v1/accounts/{account['id']}/contacts", viewer.token
            )
        staff = await apis.json("intake", "GET", "/v1/staff", viewer.token)
        return render(request, "people.html", accounts=accounts, staff=staff, invited=None)

    @app.post("/people/contacts", response_class=HTMLResponse)
    async def add_contact(request: Request) -> Response:
        fields = await form(request)
        viewer = await viewer_of(request)
        body = {
            "name": fields.get("name", ""),
            "email": fields.get("email", ""),
            "visibility": fields.get("visibility", "own"),
            "roles": ["billing"] if fields.get("billing") else [],
        }
        await apis.call(
            "intake",
            "POST",
            f"/v1/accounts/{fields.get('account_id', '')}/contacts",
            viewer.token,
            json=body,
        )
        return RedirectResponse("/people", status_code=303)

    @app.post("/people/invitations", response_class=HTMLResponse)
    async def invite(request: Request) -> Response:
        """An invitation link to hand over (shown once: only its hash is kept)."""
        fields = await form(request)
        viewer = await viewer_of(request)
        person = {k: fields[k] for k in ("contact_id", "staff_id") if fields.get(k)}
        invited = await apis.json("intake", "POST", "/v1/invitations", viewer.token, json=person)
        link = str(request.base_url).rstrip("/") + invited["path"]
        return render(request, "invited.html", invited=invited, link=link)

    @app.get("/queue", response_class=HTMLResponse)
    async def queue(
        request: Request, priority: str | None = None, technician: str | None = None
    ) -> Response:
        viewer = await viewer_of(request)
        if not viewer.is_staff:
            return RedirectResponse("/tickets", status_code=303)
        filters = {"limit": 200, "priority": priority or None, "technician": technician or None}
        items = await apis.json(
            "sla_timer",
            "GET",
            "/v1/queue",
            viewer.token,
            params={k: v for k, v in filters.items() if v},
        )
        listed = await apis.json(
            "intake", "GET", "/v1/tickets", viewer.token, params={"limit": 200}
        )
        subjects = {t["id"]: t["subject"] for t in listed["items"]}
        rows = [{**item, "subject": subjects.get(item["ticket_id"], "")} for item in items["items"]]
        return render(
            request,
            "queue.html",
            rows=rows,
            priorities=PRIORITIES,
            priority=priority or "",
            technician=technician or "",
        )

    @app.get("/reports", response_class=HTMLResponse)
    async def reports(
        request: Request, account: str | None = None, period: str | None = None
    ) -> Response:
        """An account's SLA report and availability for a month, for managers (the SLA timer
        computes both; a month it refuses is shown next to the field)."""
        viewer = await viewer_of(request)
        if viewer.role not in REPORT_ROLES:
            return message(
                request, 403, "Not allowed", "SLA reports are shown to the provider's managers."
            )
        accounts = await apis.json("intake", "GET", "/v1/accounts", viewer.token)
        chosen = account or (accounts[0]["id"] if accounts else None)
        period = period or f"{datetime.now(UTC):%Y-%m}"
        context: dict[str, Any] = {
            "accounts": accounts,
            "chosen": chosen,
            "period": period,
            "report": None,
            "availability": None,
            "errors": {},
            "percent": views.percent,
        }
        if chosen is None:
            return render(request, "reports.html", **context)
        base = f"/v1/accounts/{chosen}"
        try:
            context["report"] = await apis.json(
                "sla_timer", "GET", f"{base}/sla-report", viewer.token, params={"period": period}
            )
            context["availability"] = await apis.json(
                "sla_timer", "GET", f"{base}/availability", viewer.token, params={"period": period}
            )
        except ApiError as exc:
            if exc.status != 422:
                raise
            context["errors"] = exc.field_errors()
            return render(request, "reports.html", 422, **context)
        return render(request, "reports.html", **context)

    @app.get("/robots.txt", include_in_schema=False)
    async def robots() -> PlainTextResponse:
        return PlainTextResponse("User-agent: *\nDisallow: /\n")

    app.state.settings = settings
    app.state.started_at = datetime.now(UTC)
    return app
