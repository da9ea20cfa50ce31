"""Keyed records with headers survive a produce/fetch round trip exactly, for every codec and acks level.

Goal: the broker stores what producers send, byte for byte, at the offsets it acknowledges, in
per-partition produce order, and serves it to consumers of another implementation.

Method: create 8-partition topics with AdminClient, produce deterministic keyed records with
headers and explicit CreateTime timestamps: 100,000 with confluent-kafka (10,000 for each of the
5 codecs x acks=1 and acks=all), fewer with the slower kafka-python. Record every acknowledged
(partition, offset) from the delivery reports, check the watermarks equal the counts, read every
partition back with assign() from offset 0 (no consumer group) and compare keys, values,
headers, timestamps and order. Cross-client cases read one client's writes with the other.
"""

from __future__ import annotations

from collections import Counter

import pytest

import kp
from clients import (CODECS, assert_dense, assert_matches, confluent_producer, consume_range, create_topic,
                     make_records, now_ms, produce, read_all, unique_topic, watermarks)

PARTITIONS = 8
CONFLUENT_RECORDS_PER_CASE = 10_000  # x 5 codecs x 2 acks levels = 100,000 records
KAFKA_PYTHON_RECORDS_PER_CASE = 1_000


def expected_watermarks(records) -> dict[int, tuple[int, int]]:
    counts = Counter(r.partition for r in records)
    return {p: (0, counts.get(p, 0)) for p in range(PARTITIONS)}


@pytest.mark.parametrize("acks", ["1", "all"])
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_records_read_back_exactly_at_acknowledged_offsets(broker, codec, acks):
    topic = unique_topic(f"rt-{codec}-acks{acks}")
    create_topic(broker, topic, PARTITIONS)
    records = make_records(CONFLUENT_RECORDS_PER_CASE, f"{codec}-{acks}", now_ms() - 3_600_000)
    producer = confluent_producer(broker, **{"acks": acks, "compression.type": codec,
                                             "enable.idempotence": False})
    produce(producer, topic, records)

    assert {r.partition for r in records} == set(range(PARTITIONS)), "keys should spread over all partitions"
    marks = watermarks(broker, topic, list(range(PARTITIONS)))
    assert marks == expected_watermarks(records)
    got = consume_range(broker, topic, marks)
    assert_dense(got, marks)
    assert_matches(records, got)


@pytest.mark.parametrize("acks", ["1", "all"])
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_records_read_back_exactly_by_confluent(broker, codec, acks):
    topic = unique_topic(f"kp-{codec}-acks{acks}")
    create_topic(broker, topic, PARTITIONS)
    # kafka-python cannot send a header with a null value.
    records = make_records(KAFKA_PYTHON_RECORDS_PER_CASE, f"kp-{codec}-{acks}", now_ms() - 7_200_000,
                           null_headers=False)
    prod = kp.producer(broker, acks=1 if acks == "1" else "all", codec=codec)
    try:
        kp.produce(prod, topic, records)
    finally:
        prod.close(timeout=10)

    marks = watermarks(broker, topic, list(range(PARTITIONS)))
    assert marks == expected_watermarks(records)
    got = consume_range(broker, topic, marks)
    assert_dense(got, marks)
    assert_matches(records, got)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_consumer_reads_confluent_batches_exactly(broker, codec):
    topic = unique_topic(f"kp-read-{codec}")
    create_topic(broker, topic, PARTITIONS)
    records = make_records(2_000, f"kpr-{codec}", now_ms() - 60_000, null_headers=False)
    produce(confluent_producer(broker, **{"acks": "all", "compression.type": codec}), topic, records)

    marks = watermarks(broker, topic, list(range(PARTITIONS)))
    got = kp.consume_range(broker, topic, marks)
    assert_dense(got, marks)
    assert_matches(records, got)


def test_records_with_explicit_partition_land_in_that_partition(broker):
    topic = unique_topic("explicit-partition")
    create_topic(broker, topic, PARTITIONS)
    producer = confluent_producer(broker, acks="all")
    batches = {}
    for p in range(PARTITIONS):
        batches[p] = produce(producer, topic, make_records(100 + p, f"p{p}", now_ms()), partition=p)
    for p, records in batches.items():
        assert {r.partition for r in records} == {p}
        assert [r.offset for r in records] == list(range(len(records)))
    got = read_all(broker, topic, PARTITIONS)
    for p, records in batches.items():
        assert_matches(records, {p: got[p]})


def test_consecutive_produce_calls_get_consecutive_offsets(broker):
    topic = unique_topic("consecutive")
    create_topic(broker, topic, 1)
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0})
    first = produce(producer, topic, make_records(10, "a", now_ms()), partition=0)
    second = produce(producer, topic, make_records(10, "b", now_ms()), partition=0)
    assert [r.offset for r in first + second] == list(range(20))
    assert watermarks(broker, topic, [0]) == {0: (0, 20)}


def test_log_append_time_topic_stamps_records_with_broker_time(broker):
    topic = unique_topic("log-append-time")
    create_topic(broker, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    records = make_records(500, "lat", timestamp_base_ms=1_000_000)  # far in the past on purpose
    before = now_ms()
    produce(confluent_producer(broker, acks="all", **{"compression.type": "lz4"}), topic, records, partition=0)
    after = now_ms()

    got = read_all(broker, topic, 1)
    assert_matches(records, got, create_time=False)
    stamps = {(g.timestamp_type, g.timestamp_ms) for g in got[0]}
    for ts_type, ts in stamps:
        assert ts_type == 2, f"timestamp type {ts_type} is not LogAppendTime"  # TIMESTAMP_LOG_APPEND_TIME
        assert before - 1_000 <= ts <= after + 1_000, f"log append time {ts} outside [{before}, {after}]"


def test_produce_to_unknown_topic_creates_it(broker):
    topic = unique_topic("auto-created")
    records = make_records(50, "auto", now_ms())
    produce(confluent_producer(broker, acks="all"), topic, records)
    partitions = {r.partition for r in records}
    assert partitions, "no record was delivered"
    got = read_all(broker, topic, max(partitions) + 1)
    assert_matches(records, got)


def test_kafka_python_produce_to_unknown_topic_creates_it(broker):
    topic = unique_topic("auto-created-kp")
    records = make_records(50, "autokp", now_ms(), null_headers=False)
    prod = kp.producer(broker, acks="all", codec="none")
    try:
        kp.produce(prod, topic, records)
    finally:
        prod.close(timeout=10)
    got = read_all(broker, topic, max(r.partition for r in records) + 1)
    assert_matches(records, got)
