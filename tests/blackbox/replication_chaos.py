"""Kill -9 loop against a three-node cluster under acks=all load, with a Jepsen-style checker.

Workload: a topic of 3 partitions, replication factor 3, `min.insync.replicas=2`; one idempotent
acks=all producer (librdkafka) writes unique values (`c-<seq>`) as fast as acknowledgements let
it, and records every acknowledgement (partition, offset, value). Meanwhile the nemesis kills a
random node with SIGKILL (the leader of some partition, the active controller, or neither: the
choice is random), waits a random moment, restarts it, and waits until every ISR is whole again
before the next kill, so that at most one node is down at a time. A consumer (assigned every
partition, as a stand-alone consumer of a group) reads along and commits its positions
synchronously every 200 records through the replicated `__consumer_offsets`.

Checks after healing (all nodes up, every ISR whole, the cluster stopped gracefully):
- every acknowledged record is at its acknowledged offset, with its value, read by a consumer;
- the offsets a consumer reads are dense from 0 and no value appears twice (idempotence);
- the group's committed offsets are at least the last commit confirmed, at most the largest
  asked for and the high watermark (`power_cluster.check_commits`);
- on disk, no offset holds two different records on two replicas (`sluicectl segments dump`).

`run(cluster, sluicectl, kills, seed, rate)` returns counts; the test in test_replication.py runs
a few kills at full speed, and `SLUICE_CHAOS_KILLS=200 SLUICE_CHAOS_RATE=500 pytest -k chaos`
runs the long mode by hand (a rate in records per second keeps the final check's dumps small).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
from cluster import Cluster, wait_until

PARTITIONS = 3
TOPIC = "chaos"


@dataclass
class Outcome:
    kills: int = 0
    acknowledged: int = 0
    failed: int = 0
    lost: int = 0
    read: int = 0
    duplicates: int = 0
    divergent_offsets: int = 0
    commits: int = 0
    killed: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.divergent_offsets == 0




def in_sync(cluster: Cluster) -> bool:
    admin = cluster.admin()
    topic = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
    return (topic is not None and len(topic.partitions) == PARTITIONS
            and all(p.leader >= 0 and sorted(p.isrs) == sorted(p.replicas) for p in topic.partitions.values()))


def leaders(cluster: Cluster) -> dict[int, int]:
    topic = cluster.admin().list_topics(TOPIC, timeout=10).topics[TOPIC]
    return {p.id: p.leader for p in topic.partitions.values()}


class Load:
    """The acks=all producer thread and what it saw acknowledged."""

    def __init__(self, cluster: Cluster, rate: float | None = None):
        self.rate = rate
        self.acked: list[tuple[int, int, bytes]] = []
        self.failed = 0
        self.stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": cluster.bootstrap, "broker.address.family": "v4",
            "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 120_000, "reconnect.backoff.max.ms": 500, "log_level": 0,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)

    def report(self, error, message) -> None:
        if error is None:
            self.acked.append((message.partition(), message.offset(), message.value()))
        else:
            self.failed += 1

    def run(self) -> None:
        seq = 0
        started = time.monotonic()
        while not self.stop.is_set():
            if self.rate is not None and seq > self.rate * (time.monotonic() - started):
                self.producer.poll(0.01)
                continue
            try:
                self.producer.produce(TOPIC, value=f"c-{seq}".encode(), partition=seq % PARTITIONS,
                                      on_delivery=self.report)
                seq += 1
            except BufferError:
                pass
            self.producer.poll(0 if seq % 100 else 0.001)
            if len(self.producer) > 20_000:
                self.producer.poll(0.05)

    def finish(self, timeout_s: float) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        left = self.producer.flush(timeout_s)
        assert left == 0, f"{left} records still unacknowledged {timeout_s}s after the load stopped"


def read_everything(cluster: Cluster, ends: dict[int, int], timeout_s: float = 120) -> dict[int, list[tuple[int, bytes]]]:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "broker.address.family": "v4",
                         "group.id": "chaos-checker", "enable.auto.commit": False, "log_level": 0,
                         "fetch.wait.max.ms": 100})
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout_s
        while any(len(got[p]) < ends[p] for p in range(PARTITIONS)) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got[message.partition()].append((message.offset(), message.value()))
    finally:
        consumer.close()
    return got


def on_disk(sluicectl: str, data_dir: Path, partition: int) -> dict[int, str]:
    directory = data_dir / f"{TOPIC}-{partition}"
    if not directory.is_dir():
        return {}
    done = subprocess.run([sluicectl, "-o", "json", "segments", "dump", "--records", str(directory)],
                          capture_output=True, text=True, timeout=300, check=True)
    records = {}
    for segment in json.loads(done.stdout):
        for batch in segment.get("batches", []):
            for record in batch.get("records", []):
                records[record["offset"]] = record["value"]
    return records


def stop_or_dump_stacks(node, log, timeout_s: float = 30.0) -> None:
    """SIGTERM; a node still running after `timeout_s` has its threads' stacks logged (gdb, when
    installed) before it is killed and the test fails."""
    node.proc.send_signal(signal.SIGTERM)
    try:
        node.proc.wait(timeout=timeout_s)
        node.stopped_by_test = True
        return
    except subprocess.TimeoutExpired:
        pass
    if shutil.which("gdb"):
        stacks = subprocess.run(["gdb", "-p", str(node.proc.pid), "-batch", "-ex", "thread apply all bt"],
                                capture_output=True, text=True, timeout=120, check=False).stdout
        log(f"{node.name} ignored SIGTERM for {timeout_s}s; its threads:\n{stacks}")
    node.kill9()
    raise AssertionError(f"{node.name} ignored SIGTERM for {timeout_s}s")


def run(cluster: Cluster, sluicectl: str, kills: int, seed: int, rate: float | None = None, log=print) -> Outcome:
    rng = random.Random(seed)
    outcome = Outcome()
    admin = cluster.admin()
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(30)
    wait_until("the topic is in sync", lambda: in_sync(cluster), 30)
    load = Load(cluster, rate)
    load.thread.start()
    wait_until("the load is acknowledged", lambda: len(load.acked) > 1000, 60)
    # A consumer committing its positions synchronously (in the replicated __consumer_offsets)
    # through every kill; imported here, as power_cluster imports this module.
    import power_cluster
    # First until the group's committed offsets are readable: the offsets topic is created by
    # this first lookup, and a librdkafka consumer of assigned partitions whose first OffsetFetch
    # is refused (NOT_COORDINATOR while the brokers apply the new topic) was seen to stall for
    # more than a minute.
    power_cluster.committed_offsets(cluster.bootstrap, TOPIC, PARTITIONS, timeout_s=60)
    committer = power_cluster.Committer(cluster.bootstrap, every=200, topic=TOPIC, partitions=PARTITIONS,
                                        assign=True)
    committer.start()
    try:
        wait_until("the group commits", lambda: committer.check_alive() or committer.commits > 0, 60)
    except AssertionError as error:
        raise AssertionError(f"{error}: consumed {committer.consumed}, errors {committer.errors}") from error
    for kill in range(kills):
        roll = rng.random()
        if roll < 0.4:
            victim_id = leaders(cluster)[rng.randrange(PARTITIONS)]
            kind = "leader"
        elif roll < 0.6:
            victim_id = int(cluster.nodes[1].metric("sluice_controller_active_id") or 1)
            kind = "controller"
        else:
            victim_id = rng.choice(sorted(cluster.nodes))
            kind = "random"
        victim = cluster.nodes[victim_id]
        before = len(load.acked)
        victim.kill9()
        outcome.kills += 1
        outcome.killed[kind] = outcome.killed.get(kind, 0) + 1
        time.sleep(rng.uniform(0.2, 4.0))
        victim.start()
        wait_until("every ISR whole again", lambda: in_sync(cluster), 90, interval_s=0.25)
        log(f"kill {kill + 1}/{kills}: node {victim_id} ({kind}), acknowledged {before} -> {len(load.acked)}")
    load.finish(120)
    outcome.acknowledged = len(load.acked)
    outcome.failed = load.failed
    wait_until("every ISR whole at the end", lambda: in_sync(cluster), 90, interval_s=0.25)

    ends: dict[int, int] = {}
    for partition, offset, _ in load.acked:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    got = read_everything(cluster, {p: ends.get(p, 0) for p in range(PARTITIONS)})
    outcome.read = sum(len(records) for records in got.values())
    at = {(p, offset): value for p, records in got.items() for offset, value in records}
    for partition, records in got.items():
        offsets = [offset for offset, _ in records]
        assert offsets == list(range(len(offsets))), f"partition {partition}: offsets are not dense from 0"
        values = [value for _, value in records]
        outcome.duplicates += len(values) - len(set(values))
    outcome.lost = sum(1 for partition, offset, value in load.acked if at.get((partition, offset)) != value)
    log(f"read back: {outcome}")
    # Committed offsets kept: at least the last commit confirmed, at most what was asked and the log's end.
    committer.wait_held(120)
    committer.check_alive()
    highs = {p: high for p, (_, high) in clients.watermarks(cluster.nodes[1], TOPIC, list(range(PARTITIONS))).items()}
    committed = power_cluster.check_commits(cluster, committer, highs)
    outcome.commits = committer.commits
    log(f"group commits: {committer.commits} confirmed, {committer.failed_commits} failed (retried), "
        f"{committer.consumed} records consumed, errors {committer.errors}; "
        f"last confirmed {committer.confirmed}, committed {committed}")
    committer.close()

    for node in cluster.nodes.values():
        stop_or_dump_stacks(node, log)
    for partition in range(PARTITIONS):
        replicas = [on_disk(sluicectl, node.data_dir, partition) for node in cluster.nodes.values()]
        for offset in set().union(*replicas):
            values = {replica[offset] for replica in replicas if offset in replica}
            if len(values) > 1:
                outcome.divergent_offsets += 1
    log(f"outcome: {outcome}")
    return outcome
