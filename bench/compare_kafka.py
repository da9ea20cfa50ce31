#!/usr/bin/env python3
"""Sluice against Apache Kafka on the same machine (run through bench/compare-kafka).

Every workload runs against a fresh Sluice and a fresh Kafka, one after the other (Sluice,
Kafka, Sluice, Kafka, ...), each on a new temporary data directory; the whole list is repeated
--rounds times and the tables show the median of the rounds. Load generators: produce-load
(Sluice's), Kafka's ProducerPerformance and ConsumerPerformance, and librdkafka (confluent-kafka,
a producer and a consumer loop in this file). Besides throughput and latency, each run records
the broker's CPU time (utime + stime of /proc/PID/stat), its peak RSS (VmHWM), what the host's
CPUs did (steal, other load) and how long the broker took to answer after each start.

Like for like: Kafka by default does not fsync on produce, so Sluice acks=1 is compared with
Kafka's default configuration (acks=1), and Sluice acks=all (fsync before the answer) with Kafka
started with log.flush.interval.messages=1 (an fsync after every append, before the answer).

Only the standard library and confluent-kafka are used. Nothing is pinned; the broker and the
load generator share the machine's cores.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA_SCRIPT = os.path.join(ROOT, "tests", "reference", "kafka")
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
GB = 1e9
MIB = 1 << 20

# Producer settings shared by every load generator (see PRODUCER_WHY).
BATCH_BYTES = 1 << 20
LINGER_MAX_MS = 5
LINGER_RATE_MS = 1
MAX_REQUEST_BYTES = 4 << 20
IN_FLIGHT = 5
PRODUCE_LOAD_CONNECTIONS = 2
PRODUCER_WHY = (
    "batch.size 1 MiB, max.request.size 4 MiB, 5 requests in flight, no compression, "
    "idempotence off, null keys, 4 partitions; linger.ms 5 for max-throughput runs and 1 for "
    "fixed-rate runs. Large batches and several partitions per request make each request carry "
    "much data, so the broker's per-byte work, not the client's per-request work, sets the "
    "maximum; linger 1 ms at fixed rates keeps the batching wait (which both brokers would see "
    "alike) small beside the broker's share of latency. produce-load uses 2 connections; the "
    "Java producer and librdkafka use one connection per broker, as they always do."
)
KAFKA_FLUSH_PROPERTY = "log.flush.interval.messages=1"

# Fixed rates (records/s) for the latency runs: well below what either broker sustains here,
# so that latency, not a backlog, is measured.
DEFAULT_RATES = {(100, "1"): 200_000, (1024, "1"): 50_000, (100, "all"): 100_000, (1024, "all"): 20_000}


class BrokerFailed(Exception):
    """A broker died or stopped answering while it was being measured."""


# ---------------------------------------------------------------- small helpers


def now():
    return time.monotonic()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def read_file(path, default=""):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds; None when it is gone."""
    text = read_file(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    for line in read_file(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def host_cpu_ticks():
    """The aggregate line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    line = read_file("/proc/stat").splitlines()[0].split()
    return [int(x) for x in line[1:9]]


def host_cpu_share(before, after):
    """Shares of all CPUs' time between two host_cpu_ticks(), and busy CPU seconds."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = d
    busy = user + nice + system + irq + softirq
    return {
        "busy_pct": round(100 * busy / total, 1),
        "steal_pct": round(100 * steal / total, 1),
        "iowait_pct": round(100 * iowait / total, 1),
        "idle_pct": round(100 * idle / total, 1),
        "busy_cpu_s": busy / CLK_TCK,
    }


def disk_stat_path(path):
    """/sys/dev/block/MAJ:MIN/stat of the block device holding path (None if there is none)."""
    dev = os.stat(path).st_dev
    stat = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat"
    return stat if os.path.exists(stat) else None


def disk_ticks(stat_path):
    """(sectors written, ms the device was busy) from a block device's stat file."""
    if not stat_path:
        return None
    fields = read_file(stat_path).split()
    return (int(fields[6]), int(fields[9])) if len(fields) > 9 else None


def load_avg_1m():
    return float(read_file("/proc/loadavg", "0").split()[0])


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def dir_bytes(path):
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
            except OSError:
                pass
    return total


def tail(path, lines=30):
    text = read_file(path)
    return "\n".join(text.splitlines()[-lines:])


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fmt_rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.0f} k"
    return f"{value:.0f}"


def fmt_num(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}x"


# ---------------------------------------------------------------- processes


class Children:
    """Every process this script starts; all are ended on exit, whatever the exit."""

    def __init__(self):
        self.procs = []
        setpriv = shutil.which("setpriv")
        # The kernel kills the children if this process dies without cleaning up (kill -9).
        self.prefix = [setpriv, "--pdeathsig", "KILL"] if setpriv else []

    def spawn(self, argv, **kwargs):
        proc = subprocess.Popen(self.prefix + list(argv), stdin=subprocess.DEVNULL, **kwargs)
        self.procs.append(proc)
        return proc

    def end(self, proc, grace_s=15.0):
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def end_all(self):
        for proc in list(self.procs):
            if proc.poll() is None:
                try:
                    proc.terminate()
                except OSError:
                    pass
        deadline = now() + 20
        for proc in list(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - now()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


CHILDREN = Children()


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


class LineReader:
    """Collects a pipe's lines with their arrival times, in a thread."""

    def __init__(self, stream):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for raw in iter(stream.readline, b""):
            self.lines.append((now(), raw.decode("utf-8", "replace").rstrip("\n")))
        stream.close()

    def join(self):
        self.thread.join(timeout=10)

    def text(self):
        return [line for _t, line in self.lines]


# ---------------------------------------------------------------- the Kafka protocol, by hand


def _recv_exact(sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _string(value):
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _request(sock, api_key, version, body, correlation_id=7):
    header = struct.pack(">hhih", api_key, version, correlation_id, -1)
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    response = _recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise ConnectionError("correlation id mismatch")
    return response[4:]


class _Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        size = self.take(">h")
        if size < 0:
            return None
        value = self.data[self.at:self.at + size].decode()
        self.at += size
        return value


def probe_api_versions(port, timeout=0.5):
    """True when the port answers ApiVersions v0 with error code 0."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            body = _request(sock, 18, 0, b"")
            return struct.unpack(">h", body[:2])[0] == 0
    except (OSError, ConnectionError, struct.error):
        return False


def probe_serving(port, topic, partitions, timeout=1.0, offsets=None):
    """True when Metadata v4 lists the topic's partitions, each with a leader and no error, and
    ListOffsets v1 answers the latest offset of each without error: the logs are loaded. The
    offsets go into the list `offsets` when one is given."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            topics = b"" if topic is None else _string(topic)
            body = _request(sock, 3, 4, struct.pack(">i", 0 if topic is None else 1) + topics + b"\x00")
            if topic is None:
                return True
            r = _Reader(body)
            r.take(">i")  # throttle
            for _ in range(r.take(">i")):
                r.take(">i"); r.string(); r.take(">i"); r.string()
            r.string()  # cluster id
            r.take(">i")  # controller
            ok = set()
            for _ in range(r.take(">i")):
                error, name, _internal = r.take(">h"), r.string(), r.take(">b")
                for _ in range(r.take(">i")):
                    p_error, index, leader = r.take(">hii")
                    r.take(f">{r.take('>i')}i")
                    r.take(f">{r.take('>i')}i")
                    if name == topic and error == 0 and p_error == 0 and leader >= 0:
                        ok.add(index)
            if len(ok) < partitions:
                return False
            parts = b"".join(struct.pack(">iq", p, -1) for p in range(partitions))
            body = _request(sock, 2, 1, struct.pack(">ii", -1, 1) + _string(topic) + struct.pack(">i", partitions) + parts, 8)
            r = _Reader(body)
            found = []
            for _ in range(r.take(">i")):
                r.string()
                for _ in range(r.take(">i")):
                    _index, error, _ts, offset = r.take(">ihqq")
                    if error != 0:
                        return False
                    found.append(offset)
            if offsets is not None:
                offsets[:] = found
            return len(found) == partitions
    except (OSError, ConnectionError, struct.error, UnicodeDecodeError):
        return False


def log_end_offsets(port, topic, partitions):
    offsets = []
    return offsets if probe_serving(port, topic, partitions, offsets=offsets) else None


# ---------------------------------------------------------------- brokers


class Broker:
    """One broker process on one data directory; restartable on the same directory."""

    name = "?"
    config = "?"

    def __init__(self, ctx, data_dir):
        self.ctx = ctx
        self.data_dir = data_dir
        self.port = free_port()
        self.proc = None

    # Subclasses give argv(), log_path(), log_files(), extra_files(), data_bytes(); exec_marker
    # names the process the broker becomes when a wrapper script execs it.
    exec_marker = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, topic=None, partitions=0, timeout_s=300):
        """Starts the broker and waits until it serves; returns the timings (seconds)."""
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path(), "ab")
        spawned = now()
        self.proc = CHILDREN.spawn(self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        exec_at = spawned if self.exec_marker is None else None
        api_at = serving_at = None
        deadline = spawned + timeout_s
        while serving_at is None:
            if self.proc.poll() is not None:
                raise BrokerFailed(f"{self.name} exited with status {self.proc.returncode} while starting\n{self.log_tail()}")
            if now() > deadline:
                raise BrokerFailed(f"{self.name} did not serve within {timeout_s} s\n{self.log_tail()}")
            if exec_at is None:
                cmdline = read_file(f"/proc/{self.pid}/cmdline")
                if self.exec_marker in cmdline:
                    exec_at = now()
                time.sleep(0.005)
                continue
            if api_at is None:
                if probe_api_versions(self.port):
                    api_at = now()
                else:
                    time.sleep(0.02)
                    continue
            if probe_serving(self.port, topic, partitions):
                serving_at = now()
            else:
                time.sleep(0.02)
        timing = {
            "spawn_to_exec_s": round(exec_at - spawned, 3),
            "api_versions_s": round(api_at - exec_at, 3),
            "serving_s": round(serving_at - exec_at, 3),
        }
        return timing

    def check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            status = None if self.proc is None else self.proc.returncode
            raise BrokerFailed(f"{self.name} died (status {status})\n{self.log_tail()}")

    def cpu_s(self):
        return proc_cpu_seconds(self.pid)

    def peak_rss_mib(self):
        kb = proc_status_kb(self.pid, "VmHWM")
        return None if kb is None else round(kb / 1024, 1)

    def stop(self):
        """SIGTERM (clean shutdown), SIGKILL after 30 s; returns seconds taken."""
        if self.proc is None:
            return None
        started = now()
        CHILDREN.end(self.proc, grace_s=30)
        self.proc = None
        return round(now() - started, 3)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        if self.proc in CHILDREN.procs:
            CHILDREN.procs.remove(self.proc)
        self.proc = None

    def log_tail(self, lines=30):
        return "\n".join(f"--- {path}\n{tail(path, lines)}" for path in self.log_files())

    def remove(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        for path in self.extra_files():
            try:
                os.remove(path)
            except OSError:
                pass
        os.sync()


class SluiceBroker(Broker):
    name = "sluice"

    def __init__(self, ctx, data_dir, shards=None):
        super().__init__(ctx, data_dir)
        self.shards = shards
        self.config = "default" if shards is None else f"--shards {shards}"

    def argv(self):
        argv = [self.ctx.sluice_bin, "--listen", f"{HOST}:{self.port}", "--data-dir", self.data_dir]
        if self.shards is not None:
            argv += ["--shards", str(self.shards)]
        return argv

    def log_path(self):
        return self.data_dir + ".log"

    def log_files(self):
        return [self.log_path()]

    def extra_files(self):
        return [self.log_path()]

    def data_bytes(self):
        return dir_bytes(self.data_dir)


class KafkaBroker(Broker):
    name = "kafka"
    exec_marker = "kafka.Kafka"

    def __init__(self, ctx, data_dir, flush_each=False):
        super().__init__(ctx, data_dir)
        self.flush_each = flush_each
        self.config = KAFKA_FLUSH_PROPERTY if flush_each else "default"

    def argv(self):
        argv = [KAFKA_SCRIPT, "run", "--data-dir", self.data_dir, "--port", str(self.port), "--parent-pid", str(os.getpid())]
        if self.flush_each:
            argv += ["--property", KAFKA_FLUSH_PROPERTY]
        return argv

    def log_path(self):
        return self.data_dir + ".run.log"

    def log_files(self):
        return [self.log_path(), os.path.join(self.data_dir, "server.log"), os.path.join(self.data_dir, "kafka.out")]

    def extra_files(self):
        return [self.log_path()]

    def data_bytes(self):
        return dir_bytes(os.path.join(self.data_dir, "log-dirs"))


def create_topic(port, topic, partitions):
    """Creates the topic (confluent-kafka's admin client) and waits until it serves."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}"})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as error:
            if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                raise
    deadline = now() + 30
    while not probe_serving(port, topic, partitions):
        if now() > deadline:
            raise BrokerFailed(f"topic {topic} not served 30 s after its creation")
        time.sleep(0.05)


# ---------------------------------------------------------------- load generators


class ToolRun:
    """Runs one load-generator command against a broker, bounded in time, and measures the
    broker's CPU and the host's CPUs over the whole run and over the measured window."""

    def __init__(self, broker, argv, timeout_s, window_start_s=0.0, stop_after_s=None, env=None):
        self.broker = broker
        self.argv = argv
        self.timeout_s = timeout_s
        self.window_start_s = window_start_s
        self.stop_after_s = stop_after_s
        self.env = env

    def run(self):
        broker = self.broker
        cpu0, host0, kids0, load0 = broker.cpu_s(), host_cpu_ticks(), children_cpu_seconds(), load_avg_1m()
        disk0 = disk_ticks(broker.ctx.disk_stat)
        me0 = sum(os.times()[:2])
        started = self.started_at = now()
        proc = CHILDREN.spawn(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=self.env)
        out, err = LineReader(proc.stdout), LineReader(proc.stderr)
        window_cpu = window_host = None
        window_at = started + self.window_start_s
        end_at = started + (self.stop_after_s if self.stop_after_s is not None else self.timeout_s)
        stopped = timed_out = False
        while proc.poll() is None:
            t = now()
            if window_cpu is None and t >= window_at:
                window_cpu, window_host, window_at = broker.cpu_s(), host_cpu_ticks(), t
            if t >= end_at:
                stopped = self.stop_after_s is not None
                timed_out = not stopped
                break
            if broker.proc.poll() is not None:
                break
            time.sleep(0.02)
        end = now()
        cpu1, host1, disk1 = broker.cpu_s(), host_cpu_ticks(), disk_ticks(broker.ctx.disk_stat)
        if proc.poll() is None:
            CHILDREN.end(proc, grace_s=5)
        else:
            CHILDREN.end(proc)
        out.join(), err.join()
        tool_cpu = children_cpu_seconds() - kids0
        own_cpu = sum(os.times()[:2]) - me0
        broker.check_alive()
        wall = end - started
        host_all = host_cpu_share(host0, host1)
        result = {
            "argv": self.argv,
            "exit": proc.returncode,
            "stopped_at_duration": stopped,
            "timed_out": timed_out,
            "wall_s": round(wall, 3),
            "broker_cpu_s": round(cpu1 - cpu0, 3),
            "tool_cpu_s": round(tool_cpu, 3),
            "script_cpu_s": round(own_cpu, 3),
            "broker_peak_rss_mib": broker.peak_rss_mib(),
            "load_avg_1m_at_start": load0,
            "host_cpu": {k: v for k, v in host_all.items() if k != "busy_cpu_s"},
            # CPU used by neither the broker nor the load generator (other work on the machine).
            "other_cores": round(max(0.0, host_all["busy_cpu_s"] - (cpu1 - cpu0) - tool_cpu - own_cpu) / wall, 2) if wall > 0 else None,
            # The data disk over the run: GB written to the device and the share of time it was busy.
            "disk": {"written_gb": round((disk1[0] - disk0[0]) * 512 / GB, 3), "busy_pct": round(100 * (disk1[1] - disk0[1]) / 1000 / wall, 1)}
                    if disk0 and disk1 and wall > 0 else None,
            "stdout": out.text()[-40:],
            "stderr": err.text()[-20:],
        }
        if window_cpu is not None and end > window_at:
            result["window_s"] = round(end - window_at, 3)
            result["window_broker_cores"] = round((cpu1 - window_cpu) / (end - window_at), 3)
            window = host_cpu_share(window_host, host1)
            result["window_host_cpu"] = {k: v for k, v in window.items() if k != "busy_cpu_s"}
        self.lines = out.lines
        return result


def produce_load_argv(ctx, port, topic, size, acks, rate=None, records=None):
    argv = [ctx.produce_load_bin, "--bootstrap-server", f"{HOST}:{port}", "--topic", topic,
            "--partitions", str(ctx.partitions), "--record-size", str(size), "--acks", acks,
            "--batch-size", str(BATCH_BYTES), "--max-request-size", str(MAX_REQUEST_BYTES),
            "--max-in-flight", str(IN_FLIGHT), "--connections", str(PRODUCE_LOAD_CONNECTIONS), "--json"]
    if records is not None:
        argv += ["--records", str(records), "--linger-ms", str(LINGER_MAX_MS)]
    else:
        argv += ["--duration", f"{ctx.duration}s", "--warmup", f"{ctx.warmup}s"]
        argv += ["--linger-ms", str(LINGER_RATE_MS if rate else LINGER_MAX_MS)]
    if rate:
        argv += ["--rate", str(rate)]
    return argv


def parse_produce_load(run, size):
    report = None
    for line in reversed(run["stdout"]):
        if line.startswith("{"):
            try:
                report = json.loads(line)
                break
            except ValueError:
                pass
    if report is None:
        return {"ok": False, "problem": "no JSON report"}
    latency = report.get("latency_us") or {}
    host = ((report.get("run") or {}).get("host_cpu") or {}).get("over_run") or {}
    problems = []
    if report.get("errors"):
        problems.append(f"{report['errors']} records failed: {report.get('error_codes')}")
    if report.get("fatal"):
        problems.append(f"fatal: {report['fatal']}")
    if report.get("timed_out"):
        problems.append("timed out")
    return {
        "ok": not problems,
        "problem": "; ".join(problems) or None,
        "records_per_sec": report.get("records_per_sec"),
        "mib_per_sec": round(report["records_per_sec"] * size / MIB, 2) if report.get("records_per_sec") else None,
        "records_acked": report.get("records_acked"),
        "p50_ms": latency.get("p50") / 1000 if latency.get("p50") is not None else None,
        "p99_ms": latency.get("p99") / 1000 if latency.get("p99") is not None else None,
        "p999_ms": latency.get("p999") / 1000 if latency.get("p999") is not None else None,
        "max_ms": latency.get("max") / 1000 if latency.get("max") is not None else None,
        "steal_pct_reported": host.get("steal_pct"),
        "report": report,
    }


def java_argv(ctx, main, *args):
    return [ctx.java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-cp", ctx.classpath, main, *args]


def producer_perf_argv(ctx, port, topic, size, acks, rate=None):
    props = [f"acks={acks}", f"batch.size={BATCH_BYTES}", f"linger.ms={LINGER_RATE_MS if rate else LINGER_MAX_MS}",
             f"max.request.size={MAX_REQUEST_BYTES}", f"buffer.memory={64 * MIB}",
             f"max.in.flight.requests.per.connection={IN_FLIGHT}", "enable.idempotence=false",
             "compression.type=none"]
    if rate:
        records, warmup = rate * (ctx.warmup + ctx.duration), rate * ctx.warmup
        extra = ["--num-records", str(records), "--warmup-records", str(warmup), "--throughput", str(rate)]
    else:
        extra = ["--num-records", "2000000000", "--throughput", "-1"]
    return java_argv(ctx, "org.apache.kafka.tools.ProducerPerformance", "--bootstrap-server", f"{HOST}:{port}",
                     "--topic", topic, "--record-size", str(size), "--reporting-interval", "1000", *extra,
                     "--command-property", *props)


PP_INTERVAL = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \([\d.]+ MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency\.$")
PP_SUMMARY = re.compile(r"^(\d+) (steady state )?records sent, ([\d.]+) records/sec \([\d.]+ MB/sec\), ([\d.]+) ms avg latency, "
                        r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th\.$")


def parse_producer_perf_max(run, lines, window_from, size):
    """Closed loop: the run is stopped at warm-up + duration; throughput is the sum of the
    one-second progress lines that arrived after the warm-up."""
    records = seconds = 0.0
    for t, line in lines:
        match = PP_INTERVAL.match(line)
        if match and t > window_from:
            count, rate = int(match.group(1)), float(match.group(2))
            if rate > 0:
                records += count
                seconds += count / rate
    errors = [line for line in run["stderr"] + run["stdout"] if "Exception" in line or "ERROR" in line]
    if seconds == 0:
        return {"ok": False, "problem": "no progress lines after the warm-up", "errors": errors[-5:]}
    rps = records / seconds
    return {"ok": not errors, "problem": "; ".join(errors[-3:]) or None, "records_per_sec": round(rps, 1),
            "mib_per_sec": round(rps * size / MIB, 2), "measured_records": int(records)}


def parse_producer_perf_rate(run, size):
    steady = None
    for line in run["stdout"]:
        match = PP_SUMMARY.match(line)
        if match and match.group(2):
            steady = match
    if steady is None:
        return {"ok": False, "problem": "no steady-state summary (did not finish in time)" if run["timed_out"] else "no steady-state summary"}
    rps = float(steady.group(3))
    return {"ok": True, "problem": None, "records_per_sec": rps, "mib_per_sec": round(rps * size / MIB, 2),
            "p50_ms": float(steady.group(6)), "p99_ms": float(steady.group(8)), "p999_ms": float(steady.group(9)),
            "max_ms": float(steady.group(5)), "avg_ms": float(steady.group(4))}


def rdkafka_produce_argv(ctx, port, topic, size, acks):
    return [sys.executable, os.path.abspath(__file__), "_rdkafka-produce", "--bootstrap-server", f"{HOST}:{port}",
            "--topic", topic, "--record-size", str(size), "--acks", acks, "--duration", str(ctx.duration),
            "--warmup", str(ctx.warmup)]


def consumer_perf_argv(ctx, port, topic, records):
    return java_argv(ctx, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", f"{HOST}:{port}",
                     "--topic", topic, "--num-records", str(records), "--timeout", "20000",
                     "--group", f"cp-{uuid.uuid4().hex[:8]}", "--command-property", "group.protocol=classic")


def parse_consumer_perf(run, records, size):
    header = values = None
    for line in run["stdout"]:
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
        elif header and values is None and line.count(",") == len(header) - 1:
            values = dict(zip(header, [v.strip() for v in line.split(",")]))
    if not values:
        return {"ok": False, "problem": "no result line"}
    consumed = int(values["data.consumed.in.nMsg"])
    rps = float(values["fetch.nMsg.sec"])
    ok = consumed >= records
    return {"ok": ok, "problem": None if ok else f"consumed {consumed} of {records}", "records_per_sec": round(rps, 1),
            "mib_per_sec": round(rps * size / MIB, 2), "records": consumed,
            "fetch_time_ms": float(values["fetch.time.ms"]), "rebalance_time_ms": float(values["rebalance.time.ms"])}


def rdkafka_consume_argv(port, topic, records, size):
    return [sys.executable, os.path.abspath(__file__), "_rdkafka-consume", "--bootstrap-server", f"{HOST}:{port}",
            "--topic", topic, "--records", str(records), "--record-size", str(size)]


def parse_last_json(run):
    for line in reversed(run["stdout"]):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


# ---------------------------------------------------------------- workloads


class Context:
    pass


def kafka_flush_for(acks):
    return acks == "all"


def like_for_like(acks):
    if acks == "all":
        return f"Sluice acks=all (fsync before the answer) | Kafka acks=all with {KAFKA_FLUSH_PROPERTY}"
    return "Sluice acks=1 | Kafka default (no fsync), acks=1"


def make_broker(ctx, which, acks, label):
    data_dir = tempfile.mkdtemp(prefix=f"cmpk-{which}-{label}-", dir=ctx.data_root)
    if which == "sluice":
        return SluiceBroker(ctx, data_dir, ctx.sluice_shards)
    return KafkaBroker(ctx, data_dir, flush_each=kafka_flush_for(acks))


def per_gb(cores, mib_per_sec):
    """Broker CPU seconds per GB (10^9 bytes of record values) from cores used and MiB/s."""
    if cores is None or not mib_per_sec:
        return None
    return round(cores / (mib_per_sec * MIB / GB), 3)


def warm_broker(ctx, broker, size, acks):
    """A freshly started broker first takes --broker-warmup seconds of produce-load traffic on
    another topic, open loop at the fixed rate of this record size and acks, so that a JVM's
    JIT compiler has warmed up before anything is measured. A fixed rate leaves both brokers
    with the same small amount of data (at most about 150 MB) rather than a closed loop's
    gigabytes of dirty page cache whose writeback would run into the measurement."""
    if ctx.broker_warmup <= 0:
        return None
    create_topic(broker.port, "warmup", ctx.partitions)
    argv = produce_load_argv(ctx, broker.port, "warmup", size, acks, rate=ctx.rates[(size, acks)])
    argv[argv.index("--duration") + 1] = f"{ctx.broker_warmup}s"
    argv[argv.index("--warmup") + 1] = "0s"
    run = ToolRun(broker, argv, timeout_s=ctx.broker_warmup + 60).run()
    result = parse_produce_load(run, size)
    return {"argv": argv, "records_per_sec": result.get("records_per_sec"), "p99_ms": result.get("p99_ms"),
            "ok": result["ok"], "problem": result.get("problem"), "broker_cpu_s": run["broker_cpu_s"]}


def workload_produce(ctx, broker, spec):
    size, acks, tool, rate = spec["size"], spec["acks"], spec["tool"], spec.get("rate")
    topic = "cmp"
    warm = warm_broker(ctx, broker, size, acks)
    create_topic(broker.port, topic, ctx.partitions)
    window = ctx.warmup
    if tool == "produce-load":
        argv = produce_load_argv(ctx, broker.port, topic, size, acks, rate=rate)
        run = ToolRun(broker, argv, timeout_s=ctx.warmup + ctx.duration + 60, window_start_s=window).run()
        result = parse_produce_load(run, size)
        result.pop("report", None)
        run["produce_load_report"] = parse_last_json(run)
    elif tool == "java-producer-perf":
        argv = producer_perf_argv(ctx, broker.port, topic, size, acks, rate=rate)
        # The JVM takes about a second to start; the warm-up counts from then.
        window = ctx.warmup + 1.0
        if rate:
            tr = ToolRun(broker, argv, timeout_s=1.5 * (ctx.warmup + ctx.duration) + 20, window_start_s=window)
            run = tr.run()
            result = parse_producer_perf_rate(run, size)
        else:
            tr = ToolRun(broker, argv, timeout_s=ctx.warmup + ctx.duration + 60, window_start_s=window,
                         stop_after_s=window + ctx.duration)
            run = tr.run()
            result = parse_producer_perf_max(run, tr.lines, tr.started_at + window, size)
    elif tool == "librdkafka":
        argv = rdkafka_produce_argv(ctx, broker.port, topic, size, acks)
        run = ToolRun(broker, argv, timeout_s=ctx.warmup + ctx.duration + 60, window_start_s=window).run()
        report = parse_last_json(run) or {}
        result = {"ok": bool(report) and not report.get("errors"), "problem": None if report and not report.get("errors") else f"errors: {report.get('errors', 'no report')}",
                  "records_per_sec": report.get("records_per_sec"), "mib_per_sec": report.get("mib_per_sec"),
                  "client_cpu_cores": report.get("client_cpu_cores"), "report": report}
    else:
        raise ValueError(tool)
    if rate and result.get("records_per_sec") and result["records_per_sec"] < 0.95 * rate:
        result["ok"] = False
        result["problem"] = (result.get("problem") or "") + f" fell behind: {result['records_per_sec']:.0f} of {rate} records/s"
    cores = run.get("window_broker_cores")
    result["broker_cores"] = cores
    result["broker_cpu_s_per_gb"] = per_gb(cores, result.get("mib_per_sec"))
    result["broker_peak_rss_mib"] = run["broker_peak_rss_mib"]
    return {"result": result, "run": run, "broker_warmup": warm}


def workload_consume(ctx, broker, spec):
    size = spec["size"]
    records = spec["records"]
    topic = "cmpc"
    create_topic(broker.port, topic, ctx.partitions)
    fill_argv = produce_load_argv(ctx, broker.port, topic, size, "1", records=records)
    fill = ToolRun(broker, fill_argv, timeout_s=600).run()
    fill_result = parse_produce_load(fill, size)
    fill_result.pop("report", None)
    if not fill_result["ok"]:
        return {"result": {"ok": False, "problem": f"fill failed: {fill_result['problem']}"}, "run": {"fill": fill}}
    os.sync()
    out = {"fill": {"result": fill_result, "run": fill}}
    # Not measured: a consumer group joins and reads the first records, so that the group
    # coordinator is set up (Kafka creates __consumer_offsets) and the fetch path is warm.
    warm = ToolRun(broker, rdkafka_consume_argv(broker.port, topic, min(records, 200_000), size), timeout_s=120).run()
    out["warmup_consumer"] = {"report": parse_last_json(warm), "wall_s": warm["wall_s"], "broker_cpu_s": warm["broker_cpu_s"]}
    for tool in consume_tools(size):
        if tool == "java-consumer-perf":
            run = ToolRun(broker, consumer_perf_argv(ctx, broker.port, topic, records), timeout_s=300).run()
            result = parse_consumer_perf(run, records, size)
        else:
            run = ToolRun(broker, rdkafka_consume_argv(broker.port, topic, records, size), timeout_s=300).run()
            report = parse_last_json(run) or {}
            ok = report.get("records") == records and not report.get("errors")
            result = {"ok": ok, "problem": None if ok else f"consumed {report.get('records')} of {records}, errors {report.get('errors')}",
                      "records_per_sec": report.get("records_per_sec"), "mib_per_sec": report.get("mib_per_sec"),
                      "client_cpu_cores": report.get("client_cpu_cores"), "report": report}
        # Everything the broker did while this consumer ran, per GB it served.
        gbytes = (result.get("records") or records) * size / GB if result.get("ok") else None
        result["broker_cpu_s_per_gb"] = round(run["broker_cpu_s"] / gbytes, 3) if gbytes else None
        result["broker_peak_rss_mib"] = run["broker_peak_rss_mib"]
        out[tool] = {"result": result, "run": run}
    return {"result": {"ok": all(out[t]["result"]["ok"] for t in consume_tools(size))}, "tools": out}


def consume_tools(size):
    # At 100 B, Python's per-message cost caps the librdkafka loop near 170 k records/s on this
    # machine whatever the broker does (and 10 M records take a minute), so only the Java
    # consumer reads 100 B records.
    return ("java-consumer-perf",) if size == 100 else ("java-consumer-perf", "librdkafka")


def workload_restart(ctx, broker, spec, first_start):
    """Starts and restarts: kill -9 of an idle broker with one empty topic (a baseline for what a
    restart after a crash costs without data), then a data directory of --big-dir-gb GB: a
    clean stop and start, then kill -9 under load and the restart that recovers from it. Log end
    offsets after the recovery are compared with what was acknowledged before the kill."""
    topic = "big"
    size = 1024
    out = {"empty_start": first_start}
    create_topic(broker.port, topic, ctx.partitions)
    broker.kill9()
    out["idle_kill9_start"] = broker.start(topic, ctx.partitions, timeout_s=600)
    records = int(ctx.big_dir_gb * GB / size)
    fill = ToolRun(broker, produce_load_argv(ctx, broker.port, topic, size, "1", records=records), timeout_s=1800).run()
    fill_result = parse_produce_load(fill, size)
    fill_result.pop("report", None)
    if not fill_result["ok"]:
        return {"result": {"ok": False, "problem": f"fill failed: {fill_result['problem']}"}, "run": {"fill": fill}, "details": out}
    out["fill"] = {"result": fill_result, "wall_s": fill["wall_s"], "broker_cpu_s": fill["broker_cpu_s"]}
    # What the broker costs when nobody talks to it: CPU over 5 idle seconds after the fill.
    cpu0, t0 = broker.cpu_s(), now()
    time.sleep(5)
    out["idle_cores"] = round((broker.cpu_s() - cpu0) / (now() - t0), 3)
    out["clean_stop_s"] = broker.stop()
    os.sync()
    out["data_bytes"] = broker.data_bytes()
    out["big_start"] = broker.start(topic, ctx.partitions, timeout_s=1800)
    out["big_start_peak_rss_mib"] = broker.peak_rss_mib()
    offsets_before = log_end_offsets(broker.port, topic, ctx.partitions) or []
    # Under load: open loop at a rate both brokers sustain, so both have the same unflushed tail.
    rate = ctx.kill_load_rate
    load_argv = produce_load_argv(ctx, broker.port, topic, size, "1", rate=rate)
    load_argv[load_argv.index("--duration") + 1] = f"{ctx.kill_after_s + 30}s"
    load_argv[load_argv.index("--warmup") + 1] = "0s"
    load = CHILDREN.spawn(load_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out_lines, err_lines = LineReader(load.stdout), LineReader(load.stderr)
    time.sleep(ctx.kill_after_s)
    broker.check_alive()
    cpu_before_kill = broker.cpu_s()
    broker.kill9()
    killed_at = now()
    try:
        load.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    CHILDREN.end(load, grace_s=5)
    out_lines.join(), err_lines.join()
    report = None
    for line in reversed(out_lines.text()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
                break
            except ValueError:
                pass
    acked = (report or {}).get("records_acked")
    out["kill_load"] = {"argv": load_argv, "records_per_sec_target": rate, "killed_after_s": ctx.kill_after_s,
                        "load_exit": load.returncode, "records_acked": acked,
                        "fatal": (report or {}).get("fatal"), "load_stderr_tail": err_lines.text()[-3:],
                        "broker_cpu_s_before_kill": cpu_before_kill}
    out["data_bytes_at_kill"] = broker.data_bytes()
    out["recovery_start"] = broker.start(topic, ctx.partitions, timeout_s=1800)
    out["recovery_wait_after_kill_s"] = round(now() - killed_at, 3)
    out["recovery_peak_rss_mib"] = broker.peak_rss_mib()
    offsets_after = log_end_offsets(broker.port, topic, ctx.partitions) or []
    out["log_end_offsets"] = {"after_fill": offsets_before, "after_recovery": offsets_after}
    if offsets_before and offsets_after and acked is not None:
        # Records acknowledged (acks=1) before the kill that the recovered log no longer has.
        # A process kill leaves the page cache, so neither broker should lose any.
        out["acked_records_missing_after_recovery"] = max(0, sum(offsets_before) + acked - sum(offsets_after))
    problem = None
    if out.get("acked_records_missing_after_recovery"):
        problem = f"{out['acked_records_missing_after_recovery']} acknowledged records missing after kill -9 and recovery"
    return {"result": {"ok": problem is None, "problem": problem}, "details": out}


def workload_list(ctx):
    sizes, acks_values = (100, 1024), ("1", "all")
    items = []
    for size in sizes:
        for acks in acks_values:
            for tool in ("produce-load", "java-producer-perf", "librdkafka"):
                if tool == "librdkafka" and size == 100:
                    continue  # Python's per-record produce() is the limit at 100 B, not a broker
                items.append({"kind": "produce-max", "size": size, "acks": acks, "tool": tool})
    for size in sizes:
        for acks in acks_values:
            for tool in ("produce-load", "java-producer-perf"):
                # ProducerPerformance is not open loop and reports whole milliseconds: it is the
                # cross-check on two of the four, produce-load measures all four.
                if tool == "java-producer-perf" and (size, acks) not in ((100, "1"), (1024, "all")):
                    continue
                items.append({"kind": "produce-rate", "size": size, "acks": acks, "tool": tool, "rate": ctx.rates[(size, acks)]})
    for size in sizes:
        records = ctx.consume_bytes // size
        items.append({"kind": "consume", "size": size, "acks": "1", "tool": "+".join(consume_tools(size)), "records": records})
    items.append({"kind": "restart", "size": 1024, "acks": "1", "tool": "produce-load", "gb": ctx.big_dir_gb})
    if ctx.quick:
        keep = {("produce-max", 100, "1", "produce-load"), ("produce-max", 1024, "all", "produce-load"),
                ("produce-max", 1024, "all", "java-producer-perf"),
                ("produce-max", 1024, "1", "librdkafka"), ("produce-rate", 100, "1", "produce-load"),
                ("produce-rate", 100, "1", "java-producer-perf"), ("consume", 1024, "1", "java-consumer-perf+librdkafka"),
                ("restart", 1024, "1", "produce-load")}
        items = [w for w in items if (w["kind"], w["size"], w["acks"], w["tool"]) in keep]
    for w in items:
        w["id"] = workload_id(w)
    if ctx.only:
        items = [w for w in items if re.search(ctx.only, w["id"])]
    return items


def workload_id(w):
    size = "100B" if w["size"] == 100 else "1KiB"
    extra = f"@{w['rate']}" if w.get("rate") else ""
    if w["kind"] == "restart":
        return f"restart/{w['gb']:g}GB"
    return f"{w['kind']}/{size}/acks={w['acks']}/{w['tool']}{extra}"


def run_workload(ctx, spec, which, round_index):
    broker = make_broker(ctx, which, spec["acks"], spec["kind"])
    record = {"round": round_index, "workload": spec["id"], "spec": spec, "broker": which, "broker_config": None,
              "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        record["broker_config"] = broker.config
        start = broker.start()
        record["start"] = start
        if spec["kind"] in ("produce-max", "produce-rate"):
            record.update(workload_produce(ctx, broker, spec))
        elif spec["kind"] == "consume":
            record.update(workload_consume(ctx, broker, spec))
        elif spec["kind"] == "restart":
            record.update(workload_restart(ctx, broker, spec, start))
        broker.check_alive()
        record["stop_s"] = broker.stop()
    except BrokerFailed as failure:
        record["failure"] = str(failure)
        failure.record = record
        raise
    finally:
        if broker.proc is not None:
            broker.stop()
        if not ctx.keep_failed or "failure" not in record:
            broker.remove()
    return record


# ---------------------------------------------------------------- the report


def summarize(ctx, records):
    """Medians over rounds for each workload and broker."""
    by = {}
    for rec in records:
        by.setdefault((rec["workload"], rec["broker"]), []).append(rec)
    return by


def values(recs, *path):
    out = []
    for rec in recs:
        node = rec
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        out.append(node)
    return out


def cell(vals, formatter, show_all=True):
    vals_ok = [v for v in vals if v is not None]
    if not vals_ok:
        return "-", None
    m = median(vals_ok)
    if show_all and len(vals) > 1:
        return f"{formatter(m)} ({', '.join(formatter(v) if v is not None else '-' for v in vals)})", m
    return formatter(m), m


def render(ctx, records, meta):
    by = summarize(ctx, records)
    order = []
    for rec in records:
        if rec["workload"] not in order:
            order.append(rec["workload"])
    specs = {rec["workload"]: rec["spec"] for rec in records}
    out = []
    rows_json = []

    def table(title, header, rows):
        out.append("")
        out.append(title)
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        out.append("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
        out.append("  ".join("-" * w for w in widths))
        for r in rows:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))

    def flag(recs):
        bad = [r for r in recs if not ((r.get("result") or {}).get("ok", True))]
        return " !" if bad else ""

    header = ["workload", "tool", "metric", "Sluice", "Kafka", "Sluice/Kafka", "other load S / K"]
    rows = []

    def other(recs, *path):
        vals = [r.get("other_cores") for r in values(recs, *path) if isinstance(r, dict)]
        return fmt_num(median(vals), 2)
    for wid in order:
        spec = specs[wid]
        if spec["kind"] not in ("produce-max", "produce-rate", "consume"):
            continue
        s, k = by.get((wid, "sluice"), []), by.get((wid, "kafka"), [])
        size = "100 B" if spec["size"] == 100 else "1 KiB"
        if spec["kind"] == "produce-max":
            name = f"produce max, {size}, acks={spec['acks']}"
            sv, sm = cell(values(s, "result", "records_per_sec"), fmt_rate)
            kv, km = cell(values(k, "result", "records_per_sec"), fmt_rate)
            smib = median(values(s, "result", "mib_per_sec"))
            kmib = median(values(k, "result", "mib_per_sec"))
            rows.append([name, spec["tool"], "records/s (higher is better)", sv + flag(s), kv + flag(k), ratio(sm, km),
                         f"{other(s, 'run')} / {other(k, 'run')}"])
            rows.append(["", "", "MiB/s", fmt_num(smib), fmt_num(kmib), ratio(smib, kmib), ""])
            rows_json.append({"workload": wid, "metric": "records_per_sec", "sluice": sm, "kafka": km,
                              "sluice_rounds": values(s, "result", "records_per_sec"), "kafka_rounds": values(k, "result", "records_per_sec")})
        elif spec["kind"] == "produce-rate":
            name = f"produce at {fmt_rate(spec['rate'])}/s, {size}, acks={spec['acks']}"
            for key, label in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("p999_ms", "p99.9 ms")):
                sv, sm = cell(values(s, "result", key), lambda v: fmt_num(v, 2))
                kv, km = cell(values(k, "result", key), lambda v: fmt_num(v, 2))
                rows.append([name if key == "p50_ms" else "", spec["tool"] if key == "p50_ms" else "",
                             f"latency {label} (lower is better)", sv + (flag(s) if key == "p50_ms" else ""),
                             kv + (flag(k) if key == "p50_ms" else ""), ratio(sm, km),
                             f"{other(s, 'run')} / {other(k, 'run')}" if key == "p50_ms" else ""])
                rows_json.append({"workload": wid, "metric": key, "sluice": sm, "kafka": km,
                                  "sluice_rounds": values(s, "result", key), "kafka_rounds": values(k, "result", key)})
        elif spec["kind"] == "consume":
            for tool in consume_tools(spec["size"]):
                name = f"consume, {size} ({spec['records']:,} records)" if tool == "java-consumer-perf" else ""
                sv, sm = cell(values(s, "tools", tool, "result", "records_per_sec"), fmt_rate)
                kv, km = cell(values(k, "tools", tool, "result", "records_per_sec"), fmt_rate)
                smib = median(values(s, "tools", tool, "result", "mib_per_sec"))
                kmib = median(values(k, "tools", tool, "result", "mib_per_sec"))
                rows.append([name, tool, "records/s (higher is better)", sv + flag(s), kv + flag(k), ratio(sm, km),
                             f"{other(s, 'tools', tool, 'run')} / {other(k, 'tools', tool, 'run')}"])
                rows.append(["", "", "MiB/s", fmt_num(smib), fmt_num(kmib), ratio(smib, kmib), ""])
                rows_json.append({"workload": wid + "/" + tool, "metric": "records_per_sec", "sluice": sm, "kafka": km,
                                  "sluice_rounds": values(s, "tools", tool, "result", "records_per_sec"),
                                  "kafka_rounds": values(k, "tools", tool, "result", "records_per_sec")})
    table("Throughput and latency (median of rounds; each round's value in brackets; '!' marks a run with a problem, see JSON; "
          "other load: median cores used by neither broker nor load generator during the runs)", header, rows)

    # Broker resources.
    rows = []
    header = ["workload", "tool", "Sluice CPU s/GB", "Kafka CPU s/GB", "Sluice/Kafka", "Sluice peak RSS MiB", "Kafka peak RSS MiB", "Sluice/Kafka"]
    for wid in order:
        spec = specs[wid]
        s, k = by.get((wid, "sluice"), []), by.get((wid, "kafka"), [])
        size = "100 B" if spec["size"] == 100 else "1 KiB"
        pairs = []
        if spec["kind"] == "produce-max":
            pairs.append((f"produce max, {size}, acks={spec['acks']}", spec["tool"], ("result",)))
        elif spec["kind"] == "consume":
            for tool in consume_tools(spec["size"]):
                pairs.append((f"consume, {size}", tool, ("tools", tool, "result")))
        for name, tool, path in pairs:
            scpu = median(values(s, *path, "broker_cpu_s_per_gb"))
            kcpu = median(values(k, *path, "broker_cpu_s_per_gb"))
            srss = median(values(s, *path, "broker_peak_rss_mib"))
            krss = median(values(k, *path, "broker_peak_rss_mib"))
            rows.append([name, tool, fmt_num(scpu, 2), fmt_num(kcpu, 2), ratio(scpu, kcpu), fmt_num(srss, 0), fmt_num(krss, 0), ratio(srss, krss)])
            rows_json.append({"workload": wid if len(pairs) == 1 else f"{wid}/{tool}", "metric": "broker_cpu_s_per_gb", "sluice": scpu, "kafka": kcpu})
            rows_json.append({"workload": wid if len(pairs) == 1 else f"{wid}/{tool}", "metric": "broker_peak_rss_mib", "sluice": srss, "kafka": krss})
    table("Broker CPU seconds per GB of record values (over the measured window) and peak RSS (VmHWM of the run's broker process)", header, rows)

    # Starts and recovery.
    rows = []
    header = ["what", "Sluice", "Kafka", "Sluice/Kafka"]
    starts = {b: [rec["start"]["serving_s"] for rec in records if rec["broker"] == b and rec.get("start")] for b in ("sluice", "kafka")}
    sm, km = median(starts["sluice"]), median(starts["kafka"])
    rows.append([f"start on an empty data directory, to ApiVersions+Metadata (median of {len(starts['sluice'])} / {len(starts['kafka'])} starts)",
                 fmt_num(sm, 3) + " s", fmt_num(km, 3) + " s", ratio(sm, km)])
    rows_json.append({"workload": "start-empty", "metric": "serving_s", "sluice": sm, "kafka": km})
    pre = [rec["start"]["spawn_to_exec_s"] for rec in records if rec["broker"] == "kafka" and rec.get("start")]
    if pre:
        rows.append(["  Kafka only, before that: tests/reference/kafka's checks and `kafka-storage format` (a JVM of its own)", "",
                     fmt_num(median(pre), 3) + " s", ""])
    for wid in order:
        if specs[wid]["kind"] != "restart":
            continue
        s, k = by.get((wid, "sluice"), []), by.get((wid, "kafka"), [])
        for key, label in (("idle_kill9_start", "restart after kill -9 of an idle broker, one empty topic"),
                           ("big_start", f"start on {specs[wid]['gb']:g} GB after a clean stop"),
                           ("recovery_start", f"restart on {specs[wid]['gb']:g} GB after kill -9 under load")):
            for sub, sublabel in (("api_versions_s", "ApiVersions"), ("serving_s", "+ Metadata + ListOffsets")):
                sv, smv = cell(values(s, "details", key, sub), lambda v: fmt_num(v, 3) + " s")
                kv, kmv = cell(values(k, "details", key, sub), lambda v: fmt_num(v, 3) + " s")
                rows.append([f"{label}: {sublabel}", sv, kv, ratio(smv, kmv)])
                rows_json.append({"workload": wid, "metric": f"{key}.{sub}", "sluice": smv, "kafka": kmv,
                                  "sluice_rounds": values(s, "details", key, sub), "kafka_rounds": values(k, "details", key, sub)})
        sd, kd = median(values(s, "details", "data_bytes")), median(values(k, "details", "data_bytes"))
        rows.append(["data directory size (GB on disk)", fmt_num(sd and sd / GB, 2), fmt_num(kd and kd / GB, 2), ratio(sd, kd)])
        si, ki = median(values(s, "details", "idle_cores")), median(values(k, "details", "idle_cores"))
        rows.append([f"idle broker CPU, 5 s after filling {specs[wid]['gb']:g} GB (cores)", fmt_num(si, 3), fmt_num(ki, 3), ratio(si, ki)])
        sr, kr = median(values(s, "details", "recovery_peak_rss_mib")), median(values(k, "details", "recovery_peak_rss_mib"))
        rows.append(["peak RSS after the recovery (MiB)", fmt_num(sr, 0), fmt_num(kr, 0), ratio(sr, kr)])
        sl = values(s, "details", "acked_records_missing_after_recovery")
        kl = values(k, "details", "acked_records_missing_after_recovery")
        rows.append(["acknowledged records missing after the recovery (per round)", ", ".join(map(str, sl)), ", ".join(map(str, kl)), ""])
    table("Starts (from exec of the broker process to the port answering; lower is better)", header, rows)

    # Noise.
    rows = []
    header = ["broker", "runs", "host steal % median / max", "other load (cores) median / max", "load avg 1m at start median / max"]
    for b in ("sluice", "kafka"):
        runs = list(iter_runs([r for r in records if r["broker"] == b]))
        steal = [r.get("window_host_cpu", r["host_cpu"])["steal_pct"] for r in runs]
        other = [r["other_cores"] for r in runs if r.get("other_cores") is not None]
        loads = [r["load_avg_1m_at_start"] for r in runs]
        rows.append([b, len(runs), f"{fmt_num(median(steal))} / {fmt_num(max(steal) if steal else None)}",
                     f"{fmt_num(median(other), 2)} / {fmt_num(max(other) if other else None, 2)}",
                     f"{fmt_num(median(loads), 2)} / {fmt_num(max(loads) if loads else None, 2)}"])
    table("Host CPU during the runs (steal: time the hypervisor gave other guests; other load: CPU used by neither broker nor load "
          "generator, i.e. other processes and kernel threads such as writeback)", header, rows)
    noisy = []
    for rec in records:
        for run in iter_runs([rec]):
            noisy.append((run.get("other_cores") or 0, (run.get("window_host_cpu") or run["host_cpu"])["steal_pct"], rec["round"] + 1, rec["workload"], rec["broker"]))
    noisy.sort(reverse=True)
    rows = [[f"{o:.2f}", f"{st:.1f}", r, w, b] for o, st, r, w, b in noisy[:6]]
    table("Noisiest runs", ["other load (cores)", "steal %", "round", "workload", "broker"], rows)
    return "\n".join(out), rows_json


def iter_runs(recs):
    for rec in recs:
        if isinstance(rec.get("run"), dict) and "host_cpu" in rec["run"]:
            yield rec["run"]
        for tool in (rec.get("tools") or {}).values():
            if isinstance(tool.get("run"), dict):
                yield tool["run"]


def machine():
    mem = next((line.split()[1] for line in read_file("/proc/meminfo").splitlines() if line.startswith("MemTotal:")), "0")
    model = next((line.split(":", 1)[1].strip() for line in read_file("/proc/cpuinfo").splitlines() if line.startswith("model name")), "")
    return {"nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": model,
            "mem_total_gib": round(int(mem) / (1 << 20), 1), "kernel": platform.release(), "host": socket.gethostname()}


def mount_of(path):
    best = ("", "", "")
    for line in read_file("/proc/mounts").splitlines():
        device, mount, fstype = line.split()[:3]
        if path.startswith(mount) and len(mount) > len(best[1]):
            best = (device, mount, fstype)
    return {"device": best[0], "mount": best[1], "fstype": best[2]}


def wait_for_binary(path, patience_s=600):
    deadline = now() + patience_s
    while not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if now() > deadline:
            sys.exit(f"compare-kafka: {path} is missing; build it with cargo build --release --bin sluice --bin produce-load")
        print(f"compare-kafka: waiting for {path} to appear", file=sys.stderr)
        time.sleep(10)


# ---------------------------------------------------------------- librdkafka clients (subcommands)


def rdkafka_produce_main(argv):
    from confluent_kafka import Producer

    parser = argparse.ArgumentParser(prog="compare_kafka.py _rdkafka-produce")
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--record-size", type=int, required=True)
    parser.add_argument("--acks", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    args = parser.parse_args(argv)
    errors = [0]

    def on_error_delivery(error, _message):
        if error is not None:
            errors[0] += 1

    producer = Producer({
        "bootstrap.servers": args.bootstrap_server, "acks": args.acks, "batch.size": BATCH_BYTES,
        "linger.ms": LINGER_MAX_MS, "message.max.bytes": MAX_REQUEST_BYTES, "compression.type": "none",
        "max.in.flight.requests.per.connection": IN_FLIGHT, "enable.idempotence": False,
        "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1 << 20,
        "sticky.partitioning.linger.ms": LINGER_MAX_MS,
        # Only failed deliveries call back; acknowledged = produced - still queued - failed.
        "delivery.report.only.error": True, "on_delivery": on_error_delivery,
    })
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    seed = int.from_bytes(hashlib.sha256(b"compare-kafka").digest()[:8], "big")
    pool = []
    for i in range(64):
        raw = hashlib.shake_256(seed.to_bytes(8, "big") + i.to_bytes(4, "big")).digest(args.record_size)
        pool.append(bytes(alphabet[b % len(alphabet)] for b in raw))
    produce, poll, topic = producer.produce, producer.poll, args.topic
    produced = 0
    started = time.monotonic()
    window_at, end_at = started + args.warmup, started + args.warmup + args.duration
    acked_at_window = cpu_at_window = None
    index = 0
    next_progress, acked_progress = started + 1, 0
    while True:
        t = time.monotonic()
        if t >= next_progress:
            acked_now = produced - len(producer) - errors[0]
            print(f"[{t - started:5.1f}s] {acked_now - acked_progress} acked in the last second, {len(producer)} queued, {errors[0]} errors",
                  file=sys.stderr, flush=True)
            next_progress, acked_progress = next_progress + 1, acked_now
        if acked_at_window is None and t >= window_at:
            acked_at_window, cpu_at_window, window_at = produced - len(producer) - errors[0], os.times(), t
        if t >= end_at:
            break
        for _ in range(2000):
            try:
                produce(topic, pool[index & 63])
                produced += 1
            except BufferError:
                poll(0.001)
            index += 1
        poll(0)
    acked = produced - len(producer) - errors[0]
    elapsed = time.monotonic() - window_at
    cpu = os.times()
    producer.flush(30)
    rps = (acked - acked_at_window) / elapsed
    report = {"tool": "librdkafka producer loop", "librdkafka": _libversion(), "records_per_sec": round(rps, 1),
              "mib_per_sec": round(rps * args.record_size / MIB, 2), "errors": errors[0], "measured_s": round(elapsed, 3),
              "client_cpu_cores": round((cpu.user + cpu.system - cpu_at_window.user - cpu_at_window.system) / elapsed, 2),
              "unacknowledged_at_end": len(producer)}
    print(json.dumps(report))
    return 0


def rdkafka_consume_main(argv):
    from confluent_kafka import Consumer

    parser = argparse.ArgumentParser(prog="compare_kafka.py _rdkafka-consume")
    parser.add_argument("--bootstrap-server", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--record-size", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args(argv)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_server, "group.id": f"rk-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    count = errors = 0
    first_at = cpu_first = None
    deadline = time.monotonic() + args.timeout
    while count < args.records and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=10000, timeout=0.5)
        if not messages:
            continue
        if first_at is None:
            first_at, cpu_first = time.monotonic(), os.times()
        for message in messages:
            if message.error() is None:
                count += 1
            else:
                errors += 1
    last_at, cpu = time.monotonic(), os.times()
    consumer.close()
    elapsed = (last_at - first_at) if first_at else 0
    rps = count / elapsed if elapsed > 0 else 0
    report = {"tool": "librdkafka consumer loop", "librdkafka": _libversion(), "records": count, "errors": errors,
              "records_per_sec": round(rps, 1), "mib_per_sec": round(rps * args.record_size / MIB, 2),
              "measured_s": round(elapsed, 3),
              "client_cpu_cores": round((cpu.user + cpu.system - cpu_first.user - cpu_first.system) / elapsed, 2) if elapsed else None}
    print(json.dumps(report))
    return 0


def _libversion():
    from confluent_kafka import libversion

    return libversion()[0]


# ---------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/compare-kafka",
        description="Runs the same workloads against Sluice and Apache Kafka 4.4.0, alternating, and prints one table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="repeats of the whole workload list; tables show medians")
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds produced but not measured, per run")
    parser.add_argument("--big-dir-gb", type=float, default=2, help="size of the large data directory for the start and kill -9 tests")
    parser.add_argument("--consume-mb", type=float, default=1000, help="MB of record values per consume workload")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rates", default=None,
                        help="fixed rates in records/s, as SIZE:ACKS=RATE,... (default "
                             + ",".join(f"{s}:{a}={r}" for (s, a), r in DEFAULT_RATES.items()) + ")")
    parser.add_argument("--broker-warmup", type=float, default=3,
                        help="seconds of closed-loop produce-load traffic a fresh broker takes (on another topic) before a produce run")
    parser.add_argument("--kill-load-rate", type=int, default=50_000, help="1 KiB records/s produced while the broker is killed")
    parser.add_argument("--kill-after", type=float, default=5, help="seconds of that load before kill -9")
    parser.add_argument("--sluice-shards", type=int, default=None, help="--shards for Sluice (default: Sluice's own, one per core)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 3 minutes: 8 workloads, 1 round, 4 s runs, a 0.3 GB directory")
    parser.add_argument("--only", default=None, help="run only workloads whose id matches this regular expression")
    parser.add_argument("--json", dest="json_path", default=None, help="where to write the raw results (default target/compare-kafka/DATE.json)")
    parser.add_argument("--data-root", default=os.environ.get("TMPDIR", "/tmp"), help="where the temporary data directories go")
    parser.add_argument("--keep-failed", action="store_true", help="keep the data directory of a broker that failed")
    parser.add_argument("--build", action="store_true", help="cargo build --release the broker and produce-load first (done by the wrapper)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1 if "--rounds" not in argv else args.rounds
        args.duration = 4 if "--duration" not in argv else args.duration
        args.warmup = 2 if "--warmup" not in argv else args.warmup
        args.big_dir_gb = 0.3 if "--big-dir-gb" not in argv else args.big_dir_gb
        args.consume_mb = 200 if "--consume-mb" not in argv else args.consume_mb
        args.kill_after = 3 if "--kill-after" not in argv else args.kill_after
        args.broker_warmup = 2 if "--broker-warmup" not in argv else args.broker_warmup
    return args


def main(argv):
    if argv and argv[0] == "_rdkafka-produce":
        return rdkafka_produce_main(argv[1:])
    if argv and argv[0] == "_rdkafka-consume":
        return rdkafka_consume_main(argv[1:])
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    began = now()
    ctx = Context()
    ctx.quick, ctx.only = args.quick, args.only
    ctx.rounds, ctx.duration, ctx.warmup = args.rounds, args.duration, args.warmup
    ctx.big_dir_gb, ctx.partitions, ctx.sluice_shards = args.big_dir_gb, args.partitions, args.sluice_shards
    ctx.consume_bytes = int(args.consume_mb * 1e6)
    ctx.kill_load_rate, ctx.kill_after_s = args.kill_load_rate, args.kill_after
    ctx.keep_failed = args.keep_failed
    ctx.broker_warmup = args.broker_warmup
    ctx.rates = dict(DEFAULT_RATES)
    if args.rates:
        for item in args.rates.split(","):
            key, rate = item.split("=")
            size, acks = key.split(":")
            ctx.rates[(int(size), acks)] = int(rate)
    ctx.data_root = args.data_root
    ctx.disk_stat = disk_stat_path(ctx.data_root)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.json_path or os.path.join(ROOT, "target", "compare-kafka", f"{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)

    # Private copies of the binaries: a rebuild during the run must not change what is measured.
    run_dir = tempfile.mkdtemp(prefix="cmpk-run-", dir=ctx.data_root)
    try:
        for name in ("sluice", "produce-load"):
            wait_for_binary(os.path.join(ROOT, "target", "release", name))
        ctx.sluice_bin = os.path.join(run_dir, "sluice")
        ctx.produce_load_bin = os.path.join(run_dir, "produce-load")
        shutil.copy2(os.path.join(ROOT, "target", "release", "sluice"), ctx.sluice_bin)
        shutil.copy2(os.path.join(ROOT, "target", "release", "produce-load"), ctx.produce_load_bin)
        ctx.java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
        if not ctx.java:
            sys.exit("compare-kafka: java not found (Kafka 4.4.0 needs Java 17+)")
        ctx.classpath = subprocess.run([KAFKA_SCRIPT, "classpath"], check=True, capture_output=True, text=True).stdout.strip()
        return run_all(ctx, args, json_path, began, run_dir)
    except KeyboardInterrupt as interrupt:
        print(f"\ncompare-kafka: interrupted ({interrupt}); stopping every broker and load generator", file=sys.stderr)
        return 130
    finally:
        CHILDREN.end_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def run_all(ctx, args, json_path, began, run_dir):
    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    java_version = subprocess.run([ctx.java, "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    workloads = workload_list(ctx)
    meta = {
        "tool": "bench/compare-kafka",
        "command": "bench/compare-kafka " + " ".join(sys.argv[1:]),
        "commit": commit, "tracked_files_modified": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "data_root": mount_of(os.path.realpath(ctx.data_root)),
        "sluice": {"version": subprocess.run([ctx.sluice_bin, "--version"], capture_output=True, text=True).stdout.strip(),
                   "sha256": sha256(ctx.sluice_bin), "shards": ctx.sluice_shards or "default (one per core)"},
        "produce_load_sha256": sha256(ctx.produce_load_bin),
        "kafka": {"version": "4.4.0", "java": java_version,
                  "configs": {"acks=1 rows": "default (tests/reference/kafka)", "acks=all rows": KAFKA_FLUSH_PROPERTY}},
        "librdkafka": _libversion(),
        "settings": {"rounds": ctx.rounds, "duration_s": ctx.duration, "warmup_s": ctx.warmup, "partitions": ctx.partitions,
                     "big_dir_gb": ctx.big_dir_gb, "consume_bytes": ctx.consume_bytes,
                     "rates": {f"{s}:{a}": r for (s, a), r in ctx.rates.items()},
                     "broker_warmup_s": ctx.broker_warmup, "kill_load_rate": ctx.kill_load_rate, "kill_after_s": ctx.kill_after_s,
                     "batch_size": BATCH_BYTES, "linger_ms_max": LINGER_MAX_MS, "linger_ms_rate": LINGER_RATE_MS,
                     "max_request_size": MAX_REQUEST_BYTES, "max_in_flight": IN_FLIGHT,
                     "produce_load_connections": PRODUCE_LOAD_CONNECTIONS, "quick": ctx.quick},
        "producer_settings_why": PRODUCER_WHY,
        "like_for_like": {"acks=1": like_for_like("1"), "acks=all": like_for_like("all")},
        "workloads": [w["id"] for w in workloads],
    }
    cores = meta["machine"]["nproc"]
    print(f"compare-kafka: Sluice ({commit}{' + modified files' if dirty else ''}) against Apache Kafka 4.4.0; "
          f"{len(workloads)} workloads x 2 brokers x {ctx.rounds} rounds; {ctx.duration:g} s measured after {ctx.warmup:g} s warm-up per run",
          file=sys.stderr)
    print(f"compare-kafka: {cores} cores shared by the broker and the load generator, nothing pinned; raw results: {json_path}", file=sys.stderr)
    records = []
    failure = None

    def save():
        meta["wall_s"] = round(now() - began, 1)
        with open(json_path + ".partial", "w") as handle:
            json.dump({"meta": meta, "measurements": records, "failure": failure}, handle, indent=1)
        os.replace(json_path + ".partial", json_path)

    try:
        for round_index in range(ctx.rounds):
            for spec in workloads:
                for which in ("sluice", "kafka"):
                    t0 = now()
                    print(f"[{now() - began:6.0f}s] round {round_index + 1}/{ctx.rounds} {spec['id']} on {which} ...", end="", flush=True, file=sys.stderr)
                    rec = run_workload(ctx, spec, which, round_index)
                    records.append(rec)
                    res = rec.get("result") or {}
                    summary = ""
                    if res.get("records_per_sec"):
                        summary = f"{fmt_rate(res['records_per_sec'])} records/s"
                    if res.get("p99_ms") is not None:
                        summary += f", p50/p99 {res.get('p50_ms')}/{res.get('p99_ms')} ms"
                    if spec["kind"] == "consume":
                        summary = ", ".join(f"{t}: {fmt_rate((rec['tools'].get(t) or {}).get('result', {}).get('records_per_sec'))}/s"
                                            for t in ("java-consumer-perf", "librdkafka") if t in rec.get("tools", {}))
                    if spec["kind"] == "restart" and "details" in rec:
                        d = rec["details"]
                        summary = (f"idle kill -9 {d.get('idle_kill9_start', {}).get('serving_s')} s, clean start {d.get('big_start', {}).get('serving_s')} s, "
                                   f"after kill -9 {d.get('recovery_start', {}).get('serving_s')} s")
                    if not res.get("ok", True):
                        summary += f"  PROBLEM: {res.get('problem')}"
                    print(f" {summary} ({now() - t0:.0f} s)", file=sys.stderr)
                    save()
    except BrokerFailed as error:
        failure = str(error)
        if getattr(error, "record", None) is not None:
            records.append(error.record)
        print(f"\ncompare-kafka: a broker failed; stopping.\n{failure}", file=sys.stderr)
        save()
        return 1

    text, rows = render(ctx, records, meta)
    meta["summary_rows"] = rows
    m = meta["machine"]
    head = [
        "",
        f"Sluice against Apache Kafka 4.4.0 on one machine: commit {commit}{' (tracked files modified)' if dirty else ''}, {meta['date']}",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gib']} GiB, kernel {m['kernel']}; data on {meta['data_root']['fstype']} "
        f"({meta['data_root']['device']}). Broker and load generator share the {m['nproc']} cores; nothing is pinned.",
        f"Rounds: {ctx.rounds} (tables: medians); runs: {ctx.duration:g} s measured after {ctx.warmup:g} s warm-up; {ctx.partitions} partitions; "
        f"Sluice shards: {meta['sluice']['shards']}.",
        f"Like for like: acks=1 rows: {like_for_like('1')}; acks=all rows: {like_for_like('all')}.",
        f"Producers: {PRODUCER_WHY}",
        "Latency: produce-load counts from each record's scheduled time (open loop); ProducerPerformance from send() to the callback "
        "(whole milliseconds, throttled, not corrected for coordinated omission).",
    ]
    print("\n".join(head) + "\n" + text)
    meta["wall_s"] = round(now() - began, 1)
    print(f"\nWall time {meta['wall_s'] / 60:.1f} min; raw numbers, commands and per-run host CPU in {json_path}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
