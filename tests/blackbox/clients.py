"""Client helpers shared by the black-box suites: produce, consume and check records exactly.

Goal: keep each test about one behaviour by putting the mechanics here: deterministic record
generation, producing with delivery reports (the acknowledged partition and offset of every
record), consuming explicit partitions and offset ranges with assign() (no consumer group), and
comparing what came back with what was acknowledged, byte for byte.

Method: confluent-kafka (librdkafka) is the reference client; kafka-python and kafkajs helpers
live next to the tests that use them. Every wait has a deadline and every loop a bound.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource, NewTopic, ResourceType

import kafka_wire

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
OP_TIMEOUT_S = 30.0

_topic_counter = itertools.count()


def unique_topic(prefix: str) -> str:
    """A topic name no other test uses (the broker may be shared by a module)."""
    return f"{prefix}-{next(_topic_counter)}-{uuid.uuid4().hex[:8]}"


def base_conf(broker, **extra) -> dict:
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10_000,
        "reconnect.backoff.max.ms": 1_000,
    }
    conf.update(extra)
    return conf


# ---------------------------------------------------------------- admin


def admin(broker, **extra) -> AdminClient:
    """An AdminClient for this broker, cached on it.

    The client must outlive its futures: a temporary AdminClient destroyed while a request is in
    flight fails it with _DESTROY. librdkafka reconnects by itself after a restart.
    """
    if extra:
        client = AdminClient(base_conf(broker, **extra))
        broker.keep_alive.append(client)
        return client
    if broker.admin_client is None:
        broker.admin_client = AdminClient(base_conf(broker))
    return broker.admin_client


def wait_all(futures: dict, timeout_s: float = OP_TIMEOUT_S) -> dict:
    """Resolve a dict of admin futures; raises the first KafkaException, or AssertionError on no answer."""
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = fut.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"admin request for {key} got no answer within {timeout_s}s") from None
    return out


def create_topic(broker, name: str, partitions: int = 1, config: dict | None = None) -> None:
    client = admin(broker)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
    wait_all(client.create_topics([topic], operation_timeout=OP_TIMEOUT_S, request_timeout=OP_TIMEOUT_S))
    wait_for_partitions(broker, name, partitions)


def describe(broker, topic: str) -> dict[str, ConfigEntry]:
    """DescribeConfigs of one topic: {name: ConfigEntry}."""
    res = ConfigResource(ResourceType.TOPIC, topic)
    return wait_all(admin(broker).describe_configs([res]))[res]


def wait_for_partitions(broker, name: str, partitions: int, timeout_s: float = OP_TIMEOUT_S) -> None:
    """Poll Metadata until the topic shows `partitions` partitions, each with a leader, then
    ListOffsets until every partition answers it without error.

    Kafka names a new partition's leader in Metadata a moment (about 0.1 s) before that leader
    serves it: requests sent in between get NOT_LEADER_OR_FOLLOWER, which clients retry but raw
    requests (kafka_wire) would not.
    """
    client = admin(broker)
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        md = client.list_topics(timeout=10)
        topic = md.topics.get(name)
        if topic is not None and topic.error is None:
            leaders = [p.leader for p in topic.partitions.values()]
            seen = len(leaders)
            if seen == partitions and all(leader >= 0 for leader in leaders):
                break
        time.sleep(0.05)
    else:
        raise AssertionError(f"topic {name} did not show {partitions} partitions with leaders in Metadata "
                             f"(last: {seen})")
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
        while True:
            answers = kafka_wire.list_offsets(conn, name, list(range(partitions)))
            errors = {p: error for p, (error, _) in answers.items() if error != kafka_wire.ERROR_NONE}
            if len(answers) == partitions and not errors:
                return
            assert time.monotonic() < deadline, f"topic {name}: ListOffsets still answers errors {errors}"
            time.sleep(0.05)


# ---------------------------------------------------------------- records


@dataclass
class Rec:
    """A record we produced, with what the broker acknowledged for it."""

    seq: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int
    partition: int = -1
    offset: int = -1
    error: object = None


def make_records(count: int, tag: str, timestamp_base_ms: int, value_size: int = 100,
                 headers: bool = True, null_headers: bool = True, key_space: int = 1000,
                 seq_base: int = 0) -> list[Rec]:
    """Deterministic keyed records: distinct values, repeating keys, a few null values and headers.

    Values are a readable prefix plus hash-derived filler, so they compress somewhat but not to
    nothing; every 97th record has a null value (a tombstone) and every 89th an empty one.
    `seq_base` numbers the records after those of an earlier call, for checks of produce order
    across calls.
    """
    out = []
    for i in range(count):
        key = f"{tag}-key-{i % key_space}".encode()
        if i % 97 == 96:
            value = None
        elif i % 89 == 88:
            value = b""
        else:
            prefix = f"{tag}:{i}:".encode()
            filler = hashlib.blake2b(prefix, digest_size=32).hexdigest().encode()
            value = (prefix + filler * (value_size // len(filler) + 1))[:max(value_size, len(prefix))]
        hdrs = []
        if headers:
            hdrs = [("seq", str(i).encode()), ("tag", tag.encode())]
            if null_headers and i % 50 == 0:
                hdrs.append(("null-header", None))
            if i % 7 == 0:
                hdrs.append(("bin", bytes([i % 256, 0, 255])))
        out.append(Rec(seq_base + i, key, value, hdrs, timestamp_base_ms + i))
    return out


@dataclass
class Got:
    """A record as a consumer returned it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_type: int
    timestamp_ms: int


# ---------------------------------------------------------------- confluent-kafka produce


def confluent_producer(broker, **extra) -> Producer:
    conf = base_conf(broker, **{
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
        "queue.buffering.max.messages": 200_000,
    })
    conf.update(extra)
    return Producer(conf)


def produce(producer: Producer, topic: str, records: list[Rec], partition: int | None = None,
            timeout_s: float = 120.0, check: bool = True) -> list[Rec]:
    """Produce all records and wait for every delivery report; fills partition, offset and error."""
    deadline = time.monotonic() + timeout_s

    def on_delivery(rec: Rec):
        def report(err, msg):
            if err is not None:
                rec.error = err
            else:
                rec.partition = msg.partition()
                rec.offset = msg.offset()
        return report

    for rec in records:
        kwargs = dict(key=rec.key, value=rec.value, headers=rec.headers, timestamp=rec.timestamp_ms,
                      on_delivery=on_delivery(rec))
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"producer queue stayed full for {timeout_s}s") from None
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    assert left == 0, f"{left} records were not delivered within {timeout_s}s"
    if check:
        assert_all_delivered(records)
    return records


def assert_all_delivered(records: list[Rec]) -> None:
    failed = [r for r in records if r.error is not None or r.offset < 0]
    assert not failed, f"{len(failed)} of {len(records)} records failed, first: seq {failed[0].seq} {failed[0].error}"


# ---------------------------------------------------------------- confluent-kafka consume


def confluent_consumer(broker, **extra) -> Consumer:
    # confluent-kafka requires a group.id even for assign(); nothing here joins or commits.
    conf = base_conf(broker, **{
        "group.id": f"assign-only-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    })
    conf.update(extra)
    return Consumer(conf)


def consume_values(broker, topic: str, count: int, timeout_s: float = OP_TIMEOUT_S, **extra) -> list[bytes]:
    """The values of partition 0 of `topic` from its start, until `count` arrived or `timeout_s`
    passed, read with a consumer of `extra` settings (security settings, for example)."""
    consumer = confluent_consumer(broker, **extra)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
        return got
    finally:
        consumer.close()


def watermarks(broker, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(low, high) per partition as the broker reports them through ListOffsets."""
    consumer = confluent_consumer(broker)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in partitions}
    finally:
        consumer.close()


def to_got(msg) -> Got:
    ts_type, ts = msg.timestamp()
    return Got(msg.partition(), msg.offset(), msg.key(), msg.value(), list(msg.headers() or []), ts_type, ts)


def consume_range(broker, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float = 120.0,
                  **extra) -> dict[int, list[Got]]:
    """Read offsets [start, end) of each partition with assign(); returns records per partition.

    Fails on any consumer error and when the ranges are not complete before the deadline.
    """
    consumer = confluent_consumer(broker, **extra)
    out: dict[int, list[Got]] = {p: [] for p in ranges}
    pending = {p for p, (start, end) in ranges.items() if end > start}
    try:
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items() if p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                progress = {p: (out[p][-1].offset if out[p] else None, ranges[p]) for p in pending}
                raise AssertionError(f"timed out reading {topic}: last offset and range per partition {progress}")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error on {topic}/{msg.partition()}: {err}")
                p = msg.partition()
                end = ranges[p][1]
                if msg.offset() < end:
                    out[p].append(to_got(msg))
                if msg.offset() >= end - 1:
                    pending.discard(p)
    finally:
        consumer.close()
    return out


def read_all(broker, topic: str, partitions: int, **extra) -> dict[int, list[Got]]:
    """Everything between the low and high watermark of every partition."""
    marks = watermarks(broker, topic, list(range(partitions)))
    return consume_range(broker, topic, marks, **extra)


# ---------------------------------------------------------------- checks


def assert_dense(got: dict[int, list[Got]], ranges: dict[int, tuple[int, int]]) -> None:
    """Every offset of every range came back once, in order."""
    for p, (start, end) in ranges.items():
        offsets = [g.offset for g in got.get(p, [])]
        assert offsets == list(range(start, end)), \
            f"partition {p}: expected offsets {start}..{end - 1} in order, got {len(offsets)} " \
            f"(first {offsets[:3]}, last {offsets[-3:]})"


def assert_matches(records: list[Rec], got: dict[int, list[Got]], create_time: bool = True) -> None:
    """Each acknowledged record is at its acknowledged partition and offset with exact bytes.

    Also checks per-partition order: records appear in each partition in the order produced.
    """
    by_position = {(g.partition, g.offset): g for gs in got.values() for g in gs}
    per_partition: dict[int, list[Rec]] = defaultdict(list)
    for rec in records:
        per_partition[rec.partition].append(rec)
        g = by_position.get((rec.partition, rec.offset))
        assert g is not None, f"record seq {rec.seq} acknowledged at {rec.partition}/{rec.offset} is missing"
        where = f"record seq {rec.seq} at {rec.partition}/{rec.offset}"
        assert g.key == rec.key, f"{where}: key {g.key!r} != {rec.key!r}"
        assert g.value == rec.value, f"{where}: value differs ({_short(g.value)} != {_short(rec.value)})"
        assert g.headers == rec.headers, f"{where}: headers {g.headers!r} != {rec.headers!r}"
        if create_time:
            assert (g.timestamp_type, g.timestamp_ms) == (TIMESTAMP_CREATE_TIME, rec.timestamp_ms), \
                f"{where}: timestamp {(g.timestamp_type, g.timestamp_ms)} != CreateTime {rec.timestamp_ms}"
    for p, recs in per_partition.items():
        offsets = [r.offset for r in sorted(recs, key=lambda r: r.seq)]
        assert offsets == sorted(offsets), f"partition {p}: records are not in produce order"
        assert len(set(offsets)) == len(offsets), f"partition {p}: two records acknowledged at one offset"


def _short(value: bytes | None) -> str:
    if value is None:
        return "None"
    return f"{len(value)} bytes {value[:24]!r}..."


def partition_ranges(records: list[Rec]) -> dict[int, tuple[int, int]]:
    """Per partition, [first, last + 1) of the acknowledged offsets."""
    ranges: dict[int, tuple[int, int]] = {}
    for rec in records:
        lo, hi = ranges.get(rec.partition, (rec.offset, rec.offset + 1))
        ranges[rec.partition] = (min(lo, rec.offset), max(hi, rec.offset + 1))
    return ranges


def now_ms() -> int:
    return int(time.time() * 1000)
