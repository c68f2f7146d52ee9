"""`python -m helpdesk.portal serve`: the portal on HELPDESK_PORTAL_HTTP_PORT (8004)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from helpdesk.portal.app import create_app
from helpdesk.portal.settings import PortalSettings
from helpdesk.shared.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the portal."""
    parser = argparse.ArgumentParser(prog="python -m helpdesk.portal")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args(argv)
    settings = PortalSettings()
    configure_logging("portal", "INFO")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=False,
        log_config=None,
    )
