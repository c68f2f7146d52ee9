"""E-mail: render a `MailIntent` from Jinja2 templates and send it over SMTP (aiosmtplib).

Each template exists twice under `helpdesk/notifier/templates/`: `{name}.txt` (plain text, no
escaping) and `{name}.html` (autoescaped). The message is `multipart/alternative` with both,
and carries the intent's threading headers (Message-ID, In-Reply-To, References) and its
subject, whose `[HD-000123]` lets intake thread the customer's reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import jinja2

from helpdesk.notifier.domain.messages import MailIntent

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
#: Where `make up` serves the portal, whose pages mails link to.
DEFAULT_PORTAL_URL = "http://127.0.0.1:8004"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit mail; `sender` is the From address (`Name <addr>` allowed)."""

    host: str
    port: int
    sender: str
    reply_to: str | None = None  # e.g. intake's inbound address, so replies become comments
    username: str | None = None
    password: str | None = None
    use_tls: bool = False  # implicit TLS (port 465)
    start_tls: bool | None = None  # None: upgrade if the server offers STARTTLS
    timeout: float = 30.0


@dataclass(frozen=True)
class Recipient:
    """A resolved recipient of an intent."""

    email: str
    name: str = ""

    @property
    def header(self) -> str:
        """`"Name" <email>`, quoted as needed."""
        return str(Address(display_name=self.name, addr_spec=self.email))


@dataclass(frozen=True)
class RenderedMail:
    """The two alternative bodies of one mail."""

    text: str
    html: str


def money(cents: int, currency: str = "") -> str:
    """Integer cents as `USD 560.00` (the template filter `money`)."""
    sign = "-" if cents < 0 else ""
    amount = f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    return f"{currency} {amount}".strip()


def _environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = money
    return env


class MailRenderer:
    """Renders intents with the packaged templates (or a directory of one's own)."""

    def __init__(
        self, templates: Path = TEMPLATES, *, globals_: Mapping[str, Any] | None = None
    ) -> None:
        self._env = _environment(templates)
        defaults = {"product": "Helpdesk", "portal_url": DEFAULT_PORTAL_URL}
        self._env.globals.update({**defaults, **(globals_ or {})})

    def render(self, intent: MailIntent, recipient: Recipient) -> RenderedMail:
        """Both bodies of `intent` for `recipient`."""
        context = {
            **intent.context,
            "subject": intent.subject,
            "recipient": {"name": recipient.name, "email": recipient.email},
        }
        text = self._env.get_template(f"{intent.template}.txt").render(context)
        html = self._env.get_template(f"{intent.template}.html").render(context)
        return RenderedMail(text=text, html=html)

    def build(
        self,
        intent: MailIntent,
        recipient: Recipient,
        *,
        sender: str,
        reply_to: str | None = None,
        date: datetime | None = None,
    ) -> EmailMessage:
        """The complete message to `recipient` (`date`, aware, for the Date header)."""
        rendered = self.render(intent, recipient)
        message = EmailMessage()
        message["From"] = sender
        message["To"] = recipient.header
        if reply_to is not None:
            message["Reply-To"] = reply_to
        message["Subject"] = intent.subject
        if date is not None:
            message["Date"] = format_datetime(date)
        for name, value in intent.headers.items():
            message[name] = value
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message


async def send_message(message: EmailMessage, settings: SmtpSettings) -> None:
    """Submit one message; raises aiosmtplib's `SMTPException` subclasses on failure."""
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        username=settings.username,
        password=settings.password,
        use_tls=settings.use_tls,
        start_tls=settings.start_tls,
        timeout=settings.timeout,
    )


class Mailer:
    """Renders and sends intents: one message per recipient, all with the intent's Message-ID."""

    def __init__(self, settings: SmtpSettings, renderer: MailRenderer | None = None) -> None:
        self._settings = settings
        self._renderer = renderer or MailRenderer()

    def build(
        self, intent: MailIntent, recipient: Recipient, *, date: datetime | None = None
    ) -> EmailMessage:
        """The message `send` would submit to `recipient`."""
        return self._renderer.build(
            intent,
            recipient,
            sender=self._settings.sender,
            reply_to=self._settings.reply_to,
            date=date,
        )

    async def send(
        self, intent: MailIntent, recipients: Sequence[Recipient], *, date: datetime | None = None
    ) -> list[EmailMessage]:
        """Send `intent` to each recipient in turn; returns the messages sent."""
        sent = []
        for recipient in recipients:
            message = self.build(intent, recipient, date=date)
            await send_message(message, self._settings)
            sent.append(message)
        return sent
