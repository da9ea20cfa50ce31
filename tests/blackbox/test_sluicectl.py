"""sluicectl agrees with kcat and confluent-kafka where they overlap.

Goal: sluicectl is an independent Kafka-protocol client; whatever it writes, kcat and
confluent-kafka (librdkafka) read back the same, and whatever they write, it reads back the same.
Its reports (offsets, configs, brokers, committed offsets) match what librdkafka reports, and
its key partitioning matches librdkafka's Java-compatible murmur2 partitioner.

Method: run the `sluicectl` binary (built once per session with `cargo build --release --bin
sluicectl`, or SLUICECTL_BIN) against the module's broker with `--output json`, and compare with
kcat -J and confluent-kafka on the same topics. The group check runs only when the broker
advertises the consumer-group APIs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from clients import OP_TIMEOUT_S, admin, base_conf, create_topic, read_all, unique_topic, watermarks

pytestmark = pytest.mark.sluice_only("sluicectl, Sluice's command-line client (built with cargo)")

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120
# FindCoordinator, JoinGroup, SyncGroup, OffsetCommit, OffsetFetch.
GROUP_API_KEYS = (10, 11, 14, 8, 9)


@pytest.fixture(scope="session")
def sluicectl_bin() -> Path:
    override = os.environ.get("SLUICECTL_BIN")
    if override:
        return Path(override)
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "sluicectl"], cwd=REPO_ROOT, check=True,
                   timeout=1800)
    return REPO_ROOT / "target" / "release" / "sluicectl"


def sluicectl(bin_path: Path, broker, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_path), "--bootstrap-server", broker.bootstrap, *args], input=stdin,
                          capture_output=True, timeout=RUN_TIMEOUT_S)


def topic_configs(broker, topic: str) -> dict:
    """DescribeConfigs through confluent-kafka: {name: ConfigEntry}. The client stays referenced
    until the future resolves (a collected AdminClient cancels its requests)."""
    client = admin(broker)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return client.describe_configs([resource])[resource].result(timeout=OP_TIMEOUT_S)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"sluicectl exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout.decode()


def kcat(broker, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["kcat", "-b", broker.bootstrap, "-X", "broker.address.family=v4", *args],
                          input=stdin, capture_output=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout


needs_kcat = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")


@needs_kcat
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_reads_what_sluicectl_produced(broker, sluicectl_bin, codec):
    topic = unique_topic(f"ctl-to-kcat-{codec}")
    ok(sluicectl(sluicectl_bin, broker, "topics", "create", topic, "--partitions", "4"))
    lines = [f"key-{i % 37}|value {i} {'y' * (i % 13)}" for i in range(500)]
    ok(sluicectl(sluicectl_bin, broker, "produce", topic, "--key-separator", "|", "--header", "origin=sluicectl",
                 "--compression", codec, stdin=("\n".join(lines) + "\n").encode()))

    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q")
    msgs = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert sorted(f"{m['key']}|{m['payload']}" for m in msgs) == sorted(lines)
    assert all(m["headers"] == ["origin", "sluicectl"] for m in msgs)

    # Same keys through librdkafka's Java-compatible partitioner land on the same partitions.
    twin = unique_topic("kcat-partitioner")
    create_topic(broker, twin, 4)
    kcat(broker, "-P", "-t", twin, "-K", "|", "-X", "partitioner=murmur2_random",
         stdin=("\n".join(lines) + "\n").encode())
    twin_msgs = [json.loads(line) for line in kcat(broker, "-C", "-t", twin, "-o", "beginning", "-e", "-J", "-q")
                 .decode().splitlines() if line.strip()]
    assert {m["key"]: m["partition"] for m in msgs} == {m["key"]: m["partition"] for m in twin_msgs}


@needs_kcat
def test_sluicectl_reads_what_kcat_produced(broker, sluicectl_bin):
    topic = unique_topic("kcat-to-ctl")
    create_topic(broker, topic, 2)
    lines = [f"k{i}:payload {i}" for i in range(300)]
    kcat(broker, "-P", "-t", topic, "-p", "1", "-K", ":", "-z", "lz4", "-H", "h1=v1",
         stdin=("\n".join(lines) + "\n").encode())
    out = ok(sluicectl(sluicectl_bin, broker, "consume", topic, "--from-beginning", "--exit-at-end", "-o", "json"))
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["offset"] for r in records] == list(range(300))
    assert all(r["partition"] == 1 for r in records)
    assert [f"{r['key']}:{r['value']}" for r in records] == lines
    assert all(r["headers"] == [{"key": "h1", "value": "v1"}] for r in records)

    kcat_view = [json.loads(line) for line in kcat(broker, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e",
                                                    "-J", "-q").decode().splitlines() if line.strip()]
    assert [m["ts"] for m in kcat_view] == [r["timestamp"] for r in records]


def test_describe_agrees_with_confluent_kafka(broker, sluicectl_bin):
    topic = unique_topic("ctl-describe")
    ok(sluicectl(sluicectl_bin, broker, "topics", "create", topic, "--partitions", "3",
                 "--config", "retention.ms=3600000", "--config", "cleanup.policy=delete"))
    for partition, count in [(0, 10), (2, 25)]:
        ok(sluicectl(sluicectl_bin, broker, "produce", topic, "--partition", str(partition),
                     stdin=b"".join(b"r%d\n" % i for i in range(count))))
    described = json.loads(ok(sluicectl(sluicectl_bin, broker, "topics", "describe", topic, "-o", "json")))
    marks = watermarks(broker, topic, [0, 1, 2])
    assert {p["partition"]: (p["log_start_offset"], p["log_end_offset"]) for p in described["partitions"]} == marks
    assert marks == {0: (0, 10), 1: (0, 0), 2: (0, 25)}

    configs = topic_configs(broker, topic)
    for name, entry in configs.items():
        assert described["configs"][name]["value"] == entry.value, name
    assert described["configs"]["retention.ms"]["value"] == "3600000"

    metadata = admin(broker).list_topics(topic, timeout=OP_TIMEOUT_S)
    assert len(metadata.topics[topic].partitions) == 3
    info = json.loads(ok(sluicectl(sluicectl_bin, broker, "cluster", "info", "-o", "json")))
    assert {(b["node_id"], b["host"], b["port"]) for b in info["brokers"]} == \
        {(b.id, b.host, b.port) for b in metadata.brokers.values()}


def test_topics_made_by_sluicectl_are_seen_by_confluent_kafka(broker, sluicectl_bin):
    topic = unique_topic("ctl-admin")
    ok(sluicectl(sluicectl_bin, broker, "topics", "create", topic, "--partitions", "2"))
    ok(sluicectl(sluicectl_bin, broker, "topics", "add-partitions", topic, "--partitions", "4"))
    ok(sluicectl(sluicectl_bin, broker, "topics", "alter-config", topic, "retention.ms=120000"))
    assert len(admin(broker).list_topics(topic, timeout=OP_TIMEOUT_S).topics[topic].partitions) == 4
    assert topic_configs(broker, topic)["retention.ms"].value == "120000"
    ok(sluicectl(sluicectl_bin, broker, "produce", topic, stdin=b"a\nb\nc\n"))
    got = read_all(broker, topic, 4)
    assert sorted(g.value for records in got.values() for g in records) == [b"a", b"b", b"c"]
    ok(sluicectl(sluicectl_bin, broker, "topics", "delete", topic))
    listed = json.loads(ok(sluicectl(sluicectl_bin, broker, "topics", "list", "-o", "json")))
    assert topic not in {t["name"] for t in listed}
    assert topic not in admin(broker).list_topics(timeout=OP_TIMEOUT_S).topics


def test_group_offsets_agree_with_confluent_kafka(broker, sluicectl_bin):
    if not all(key in broker.api_versions for key in GROUP_API_KEYS):
        pytest.skip("the broker does not advertise the consumer-group APIs yet")
    topic = unique_topic("ctl-group")
    group = unique_topic("ctl-group-g")
    create_topic(broker, topic, 2)
    ok(sluicectl(sluicectl_bin, broker, "produce", topic, "--partition", "0",
                 stdin=b"".join(b"m%d\n" % i for i in range(100))))

    consumer = Consumer(base_conf(broker, **{"group.id": group, "enable.auto.commit": False,
                                             "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe([topic])
        seen = 0
        while seen < 40:
            for msg in consumer.consume(num_messages=40 - seen, timeout=1.0):
                assert msg.error() is None, msg.error()
                seen += 1
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    described = json.loads(ok(sluicectl(sluicectl_bin, broker, "groups", "describe", group, "-o", "json")))
    by_partition = {(o["topic"], o["partition"]): o for o in described["offsets"]}
    assert by_partition[(topic, 0)]["current_offset"] == 40
    assert by_partition[(topic, 0)]["lag"] == 60

    ok(sluicectl(sluicectl_bin, broker, "groups", "reset-offsets", group, "--topic", topic, "--to-offset", "75"))
    checker = Consumer(base_conf(broker, **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = checker.committed([TopicPartition(topic, 0)], timeout=OP_TIMEOUT_S)
        assert committed[0].offset == 75
    finally:
        checker.close()
    ok(sluicectl(sluicectl_bin, broker, "groups", "delete", group))


def test_transactions_show_and_abort_a_hanging_transaction(broker, sluicectl_bin):
    """`sluicectl transactions list/describe/producers` show a transaction that confluent-kafka
    opened and never ended (Ongoing, its partition, its producer id, the offset it starts at);
    `transactions abort` ends it at the partition leader as `kafka-transactions.sh abort` does,
    and a read_committed consumer that was held at that offset then reads a later committed
    record, but never the aborted one."""
    import time
    import uuid

    from confluent_kafka import KafkaError, Producer

    # InitProducerId, WriteTxnMarkers, DescribeProducers, DescribeTransactions, ListTransactions.
    txn_api_keys = (22, 27, 61, 65, 66)
    if not all(key in broker.api_versions for key in txn_api_keys):
        pytest.skip("the broker does not advertise the transaction admin APIs yet")
    wait_s = 60.0
    topic = unique_topic("ctl-txn")
    create_topic(broker, topic, 2)

    def txn_producer(txn_id: str) -> Producer:
        # A timeout far longer than the test: only `transactions abort` may end the transaction.
        producer = Producer(base_conf(broker, **{"transactional.id": txn_id, "transaction.timeout.ms": 600_000,
                                                 "linger.ms": 5}))
        producer.init_transactions(wait_s)
        producer.begin_transaction()
        return producer

    def send(producer: Producer, value: bytes) -> int:
        offsets = []
        producer.produce(topic, value=value, partition=1,
                         on_delivery=lambda err, msg: offsets.append(msg.offset() if err is None else err))
        assert producer.flush(wait_s) == 0, "not delivered"
        assert len(offsets) == 1 and isinstance(offsets[0], int), offsets
        return offsets[0]

    def ctl_json(*args: str):
        return json.loads(ok(sluicectl(sluicectl_bin, broker, "transactions", *args, "-o", "json")))

    txn_id = f"ctl-hanging-{uuid.uuid4().hex[:10]}"
    hanging = txn_producer(txn_id)
    start = send(hanging, b"hanging")

    listed = [t for t in ctl_json("list", "--state", "Ongoing") if t["transactional_id"] == txn_id]
    assert len(listed) == 1, listed
    assert listed[0]["state"] == "Ongoing"
    producer_id = listed[0]["producer_id"]
    assert producer_id >= 0

    described = ctl_json("describe", txn_id)
    assert len(described) == 1, described
    assert described[0]["state"] == "Ongoing"
    assert described[0]["producer_id"] == producer_id
    assert described[0]["timeout_ms"] == 600_000
    assert described[0]["partitions"] == [{"topic": topic, "partition": 1}]

    producers = ctl_json("producers", "--topic", topic, "--partition", "1")
    mine = [p for p in producers if p["producer_id"] == producer_id]
    assert len(mine) == 1, producers
    assert mine[0]["current_txn_start_offset"] == start
    assert mine[0]["producer_epoch"] == described[0]["producer_epoch"]

    later = txn_producer(f"ctl-later-{uuid.uuid4().hex[:10]}")
    send(later, b"committed")
    later.commit_transaction(wait_s)

    reader = Consumer(base_conf(broker, **{"group.id": f"ctl-txn-{uuid.uuid4().hex[:8]}",
                                           "isolation.level": "read_committed", "enable.auto.commit": False,
                                           "fetch.wait.max.ms": 100}))
    try:
        reader.assign([TopicPartition(topic, 1, 0)])
        seen: list[bytes] = []

        def poll_for(seconds: float, until=lambda: False) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not until():
                for msg in reader.consume(num_messages=100, timeout=0.2):
                    if msg.error() is None:
                        seen.append(msg.value())
                    else:
                        assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()

        poll_for(3.0)
        assert seen == [], f"the open transaction must hold read_committed readers at offset {start}: {seen}"

        aborted = ctl_json("abort", "--topic", topic, "--partition", "1", "--start-offset", str(start))
        assert aborted["aborted"] is True
        assert aborted["producer_id"] == producer_id
        assert aborted["start_offset"] == start

        poll_for(wait_s, until=lambda: b"committed" in seen)
        assert seen == [b"committed"], f"read_committed after the abort: {seen}"
        after = ctl_json("producers", "--topic", topic, "--partition", "1")
        assert all(p["current_txn_start_offset"] is None for p in after), after
    finally:
        reader.close()
    # The coordinator was not told; the producer may still end its transaction itself.
    hanging.abort_transaction(wait_s)
