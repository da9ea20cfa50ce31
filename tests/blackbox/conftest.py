"""Harness for the black-box suites: start the real `sluice` binary on loopback, one per module.

Goal: every test talks to a real broker process over TCP on 127.0.0.1, exactly as an
application would, with its own data directory, and can restart it gracefully (SIGTERM) or
crash it (SIGKILL) on the same data directory.

Method: pick free loopback ports, spawn `target/release/sluice --listen 127.0.0.1:PORT
--data-dir DIR --metrics-listen 127.0.0.1:PORT2` with stdout and stderr captured in a log file,
then poll until the port accepts a connection and answers ApiVersions v0. Start-up and shutdown
are bounded; if the broker exits or never gets ready, the fixture fails at once with the exit
status and the tail of the broker's log. The log tail is also attached to every failed test.

Environment: SLUICE_BIN overrides the binary; SLUICE_START_TIMEOUT_S (default 30) bounds
start-up; SLUICE_LOG (default "info") is passed to the broker as RUST_LOG.
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
LOG_TAIL_LINES = 60
HOST = "127.0.0.1"


# Set once a start timed out, so the rest of the session fails fast instead of waiting again.
_never_ready = False


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

    def __init__(self, workdir: Path, name: str):
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.name = name
        self.port, self.metrics_port = free_ports(2)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.killed_by_test = False
        self.api_versions: dict[int, kafka_wire.VersionRange] = {}
        self.admin_client = None  # cached by clients.admin()
        self.keep_alive: list = []  # clients that must outlive their pending requests
        self.extra_env: dict[str, str] = {}  # added to the broker's environment at each start
        self.extra_args: list[str] = []  # appended to the command line at each start

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

    def command(self) -> list[str]:
        return [
            str(SLUICE_BIN),
            "--listen", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--metrics-listen", f"{HOST}:{self.metrics_port}",
            *self.extra_args,
        ]

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError(f"{self.name}: start() while pid {self.proc.pid} is running")
        if not SLUICE_BIN.is_file():
            raise BrokerError(f"{SLUICE_BIN} does not exist: build it with `cargo build --release --bin sluice`")
        self.starts += 1
        self.killed_by_test = False
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
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        """Poll until the port accepts and answers ApiVersions v0, or fail with the log."""
        global _never_ready
        if _never_ready:
            timeout_s = min(timeout_s, 5.0)
        deadline = time.monotonic() + timeout_s
        last_problem = "never accepted a connection"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(
                    f"{self.name}: sluice exited with status {code} before it was ready on {self.bootstrap}\n"
                    f"{self.log_tail()}")
            try:
                with kafka_wire.Connection(HOST, self.port, timeout_s=2.0) as conn:
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
            f"{self.name}: sluice was not ready on {self.bootstrap} within {timeout_s}s ({last_problem}); killed it\n"
            f"{self.log_tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit status. Kills and raises if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            raise BrokerError(f"{self.name}: sluice ignored SIGTERM for {timeout_s}s; killed it\n{self.log_tail()}")

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> int:
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
        self.killed_by_test = True

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        if not self.is_running():
            raise BrokerError(f"{self.name}: sluice died with status {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Panic messages first (a backtrace can push them out of the tail), then the last lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
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
        return f"Broker({self.bootstrap}, data_dir={self.data_dir})"


def _start_broker(tmp_path_factory: pytest.TempPathFactory, name: str):
    broker = Broker(tmp_path_factory.mktemp(name.replace("/", "_")[:60]), name)
    broker.start()
    try:
        yield broker
    finally:
        died = broker.proc is not None and broker.proc.poll() is not None and not broker.killed_by_test
        broker.stop()
        if died:
            raise BrokerError(f"{name}: sluice exited on its own with status {broker.proc.returncode}\n"
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
                report.sections.append((f"broker {value.bootstrap} (pid {value.proc.pid if value.proc else '-'})",
                                        value.log_tail()))
