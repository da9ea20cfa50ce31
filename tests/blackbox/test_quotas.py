"""Client quotas: AlterClientQuotas / DescribeClientQuotas, and their enforcement.

Goal: quotas set through the admin API are described back with Kafka's matching rules, survive
a restart (they live in the metadata log), and are enforced as Kafka enforces them: a producer
or consumer over its byte rate is held to the quota (KIP-219: the response carries
throttle_time_ms and the connection is muted for that long), other clients are not slowed, a
burst of topic creation over controller_mutation_rate is refused with THROTTLING_QUOTA_EXCEEDED
(KIP-599), and a client whose requests take more than its request_percentage of a shard
thread is throttled on every response (KIP-124).

Method: neither confluent-kafka's nor kafka-python's admin client has the client quota calls,
so AlterClientQuotas and DescribeClientQuotas (v0), Produce v7, Fetch v4, Metadata v4 and
CreateTopics v6 are encoded here by hand over kafka_wire's connection; the rates are measured
with real confluent-kafka producers and consumers, each with its own client id, over bounded
runs (the producer and consumer rates in the same run), and librdkafka's throttle callback
shows a real client seeing its request throttle.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import kafka_wire as kw
from clients import admin, confluent_consumer, confluent_producer, create_topic, unique_topic
from confluent_kafka import TopicPartition

pytestmark = pytest.mark.sluice_only

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_CREATE_TOPICS = 19
API_ALTER_CLIENT_QUOTAS = 49
API_DESCRIBE_CLIENT_QUOTAS = 48

ERROR_INVALID_REQUEST = 42
ERROR_THROTTLING_QUOTA_EXCEEDED = 89

MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2


# ---------------------------------------------------------------- wire helpers


def float64(value: float) -> bytes:
    return struct.pack(">d", value)


def call(conn: kw.Connection, api_key: int, version: int, body: bytes, client_id: str,
         flexible: bool = False) -> kw.Reader:
    """One request with `client_id` in its header; the reader is after the response header."""
    conn.correlation_id += 1
    cid = conn.correlation_id
    conn.send_raw(kw.request_frame(api_key, version, cid, body, client_id=client_id, flexible=flexible))
    size = struct.unpack(">i", conn.recv_exact(4))[0]
    reader = kw.Reader(conn.recv_exact(size))
    assert reader.int32() == cid
    if flexible:
        reader.tags()
    return reader


def alter_quotas(conn, entries, validate_only=False, client_id="quota-admin"):
    """entries: [({type: name or None}, {key: value or None (remove)})] -> [(error, message, entity)]."""
    encoded = []
    for entity, ops in entries:
        parts = [kw.string(kind) + kw.string(name) for kind, name in entity.items()]
        op_bytes = [kw.string(key) + float64(value or 0.0) + kw.int8(1 if value is None else 0)
                    for key, value in ops.items()]
        encoded.append(kw.array(parts) + kw.array(op_bytes))
    body = kw.array(encoded) + kw.int8(1 if validate_only else 0)
    r = call(conn, API_ALTER_CLIENT_QUOTAS, 0, body, client_id)
    r.int32()  # throttle_time_ms
    out = []
    for _ in range(r.int32()):
        error, message = r.int16(), r.string()
        entity = {}
        for _ in range(r.int32()):
            kind = r.string()
            entity[kind] = r.string()
        out.append((error, message, entity))
    return out


def describe_quotas(conn, components, strict=False, client_id="quota-admin"):
    """components: [(type, match_type, match)] -> (error, message, {frozenset(entity): {key: value}})."""
    body = kw.array([kw.string(kind) + kw.int8(match_type) + kw.string(match)
                     for kind, match_type, match in components]) + kw.int8(1 if strict else 0)
    r = call(conn, API_DESCRIBE_CLIENT_QUOTAS, 0, body, client_id)
    r.int32()
    error, message = r.int16(), r.string()
    entries = {}
    count = r.int32()
    for _ in range(max(count, 0)):
        entity = []
        for _ in range(r.int32()):
            kind = r.string()
            entity.append((kind, r.string()))
        values = {}
        for _ in range(r.int32()):
            key = r.string()
            values[key] = struct.unpack(">d", r.take(8))[0]
        entries[frozenset(entity)] = values
    return error, message, (entries if count >= 0 else None)


def produce_v7(conn, topic, batch, client_id):
    """Produce v7 of one batch to partition 0: (error_code, throttle_time_ms)."""
    part = kw.int32(0) + kw.nbytes(batch)
    body = kw.string(None) + kw.int16(1) + kw.int32(10_000) + kw.array([kw.string(topic) + kw.array([part])])
    r = call(conn, API_PRODUCE, 7, body, client_id)
    errors = []
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            r.int32()
            errors.append(r.int16())
            r.int64(), r.int64(), r.int64()
    return errors[0], r.int32()


def fetch_v4(conn, topic, offset, client_id):
    """Fetch v4 of partition 0 from `offset`: (throttle_time_ms, record bytes returned)."""
    part = kw.int32(0) + kw.int64(offset) + kw.int32(1 << 20)
    body = (kw.int32(-1) + kw.int32(100) + kw.int32(1) + kw.int32(8 << 20) + kw.int8(0)
            + kw.array([kw.string(topic) + kw.array([part])]))
    r = call(conn, API_FETCH, 4, body, client_id)
    throttle_ms = r.int32()
    record_bytes = 0
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            r.int32(), r.int16(), r.int64(), r.int64()
            aborted = r.int32()
            for _ in range(max(aborted, 0)):
                r.int64(), r.int64()
            size = r.int32()
            record_bytes += max(size, 0)
            r.take(max(size, 0))
    return throttle_ms, record_bytes


def create_topics_v6(conn, names, partitions, client_id):
    """CreateTopics v6 (flexible): (throttle_time_ms, [(name, error_code)])."""
    topics = [kw.compact_string(name) + kw.int32(partitions) + kw.int16(1) + kw.compact_array([])
              + kw.compact_array([]) + kw.NO_TAGS for name in names]
    body = kw.compact_array(topics) + kw.int32(30_000) + kw.int8(0) + kw.NO_TAGS
    r = call(conn, API_CREATE_TOPICS, 6, body, client_id, flexible=True)
    throttle_ms = r.int32()
    results = []
    for _ in range(r.array_len(True)):
        name = r.compact_string()
        error = r.int16()
        r.compact_string()  # error message
        r.int32(), r.int16()
        configs = r.uvarint() - 1
        for _ in range(max(configs, 0)):
            r.compact_string(), r.compact_string(), r.int8(), r.int8(), r.int8()
            r.tags()
        r.tags()
        results.append((name, error))
    return throttle_ms, results


def metadata_v4(conn, client_id):
    """Metadata v4 of every topic: its throttle_time_ms (the response's first field)."""
    return call(conn, API_METADATA, 4, kw.int32(-1) + kw.int8(0), client_id).int32()


def connect(broker) -> kw.Connection:
    return kw.Connection("127.0.0.1", broker.port, timeout_s=30.0)


# ---------------------------------------------------------------- admin API


def test_quotas_are_altered_described_and_kept_across_a_restart(own_broker):
    with connect(own_broker) as conn:
        answers = alter_quotas(conn, [
            ({"user": "alice"}, {"producer_byte_rate": 1024, "consumer_byte_rate": 2048}),
            ({"user": "alice", "client-id": "p1"}, {"request_percentage": 12.5}),
            ({"user": None}, {"producer_byte_rate": 4096}),
            ({"client-id": None}, {"controller_mutation_rate": 3}),
        ])
        assert [error for error, _, _ in answers] == [0, 0, 0, 0], answers

        # Kafka's validation, with its error code and messages.
        refused = alter_quotas(conn, [
            ({"user": "bob"}, {"producer_byte_rate": 1.5}),
            ({"user": "bob", "client-id": "x"}, {"bogus_key": 1}),
            ({"topic": "t"}, {"producer_byte_rate": 1}),
            ({"client-id": "y"}, {"request_percentage": 0}),
        ])
        assert [(error, message) for error, message, _ in refused] == [
            (ERROR_INVALID_REQUEST, "producer_byte_rate cannot be a fractional value."),
            (ERROR_INVALID_REQUEST, "Invalid configuration key bogus_key"),
            (ERROR_INVALID_REQUEST, "Unhandled client quota entity type: topic"),
            (ERROR_INVALID_REQUEST, "Quota request_percentage must be greater than 0"),
        ]
        # validate_only checks and writes nothing.
        checked = alter_quotas(conn, [({"user": "carol"}, {"producer_byte_rate": 10})], validate_only=True)
        assert checked[0][0] == 0

        def described():
            error, message, entries = describe_quotas(conn, [])
            assert error == 0, message
            return entries

        everything = described()
        assert everything == {
            frozenset({("user", "alice")}): {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0},
            frozenset({("user", "alice"), ("client-id", "p1")}): {"request_percentage": 12.5},
            frozenset({("user", None)}): {"producer_byte_rate": 4096.0},
            frozenset({("client-id", None)}): {"controller_mutation_rate": 3.0},
        }
        _, _, alice = describe_quotas(conn, [("user", MATCH_EXACT, "alice")])
        assert set(alice) == {frozenset({("user", "alice")}), frozenset({("user", "alice"), ("client-id", "p1")})}
        _, _, alice_only = describe_quotas(conn, [("user", MATCH_EXACT, "alice")], strict=True)
        assert set(alice_only) == {frozenset({("user", "alice")})}
        _, _, defaults = describe_quotas(conn, [("user", MATCH_DEFAULT, None)])
        assert set(defaults) == {frozenset({("user", None)})}
        _, _, with_client = describe_quotas(conn, [("client-id", MATCH_SPECIFIED, None)])
        assert len(with_client) == 2
        error, message, entries = describe_quotas(conn, [("user", MATCH_EXACT, None)])
        assert (error, entries) == (ERROR_INVALID_REQUEST, None), message

        # Removing a key; the entity goes with its last key.
        assert alter_quotas(conn, [({"client-id": None}, {"controller_mutation_rate": None})])[0][0] == 0
        expected = {entity: values for entity, values in everything.items()
                    if entity != frozenset({("client-id", None)})}
        assert described() == expected

    own_broker.restart()
    with connect(own_broker) as conn:
        error, message, entries = describe_quotas(conn, [])
        assert error == 0, message
        assert entries == expected


def sluicectl(broker, *args: str) -> subprocess.CompletedProcess:
    binary = os.environ.get("SLUICECTL_BIN") or str(Path(__file__).resolve().parents[2] / "target/release/sluicectl")
    return subprocess.run([binary, "--bootstrap-server", broker.bootstrap, "--output", "json", *args],
                          capture_output=True, timeout=60)


def test_sluicectl_sets_describes_and_removes_quotas(broker):
    done = sluicectl(broker, "quotas", "alter", "--user", "ctl-user", "--client-default",
                     "--set", "producer_byte_rate=2048", "--set", "request_percentage=50")
    assert done.returncode == 0, done.stderr.decode()
    described = sluicectl(broker, "quotas", "describe", "--user", "ctl-user", "--client-default", "--strict")
    assert described.returncode == 0, described.stderr.decode()
    assert json.loads(described.stdout) == [{"entity": {"user": "ctl-user", "client-id": None},
                                             "quotas": {"producer_byte_rate": 2048.0, "request_percentage": 50.0}}]
    # Kafka's refusal reaches the user as an error.
    refused = sluicectl(broker, "quotas", "alter", "--client-id", "x", "--set", "producer_byte_rate=0.5")
    assert refused.returncode != 0 and b"cannot be a fractional value" in refused.stderr, refused.stderr
    removed = sluicectl(broker, "quotas", "alter", "--user", "ctl-user", "--client-default",
                        "--delete", "producer_byte_rate", "--delete", "request_percentage")
    assert removed.returncode == 0, removed.stderr.decode()
    described = sluicectl(broker, "quotas", "describe", "--user", "ctl-user")
    assert json.loads(described.stdout) == []


# ---------------------------------------------------------------- enforcement on the wire


def test_a_produce_over_quota_carries_its_throttle_time_and_mutes_the_connection(broker):
    topic = unique_topic("quota-wire")
    create_topic(broker, topic)
    with connect(broker) as conn:
        assert alter_quotas(conn, [({"client-id": "wire-producer"}, {"producer_byte_rate": 32_000})])[0][0] == 0
    batch = kw.record_batch([(None, b"x" * 100_000) for _ in range(4)], int(time.time() * 1000))
    with connect(broker) as conn:
        # 400 kB against 32 kB/s over a 10 s span: 40 kB/s, a quarter over the quota,
        # (40 - 32) / 32 × 10 s = 2.5 s of throttle.
        error, throttle_ms = produce_v7(conn, topic, batch, "wire-producer")
        assert error == 0
        assert 2_000 <= throttle_ms <= 3_500, throttle_ms
        # The connection reads nothing more until the throttle time has passed.
        started = time.monotonic()
        _, second_throttle_ms = produce_v7(conn, topic, kw.record_batch([(None, b"y")], 0), "wire-producer")
        waited_ms = (time.monotonic() - started) * 1000
        assert waited_ms >= throttle_ms * 0.9, (waited_ms, throttle_ms)
    with connect(broker) as conn:
        # Another client id on the same broker is not throttled.
        error, throttle_ms = produce_v7(conn, topic, batch, "wire-other")
        assert (error, throttle_ms) == (0, 0)


def test_a_fetch_over_quota_is_answered_without_data_and_throttled(broker):
    topic = unique_topic("quota-fetch-wire")
    create_topic(broker, topic)
    with connect(broker) as conn:
        batch = kw.record_batch([(None, b"z" * 200_000)], int(time.time() * 1000))
        assert produce_v7(conn, topic, batch, "fetch-loader") == (0, 0)
        assert alter_quotas(conn, [({"client-id": "wire-consumer"}, {"consumer_byte_rate": 5_000})])[0][0] == 0
    with connect(broker) as conn:
        # 200 kB is over what 5 kB/s admits in the span (50 kB): the fetch is capped to it and,
        # once the first fetch has used the span's allowance, answered empty and throttled.
        throttles = []
        for _ in range(3):
            throttle_ms, record_bytes = fetch_v4(conn, topic, 0, "wire-consumer")
            throttles.append((throttle_ms, record_bytes))
            if throttle_ms > 0:
                break
        assert any(throttle_ms > 0 and record_bytes == 0 for throttle_ms, record_bytes in throttles), throttles
    with connect(broker) as conn:
        throttle_ms, record_bytes = fetch_v4(conn, topic, 0, "wire-unlimited")
        assert throttle_ms == 0 and record_bytes >= 200_000


def test_a_burst_of_topic_creation_is_refused_with_throttling_quota_exceeded(broker):
    with connect(broker) as conn:
        answers = alter_quotas(conn, [({"client-id": "topic-burst"}, {"controller_mutation_rate": 1})])
        assert answers[0][0] == 0
        # 1 mutation/s: a burst of 11 × 1 = 11 partitions. Topics of 5: 11 → 6 → 1 → -4, then refused.
        names = [unique_topic("burst") for _ in range(4)]
        throttle_ms, results = create_topics_v6(conn, names, 5, "topic-burst")
        assert [error for _, error in results] == [0, 0, 0, ERROR_THROTTLING_QUOTA_EXCEEDED], results
        assert 3_000 <= throttle_ms <= 4_500, throttle_ms
    with connect(broker) as conn:
        # Another client id is not held by that quota.
        throttle_ms, results = create_topics_v6(conn, [unique_topic("burst-other")], 5, "topic-other")
        assert (throttle_ms, [error for _, error in results]) == (0, [0])


# ---------------------------------------------------------------- request_percentage

# 0.05% of one shard thread is 500 µs of handling per second: over the first span of 10
# windows, 5 ms, which a few hundred Metadata requests use up (and a thread descheduled in the
# middle of one request does not).
REQUEST_PERCENTAGE = 0.05
REQUEST_LOOP_MAX = 3_000
REQUEST_LOOP_S = 30.0
# Throttled requests go on until the throttle is long enough to time the mute against: each
# Metadata request beyond the quota adds a few tens of ms to it, up to the 1 s cap.
REQUEST_THROTTLE_MS_MIN = 200


def test_requests_over_their_request_percentage_are_throttled_and_muted(broker):
    with connect(broker) as conn:
        answers = alter_quotas(conn, [({"client-id": "req-limited"}, {"request_percentage": REQUEST_PERCENTAGE})])
        assert answers[0][0] == 0
    with connect(broker) as conn:
        deadline = time.monotonic() + REQUEST_LOOP_S
        sent, throttle_ms, unthrottled = 0, 0, 0
        while throttle_ms < REQUEST_THROTTLE_MS_MIN and sent < REQUEST_LOOP_MAX and time.monotonic() < deadline:
            throttle_ms = metadata_v4(conn, "req-limited")
            sent += 1
            unthrottled += throttle_ms == 0 and unthrottled == sent - 1
        # The first requests are within the quota; Kafka caps a request quota's throttle time
        # at one quota window (1 s).
        assert unthrottled > 1, unthrottled
        assert REQUEST_THROTTLE_MS_MIN <= throttle_ms <= 1_000, (sent, throttle_ms)
        print(f"req-limited: {unthrottled} Metadata requests within the quota, then throttled up to "
              f"{throttle_ms} ms after {sent}")
        # The connection reads nothing more until the throttle time has passed.
        started = time.monotonic()
        metadata_v4(conn, "req-limited")
        waited_ms = (time.monotonic() - started) * 1000
        assert waited_ms >= throttle_ms * 0.9, (waited_ms, throttle_ms)
    with connect(broker) as conn:
        # Another client id on the same broker sends as many and is never throttled.
        assert [metadata_v4(conn, "req-free") for _ in range(sent)] == [0] * sent


def test_a_fetch_over_its_request_percentage_is_answered_without_data(broker):
    topic = unique_topic("quota-request-fetch")
    create_topic(broker, topic)
    with connect(broker) as conn:
        batch = kw.record_batch([(None, b"r" * 1_000)], int(time.time() * 1000))
        assert produce_v7(conn, topic, batch, "req-fetch-loader") == (0, 0)
        answers = alter_quotas(conn, [({"client-id": "req-fetcher"}, {"request_percentage": REQUEST_PERCENTAGE})])
        assert answers[0][0] == 0
    with connect(broker) as conn:
        deadline = time.monotonic() + REQUEST_LOOP_S
        answers = []
        while not any(throttle_ms for throttle_ms, _ in answers) and len(answers) < REQUEST_LOOP_MAX \
                and time.monotonic() < deadline:
            answers.append(fetch_v4(conn, topic, 0, "req-fetcher"))
        # Within the quota the fetches carry the record; over it, as Kafka answers, none.
        assert answers[0][0] == 0 and answers[0][1] > 1_000, answers[0]
        throttle_ms, record_bytes = answers[-1]
        assert 0 < throttle_ms <= 1_000 and record_bytes == 0, (len(answers), answers[-1])


def admin_throttles(broker, client_id, requests_max):
    """Lists topics with confluent-kafka's admin client up to `requests_max` times (bounded in
    time), until librdkafka reports a throttle: (requests sent, throttle times reported)."""
    throttles = []
    client = admin(broker, **{"client.id": client_id,
                              "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    deadline = time.monotonic() + REQUEST_LOOP_S
    sent = 0
    while not throttles and sent < requests_max and time.monotonic() < deadline:
        client.list_topics(timeout=10)
        sent += 1
        client.poll(0)
    client.poll(0.5)
    return sent, throttles


def test_a_real_client_sees_its_request_throttle_and_another_does_not(broker):
    with connect(broker) as conn:
        answers = alter_quotas(conn, [({"client-id": "req-admin"}, {"request_percentage": REQUEST_PERCENTAGE})])
        assert answers[0][0] == 0
    sent, throttles = admin_throttles(broker, "req-admin", REQUEST_LOOP_MAX)
    assert throttles and all(0 < seconds <= 1.0 for seconds in throttles), (sent, throttles)
    print(f"req-admin: librdkafka reported {throttles} s after {sent} list_topics")
    _, free_throttles = admin_throttles(broker, "req-admin-free", sent)
    assert free_throttles == []


# ---------------------------------------------------------------- rates with real clients


PRODUCER_QUOTA = 1_000_000
# Kafka's sampled rate pads the span to 10 windows at first, so a client's first seconds hold
# the allowance of 10; the rate is measured once that start has passed.
WARM_UP_S = 12.0
MEASURE_S = 30.0
# The throttled client offers 30% more than its quota, paced without catching up after a
# throttle: a client that piles up a backlog while muted and then sends it in one go makes
# Kafka's sampled windows swing (a window full of burst leaves the span 11 s later and opens
# room for the next burst), so the rate over any one 30 s span drifts by up to a window's worth.
OFFERED_FACTOR = 1.3


def run_producer(broker, topic, client_id, stop_at, bytes_per_s, delivered, value_size=10_000):
    """Produces `value_size` records until `stop_at`, paced at `bytes_per_s` (a record never goes
    out earlier than its turn, and a stall is not made up), at most 256 kB unacknowledged;
    appends (delivery time, bytes) of each delivered record."""
    producer = confluent_producer(broker, **{"client.id": client_id, "compression.type": "none",
                                             "batch.size": 65_536, "linger.ms": 5})
    value = b"v" * value_size
    pending = [0]

    def on_delivery(err, _msg):
        pending[0] -= 1
        if err is None:
            delivered.append((time.monotonic(), value_size))

    next_at = time.monotonic()
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if now < next_at or pending[0] * value_size >= 256_000:
            producer.poll(min(0.01, max(0.0, next_at - now)))
            continue
        producer.produce(topic, value=value, on_delivery=on_delivery)
        pending[0] += 1
        next_at = max(next_at, now) + value_size / bytes_per_s
        producer.poll(0)
    producer.flush(30)


def bytes_between(delivered, start, end):
    return sum(size for at, size in delivered if start <= at < end)


CONSUMER_QUOTA = 500_000
CONSUME_MEASURE_S = 20.0


def load_topic(broker, topic, total_bytes):
    """Produces `total_bytes` of 20 kB records to `topic` with a client under no quota."""
    loader = confluent_producer(broker, **{"client.id": "loader", "compression.type": "none"})
    value = b"c" * 20_000
    for _ in range(total_bytes // len(value) + 1):
        while True:
            try:
                loader.produce(topic, value=value)
                break
            except BufferError:
                loader.poll(0.05)
        loader.poll(0)
    assert loader.flush(120) == 0, "the topic was not loaded"


def run_consumer(broker, topic, client_id, started, stop_at, received):
    """Consumes `topic` until `stop_at`, the application taking records at 30% over the
    consumer quota; appends (receive time, bytes) of each record.

    librdkafka prefetches only while its queue of 512 kB has room, in fetches of at most 64 kB:
    a paced consumer, as the producer above. (A throttled fetch is answered empty and its bytes
    are not counted, so each throttle waits a little long; small fetches keep that small.)"""
    consumer = confluent_consumer(broker, **{"client.id": client_id, "enable.partition.eof": False,
                                             "queued.max.messages.kbytes": 512,
                                             "max.partition.fetch.bytes": 65_536, "fetch.max.bytes": 65_536,
                                             "message.max.bytes": 65_536})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        next_at = started
        while time.monotonic() < stop_at:
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(0.01, next_at - now))
                continue
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                received.append((time.monotonic(), len(message.value())))
                next_at = max(next_at, now) + len(message.value()) / (OFFERED_FACTOR * CONSUMER_QUOTA)
    finally:
        consumer.close()


def test_a_producer_over_its_byte_rate_is_held_to_the_quota_and_others_are_not(broker):
    """p1 offers 30% over its producer quota for 30 s after a warm-up; p2, another client id,
    offers 1.5 times that quota beside it, unlimited. (The consumer quota is measured in its own
    test: three clients of one Python process at once starve each other on a busy machine.)"""
    produce_topic = unique_topic("quota-produce")
    create_topic(broker, produce_topic)
    with connect(broker) as conn:
        answers = alter_quotas(conn, [({"client-id": "p1"}, {"producer_byte_rate": PRODUCER_QUOTA})])
        assert [error for error, _, _ in answers] == [0], answers
    started = time.monotonic()
    stop_at = started + WARM_UP_S + MEASURE_S
    throttled, free = [], []
    other_target = 1.5 * PRODUCER_QUOTA
    threads = [
        threading.Thread(target=run_producer,
                         args=(broker, produce_topic, "p1", stop_at, OFFERED_FACTOR * PRODUCER_QUOTA, throttled)),
        threading.Thread(target=run_producer, args=(broker, produce_topic, "p2", stop_at, other_target, free)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WARM_UP_S + MEASURE_S + 60)
        assert not thread.is_alive(), "a client did not stop"
    window = (started + WARM_UP_S, stop_at)
    rate = bytes_between(throttled, *window) / MEASURE_S
    other_rate = bytes_between(free, *window) / MEASURE_S
    print(f"p1: {rate:.0f} B/s against a quota of {PRODUCER_QUOTA}; p2: {other_rate:.0f} B/s")
    assert abs(rate - PRODUCER_QUOTA) <= 0.10 * PRODUCER_QUOTA, f"p1 produced {rate:.0f} B/s"
    # p2 gets well past p1's quota: nothing of p1's throttle reaches it.
    assert other_rate >= 1.2 * PRODUCER_QUOTA, f"p2 produced {other_rate:.0f} B/s of {other_target:.0f}"


def test_a_consumer_over_its_byte_rate_is_held_to_the_quota(broker):
    """c1 takes records 30% faster than its consumer quota allows, from a loaded topic."""
    consume_topic = unique_topic("quota-consume")
    create_topic(broker, consume_topic)
    # Enough data for the whole run: the warm-up's allowance of 10 windows, then the quota.
    load_topic(broker, consume_topic, int(CONSUMER_QUOTA * (10 + OFFERED_FACTOR * (WARM_UP_S + CONSUME_MEASURE_S))))
    with connect(broker) as conn:
        answers = alter_quotas(conn, [({"client-id": "c1"}, {"consumer_byte_rate": CONSUMER_QUOTA})])
        assert [error for error, _, _ in answers] == [0], answers
    started = time.monotonic()
    stop_at = started + WARM_UP_S + CONSUME_MEASURE_S
    received: list = []
    run_consumer(broker, consume_topic, "c1", started, stop_at, received)
    consumed_rate = bytes_between(received, started + WARM_UP_S, stop_at) / CONSUME_MEASURE_S
    print(f"c1: {consumed_rate:.0f} B/s against a quota of {CONSUMER_QUOTA}")
    assert abs(consumed_rate - CONSUMER_QUOTA) <= 0.10 * CONSUMER_QUOTA, f"c1 consumed {consumed_rate:.0f} B/s"
