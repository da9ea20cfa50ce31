#!/usr/bin/env python3
"""Replication factor 3 on three local brokers against factor 1 on one broker, with produce-load.

Usage: tests/.venv/bin/python bench/replication_bench.py [--rounds 3] [--duration 10s]
(SLUICE_BIN picks the broker, default target/release/sluice; produce-load must be built:
`cargo build --release --bin sluice --bin produce-load`).

Each round runs every configuration once, in order, each on fresh brokers and data directories:
- `rf1`: one node (the default single node, one shard), replication factor 1;
- `rf3`: three nodes (one shard each), replication factor 3, `min.insync.replicas=2`, followers
  fsync before they count (Sluice's default meaning of acks=all);
- `rf3-written`: the same with `--replica-fsync false` (an in-sync replica counts once written,
  as Kafka counts it);
for 100 B and 1 KiB records at acks=all and acks=1, 4 partitions, one produce-load connection
per leader. It prints each run and the median per configuration. The brokers and the load
generator share the machine's cores, so compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "blackbox"))

from cluster import Cluster  # noqa: E402
from conftest import Broker  # noqa: E402

PRODUCE_LOAD = ROOT / "target" / "release" / "produce-load"


def run_load(bootstrap: str, acks: str, size: int, duration: str, replication_factor: int) -> dict:
    command = [str(PRODUCE_LOAD), "--bootstrap-server", bootstrap, "--topic", "bench", "--partitions", "4",
               "--replication-factor", str(replication_factor), "--record-size", str(size), "--acks", acks,
               "--duration", duration, "--warmup", "2s", "--connections", "3", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_run(config: str, acks: str, size: int, duration: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="sluice-repl-bench-") as workdir:
        if config == "rf1":
            broker = Broker(Path(workdir) / "single", "single")
            broker.extra_args += ["--shards", "1", "--pin-shards", "false"]
            broker.start()
            try:
                return run_load(broker.bootstrap, acks, size, duration, 1)
            finally:
                broker.stop()
        extra = ["--topic-config", "min.insync.replicas=2"]
        if config == "rf3-written":
            extra += ["--replica-fsync", "false"]
        cluster = Cluster(Path(workdir), extra_args=extra)
        cluster.start()
        try:
            return run_load(cluster.nodes[1].bootstrap, acks, size, duration, 3)
        finally:
            cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10s")
    args = parser.parse_args()
    os.environ.setdefault("SLUICE_LOG", "warn")
    results: dict[tuple, list[dict]] = {}
    workloads = [(acks, size) for size in (100, 1024) for acks in ("all", "1")]
    for round_number in range(args.rounds):
        for acks, size in workloads:
            for config in ("rf1", "rf3", "rf3-written"):
                if config == "rf3-written" and acks == "1":
                    continue
                result = one_run(config, acks, size, args.duration)
                results.setdefault((config, acks, size), []).append(result)
                latency = result.get("latency_us") or {}
                print(f"round {round_number + 1}: {config} acks={acks} {size} B: "
                      f"{result.get('records_per_sec', 0):.0f} records/s, errors {result.get('errors')}, "
                      f"p50 {latency.get('p50')} us, p99 {latency.get('p99')} us", flush=True)
                time.sleep(1)
    print("median per configuration:")
    for (config, acks, size), runs in results.items():
        rate = statistics.median(run.get("records_per_sec", 0) for run in runs)
        p50 = statistics.median((run.get("latency_us") or {}).get("p50", 0) for run in runs)
        p99 = statistics.median((run.get("latency_us") or {}).get("p99", 0) for run in runs)
        print(f"{config:12} acks={acks:3} {size:5} B: {rate:12.0f} records/s  p50 {p50:8.0f} us  p99 {p99:8.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
