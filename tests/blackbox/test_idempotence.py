"""Idempotent producers: no duplicates, and a replayed batch is answered with its original offset.

Goal: with enable.idempotence the log holds every record exactly once; the broker checks
per-partition producer sequences (InitProducerId, then sequence numbers in each RecordBatch):
a retried duplicate batch is acknowledged with the offset it was first written at and is not
written again, and a sequence gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.

Method: produce with confluent-kafka and kafka-python idempotent producers and check that the
log is exactly the acknowledged records, each once. Then replay one batch byte for byte over a
raw connection (kafka_wire: InitProducerId and Produce encoded by hand, the batch built by
kafka-python's encoder), as a producer does when a response is lost, and check offsets and
watermarks.
"""

from __future__ import annotations

from collections import Counter

import pytest

import kafka_wire
import kp
from clients import (assert_dense, assert_matches, confluent_producer, create_topic, make_records, now_ms, produce,
                     read_all, unique_topic, watermarks)


def assert_exactly_once(records, got) -> None:
    seen = Counter(g.value for gs in got.values() for g in gs if g.value)
    dupes = {v: n for v, n in seen.items() if n > 1}
    assert not dupes, f"{len(dupes)} values appear more than once, e.g. {next(iter(dupes))!r}"
    assert sum(len(gs) for gs in got.values()) == len(records)


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_confluent_idempotent_producer_writes_each_record_once(broker, codec):
    topic = unique_topic(f"idem-{codec}")
    create_topic(broker, topic, 4)
    records = make_records(20_000, f"idem-{codec}", now_ms())
    producer = confluent_producer(broker, **{"enable.idempotence": True, "acks": "all", "compression.type": codec,
                                             "max.in.flight.requests.per.connection": 5})
    produce(producer, topic, records)
    marks = watermarks(broker, topic, list(range(4)))
    assert sum(high - low for low, high in marks.values()) == len(records)
    got = read_all(broker, topic, 4)
    assert_dense(got, marks)
    assert_matches(records, got)
    assert_exactly_once(records, got)


def test_kafka_python_idempotent_producer_writes_each_record_once(broker):
    topic = unique_topic("idem-kp")
    create_topic(broker, topic, 2)
    records = make_records(2_000, "idem-kp", now_ms(), null_headers=False)
    prod = kp.producer(broker, acks="all", codec="gzip", enable_idempotence=True)
    try:
        kp.produce(prod, topic, records)
    finally:
        prod.close(timeout=10)
    got = read_all(broker, topic, 2)
    assert_matches(records, got)
    assert_exactly_once(records, got)


# ---------------------------------------------------------------- raw sequence checks


@pytest.fixture
def raw(broker):
    """A raw connection plus the Produce and InitProducerId versions both sides know."""
    produce_version = kafka_wire.pick_version(broker.api_versions, kafka_wire.API_PRODUCE, 11)
    init_version = kafka_wire.pick_version(broker.api_versions, kafka_wire.API_INIT_PRODUCER_ID, 5)
    assert produce_version is not None and produce_version >= 3, broker.api_versions.get(kafka_wire.API_PRODUCE)
    assert init_version is not None, "InitProducerId is not advertised"
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=15) as conn:
        error, identity = kafka_wire.init_producer_id(conn, init_version)
        assert error == kafka_wire.ERROR_NONE, f"InitProducerId v{init_version} error {error}"
        assert identity.producer_id >= 0 and identity.producer_epoch >= 0
        yield conn, produce_version, identity


@pytest.fixture
def plain(broker):
    """A raw connection and Produce version, for non-idempotent batches."""
    produce_version = kafka_wire.pick_version(broker.api_versions, kafka_wire.API_PRODUCE, 11)
    assert produce_version is not None and produce_version >= 3, broker.api_versions.get(kafka_wire.API_PRODUCE)
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=15) as conn:
        yield conn, produce_version


def batch_of(identity, base_sequence: int, count: int, tag: str) -> bytes:
    records = [(f"{tag}-k{i}".encode(), f"{tag}-v{i}".encode()) for i in range(count)]
    return kafka_wire.record_batch(records, now_ms(), producer=identity, base_sequence=base_sequence)


def test_replayed_batch_is_answered_with_its_original_offset(broker, raw):
    conn, version, identity = raw
    topic = unique_topic("replay")
    create_topic(broker, topic, 1)
    first = batch_of(identity, 0, 10, "first")
    second = batch_of(identity, 10, 5, "second")

    r1 = kafka_wire.produce(conn, version, topic, 0, first)
    r2 = kafka_wire.produce(conn, version, topic, 0, second)
    assert (r1.error_code, r1.base_offset, r2.error_code, r2.base_offset) == (0, 0, 0, 10)

    # A producer that lost the response to `first` sends the same bytes again.
    again = kafka_wire.produce(conn, version, topic, 0, first)
    assert again.error_code in (kafka_wire.ERROR_NONE, kafka_wire.ERROR_DUPLICATE_SEQUENCE_NUMBER), again
    if again.error_code == kafka_wire.ERROR_NONE:
        assert again.base_offset == 0, f"duplicate answered with offset {again.base_offset}, written at 0"
    assert watermarks(broker, topic, [0]) == {0: (0, 15)}, "the duplicate batch was written again"

    got = read_all(broker, topic, 1)
    assert [g.value for g in got[0]] == [f"first-v{i}".encode() for i in range(10)] + \
        [f"second-v{i}".encode() for i in range(5)]


def test_sequence_gap_is_refused_with_out_of_order_sequence(broker, raw):
    conn, version, identity = raw
    topic = unique_topic("seq-gap")
    create_topic(broker, topic, 1)
    ok = kafka_wire.produce(conn, version, topic, 0, batch_of(identity, 0, 3, "a"))
    assert (ok.error_code, ok.base_offset) == (0, 0)
    gap = kafka_wire.produce(conn, version, topic, 0, batch_of(identity, 100, 3, "b"))
    assert gap.error_code == kafka_wire.ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER, gap
    assert watermarks(broker, topic, [0]) == {0: (0, 3)}


def test_batch_with_bad_crc_is_refused_as_corrupt(broker, plain):
    conn, version = plain
    topic = unique_topic("bad-crc")
    create_topic(broker, topic, 1)
    batch = bytearray(batch_of(None, -1, 3, "crc"))
    batch[-1] ^= 0xFF  # last byte of the last record's value: covered by the CRC
    result = kafka_wire.produce(conn, version, topic, 0, bytes(batch))
    assert result.error_code == kafka_wire.ERROR_CORRUPT_MESSAGE, result
    assert watermarks(broker, topic, [0]) == {0: (0, 0)}


def test_produce_to_missing_partition_is_refused(broker, plain):
    conn, version = plain
    topic = unique_topic("missing-partition")
    create_topic(broker, topic, 2)
    result = kafka_wire.produce(conn, version, topic, 7, batch_of(None, -1, 1, "p7"))
    assert result.error_code == kafka_wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION, result
