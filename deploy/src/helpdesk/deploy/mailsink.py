"""A local mail sink: an SMTP server that keeps every message as an .eml file.

`make up` runs it on 127.0.0.1:2526, the notifier's default relay
(HELPDESK_SMTP_RELAY_HOST/PORT), writing to .state/dev/mail/; open the files with any mail
client. `python -m helpdesk.deploy.mailsink --port 2526 --dir DIR` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from helpdesk.deploy._proc import (
    DeployError,
    live_pid,
    log,
    port_accepts,
    repo_root,
    spawn_daemon,
    tail,
    terminate,
    wait_until,
    write_pid,
)

DEV_MAIL_PORT = 2526


class EmlWriter:
    """aiosmtpd handler: every accepted message becomes `<time>-<n>.eml` in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        """Write the message (with the envelope as Return-Path / X-Envelope-To headers)."""
        content = envelope.original_content or b""
        headers = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(self._numbers):05d}.eml"
        # Written aside, then renamed: a reader never sees half a message.
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(headers + content)
        tmp.replace(self.directory / name)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    """Run the sink until SIGTERM or SIGINT (`directory` exists)."""
    loop = asyncio.get_running_loop()
    handler = EmlWriter(directory)

    def protocol() -> Any:
        return SMTP(handler, hostname="helpdesk-mail-sink")

    server = await loop.create_server(protocol, host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(f"mail sink on {host}:{port}, writing to {directory}")
    async with server:
        await stop.wait()


class LocalMailSink:
    """The sink as a daemon of the local stack: pid and log in `run_dir`, mail in `mail_dir`."""

    def __init__(self, run_dir: Path, mail_dir: Path, port: int, python: str = sys.executable):
        self.run_dir = run_dir
        self.mail_dir = mail_dir.resolve()
        self.port = port
        self.python = python
        self.pid_file = run_dir / "mailsink.pid"
        self.log_file = run_dir / "mailsink.log"

    def pid(self) -> int | None:
        """The sink's pid, if it runs."""
        return live_pid(self.pid_file, ["helpdesk.deploy.mailsink"])

    def start(self, timeout: float = 15.0) -> None:
        """Start it unless it runs, and wait until it accepts connections."""
        if self.pid() is not None:
            return
        if port_accepts(self.port):
            raise DeployError(f"port {self.port} for the mail sink is taken by another process")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", "helpdesk.deploy.mailsink"]
        argv += ["--port", str(self.port), "--dir", str(self.mail_dir)]
        pid = spawn_daemon(argv, log_file=self.log_file, cwd=repo_root())
        write_pid(self.pid_file, pid, str(self.port))
        if not wait_until(lambda: port_accepts(self.port) or self.pid() is None, timeout):
            self.stop()
            raise DeployError(f"mail sink not listening after {timeout:.0f} s")
        if self.pid() is None:
            raise DeployError(f"mail sink exited:\n{tail(self.log_file)}")

    def stop(self) -> None:
        """Stop it, if it runs."""
        pid = self.pid()
        if pid is not None:
            terminate(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m helpdesk.deploy.mailsink --port N --dir DIR`."""
    parser = argparse.ArgumentParser(prog="python -m helpdesk.deploy.mailsink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEV_MAIL_PORT)
    parser.add_argument("--dir", type=Path, default=repo_root() / ".state" / "dev" / "mail")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
