"""The broker configuration and jar handling, without starting a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.deploy import kafka as kafka_module
from helpdesk.deploy._proc import repo_root
from helpdesk.deploy.kafka import LocalKafka, server_properties


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_follow_the_design(tmp_path: Path) -> None:
    props = _props(server_properties(tmp_path, 19092, 19093))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "logs")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "12"
    assert props["auto.create.topics.enable"] == "false"


def test_existing_reads_the_ports_back(tmp_path: Path) -> None:
    assert LocalKafka.existing(tmp_path) is None
    LocalKafka(tmp_path, 19192, 19193)._write_config()
    found = LocalKafka.existing(tmp_path)
    assert found is not None
    assert (found.port, found.controller_port) == (19192, 19193)
    assert found.bootstrap == "127.0.0.1:19192"


def test_repo_root_is_where_the_pom_is() -> None:
    root = repo_root()
    assert (root / "deploy" / "kafka" / "pom.xml").is_file()


def test_repo_root_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_REPO_ROOT", str(tmp_path))
    assert repo_root() == tmp_path.resolve()


def test_jars_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_KAFKA_JARS", str(tmp_path))
    assert kafka_module.default_jars_dir() == tmp_path


def test_ensure_jars_is_a_no_op_when_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / kafka_module.MARKER_JAR).write_bytes(b"")
    monkeypatch.setattr("shutil.which", lambda name: None)  # so a fetch attempt would fail
    LocalKafka(tmp_path / "data", jars_dir=tmp_path).ensure_jars()
