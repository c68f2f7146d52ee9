"""A single-node Apache Kafka 4.1.1 broker (KRaft, combined broker+controller) run from jars.

No Docker and no Kafka distribution tarball: the jars come from Maven Central through
deploy/kafka/pom.xml into a cache outside the repository, and the broker runs on the machine's
Java 17 as a detached process that survives the Python process that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from helpdesk.deploy._proc import (
    DeployError,
    kill_hard,
    live_pid,
    log,
    port_accepts,
    port_in_use,
    repo_root,
    run_sync,
    spawn_daemon,
    tail,
    terminate,
    wait_until,
    write_pid,
)

KAFKA_VERSION = "4.1.1"
MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"

# WARN and above from everything, plus the few lifecycle lines that say where startup is.
# Kafka's own config/log4j2.yaml logs every request-handler and log-cleaner step at INFO,
# which buries real errors in the data dir's log file.
LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


def default_jars_dir() -> Path:
    """The jar cache: HELPDESK_KAFKA_JARS, else ~/.cache/helpdesk/kafka-4.1.1."""
    override = os.environ.get("HELPDESK_KAFKA_JARS")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "helpdesk" / f"kafka-{KAFKA_VERSION}"


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """The broker configuration: one KRaft node that is both broker and controller."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static voters: `StorageTool format --standalone` is refused with this setting, so the
        # storage is formatted with a plain cluster id (see LocalKafka._format).
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        # meta.properties, the metadata log and the topic partitions all live here.
        "log.dirs": str(data_dir / "logs"),
        # A single broker: every internal topic must make do with one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        # No reason to wait for more group members on a dev/test broker.
        "group.initial.rebalance.delay.ms": "0",
        # After a kill -9 the restarted broker waits until the controller expires the session
        # of its previous incarnation (broker.session.timeout.ms, 9 s by default) before it
        # serves requests. Fault tests kill the broker on purpose: 3 s brings the restart from
        # about 14 s down to about 5 s. Heartbeats are local, so a short timeout is safe.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        "num.partitions": "12",
        # Topics are created explicitly (helpdesk.shared.kafka.ensure_topic) with their
        # retention; a typo'd topic name must fail rather than silently appear.
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


class LocalKafka:
    """One local KRaft broker with its data, config, pid file and log under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        jars_dir: Path | None = None,
        heap: str = "512m",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.controller_port = controller_port
        self.jars_dir = (jars_dir or default_jars_dir()).resolve()
        self.heap = heap
        self.properties_file = self.data_dir / "server.properties"
        self.log4j_file = self.data_dir / "log4j2.yaml"
        self.pid_file = self.data_dir / "kafka.pid"
        self.log_file = self.data_dir / "kafka.log"
        self.log_dirs = self.data_dir / "logs"

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string for clients: 127.0.0.1:<port>."""
        return f"127.0.0.1:{self.port}"

    @classmethod
    def existing(cls, data_dir: Path, jars_dir: Path | None = None) -> LocalKafka | None:
        """The broker configured in `data_dir` (ports read from its server.properties), or
        None if none was ever configured there. For `down`, which does not know the ports."""
        try:
            text = (data_dir / "server.properties").read_text()
        except OSError:
            return None
        props = dict(
            line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
        )
        port = int(props["advertised.listeners"].rsplit(":", 1)[1])
        controller_port = int(props["controller.quorum.voters"].rsplit(":", 1)[1])
        return cls(data_dir, port, controller_port, jars_dir)

    # -- jars ---------------------------------------------------------------------------------

    def ensure_jars(self) -> None:
        """Fetch the broker's jars with Maven into the cache unless they are already there."""
        if (self.jars_dir / MARKER_JAR).is_file():
            return
        if shutil.which("mvn") is None:
            raise DeployError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
        pom = repo_root() / "deploy" / "kafka" / "pom.xml"
        self.jars_dir.parent.mkdir(parents=True, exist_ok=True)
        # Copy into a private directory and rename it into place, so an interrupted fetch
        # never leaves a cache that has the marker jar but misses others.
        staging = self.jars_dir.with_name(f".{self.jars_dir.name}.{os.getpid()}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        log(f"fetching Kafka {KAFKA_VERSION} jars into {self.jars_dir} ...")
        started = time.monotonic()
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not (staging / MARKER_JAR).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DeployError(
                f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}"
            )
        try:
            staging.rename(self.jars_dir)
        except OSError:
            # The directory exists (a concurrent fetch won, or it held a partial copy):
            # complete it file by file; the marker jar goes last.
            self.jars_dir.mkdir(parents=True, exist_ok=True)
            for jar in sorted(staging.iterdir(), key=lambda p: p.name == MARKER_JAR):
                jar.replace(self.jars_dir / jar.name)
            shutil.rmtree(staging, ignore_errors=True)
        log(f"fetched Kafka jars in {time.monotonic() - started:.1f} s")

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            f"{self.jars_dir}/*",
            *args,
        ]

    # -- lifecycle ----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The broker's pid if the process recorded in the pid file is alive."""
        return live_pid(self.pid_file, ["kafka.Kafka", str(self.properties_file)])

    def is_running(self) -> bool:
        """True if this data dir's broker process is alive (it may still be starting)."""
        return self.pid() is not None

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            server_properties(self.data_dir, self.port, self.controller_port)
        )
        self.log4j_file.write_text(LOG4J2_YAML)

    def _format(self) -> None:
        """Format the storage once; the format writes meta.properties into log.dirs."""
        if (self.log_dirs / "meta.properties").is_file():
            return
        uuid = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", uuid, "-c", str(self.properties_file)
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DeployError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def _launch(self) -> None:
        if shutil.which("java") is None:
            raise DeployError("java (17 or later) is not on PATH")
        self.ensure_jars()
        self._write_config()
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise DeployError(
                    f"port {port} is taken by another process; Kafka for {self.data_dir} "
                    "cannot listen on it"
                )
        self._format()
        pid = spawn_daemon(
            [
                "java",
                f"-Xmx{self.heap}",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp",
                f"{self.jars_dir}/*",
                "kafka.Kafka",
                str(self.properties_file),
            ],
            log_file=self.log_file,
            cwd=self.data_dir,
        )
        write_pid(self.pid_file, pid)

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker unless it already runs, and wait until it serves Kafka requests.

        Reattaches to a broker started earlier (by this or another process) from its pid file.
        """
        if not self.is_running():
            self._launch()
        run_sync(self.wait_ready(timeout))

    async def astart(self, ready_within: float = 60.0) -> None:
        """start() for async callers: the wait for readiness does not block the event loop."""
        if not self.is_running():
            await asyncio.to_thread(self._launch)
        await self.wait_ready(ready_within)

    async def wait_ready(self, ready_within: float = 60.0) -> None:
        """Poll until an admin client can list topics; fail early if the process dies."""
        # Imported here: aiokafka is only needed by callers that wait for the broker.
        from aiokafka.admin import AIOKafkaAdminClient

        deadline = time.monotonic() + ready_within
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise DeployError(
                    f"Kafka exited during startup; last lines of {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            # A plain TCP probe first: aiokafka logs an error for every refused bootstrap.
            if await asyncio.to_thread(port_accepts, self.port):
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=5000
                )
                try:
                    await admin.start()
                    await admin.list_topics()
                    return
                except Exception as exc:  # any failure means: not ready yet
                    last_error = exc
                finally:
                    with contextlib.suppress(Exception):
                        await admin.close()
            await asyncio.sleep(0.2)
        raise DeployError(
            f"Kafka on {self.bootstrap} not ready after {ready_within:.0f} s ({last_error!r}); "
            f"last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def _wait_ports_released(self, timeout: float = 10.0) -> None:
        # Belt and braces for the pid check: a restart must find both ports free.
        wait_until(
            lambda: not port_in_use(self.port) and not port_in_use(self.controller_port), timeout
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown that flushes logs), SIGKILL if it takes over `timeout` s."""
        pid = self.pid()
        if pid is not None:
            if not terminate(pid, timeout):
                log(f"Kafka did not stop within {timeout:.0f} s; killed it")
            self._wait_ports_released()
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (for fault-injection tests)."""
        pid = self.pid()
        if pid is not None:
            kill_hard(pid)
            self._wait_ports_released()
        self.pid_file.unlink(missing_ok=True)
