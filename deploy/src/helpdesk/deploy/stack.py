"""The whole local stack: Kafka, PostgreSQL, the event topic, migrations and the four services.

Everything a stack runs is recorded under its state directory (`.state/dev` for `make up`):

    kafka/      broker data, server.properties, kafka.pid, kafka.log
    pg/         PGDATA of the embedded PostgreSQL (postmaster.pid is its pid file)
    run/        <service>.pid
    logs/       <service>.log, <service>-migrate.log
    prometheus/ generated prometheus.yml, TSDB, prometheus.pid, prometheus.log
    mail/       every e-mail the notifier sent, as <time>-<n>.eml (the local mail sink)
    admin_token the generated HELPDESK_ADMIN_TOKEN (mode 600), stable across restarts

so that `down` and `status` work from any later process, and `up` reattaches to whatever runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from helpdesk.deploy._proc import (
    DeployError,
    kill_hard,
    live_pid,
    log,
    pid_alive,
    port_in_use,
    repo_root,
    run_sync,
    spawn_daemon,
    tail,
    wait_until,
    write_pid,
)
from helpdesk.deploy.kafka import LocalKafka
from helpdesk.deploy.mailsink import LocalMailSink
from helpdesk.deploy.postgres import LocalPostgres, database_url
from helpdesk.deploy.prometheus import LocalPrometheus, job_name

DEFAULT_TOPIC = "helpdesk.events"
DEFAULT_PARTITIONS = 12
DEV_KAFKA_PORT = 9092
DEV_CONTROLLER_PORT = 9093


@dataclass(frozen=True)
class ServiceSpec:
    """One service process: `python -m <module> serve` on `port`, plus extra environment."""

    name: str
    module: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"


# The contract's ports (README, "What runs"); intake also receives e-mail over SMTP.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("intake", "helpdesk.intake", 8000, {"HELPDESK_SMTP_PORT": "2525"}),
    ServiceSpec("sla_timer", "helpdesk.sla_timer", 8001),
    ServiceSpec("billing", "helpdesk.billing", 8002),
    ServiceSpec("notifier", "helpdesk.notifier", 8003),
    # The web portal; the local stack serves plain http, so its cookies cannot be `Secure`.
    ServiceSpec("portal", "helpdesk.portal", 8004, {"HELPDESK_PORTAL_SECURE_COOKIES": "false"}),
)


PORTAL = "portal"
#: The provider's admin in the portal, whom `up` invites (their e-mail address is their login).
PORTAL_ADMIN_EMAIL = "admin@example.com"


@dataclass(frozen=True)
class Infra:
    """Where the running Kafka and PostgreSQL are."""

    bootstrap: str
    database_url: str
    topic: str
    partitions: int


def dev_state_dir() -> Path:
    """`.state/dev` under the repository root (gitignored)."""
    return repo_root() / ".state" / "dev"


async def _ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from helpdesk.shared.kafka import ensure_topic

    await ensure_topic(bootstrap, topic, partitions)


class Stack:
    """Kafka + PostgreSQL + services of one state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        kafka_port: int = DEV_KAFKA_PORT,
        controller_port: int = DEV_CONTROLLER_PORT,
        services: Sequence[ServiceSpec] = SERVICES,
        topic: str | None = None,
        partitions: int | None = None,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        prometheus_port: int | None = None,
        mail_port: int | None = None,
        scrape_interval: str = "5s",
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.kafka = LocalKafka(self.state_dir / "kafka", kafka_port, controller_port)
        self.postgres = LocalPostgres(self.state_dir / "pg")
        self.services = tuple(services)
        self.topic = topic or os.environ.get("HELPDESK_TOPIC") or DEFAULT_TOPIC
        self.partitions = partitions or int(
            os.environ.get("HELPDESK_PARTITIONS") or DEFAULT_PARTITIONS
        )
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.run_dir = self.state_dir / "run"
        self.log_dir = self.state_dir / "logs"
        # Monitoring and the mail sink are optional: `make up` runs both, most tests neither.
        self.prometheus = (
            LocalPrometheus(
                self.state_dir / "prometheus",
                prometheus_port,
                {job_name(spec.name): f"127.0.0.1:{spec.port}" for spec in self.services},
                scrape_interval=scrape_interval,
            )
            if prometheus_port is not None
            else None
        )
        self.mail_sink = (
            LocalMailSink(self.run_dir, self.state_dir / "mail", mail_port, python)
            if mail_port is not None
            else None
        )

    # -- infrastructure -----------------------------------------------------------------------

    def start_infra(self) -> Infra:
        """Start (or reattach to) Kafka and PostgreSQL and create the event topic."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kafka.ensure_jars()
        if self.kafka.is_running():
            log(f"Kafka already running on {self.kafka.bootstrap}")
        else:
            log(f"starting Kafka on {self.kafka.bootstrap} ...")
        started = time.monotonic()
        self.kafka.start()
        log(f"Kafka ready after {time.monotonic() - started:.1f} s")
        if os.environ.get("DATABASE_URL"):
            log("using DATABASE_URL from the environment; not starting PostgreSQL")
        url = database_url(self.postgres.data_dir)
        run_sync(_ensure_topic(self.kafka.bootstrap, self.topic, self.partitions))
        return Infra(self.kafka.bootstrap, url, self.topic, self.partitions)

    def stop_infra(self) -> None:
        """Stop Kafka and the embedded PostgreSQL of this state dir (whichever run)."""
        kafka = LocalKafka.existing(self.kafka.data_dir) or self.kafka
        if kafka.is_running():
            log("stopping Kafka ...")
            kafka.stop()
        if self.postgres.is_running():
            log("stopping PostgreSQL ...")
            self.postgres.stop()

    # -- admin token --------------------------------------------------------------------------

    def admin_token(self) -> str:
        """HELPDESK_ADMIN_TOKEN if set; else a token generated once and kept (mode 600) in
        the state dir, so that it survives restarts of the stack."""
        given = os.environ.get("HELPDESK_ADMIN_TOKEN")
        if given:
            return given
        path = self.state_dir / "admin_token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()  # a concurrent `up` wrote it first
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        return token

    # -- services -----------------------------------------------------------------------------

    def service_env(self, spec: ServiceSpec, infra: Infra, token: str) -> dict[str, str]:
        """The environment of one service process (the settings in helpdesk.shared.settings)."""
        env = dict(os.environ)
        # DATABASE_URL below wins over these aliases only by alias order; drop them to be sure.
        env.pop("HELPDESK_DATABASE_URL", None)
        env.update(
            {
                "HELPDESK_KAFKA_BOOTSTRAP": infra.bootstrap,
                "DATABASE_URL": infra.database_url,
                "HELPDESK_TOPIC": infra.topic,
                "HELPDESK_PARTITIONS": str(infra.partitions),
                "HELPDESK_ADMIN_TOKEN": token,
                "HELPDESK_HTTP_PORT": str(spec.port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.mail_sink is not None:
            # The notifier submits its mail to the local sink.
            env["HELPDESK_SMTP_RELAY_HOST"] = "127.0.0.1"
            env["HELPDESK_SMTP_RELAY_PORT"] = str(self.mail_sink.port)
        portal = next((other for other in self.services if other.name == PORTAL), None)
        if spec.name == "notifier" and portal is not None:
            # Mail (a password reset) links into the portal, wherever this stack runs it.
            env["HELPDESK_NOTIFIER_PORTAL_URL"] = portal.url
        if spec.name == PORTAL:
            # The portal is a client of the other services, wherever this stack runs them.
            for other in self.services:
                if other.name != PORTAL:
                    env[f"HELPDESK_PORTAL_{other.name.upper()}_URL"] = other.url
        env.update(spec.env)
        env.update(self.extra_env)
        return env

    def portal_invitation(self, token: str) -> str | None:
        """A one-time link to set the password of the provider's admin in the portal (created
        as a staff member on the first `up`), or None without a portal or when intake refuses.
        """
        portal = next((spec for spec in self.services if spec.name == PORTAL), None)
        intake = next((spec for spec in self.services if spec.name == "intake"), None)
        if portal is None or intake is None:
            return None
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=intake.url, headers=headers, timeout=10) as client:
                staff = client.get("/v1/staff").raise_for_status().json()
                admin = next((s for s in staff if s["email"] == PORTAL_ADMIN_EMAIL), None)
                if admin is None:
                    body = {"name": "Administrator", "email": PORTAL_ADMIN_EMAIL, "role": "admin"}
                    admin = client.post("/v1/staff", json=body).raise_for_status().json()
                invited = client.post("/v1/invitations", json={"staff_id": admin["id"]})
                path = invited.raise_for_status().json()["path"]
        except httpx.HTTPError as exc:
            log(f"no portal invitation for the admin: {exc}")
            return None
        return f"{portal.url}{path}"

    def _pid_file(self, spec: ServiceSpec) -> Path:
        return self.run_dir / f"{spec.name}.pid"

    def log_file(self, spec: ServiceSpec) -> Path:
        """The log file of a service (stdout and stderr, appended across restarts)."""
        return self.log_dir / f"{spec.name}.log"

    def service_pid(self, spec: ServiceSpec) -> int | None:
        """The pid of the service if the process in its pid file is alive."""
        return live_pid(self._pid_file(spec), [spec.module, "serve"])

    def migrate(self, infra: Infra, token: str, timeout: float = 300.0) -> None:
        """Run `python -m <module> migrate` for every service.

        All at once: each service migrates only its own schema in its own transaction, and a
        Python start-up per service adds up (about 3 s each on a busy laptop). A migration that
        fails in that run is retried alone, in case two migrations raced on something shared
        (CREATE EXTENSION IF NOT EXISTS is not race-free); only a second failure is an error.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"migrating {', '.join(spec.name for spec in self.services)} ...")
        failed = [
            spec
            for spec, ok in self._run_migrations(self.services, infra, token, timeout)
            if not ok
        ]
        for spec in failed:
            log(f"retrying the migration of {spec.name} alone ...")
            ((_, ok),) = self._run_migrations([spec], infra, token, timeout)
            if not ok:
                migrate_log = self.log_dir / f"{spec.name}-migrate.log"
                raise DeployError(f"`{spec.module} migrate` failed:\n{tail(migrate_log)}")
        log(f"migrated in {time.monotonic() - started:.1f} s")

    def _run_migrations(
        self, specs: Sequence[ServiceSpec], infra: Infra, token: str, timeout: float
    ) -> list[tuple[ServiceSpec, bool]]:
        running: list[tuple[ServiceSpec, subprocess.Popen[bytes], Path]] = []
        for spec in specs:
            migrate_log = self.log_dir / f"{spec.name}-migrate.log"
            with migrate_log.open("wb") as out:
                proc = subprocess.Popen(
                    [self.python, "-m", spec.module, "migrate"],
                    env=self.service_env(spec, infra, token),
                    cwd=repo_root(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            running.append((spec, proc, migrate_log))
        deadline = time.monotonic() + timeout
        results: list[tuple[ServiceSpec, bool]] = []
        try:
            for spec, proc, migrate_log in running:
                try:
                    code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    code = -1
                    with migrate_log.open("a") as out:
                        out.write(f"\n(killed after {timeout:.0f} s)\n")
                if code != 0:
                    with migrate_log.open("a") as out:
                        out.write(f"\n(exit code {code})\n")
                results.append((spec, code == 0))
        finally:
            # On a timeout or a Ctrl-C, no migration keeps running behind our back.
            for _, proc, _ in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return results

    def check_service_ports(self) -> None:
        """Fail before anything starts if another program holds a service's port."""
        for spec in self.services:
            if self.service_pid(spec) is None and port_in_use(spec.port):
                raise DeployError(f"port {spec.port} for {spec.name} is taken by another process")

    def start_services(self, infra: Infra, token: str) -> list[ServiceSpec]:
        """Start every service that is not running yet; returns those it started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started: list[ServiceSpec] = []
        for spec in self.services:
            if self.service_pid(spec) is not None:
                log(f"{spec.name} already running")
                continue
            if port_in_use(spec.port):
                raise DeployError(f"port {spec.port} for {spec.name} is taken by another process")
            log_file = self.log_file(spec)
            with log_file.open("a") as handle:
                handle.write(f"---- start {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
            pid = spawn_daemon(
                [self.python, "-m", spec.module, "serve"],
                log_file=log_file,
                env=self.service_env(spec, infra, token),
                cwd=repo_root(),
            )
            # The port goes along, so `status` shows where a stack with other ports listens.
            write_pid(self._pid_file(spec), pid, str(spec.port))
            started.append(spec)
        return started

    def wait_services_ready(self, timeout: float = 120.0) -> None:
        """Poll every service's /readyz until it answers 200; fail fast if a process exits."""
        started = time.monotonic()
        deadline = started + timeout
        pending = list(self.services)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for spec in list(pending):
                    if self.service_pid(spec) is None:
                        raise DeployError(
                            f"{spec.name} exited during startup; last lines of "
                            f"{self.log_file(spec)}:\n{tail(self.log_file(spec))}"
                        )
                    try:
                        ready = client.get(f"{spec.url}/readyz").status_code == 200
                    except httpx.HTTPError:
                        ready = False
                    if ready:
                        elapsed = time.monotonic() - started
                        log(f"{spec.name} ready on {spec.url} after {elapsed:.1f} s")
                        pending.remove(spec)
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    names = ", ".join(spec.name for spec in pending)
                    raise DeployError(f"not ready after {timeout:.0f} s: {names}")
                time.sleep(0.25)

    def stop_services(self, timeout: float = 20.0) -> None:
        """SIGTERM every running service (graceful: finish requests, commit offsets)."""
        running = [(spec, pid) for spec in self.services if (pid := self.service_pid(spec))]
        # Signal all first, then wait: they shut down in parallel. One SIGTERM only: uvicorn
        # takes a repeated signal as "force exit now".
        for spec, pid in running:
            log(f"stopping {spec.name} ...")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for spec, pid in running:
            if not wait_until(functools.partial(_gone, pid), deadline - time.monotonic()):
                log(f"{spec.name} did not stop within {timeout:.0f} s; killing it")
                kill_hard(pid)
            self._pid_file(spec).unlink(missing_ok=True)
        for spec in self.services:
            if self.service_pid(spec) is None:
                self._pid_file(spec).unlink(missing_ok=True)

    def service_command(self, name: str, command: str) -> None:
        """Run `python -m helpdesk.<service> <command>` (rebuild, retry-parked) against this
        stack's infrastructure, with the stack's admin token.

        A rebuild needs no stop: it fills shadow tables and swaps them in under a fence, and a
        running replica then seeks to the rebuilt offsets (docs/adr/0003).
        """
        matches = [spec for spec in self.services if spec.name == name]
        if not matches:
            raise DeployError(f"no service {name!r}; one of {[s.name for s in self.services]}")
        spec = matches[0]
        infra = self.start_infra()
        subprocess.run(
            [self.python, "-m", spec.module, command],
            env=self.service_env(spec, infra, self.admin_token()),
            cwd=repo_root(),
            check=True,
        )

    # -- monitoring and mail -------------------------------------------------------------------

    def start_extras(self) -> None:
        """Start the mail sink and Prometheus, where this stack has them."""
        if self.mail_sink is not None:
            self.mail_sink.start()
            log(f"mail sink on 127.0.0.1:{self.mail_sink.port} -> {self.mail_sink.mail_dir}")
        if self.prometheus is not None:
            self.prometheus.start()

    def stop_extras(self) -> None:
        """Stop Prometheus and the mail sink, if they run."""
        if self.prometheus is not None and self.prometheus.is_running():
            log("stopping Prometheus ...")
            self.prometheus.stop()
        if self.mail_sink is not None and self.mail_sink.pid() is not None:
            log("stopping the mail sink ...")
            self.mail_sink.stop()

    # -- whole stack --------------------------------------------------------------------------

    def down(self) -> None:
        """Stop the services, Prometheus and the mail sink, then Kafka, then PostgreSQL."""
        self.stop_services()
        self.stop_extras()
        self.stop_infra()

    def status_lines(self) -> tuple[list[str], bool]:
        """Human-readable status, and whether everything runs."""
        lines: list[str] = []
        all_up = True
        kafka = LocalKafka.existing(self.kafka.data_dir) or self.kafka
        pid = kafka.pid()
        all_up &= pid is not None
        lines.append(_status_line("kafka", pid, kafka.bootstrap))
        if os.environ.get("DATABASE_URL"):
            lines.append(_status_line("postgres", None, "external (DATABASE_URL)", external=True))
        else:
            pid = self.postgres.pid()
            all_up &= pid is not None
            where = self.postgres.url() if pid is not None else str(self.postgres.data_dir)
            lines.append(_status_line("postgres", pid, where))
        with httpx.Client(timeout=1.0) as client:
            for spec in self.services:
                pid = self.service_pid(spec)
                all_up &= pid is not None
                where = spec.url
                try:
                    port = int(self._pid_file(spec).read_text().split()[1])
                    where = f"http://127.0.0.1:{port}"
                except (OSError, ValueError, IndexError):
                    pass
                if pid is not None:
                    try:
                        code = client.get(f"{where}/readyz").status_code
                        where += "  ready" if code == 200 else f"  not ready ({code})"
                    except httpx.HTTPError:
                        where += "  not answering"
                lines.append(_status_line(spec.name, pid, where))
        if self.prometheus is not None:
            pid = self.prometheus.pid()
            all_up &= pid is not None
            lines.append(_status_line("prometheus", pid, self.prometheus.url))
        if self.mail_sink is not None:
            pid = self.mail_sink.pid()
            all_up &= pid is not None
            where = f"smtp://127.0.0.1:{self.mail_sink.port} -> {self.mail_sink.mail_dir}"
            lines.append(_status_line("mail sink", pid, where))
        return lines, all_up

    def summary(self, infra: Infra, token: str) -> str:
        """What `up` prints once everything is ready."""
        out = [f"Helpdesk is running (state and logs under {self.state_dir})", ""]
        for spec in self.services:
            out.append(
                f"  {spec.name:<10} {spec.url:<24} metrics {spec.url}/metrics"
                f"   OpenAPI {spec.url}/openapi.json"
            )
            smtp = spec.env.get("HELPDESK_SMTP_PORT")
            if smtp:
                out.append(f"  {'':<10} e-mail intake: SMTP 127.0.0.1:{smtp}")
        out += [
            "",
            f"  HELPDESK_KAFKA_BOOTSTRAP={infra.bootstrap}"
            f"   (topic {infra.topic}, {infra.partitions} partitions)",
            f"  DATABASE_URL={infra.database_url}",
            f"  HELPDESK_ADMIN_TOKEN={token}",
        ]
        if self.prometheus is not None:
            out.append(
                f"  Prometheus {self.prometheus.url}  (alerts {self.prometheus.url}/alerts;"
                " dashboards: deploy/grafana/dashboards, or `make ops-report`)"
            )
        if self.mail_sink is not None:
            out.append(
                f"  Mail sink  smtp://127.0.0.1:{self.mail_sink.port}: every e-mail the notifier"
                f" sends is written to {self.mail_sink.mail_dir}/*.eml"
            )
        return "\n".join(out)


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def _status_line(name: str, pid: int | None, where: str, *, external: bool = False) -> str:
    state = "external" if external else ("running" if pid is not None else "stopped")
    pid_text = f"pid {pid}" if pid is not None else ""
    return f"{name:<10} {state:<8} {pid_text:<10} {where}"


def up(stack: Stack, *, foreground: bool, ready_timeout: float = 120.0) -> int:
    """Start the whole stack; in the foreground, wait and stop it all on Ctrl-C / SIGTERM.

    On a failure during startup, whatever this call started is stopped again.
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if foreground:
        # During startup SIGTERM acts like Ctrl-C: tear down what is half started. (The
        # daemons run in their own sessions, so the terminal's SIGINT reaches only us.)
        signal.signal(signal.SIGTERM, interrupt)
    kafka_was_running = stack.kafka.is_running()
    pg_was_running = stack.postgres.is_running()
    try:
        stack.check_service_ports()
        infra = stack.start_infra()
        token = stack.admin_token()
        stack.migrate(infra, token)
        stack.start_extras()
        stack.start_services(infra, token)
        stack.wait_services_ready(ready_timeout)
    except (DeployError, KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        if isinstance(exc, KeyboardInterrupt):
            log("interrupted; stopping")
        else:
            log(f"error: {exc}")
        stack.stop_services()
        stack.stop_extras()
        if foreground:
            stack.stop_infra()
        else:
            # In the background, leave running only what already ran before this call.
            if not kafka_was_running and stack.kafka.is_running():
                log("stopping Kafka ...")
                stack.kafka.stop()
            if not pg_was_running and stack.postgres.is_running():
                log("stopping PostgreSQL ...")
                stack.postgres.stop()
        return 1
    print(stack.summary(infra, token), flush=True)
    link = stack.portal_invitation(token)
    if link:
        print(
            f"\n  Portal: sign in as {PORTAL_ADMIN_EMAIL} after choosing a password at\n"
            f"    {link}\n  (a new one-time link on every `up`; it works for three days)",
            flush=True,
        )
    if not foreground:
        print("\nRunning in the background; stop it with `make down`.", flush=True)
        return 0

    print("\nPress Ctrl-C to stop.", flush=True)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stop_requested.wait(1.0):
        dead = [spec for spec in stack.services if stack.service_pid(spec) is None]
        if dead:
            for spec in dead:
                log(f"{spec.name} exited; last lines of its log:\n{tail(stack.log_file(spec))}")
            exit_code = 1
            break
        if not stack.kafka.is_running():
            log(f"Kafka exited; last lines of its log:\n{tail(stack.kafka.log_file)}")
            exit_code = 1
            break
        if not os.environ.get("DATABASE_URL") and not stack.postgres.is_running():
            log(f"PostgreSQL exited; see {stack.postgres.data_dir / 'log'}")
            exit_code = 1
            break
    log("stopping the stack ...")
    stack.down()
    return exit_code
