"""A broker restarted after kill -9 catches up with the controller before it acts on metadata.

Goal: show that a restarted node of a cluster never acts on the metadata image its own log
holds from before the crash. The story of the bug: at restart a node replayed its metadata log
from disk, in which it still led what it led when it died, and published that image at once
(the publisher waited only for the index it knew committed, a floor, not a catch-up). Its
transaction coordinator loaded the `__transaction_state` partition at the leader epoch the node
had lost, resumed the markers of the Prepare states found there (a PrepareAbort written
locally but never replicated raced the new coordinator's COMMIT markers: a torn transaction)
and aborted "expired" transactions; its replication took the stale ISR for in sync. Now a node
of a cluster publishes nothing until it has applied its own registration, which the active
controller writes after a read barrier (KIP-631), and registers fenced until then.

Method: a three-node cluster (one shard each, a 3 s broker session timeout, three
`__transaction_state` partitions). A transactional producer commits transactions to a topic with
three replicas; the node that coordinates its transactional id (leads the id's
`__transaction_state` partition) is killed with SIGKILL; a new producer with the same id commits
more through the coordinator that takes over on another node; the killed node restarts on its
data directory. Checked from the restarted node's log (the broker logs "loading a coordinator
partition" with topic, partition and leader epoch before every coordinator load): it loads no
coordinator partition before it registered and started catching up, and never the lost
`__transaction_state` partition at the epoch it had before the crash. Checked from clients: the
restarted node refuses an acks=all produce to a partition it no longer leads with
NOT_LEADER_OR_FOLLOWER, the producer goes on committing, and a read_committed consumer reads
every committed record exactly once.
"""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
import kafka_wire
from cluster import SESSION_TIMEOUT_MS, Cluster, wait_until
from test_cluster import java_hash

pytestmark = pytest.mark.sluice_only("several nodes of one cluster; the reference runs a single node")

TXN_TOPIC = "__transaction_state"
TXN_PARTITIONS = 3
TXNS_BEFORE = 5
TXNS_AFTER = 5
RECORDS_PER_TXN = 10
WAIT_S = 30.0
ERROR_NOT_LEADER_OR_FOLLOWER = 6

LOAD_LINE = re.compile(r'loading a coordinator partition topic="?([\w.-]+)"? partition=(\d+) leader_epoch=(\d+)')
TXN_LOADED_LINE = re.compile(r"transaction coordinator loaded a partition .*partition=(\d+)")
GATE_LINE = "metadata: registered; catching up with the metadata log before serving"


def txn_partition(transactional_id: str) -> int:
    """The `__transaction_state` partition of an id, as Kafka computes it (abs of Java's hashCode)."""
    value = java_hash(transactional_id)
    return (0 if value == -(1 << 31) else abs(value)) % TXN_PARTITIONS


def leaders(admin, topic: str) -> dict[int, int]:
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return {}
    return {p.id: p.leader for p in found.partitions.values()}


def commit_transactions(producer: Producer, topic: str, first: int, count: int) -> list[bytes]:
    """`count` transactions of RECORDS_PER_TXN records each, committed; returns the values."""
    values = []
    for txn in range(first, first + count):
        producer.begin_transaction()
        for index in range(RECORDS_PER_TXN):
            value = f"txn-{txn}-{index}".encode()
            producer.produce(topic, value=value, partition=index % 3)
            values.append(value)
        producer.commit_transaction(WAIT_S)
    return values


def transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                         "transactional.id": transactional_id, "transaction.timeout.ms": 60_000,
                         "socket.timeout.ms": 10_000, "reconnect.backoff.max.ms": 500,
                         # Connection errors to the killed node are expected.
                         "log_level": 0})
    producer.init_transactions(WAIT_S)
    return producer


def run_log(node, start: int) -> list[str]:
    """The node's log lines of its `start`-th run."""
    text = node.log_text() or ""
    runs = re.split(r"^===== start #\d+:.*$", text, flags=re.MULTILINE)
    return runs[start].splitlines() if len(runs) > start else []


def coordinator_loads(lines: list[str]) -> list[tuple[str, int, int, str]]:
    """(topic, partition, leader epoch, line) of every "loading a coordinator partition" line."""
    loads = []
    for line in lines:
        match = LOAD_LINE.search(line)
        if match:
            loads.append((match.group(1), int(match.group(2)), int(match.group(3)), line))
    return loads


def read_committed(bootstrap: str, topic: str, expected: int, timeout_s: float = WAIT_S) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                         "group.id": f"catch-up-{time.monotonic_ns()}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 100, "log_level": 0})
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
        # A moment more: anything past `expected` (a duplicate, an aborted record) shows here.
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


@pytest.mark.timeout(120)
def test_a_restarted_broker_acts_on_no_metadata_before_catching_up(tmp_path):
    cluster = Cluster(tmp_path)
    for node in cluster.nodes.values():
        node.extra_env["SLUICE_TRANSACTION_STATE_LOG_NUM_PARTITIONS"] = str(TXN_PARTITIONS)
    cluster.start()
    try:
        admin = cluster.admin()
        topic = clients.unique_topic("catch-up")
        futures = admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})],
                                      request_timeout=WAIT_S)
        futures[topic].result(timeout=WAIT_S)
        wait_until(f"every node knows {topic}",
                   lambda: all(len(leaders(cluster.admin(node), topic)) == 3 for node in cluster.nodes.values()))

        transactional_id = "catch-up-txn"
        partition = txn_partition(transactional_id)
        producer = transactional_producer(cluster.bootstrap, transactional_id)
        committed = commit_transactions(producer, topic, 0, TXNS_BEFORE)
        coordinator = cluster.nodes[wait_until(f"{TXN_TOPIC}-{partition} has a leader",
                                               lambda: max(leaders(admin, TXN_TOPIC).get(partition, -1), 0))]
        lost_epochs = [epoch for name, index, epoch, _ in coordinator_loads(run_log(coordinator, 1))
                       if name == TXN_TOPIC and index == partition]
        assert lost_epochs, f"node {coordinator.node_id} logged no load of {TXN_TOPIC}-{partition}\n" \
                            f"{coordinator.log_tail()}"
        lost_epoch = max(lost_epochs)
        led_before = {p for p, leader in leaders(admin, topic).items() if leader == coordinator.node_id}

        coordinator.kill9()
        del producer
        survivors = [node for node in cluster.nodes.values() if node is not coordinator]
        survivor_admin = cluster.admin(*survivors)

        def led_by_a_survivor():
            leader = leaders(survivor_admin, TXN_TOPIC).get(partition, -1)
            return leader if leader in {node.node_id for node in survivors} else None

        new_leader = wait_until(f"another node leads {TXN_TOPIC}-{partition}", led_by_a_survivor,
                                timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
        survivor_bootstrap = ",".join(node.bootstrap for node in survivors)
        producer = transactional_producer(survivor_bootstrap, transactional_id)
        committed += commit_transactions(producer, topic, TXNS_BEFORE, TXNS_AFTER)

        coordinator.start()
        # Client side: what the node led before the crash moved; it must not take produce for it.
        now_led = leaders(survivor_admin, topic)
        moved = sorted(p for p in led_before if now_led.get(p) != coordinator.node_id) or \
            sorted(p for p, leader in now_led.items() if leader != coordinator.node_id)
        with kafka_wire.Connection(coordinator.host, coordinator.port, timeout_s=15.0) as conn:
            _, versions = kafka_wire.api_versions(conn)
            version = kafka_wire.pick_version(versions, kafka_wire.API_PRODUCE, 9)
            batch = kafka_wire.record_batch([(None, b"to-a-follower")], clients.now_ms())
            answer = kafka_wire.produce(conn, version, topic, moved[0], batch, acks=-1)
        assert answer.error_code == ERROR_NOT_LEADER_OR_FOLLOWER, \
            f"node {coordinator.node_id} answered an acks=all produce to {topic}-{moved[0]}, led by " \
            f"{now_led.get(moved[0])}, with error {answer.error_code}"

        # The cluster goes on: the producer commits through the coordinator that took over.
        committed += commit_transactions(producer, topic, TXNS_BEFORE + TXNS_AFTER, 1)

        # The restarted node's log: no coordinator loaded before it registered and began to catch
        # up, and the lost partition never at the epoch it had lost.
        lines = run_log(coordinator, 2)
        gate = next((number for number, line in enumerate(lines) if GATE_LINE in line), None)
        assert gate is not None, f"node {coordinator.node_id} never logged {GATE_LINE!r}\n{coordinator.log_tail()}"
        early = [line for line in lines[:gate] if LOAD_LINE.search(line) or TXN_LOADED_LINE.search(line)]
        assert not early, "coordinators loaded from the stale image before catching up:\n" + "\n".join(early)
        stale = [line for name, index, epoch, line in coordinator_loads(lines)
                 if name == TXN_TOPIC and index == partition and epoch <= lost_epoch]
        assert not stale, f"{TXN_TOPIC}-{partition} loaded again at the lost epoch {lost_epoch} " \
                          f"(now led by node {new_leader}):\n" + "\n".join(stale)
        timers = [line for line in lines if "aborting a transaction past its timeout" in line]
        assert not timers, "the restarted node aborted transactions it does not coordinate:\n" + "\n".join(timers)

        values = read_committed(cluster.bootstrap, topic, len(committed))
        assert sorted(values) == sorted(committed), \
            f"read_committed read {len(values)} records ({len(set(values))} distinct), expected {len(committed)}: " \
            f"missing {sorted(set(committed) - set(values))[:5]}, unexpected {sorted(set(values) - set(committed))[:5]}"
    finally:
        died = cluster.stop()
        assert not died, f"nodes exited on their own: {died}\n{cluster.log_tails()}"
