"""Process plumbing shared by the Kafka, PostgreSQL and service runners.

Everything here is about detached daemons that outlive the Python process that started them:
pid files, liveness checks that are not fooled by zombies or reused pids, polite-then-forceful
termination, and polling with deadlines instead of fixed sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.1

# Popen handles of the daemons this process started. Kept so that a daemon which dies (or is
# killed by a fault test) is reaped instead of lingering as a zombie that still "exists".
_children: dict[int, subprocess.Popen[bytes]] = {}


class DeployError(RuntimeError):
    """A component of the local stack could not be started or stopped."""


def repo_root(start: Path | None = None) -> Path:
    """The repository root: the nearest parent of this file that holds deploy/kafka/pom.xml.

    HELPDESK_REPO_ROOT overrides the search, for an installation outside the repository.
    """
    override = os.environ.get("HELPDESK_REPO_ROOT")
    if override:
        return Path(override).resolve()
    here = (start or Path(__file__)).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "deploy" / "kafka" / "pom.xml").is_file():
            return candidate
    raise DeployError(
        f"no deploy/kafka/pom.xml above {here}; set HELPDESK_REPO_ROOT to the repository root"
    )


def _proc_stat_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None where /proc is unavailable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    return raw.rsplit(")", 1)[-1].split()[0]


def _fully_exited_zombie(pid: int) -> bool:
    """True if `pid` is a zombie whose threads have all exited (so its files and sockets are
    released) and which merely waits to be reaped.

    A multi-threaded process (a JVM) shows state Z as soon as its main thread exits, while
    other threads still tear down and still hold its listening sockets; that is not dead yet.
    """
    if _proc_stat_state(pid) not in {"Z", "X"}:
        return False
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live process.

    Our own children count as dead once reaped. Other processes count as dead once they are
    fully exited zombies: where PID 1 does not reap orphans (some container inits), a dead
    daemon can stay a zombie indefinitely, and kill(pid, 0) alone would call it alive.
    """
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    # A child of this process whose Popen handle we do not hold: reap it if it exited.
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (PostgreSQL runs as its own user under root)
    return not _fully_exited_zombie(pid)


def proc_cmdline(pid: int) -> list[str]:
    """The argv of `pid` as read from /proc, or [] if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(pid_file: Path) -> int | None:
    """The pid stored in `pid_file`, or None if the file is missing or garbled."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid(pid_file: Path, pid: int, *extra: str) -> None:
    """Store `pid` (and `extra` lines, e.g. a port) atomically, so a concurrent reader never
    sees a half-written file."""
    tmp = pid_file.with_name(f".{pid_file.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in (str(pid), *extra)))
    tmp.replace(pid_file)


def live_pid(pid_file: Path, must_contain: Sequence[str]) -> int | None:
    """The pid in `pid_file` if it is alive and its command line contains every `must_contain`.

    The command-line check guards against a stale pid file whose pid the kernel reused.
    """
    pid = read_pid(pid_file)
    if pid is None or not pid_alive(pid):
        return None
    cmdline = " ".join(proc_cmdline(pid))
    if cmdline and not all(part in cmdline for part in must_contain):
        return None
    return pid


def spawn_daemon(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached: its own session (a Ctrl-C in the terminal does not reach it) and
    its output appended to `log_file`. Returns the pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    interval: float = POLL_INTERVAL_S,
) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; True if it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pid: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send `sig`, wait up to `timeout` s for the process to exit, then SIGKILL it.

    Returns True if it exited on its own, False if it had to be killed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_until(lambda: not pid_alive(pid), timeout):
        return True
    kill_hard(pid)
    return False


def kill_hard(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL `pid` and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not pid_alive(pid), timeout):
        raise DeployError(f"process {pid} survived SIGKILL for {timeout} s")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on host:port (SO_REUSEADDR, like the servers we start,
    so a port that only has TIME_WAIT connections left counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1", low: int = 20000, high: int = 32000) -> int:
    """A TCP port that is free right now, for tests that start their own servers.

    Chosen below Linux's ephemeral range (32768+) on purpose: a port the kernel hands out for
    bind(0) may later be taken as the source port of some outgoing connection, and a server
    restarted on it (kill, then start) then fails with EADDRINUSE.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        if not port_in_use(port, host):
            return port
    raise DeployError(f"no free port in [{low}, {high})")


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code.

    Works whether or not an event loop is already running in this thread (e.g. when a
    synchronous start() is called from an async test): in that case the coroutine runs on a
    fresh loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def log(message: str) -> None:
    """Progress output of the runner: stderr, so stdout stays machine-readable (`infra`)."""
    print(message, file=sys.stderr, flush=True)
