"""Pid files and liveness checks of detached processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from helpdesk.deploy._proc import (
    free_port,
    kill_hard,
    live_pid,
    pid_alive,
    port_in_use,
    read_pid,
    spawn_daemon,
    terminate,
    write_pid,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)", "sleeper-marker"]


def test_spawned_daemon_is_alive_until_terminated(tmp_path: Path) -> None:
    pid = spawn_daemon(SLEEPER, log_file=tmp_path / "log")
    pid_file = tmp_path / "x.pid"
    write_pid(pid_file, pid)
    assert read_pid(pid_file) == pid
    assert live_pid(pid_file, ["sleeper-marker"]) == pid
    assert os.getsid(pid) == pid  # its own session: a terminal Ctrl-C does not reach it
    assert terminate(pid, timeout=10)
    assert not pid_alive(pid)
    assert live_pid(pid_file, ["sleeper-marker"]) is None


def test_killed_daemon_is_dead_not_zombie(tmp_path: Path) -> None:
    pid = spawn_daemon(SLEEPER, log_file=tmp_path / "log")
    kill_hard(pid)
    assert not pid_alive(pid)


def test_pid_file_of_another_program_is_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    write_pid(pid_file, os.getpid())  # alive, but not what the file claims to track
    assert live_pid(pid_file, ["kafka.Kafka"]) is None
    assert read_pid(tmp_path / "missing.pid") is None


def test_free_port_is_free_and_below_the_ephemeral_range() -> None:
    port = free_port()
    assert 20000 <= port < 32000
    assert not port_in_use(port)
