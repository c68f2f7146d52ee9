"""Stack configuration that needs no running infrastructure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from helpdesk.deploy import testing
from helpdesk.deploy.__main__ import main
from helpdesk.deploy.postgres import database_url
from helpdesk.deploy.stack import SERVICES, Infra, Stack
from helpdesk.shared.settings import SERVICE_PORTS


def test_services_use_the_contract_ports() -> None:
    assert {spec.name: spec.port for spec in SERVICES} == SERVICE_PORTS
    assert [spec.module for spec in SERVICES] == [f"helpdesk.{spec.name}" for spec in SERVICES]


def test_admin_token_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELPDESK_ADMIN_TOKEN", raising=False)
    stack = Stack(tmp_path)
    token = stack.admin_token()
    assert len(token) >= 32
    assert Stack(tmp_path).admin_token() == token
    assert stat.S_IMODE((tmp_path / "admin_token").stat().st_mode) == 0o600
    monkeypatch.setenv("HELPDESK_ADMIN_TOKEN", "given")
    assert stack.admin_token() == "given"


def test_service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_DATABASE_URL", "postgresql+asyncpg://stale")
    monkeypatch.delenv("HELPDESK_SMTP_PORT", raising=False)
    infra = Infra("127.0.0.1:9092", "postgresql+asyncpg://x@/helpdesk?host=/s", "t", 3)
    stack = Stack(tmp_path)
    env = stack.service_env(SERVICES[0], infra, "tok")
    assert env["HELPDESK_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["DATABASE_URL"] == infra.database_url
    assert "HELPDESK_DATABASE_URL" not in env
    assert env["HELPDESK_TOPIC"] == "t"
    assert env["HELPDESK_PARTITIONS"] == "3"
    assert env["HELPDESK_ADMIN_TOKEN"] == "tok"
    assert env["HELPDESK_HTTP_PORT"] == "8000"
    assert env["HELPDESK_SMTP_PORT"] == "2525"
    assert "HELPDESK_SMTP_PORT" not in stack.service_env(SERVICES[1], infra, "tok")


def test_database_url_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/helpdesk")
    assert database_url(tmp_path / "pg") == "postgresql+asyncpg://u@db/helpdesk"
    assert not (tmp_path / "pg").exists()


def test_test_infra_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_session", None)
    monkeypatch.setenv("HELPDESK_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/helpdesk")
    monkeypatch.delenv("HELPDESK_TEST_INFRA", raising=False)
    assert testing.provision_test_infra() == ("broker:9092", "postgresql+asyncpg://u@db/helpdesk")
    assert testing.provisioned_kind() == "env"
    testing.teardown_test_infra()
    assert testing.provisioned_kind() is None


def test_status_of_a_stack_that_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "kafka" in out
    assert "stopped" in out
    assert main(["down", "--state-dir", str(tmp_path)]) == 0


def test_the_portal_is_pointed_at_the_stack_s_services(tmp_path: Path) -> None:
    """The portal calls the four APIs where this stack runs them, over plain local http."""
    infra = Infra("127.0.0.1:9092", "postgresql+asyncpg://x@/helpdesk?host=/s", "t", 3)
    stack = Stack(tmp_path)
    portal = next(spec for spec in SERVICES if spec.name == "portal")
    env = stack.service_env(portal, infra, "tok")
    assert env["HELPDESK_HTTP_PORT"] == "8004"
    assert env["HELPDESK_PORTAL_INTAKE_URL"] == "http://127.0.0.1:8000"
    assert env["HELPDESK_PORTAL_SLA_TIMER_URL"] == "http://127.0.0.1:8001"
    assert env["HELPDESK_PORTAL_BILLING_URL"] == "http://127.0.0.1:8002"
    assert env["HELPDESK_PORTAL_NOTIFIER_URL"] == "http://127.0.0.1:8003"
    assert env["HELPDESK_PORTAL_SECURE_COOKIES"] == "false"
    assert "HELPDESK_PORTAL_INTAKE_URL" not in stack.service_env(SERVICES[0], infra, "tok")
    # A password reset mail links into the portal (new): the notifier is told where it is.
    notifier = next(spec for spec in SERVICES if spec.name == "notifier")
    assert stack.service_env(notifier, infra, "tok")["HELPDESK_NOTIFIER_PORTAL_URL"] == (
        "http://127.0.0.1:8004"
    )
    assert "HELPDESK_NOTIFIER_PORTAL_URL" not in stack.service_env(SERVICES[0], infra, "tok")
