#!/usr/bin/env python3
"""How long a partition is unavailable when its leader dies or is stopped, on three local brokers.

Usage: tests/.venv/bin/python bench/failover_bench.py [--runs 10] [--session-timeout-ms 9000]
(SLUICE_BIN picks the broker, default target/release/sluice).

Three nodes (one shard each), a topic of one partition with replication factor 3 and
`min.insync.replicas=2`, and an idempotent acks=all producer (librdkafka) sending one record
every 5 ms. Each run takes the partition's leader down, in one of two ways:
- `kill9`: SIGKILL. The controller notices when the broker's session expires
  (`--broker-session-timeout-ms`, Kafka's `broker.session.timeout.ms`, 9 s by default), fences
  it and elects a new leader from the ISR;
- `sigterm`: SIGTERM. The broker's controlled shutdown moves leadership first.
and measures, from the signal: `elected`, until Metadata (polled every 20 ms) names another
leader; `acked`, until the first acknowledgement of a record sent after the signal. Then the node
restarts and the next run waits until the ISR is whole again. It prints every run and, per
mode, the median and the maximum.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "blackbox"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

import cluster as cluster_module  # noqa: E402
from cluster import Cluster, wait_until  # noqa: E402

TOPIC = "failover"
SEND_INTERVAL_S = 0.005
# A run without an acknowledgement this long after the signal is reported as a stall.
ACK_WAIT_S = 60.0


class Acks:
    """The producer thread and the monotonic times of its acknowledgements."""

    def __init__(self, bootstrap: str):
        self.times: list[tuple[float, float]] = []  # (sent, acknowledged)
        self.failed = 0
        self.stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "broker.address.family": "v4", "acks": "all",
            "enable.idempotence": True, "linger.ms": 0, "message.timeout.ms": 60_000,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200, "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 100, "topic.metadata.refresh.interval.ms": 1000, "log_level": 0,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_delivery(self, sent: float):
        def report(error, _message) -> None:
            if error is None:
                self.times.append((sent, time.monotonic()))
            else:
                self.failed += 1
        return report

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            self.producer.produce(TOPIC, value=f"f-{seq}".encode(), on_delivery=self.on_delivery(time.monotonic()))
            seq += 1
            self.producer.poll(SEND_INTERVAL_S)

    def first_after(self, moment: float, timeout_s: float) -> float | None:
        """Seconds from `moment` to the first acknowledgement of a record sent after it (None:
        none within `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [acked for sent, acked in self.times[-4000:] if sent > moment]
            if later:
                return min(later) - moment
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.producer.flush(30)


def leader(admin) -> int:
    topic = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
    if topic is None or 0 not in topic.partitions:
        return -1
    return topic.partitions[0].leader


def in_sync(admin) -> bool:
    partition = admin.list_topics(TOPIC, timeout=5).topics[TOPIC].partitions[0]
    return partition.leader >= 0 and sorted(partition.isrs) == sorted(partition.replicas)


def one_run(cluster: Cluster, admin, acks: Acks, mode: str) -> tuple[float, float | None]:
    wait_until("the ISR is whole", lambda: in_sync(admin), 120, interval_s=0.1)
    time.sleep(1.0)
    victim_id = leader(admin)
    victim = cluster.nodes[victim_id]
    moment = time.monotonic()
    if mode == "kill9":
        victim.kill9()
    else:
        victim.proc.terminate()
    elected = wait_until("another leader", lambda: leader(admin) not in (-1, victim_id) or None, 60,
                         interval_s=0.02)
    elected_s = time.monotonic() - moment
    assert elected
    acked_s = acks.first_after(moment, ACK_WAIT_S)
    if acked_s is None:
        state = admin.list_topics(TOPIC, timeout=5).topics[TOPIC].partitions[0]
        print(f"{mode}: no acknowledgement within {ACK_WAIT_S:.0f} s of the signal to node {victim_id}: leader "
              f"{state.leader}, replicas {state.replicas}, ISR {state.isrs}; producer errors so far {acks.failed}",
              flush=True)
    if mode == "sigterm":
        victim.proc.wait(timeout=60)
    victim.start()
    return elected_s, acked_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per mode (default 10)")
    parser.add_argument("--session-timeout-ms", type=int, default=9000,
                        help="--broker-session-timeout-ms of every node (default 9000, Kafka's)")
    parser.add_argument("--modes", default="kill9,sigterm", help="comma-separated: kill9, sigterm")
    args = parser.parse_args()
    cluster_module.SESSION_TIMEOUT_MS = args.session_timeout_ms
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-failover-bench-") as workdir:
        cluster = Cluster(Path(workdir))
        cluster.start()
        acks = None
        try:
            admin = cluster.admin(*cluster.nodes.values())
            admin.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(30)
            wait_until("the topic is in sync", lambda: in_sync(admin), 60)
            acks = Acks(cluster.bootstrap)
            wait_until("acknowledgements", lambda: len(acks.times) > 100, 60)
            for mode in args.modes.split(","):
                for run in range(args.runs):
                    elected, acked = one_run(cluster, admin, acks, mode)
                    results.setdefault(mode, []).append((elected, acked))
                    shown = "none (stalled)" if acked is None else f"{acked:.3f} s"
                    print(f"{mode} run {run + 1}: new leader in Metadata after {elected:.3f} s, "
                          f"first acknowledgement after {shown}", flush=True)
        finally:
            if acks is not None:
                acks.close()
            cluster.stop()
    print(f"session timeout {args.session_timeout_ms} ms; producer errors {acks.failed if acks else 0}")
    for mode, runs in results.items():
        elected = [run[0] for run in runs]
        acked = [run[1] for run in runs if run[1] is not None]
        stalls = len(runs) - len(acked)
        print(f"{mode}: {len(runs)} runs; new leader median {statistics.median(elected):.3f} s, "
              f"max {max(elected):.3f} s; first acknowledgement median "
              f"{statistics.median(acked) if acked else float('nan'):.3f} s, max "
              f"{max(acked) if acked else float('nan'):.3f} s; {stalls} run(s) without one within {ACK_WAIT_S:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
