"""`python -m helpdesk.portal serve|migrate`: the portal on HELPDESK_HTTP_PORT (8004).

`migrate` has nothing to do (the portal keeps no tables); it exists so that the portal is run
like every service.
"""

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
    parser.add_argument("command", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    if args.command == "migrate":
        print("portal: nothing to migrate (no tables of its own)")
        return
    settings = PortalSettings()
    configure_logging("portal", "INFO")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=False,
        log_config=None,
    )
