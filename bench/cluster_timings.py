#!/usr/bin/env python3
"""Times of a three-node Sluice cluster: controller failover, metadata propagation, idle cost.

Usage: tests/.venv/bin/python bench/cluster_timings.py [--kills 10] [--topics 20] [--idle-s 10]
(SLUICE_BIN picks the binary, default target/release/sluice).

Method, on three combined broker+controller nodes on loopback (one unpinned shard each, a 3 s
broker session timeout):
- idle cost: after --idle-s seconds with nothing to do, each node's thread count and resident
  memory from /proc;
- metadata propagation: create a topic through node 1 and poll Metadata on node 3 until the topic
  is there with a leader for every partition; the time from CreateTopics' answer to that;
- controller failover, --kills times: SIGKILL the active controller, then time until the
  survivors agree on a new one (their `sluice_controller_active_id` gauge), and until a
  CreateTopics sent to a survivor succeeds; restart the killed node and wait until it has caught
  up before the next kill.
Prints every sample and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "blackbox"))

from confluent_kafka.admin import NewTopic  # noqa: E402

from cluster import Cluster  # noqa: E402


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, RSS in KiB) of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


def create(admin, name: str, partitions: int = 3, timeout_s: float = 30.0) -> None:
    futures = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)


def visible(admin, name: str, partitions: int) -> bool:
    topic = admin.list_topics(name, timeout=10).topics.get(name)
    return (topic is not None and topic.error is None and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-cluster-") as workdir:
        cluster = Cluster(Path(workdir))
        cluster.start()
        try:
            time.sleep(args.idle_s)
            for node in cluster.nodes.values():
                threads, rss_kib = proc_status(node.proc.pid)
                print(f"idle node {node.node_id}: {threads} threads, {rss_kib / 1024:.1f} MiB RSS")

            first, third = cluster.admin(cluster.nodes[1]), cluster.admin(cluster.nodes[3])
            delays = []
            for number in range(args.topics):
                name = f"propagation-{number}"
                create(first, name)
                created = time.monotonic()
                deadline = created + 30
                while not visible(third, name, 3):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name} never reached node 3")
                    time.sleep(0.002)
                delays.append((time.monotonic() - created) * 1000)
            print("propagation ms:", " ".join(f"{delay:.1f}" for delay in delays))
            print(f"propagation median {statistics.median(delays):.1f} ms, max {max(delays):.1f} ms")

            elected, writable = [], []
            for kill in range(args.kills):
                active = cluster.active_controller()
                active.kill9()
                killed = time.monotonic()
                successor = cluster.active_controller(timeout_s=60)
                elected.append(time.monotonic() - killed)
                survivor = cluster.admin(successor)
                name = f"after-kill-{kill}"
                while True:
                    try:
                        create(survivor, name, timeout_s=10)
                        break
                    except Exception:  # noqa: BLE001 - retried until the deadline
                        if time.monotonic() - killed > 60:
                            raise
                        time.sleep(0.05)
                writable.append(time.monotonic() - killed)
                print(f"kill {kill + 1}: node {active.node_id} -> node {successor.node_id}: "
                      f"elected after {elected[-1]:.2f} s, CreateTopics served after {writable[-1]:.2f} s")
                active.start()
                own = cluster.admin(active)
                deadline = time.monotonic() + 60
                while not visible(own, name, 3):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"node {active.node_id} did not catch up")
                    time.sleep(0.05)
            print(f"failover median: elected {statistics.median(elected):.2f} s, "
                  f"CreateTopics served {statistics.median(writable):.2f} s "
                  f"(ranges {min(elected):.2f}-{max(elected):.2f} s, {min(writable):.2f}-{max(writable):.2f} s)")
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
