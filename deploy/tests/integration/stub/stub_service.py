"""A stand-in for a Helpdesk service CLI, to test the stack runner without the real services.

`python -m stub_service migrate` records its environment; `python -m stub_service serve`
answers /readyz (200 once STUB_READY_AFTER_S seconds have passed) and /metrics on
HELPDESK_HTTP_PORT, like the real services.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REQUIRED = (
    "HELPDESK_KAFKA_BOOTSTRAP",
    "DATABASE_URL",
    "HELPDESK_TOPIC",
    "HELPDESK_PARTITIONS",
    "HELPDESK_ADMIN_TOKEN",
    "HELPDESK_HTTP_PORT",
)


def _record(kind: str) -> None:
    out = Path(os.environ["STUB_RECORD_DIR"]) / f"{os.environ['HELPDESK_HTTP_PORT']}-{kind}.json"
    env = {key: value for key, value in os.environ.items() if key.startswith("HELPDESK_")}
    env["DATABASE_URL"] = os.environ.get("DATABASE_URL", "")
    out.write_text(json.dumps(env))


def serve() -> None:
    """Serve /readyz and /metrics until SIGTERM."""
    started = time.monotonic()
    ready_after = float(os.environ.get("STUB_READY_AFTER_S", "0"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/readyz":
                ok = time.monotonic() - started >= ready_after
                self.send_response(200 if ok else 503)
            elif self.path == "/metrics":
                self.send_response(200)
            else:
                self.send_response(404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    _record("serve")
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["HELPDESK_HTTP_PORT"])), Handler)
    server.serve_forever()


def main() -> int:
    """Dispatch `migrate` or `serve`."""
    missing = [key for key in REQUIRED if not os.environ.get(key)]
    if missing:
        print(f"missing settings: {missing}", file=sys.stderr)
        return 2
    if sys.argv[1:] == ["migrate"]:
        _record("migrate")
        return int(os.environ.get("STUB_MIGRATE_EXIT", "0"))
    if sys.argv[1:] == ["serve"]:
        serve()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
