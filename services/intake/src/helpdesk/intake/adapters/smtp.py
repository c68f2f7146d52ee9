"""Intake's SMTP listener: support@ mail delivered straight to the service (seed 003, 7.2).

aiosmtpd's `SMTP` protocol is served by `loop.create_server` on the service's own event loop
(no `Controller`, which would start a second loop in a thread): the handler then shares the
runtime's engine and outbox relay like any HTTP request does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session

from helpdesk.intake.domain.email import UnreadableEmailError
from helpdesk.intake.inbound import receive_email
from helpdesk.shared.errors import ApplicationError
from helpdesk.shared.service import ServiceRuntime
from helpdesk.shared.web import Problem

log = logging.getLogger(__name__)


class InboundHandler:
    """aiosmtpd handler: each message that reaches DATA goes to `receive_email`."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    async def handle_DATA(  # noqa: N802 - aiosmtpd finds hooks by this name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """250 once recorded (a refusal too); 550 / 554 for a message that can never be taken
        (unreadable, or refused for what it holds); 451 on a fault, so the sender retries."""
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = (
                content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
            )
        try:
            answer = await receive_email(self.runtime, raw or b"")
        except UnreadableEmailError as exc:
            # Permanent: retrying the same bytes cannot help; the sending MTA bounces it.
            return f"550 5.6.0 Unreadable message: {_one_line(str(exc))}"
        except (Problem, ApplicationError) as problem:
            if problem.status >= 500:
                log.exception("inbound e-mail from %s failed", envelope.mail_from)
                return "451 4.3.0 Temporary failure; try again later"
            # Refused for what the message is (a 4xx over HTTP): the same bytes will be refused
            # again, so a retry would go on forever.
            return f"554 5.6.0 Message refused: {_one_line(str(problem))}"
        except sa.exc.DataError as exc:
            # Text the database cannot store: as permanent as an unreadable message.
            return f"554 5.6.0 Message cannot be stored: {_one_line(str(exc.orig))}"
        except Exception:
            # Temporary: nothing was recorded, so the sending MTA must retry later.
            log.exception("inbound e-mail from %s failed", envelope.mail_from)
            return "451 4.3.0 Temporary failure; try again later"
        log.info(
            "inbound e-mail from %s: %s %s",
            envelope.mail_from,
            answer["outcome"],
            answer.get("ticket_number") or answer.get("reason", ""),
        )
        # A refusal is accepted too: it is recorded for staff to see, and a bounce would tell
        # a stranger which addresses are contacts.
        return "250 OK"


class SmtpListener:
    """Serves SMTP on `host:port` until cancelled."""

    def __init__(
        self,
        runtime: ServiceRuntime,
        host: str,
        port: int,
        *,
        hostname: str = "helpdesk-intake",
        data_size_limit: int = 25 * 1024 * 1024,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        # An explicit hostname: aiosmtpd otherwise asks socket.getfqdn(), a blocking DNS call.
        self.hostname = hostname
        self.data_size_limit = data_size_limit
        self.handler = InboundHandler(runtime)
        self.started = asyncio.Event()

    def _protocol(self) -> SMTP:
        return SMTP(
            self.handler,
            hostname=self.hostname,
            data_size_limit=self.data_size_limit,
            # Keep the bytes as sent: the e-mail parser decodes each part by its own charset.
            decode_data=False,
            enable_SMTPUTF8=True,
            loop=asyncio.get_running_loop(),
        )

    async def run(self) -> None:
        """Listen, and close the server (and its connections) when the task is cancelled."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, self.host, self.port)
        log.info("SMTP listening on %s:%d", self.host, self.port)
        self.started.set()
        try:
            await loop.create_future()  # forever, until cancelled
        finally:
            self.started.clear()
            server.close()
            # Newer Pythons wait here for open sessions to end; a stuck client must not keep
            # the service from stopping.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
