"""The stack runner with stand-in services: env, migrations, readiness, pid files, stop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from helpdesk.deploy._proc import DeployError, free_port
from helpdesk.deploy.stack import Infra, ServiceSpec, Stack, up
from helpdesk.deploy.testing import (
    TEST_CONTROLLER_PORT,
    TEST_KAFKA_PORT,
    provisioned_kind,
    state_dir_for_tests,
)

pytestmark = pytest.mark.integration

STUB_DIR = Path(__file__).parent / "stub"


def _specs(count: int) -> tuple[ServiceSpec, ...]:
    return tuple(
        ServiceSpec(f"stub{i}", "stub_service", free_port(), {"STUB_READY_AFTER_S": "1"})
        for i in range(count)
    )


def _stack(state_dir: Path, specs: tuple[ServiceSpec, ...], records: Path, **env: str) -> Stack:
    return Stack(
        state_dir,
        kafka_port=TEST_KAFKA_PORT,
        controller_port=TEST_CONTROLLER_PORT,
        services=specs,
        python=sys.executable,
        extra_env={"PYTHONPATH": str(STUB_DIR), "STUB_RECORD_DIR": str(records), **env},
    )


def test_services_start_get_their_settings_and_stop(infra: tuple[str, str], tmp_path: Path) -> None:
    bootstrap, database_url = infra
    records = tmp_path / "records"
    records.mkdir()
    specs = _specs(2)
    stack = _stack(tmp_path / "state", specs, records)
    settings = Infra(bootstrap, database_url, "helpdesk.events", 12)
    try:
        stack.migrate(settings, "tok")
        assert stack.start_services(settings, "tok") == list(specs)
        assert stack.start_services(settings, "tok") == []  # already running: reattached
        stack.wait_services_ready(timeout=30)
        for spec in specs:
            assert httpx.get(f"{spec.url}/metrics").status_code == 200
            migrated = json.loads((records / f"{spec.port}-migrate.json").read_text())
            served = json.loads((records / f"{spec.port}-serve.json").read_text())
            for env in (migrated, served):
                assert env["HELPDESK_KAFKA_BOOTSTRAP"] == bootstrap
                assert env["DATABASE_URL"] == database_url
                assert env["HELPDESK_ADMIN_TOKEN"] == "tok"
                assert env["HELPDESK_HTTP_PORT"] == str(spec.port)
        lines, _ = stack.status_lines()
        for spec in specs:
            assert any(line.startswith(spec.name) and line.endswith("ready") for line in lines)
    finally:
        stack.stop_services()
    assert all(stack.service_pid(spec) is None for spec in specs)
    assert not any((tmp_path / "state" / "run").glob("*.pid"))


def test_failed_migration_is_reported(infra: tuple[str, str], tmp_path: Path) -> None:
    bootstrap, database_url = infra
    records = tmp_path / "records"
    records.mkdir()
    stack = _stack(tmp_path / "state", _specs(1), records, STUB_MIGRATE_EXIT="3")
    with pytest.raises(DeployError, match="exit code 3"):
        stack.migrate(Infra(bootstrap, database_url, "helpdesk.events", 12), "tok")


def test_up_in_the_background_then_down(infra: tuple[str, str], tmp_path: Path) -> None:
    if provisioned_kind() != "local":
        pytest.skip("`up` starts local infrastructure; this session's comes from elsewhere")
    records = tmp_path / "records"
    records.mkdir()
    specs = _specs(2)
    # The session's state dir: `up` reattaches to its running Kafka and PostgreSQL.
    stack = _stack(state_dir_for_tests(), specs, records)
    try:
        assert up(stack, foreground=False, ready_timeout=30) == 0
        assert all(stack.service_pid(spec) is not None for spec in specs)
    finally:
        stack.stop_services()  # not stack.down(): the infrastructure is the session's
    assert all(stack.service_pid(spec) is None for spec in specs)
