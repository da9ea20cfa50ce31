"""Harness for the black-box suites: start the real `sluice` binary on loopback, one per module.

Goal: every test talks to a real broker process over TCP on 127.0.0.1, exactly as an
application would, with its own data directory, and can restart it gracefully (SIGTERM) or
crash it (SIGKILL) on the same data directory. With `--reference kafka` the same tests run
against Apache Kafka instead, to tell a wrong test from a Sluice bug.

Method: pick free loopback ports, spawn `target/release/sluice --listen 127.0.0.1:PORT
--data-dir DIR --metrics-listen 127.0.0.1:PORT2` with stdout and stderr captured in a log file,
then poll until the port accepts a connection and answers ApiVersions v0. Start-up and shutdown
are bounded; if the broker exits or never gets ready, the fixture fails at once with the exit
status and the tail of the broker's log. The log tail is also attached to every failed test.

Reference mode (`pytest --reference kafka`, or `./tests/run blackbox --reference kafka`): the
`broker` and `own_broker` fixtures run `tests/reference/kafka run --port PORT --data-dir DIR`
instead, a single-node KRaft Kafka 4.4.0 in the foreground (the script execs the JVM, so the
process the fixture holds is Kafka itself), behind the same interface. Tests marked
`sluice_only` (Sluice's metrics, flags, fault injection, sluicectl, storage internals) are
skipped there with their reason; `sluice_differs(reason)` marks a test that Kafka passes and
Sluice is known to fail (an expected failure under Sluice only).

Environment: SLUICE_BIN overrides the binary; SLUICE_START_TIMEOUT_S (default 30) bounds
start-up; SLUICE_LOG (default "info") is passed to the broker as RUST_LOG. In reference mode
KAFKA_START_TIMEOUT_S (default 90) bounds a JVM start and KAFKA_FETCH_TIMEOUT_S (default 900)
the one-time fetch of Kafka's jars (SLUICE_CACHE_DIR: see tests/reference/README.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import kafka_wire

REPO_ROOT = Path(__file__).resolve().parents[2]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice")).absolute()
START_TIMEOUT_S = float(os.environ.get("SLUICE_START_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = 15.0
REFERENCE_SCRIPT = REPO_ROOT / "tests" / "reference" / "kafka"
REFERENCE_START_TIMEOUT_S = float(os.environ.get("KAFKA_START_TIMEOUT_S", "90"))
REFERENCE_STOP_TIMEOUT_S = 30.0
REFERENCE_FETCH_TIMEOUT_S = float(os.environ.get("KAFKA_FETCH_TIMEOUT_S", "900"))
LOG_TAIL_LINES = 60
HOST = "127.0.0.1"


# Set once a start timed out, so the rest of the session fails fast instead of waiting again.
_never_ready = False
# The reference broker the session runs against ("kafka"), or None for sluice; set by pytest_configure.
REFERENCE: str | None = None


def pytest_addoption(parser):
    parser.addoption("--reference", choices=("kafka",), default=None, metavar="BROKER",
                     help="run against a reference broker instead of sluice: 'kafka' is Apache Kafka 4.4.0 "
                          "(tests/reference/kafka); tests marked sluice_only are skipped")


def pytest_configure(config):
    global REFERENCE
    REFERENCE = config.getoption("reference")


def pytest_report_header(config):
    if REFERENCE == "kafka":
        return f"broker: Apache Kafka 4.4.0 through {REFERENCE_SCRIPT.relative_to(REPO_ROOT)}"
    return f"broker: {SLUICE_BIN}"


def pytest_collection_modifyitems(config, items):
    """In reference mode, skip what only Sluice has, with the reason the marker gives."""
    if REFERENCE is None:
        return
    for item in items:
        marker = item.get_closest_marker("sluice_only")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "tests Sluice-only behaviour")
            item.add_marker(pytest.mark.skip(reason=f"sluice only: {why}"))


def against_reference() -> bool:
    """True when this session runs against the reference broker rather than sluice."""
    return REFERENCE is not None


def sluice_differs(reason: str):
    """Mark a test that is right (the reference broker passes it) but that Sluice fails: an
    expected, strict failure under Sluice, a plain test against the reference."""
    return pytest.mark.xfail("config.getoption('reference') is None", strict=True,
                             reason=f"sluice differs from Kafka: {reason}")


class BrokerError(Exception):
    """The broker process did not start, stop or stay up as expected."""


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Broker:
    """One `sluice` process and its data directory; restartable on the same data and port."""

    kind = "sluice"
    is_reference = False
    start_timeout_s = START_TIMEOUT_S
    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, workdir: Path, name: str):
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.name = name
        self.port, self.metrics_port = free_ports(2)
        self.port_retries = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.stopped_by_test = False
        self.api_versions: dict[int, kafka_wire.VersionRange] = {}
        self.admin_client = None  # cached by clients.admin()
        self.keep_alive: list = []  # clients that must outlive their pending requests
        self.extra_env: dict[str, str] = {}  # added to the broker's environment at each start
        self.extra_args: list[str] = []  # appended to the command line at each start
        # A `--listeners` value replacing `--listen`; its listener on `port` is the one clients
        # and the readiness check use.
        self.listeners: str | None = None
        # An ssl.SSLContext for the readiness check when the listener on `port` runs TLS.
        self.ready_tls = None

    # ------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        return HOST

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def partition_dir(self, topic: str, partition: int) -> Path:
        """Where the broker keeps a partition's segments: <data>/<topic>-<partition>, as Kafka."""
        return self.data_dir / f"{topic}-{partition}"

    def run_maintenance_every(self, interval_ms: int) -> None:
        """From the next start, apply retention and compaction every interval_ms (default 30 s)."""
        self.extra_args += ["--retention-check-interval-ms", str(interval_ms)]

    def command(self) -> list[str]:
        return [
            str(SLUICE_BIN),
            *(["--listeners", self.listeners] if self.listeners else ["--listen", self.bootstrap]),
            "--data-dir", str(self.data_dir),
            "--metrics-listen", f"{HOST}:{self.metrics_port}",
            *self.extra_args,
        ]

    # ------------------------------------------------------------ lifecycle

    def check_startable(self) -> None:
        if not SLUICE_BIN.is_file():
            raise BrokerError(f"{SLUICE_BIN} does not exist: build it with `cargo build --release --bin sluice`")

    def start(self, timeout_s: float | None = None) -> None:
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        self.launch()
        self._wait_ready(timeout_s)

    def launch(self) -> None:
        """Spawn the process without waiting for it to serve (cluster nodes wait for each other)."""
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError(f"{self.name}: start() while pid {self.proc.pid} is running")
        self.check_startable()
        self.starts += 1
        self.stopped_by_test = False
        env = dict(os.environ)
        env.setdefault("RUST_LOG", os.environ.get("SLUICE_LOG", "info"))
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.data_dir.parent, start_new_session=True)

    def _port_taken_meanwhile(self) -> bool:
        """After the process exited: whether it failed to bind its metrics port (any start) or its
        client port (its first start only: clients know the port afterwards); that port is then
        replaced by another free one."""
        if self.is_reference or self.port_retries >= 3 or not self.log_path.exists():
            return False
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        if "Address already in use" not in last:
            return False
        first_start = self.starts - self.port_retries == 1
        if f"cannot serve metrics on {HOST}:{self.metrics_port}" in last:
            self.metrics_port = free_ports(1)[0]
        elif first_start and f"cannot listen on {HOST}:{self.port}" in last:
            self.port = free_ports(1)[0]
        else:
            return False
        self.port_retries += 1
        return True

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait for a launched process to answer ApiVersions."""
        self._wait_ready(self.start_timeout_s if timeout_s is None else timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        """Poll until the port accepts and answers ApiVersions v0, or fail with the log."""
        global _never_ready
        if _never_ready:
            timeout_s = min(timeout_s, 5.0)
        deadline = time.monotonic() + timeout_s
        last_problem = "never accepted a connection"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None and self._port_taken_meanwhile():
                # A port picked free was taken (by some client's ephemeral port) before the
                # broker bound it: pick another and launch again.
                self.launch()
                continue
            if code is not None:
                raise BrokerError(
                    f"{self.name}: {self.kind} exited with status {code} before it was ready on {self.bootstrap}\n"
                    f"{self.log_tail()}")
            try:
                with kafka_wire.Connection(HOST, self.port, timeout_s=2.0) as conn:
                    if self.ready_tls is not None:
                        conn.sock = self.ready_tls.wrap_socket(conn.sock, server_hostname=HOST)
                    error, versions = kafka_wire.api_versions(conn)
                if error != kafka_wire.ERROR_NONE:
                    last_problem = f"ApiVersions v0 answered error_code {error}"
                elif not versions:
                    last_problem = "ApiVersions v0 answered an empty api list"
                else:
                    self.api_versions = versions
                    return
            except ConnectionRefusedError:
                last_problem = "connection refused"
            except (OSError, kafka_wire.WireError) as e:
                last_problem = f"ApiVersions v0 failed: {e!r}"
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        _never_ready = True
        raise BrokerError(
            f"{self.name}: {self.kind} was not ready on {self.bootstrap} within {timeout_s}s ({last_problem}); "
            f"killed it\n"
            f"{self.log_tail()}")

    def stop(self, timeout_s: float | None = None) -> int:
        """SIGTERM and wait; returns the exit status. Kills and raises if it does not exit in time."""
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.stopped_by_test = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            raise BrokerError(f"{self.name}: {self.kind} ignored SIGTERM for {timeout_s}s; killed it\n"
                              f"{self.log_tail()}")

    def restart(self, timeout_s: float | None = None) -> int:
        """Graceful stop (SIGTERM), then start again on the same data dir and port; returns the exit status."""
        status = self.stop()
        self.start(timeout_s)
        return status

    def kill9(self) -> None:
        """SIGKILL: a crash with no chance to flush. The broker stays down until start()."""
        if self.proc is None or self.proc.poll() is not None:
            raise BrokerError(f"{self.name}: kill9() but the broker is not running\n{self.log_tail()}")
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.stopped_by_test = True

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        if not self.is_running():
            raise BrokerError(f"{self.name}: {self.kind} died with status {self.proc.returncode}\n{self.log_tail()}")

    def log_text(self) -> str | None:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Panic messages first (a backtrace can push them out of the tail), then the last lines."""
        text = self.log_text()
        if text is None:
            return "(no broker log)"
        all_lines = text.splitlines()
        panics = []
        for i, line in enumerate(all_lines):
            if "panicked at" in line and len(panics) < 20:
                panics += all_lines[i:i + 2]
        tail = [line for line in all_lines if not line.lstrip().startswith(("at /", "at ./"))][-lines:]
        out = ""
        if panics:
            out += "----- broker panics -----\n" + "\n".join(panics) + "\n"
        return out + "----- broker log tail -----\n" + "\n".join(tail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bootstrap}, data_dir={self.data_dir})"


_reference_fetched = False


def fetch_reference() -> None:
    """Fetch Kafka's jars once per session (the script does nothing when its cache is complete)."""
    global _reference_fetched
    if _reference_fetched:
        return
    try:
        proc = subprocess.run([str(REFERENCE_SCRIPT), "fetch"], capture_output=True, text=True,
                              timeout=REFERENCE_FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BrokerError(f"{REFERENCE_SCRIPT} fetch took over {REFERENCE_FETCH_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise BrokerError(f"{REFERENCE_SCRIPT} fetch failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    _reference_fetched = True


class ReferenceKafka(Broker):
    """Apache Kafka (single-node KRaft, tests/reference/kafka) behind the Broker interface.

    `extra_properties` are broker properties (server.properties names) given at each start;
    Sluice's command-line flags (`extra_args`) mean nothing to Kafka and are refused. Kafka's
    log dirs are <data>/log-dirs; its log4j output is <data>/server.log.
    """

    kind = "kafka"
    is_reference = True
    start_timeout_s = REFERENCE_START_TIMEOUT_S
    stop_timeout_s = REFERENCE_STOP_TIMEOUT_S

    def __init__(self, workdir: Path, name: str):
        super().__init__(workdir, name)
        self.extra_properties: dict[str, str] = {}

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "log-dirs"

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.log_dirs / f"{topic}-{partition}"

    @property
    def metrics_url(self) -> str:
        raise BrokerError("Kafka serves no Prometheus endpoint: mark the test sluice_only")

    def run_maintenance_every(self, interval_ms: int) -> None:
        """From the next start, check retention and wake the log cleaner every interval_ms."""
        self.extra_properties["log.retention.check.interval.ms"] = str(interval_ms)
        self.extra_properties["log.cleaner.backoff.ms"] = str(interval_ms)

    def check_startable(self) -> None:
        if self.extra_args:
            raise BrokerError(f"{self.name}: sluice flags {self.extra_args} mean nothing to Kafka; "
                              "set extra_properties or mark the test sluice_only")
        fetch_reference()

    def command(self) -> list[str]:
        properties = [arg for name, value in self.extra_properties.items()
                      for arg in ("--property", f"{name}={value}")]
        return [str(REFERENCE_SCRIPT), "run", "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--parent-pid", str(os.getpid()), *properties]

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready means serving every partition: after a restart Kafka answers ApiVersions (and
        Metadata, naming itself leader) a moment before its replica manager leads all the
        partitions it loaded, and meanwhile answers NOT_LEADER_OR_FOLLOWER for them."""
        started = time.monotonic()
        super()._wait_ready(timeout_s)
        self._wait_partitions_served(started + timeout_s)

    def _wait_partitions_served(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        client = AdminClient({"bootstrap.servers": self.bootstrap, "broker.address.family": "v4"})
        while True:
            pending: dict[str, object] = {}
            try:
                metadata = client.list_topics(timeout=10)
                with kafka_wire.Connection(HOST, self.port, timeout_s=10) as conn:
                    for name, topic in metadata.topics.items():
                        if topic.error is not None:
                            pending[name] = topic.error
                            continue
                        answers = kafka_wire.list_offsets(conn, name, sorted(topic.partitions))
                        errors = {p: error for p, (error, _) in answers.items() if error != kafka_wire.ERROR_NONE}
                        if errors:
                            pending[name] = errors
            except Exception as problem:  # noqa: BLE001 - retried until the deadline, then reported
                pending["(request)"] = repr(problem)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"{self.name}: kafka did not serve every partition in time: "
                                  f"{dict(list(pending.items())[:5])}\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout_s: float | None = None) -> int:
        """SIGTERM and wait. The JVM exits with 128 + SIGTERM once its shutdown hooks (Kafka's
        controlled shutdown) have run: that is a clean stop, reported as 0 like sluice's."""
        status = super().stop(timeout_s)
        return 0 if status == 128 + signal.SIGTERM else status

    def log_text(self) -> str | None:
        parts = []
        for path in (self.log_path, self.data_dir / "server.log"):
            try:
                parts.append(f"----- {path.name} -----\n" + path.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(parts) if parts else None


def new_broker(workdir: Path, name: str) -> Broker:
    """A sluice broker, or the reference broker in reference mode (not started)."""
    return ReferenceKafka(workdir, name) if REFERENCE == "kafka" else Broker(workdir, name)


def _start_broker(tmp_path_factory: pytest.TempPathFactory, name: str):
    broker = new_broker(tmp_path_factory.mktemp(name.replace("/", "_")[:60]), name)
    broker.start()
    try:
        yield broker
    finally:
        died = broker.proc is not None and broker.proc.poll() is not None and not broker.stopped_by_test
        broker.stop()
        if died:
            raise BrokerError(f"{name}: {broker.kind} exited on its own with status {broker.proc.returncode}\n"
                              f"{broker.log_tail()}")


@pytest.fixture(scope="module")
def broker(request, tmp_path_factory):
    """A broker shared by the tests of one module; tests use unique topic names."""
    yield from _start_broker(tmp_path_factory, request.module.__name__)


@pytest.fixture
def own_broker(request, tmp_path_factory):
    """A broker for one test alone: for restarts, crashes and anything that changes global state."""
    yield from _start_broker(tmp_path_factory, request.node.name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Broker):
                pid = value.proc.pid if value.proc else "-"
                report.sections.append((f"{value.kind} broker {value.bootstrap} (pid {pid})",
                                        value.log_tail()))
            elif hasattr(value, "log_tails"):  # a cluster of several brokers
                report.sections.append(("cluster logs", value.log_tails()))
