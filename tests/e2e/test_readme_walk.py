"""The README's curl walk, run as written against the four services as real processes.

The shell blocks under "A ticket's life in curl" are taken from README.md itself, so the walk a
newcomer types cannot drift from what the services answer. Only the addresses and the admin
token are the test's (its services listen on free ports), and `curl -s` becomes `curl -sf`, so
an HTTP error fails the script instead of scrolling past.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from helpdesk.shared.settings import Settings
from tests.support import ADMIN_TOKEN, ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
PORTS = {"intake": 8000, "sla_timer": 8001, "billing": 8002, "notifier": 8003}


def walk_blocks() -> list[str]:
    """The `sh` blocks of the README's curl walk, in order."""
    text = README.read_text()
    section = text.split("## A ticket's life in curl", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


#: The walk's webhook receiver stands for the reader's own; its host must resolve, which no
#: name does here, so the test's is a loopback address the notifier is allowed to call.
RECEIVER = "https://hooks.example.com/helpdesk"


def for_test(block: str, urls: dict[str, str]) -> str:
    """A README block pointed at the test's services, failing on the first HTTP error."""
    block = block.replace("$(cat .state/dev/admin_token)", ADMIN_TOKEN)
    block = block.replace(RECEIVER, "http://127.0.0.1:9/helpdesk")
    for name, port in PORTS.items():
        block = block.replace(f"http://127.0.0.1:{port}", urls[name])
    return block.replace("curl -s ", "curl -sf ")


async def run(script: str, env: dict[str, str]) -> str:
    """Run `script` in bash (-e, pipefail) and return its output; fail on a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        env=os.environ | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, f"exit {process.returncode}:\n{text}\n--- script:\n{script}"
    return text


async def test_the_readme_walk_works_as_written(
    settings: Settings, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELPDESK_NOTIFIER_ALLOW_TARGETS", "127.0.0.1")
    blocks = walk_blocks()[:2]  # the ticket's life, then the other services
    assert "/tickets" in blocks[0], "the README's curl walk changed shape: update this test"
    assert "$S/queue" in blocks[1], "the README's curl walk changed shape: update this test"
    assert RECEIVER in blocks[1], "the README's curl walk changed shape: update this test"
    services = {name: ServiceProcess(name, settings, log_dir) for name in PORTS}
    urls = {name: service.url for name, service in services.items()}
    for service in services.values():
        service.start()
    try:
        for service in services.values():
            await service.wait_ready()
        first, second = (for_test(block, urls) for block in blocks)
        # The last line asks the SLA timer, which learns of the ticket from the stream: the
        # person typing gives it the moment it needs, the test waits for it below.
        *lines, sla_line = first.strip().splitlines()
        assert "/sla" in sla_line
        shown = await run("\n".join(lines) + '\necho "A=$A" "K=$K" "TK=$TK"', {})
        variables = dict(re.findall(r"\b(A|K|TK)=(\S+)", shown.strip().splitlines()[-1]))
        assert shown.splitlines()[0] == "1"  # the agreement's version
        assert '"closed"' in shown  # the contact's confirmation closed the ticket
        assert '"ticket.opened"' in shown
        assert '"ticket.closed"' in shown

        async def sla_seen() -> bool:
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    f"{urls['sla_timer']}/v1/tickets/{variables['TK']}/sla",
                    headers={"authorization": f"Bearer {variables['K']}"},
                )
            return answer.status_code == 200

        await wait_for(sla_seen, timeout=30)
        await run(sla_line, variables | {"T": ADMIN_TOKEN})
        # Billing rates the 25 minutes logged in the walk, from the stream too.
        month = datetime.now(ZoneInfo("Europe/Amsterdam")).strftime("%Y-%m")  # the account's
        usage_url = f"{urls['billing']}/v1/accounts/{variables['A']}/usage?period={month}"

        async def usage_seen() -> bool:
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    usage_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
                )
            minutes: dict[str, int] = answer.json()["minutes"] if answer.status_code == 200 else {}
            # 25 minutes logged, rounded up to the plan's increment (30 with this preset).
            return minutes.get("in_scope", 0) + minutes.get("out_of_scope", 0) == 30

        await wait_for(usage_seen, timeout=30)
        prelude = 'T=$TOKEN; J="content-type: application/json"\n'
        rest = await run(prelude + second, variables | {"TOKEN": ADMIN_TOKEN})
        assert "whsec_" in rest  # the subscription's secret, shown once
    finally:
        for service in services.values():
            service.stop()
