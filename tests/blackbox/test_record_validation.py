"""Records a topic's rules forbid are refused as Kafka refuses them.

Goal: a record without a key sent to a topic with `cleanup.policy=compact` is refused with
INVALID_RECORD, and Produce v8+ names the offending records in `record_errors` with their index in
the batch, whether or not the batch is compressed; the batch is refused whole, nothing of it is
stored, and keyed records keep being accepted (librdkafka's test 0011 checks the same).

Method: librdkafka (confluent-kafka) produces keyless and keyed records with several codecs and
reads back what is stored; a raw Produce v9 request carries a batch built by kafka-python's
independent encoder, mixing keyed and keyless records, so the response's fields can be checked.
Every check holds against Apache Kafka too.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

import clients
import kafka_wire

INVALID_RECORD = 87


@pytest.fixture(scope="module")
def compacted_topic(broker):
    name = clients.unique_topic("compacted-keys")
    clients.create_topic(broker, name, partitions=1, config={"cleanup.policy": "compact"})
    return name


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "lz4", "snappy"])
def test_keyless_record_on_compacted_topic_is_invalid_record(broker, compacted_topic, codec):
    producer = clients.confluent_producer(broker, **{"compression.type": codec, "linger.ms": 0, "retries": 0})
    outcomes = []

    def report(error, message):
        outcomes.append((message.key(), error))

    producer.produce(compacted_topic, value=b"no key", on_delivery=report)
    producer.flush(30)
    producer.produce(compacted_topic, key=b"k-" + codec.encode(), value=b"keyed", on_delivery=report)
    producer.flush(30)
    assert len(outcomes) == 2, outcomes
    keyless_error = outcomes[0][1]
    assert keyless_error is not None, "a keyless record on a compacted topic was accepted"
    assert keyless_error.code() == KafkaError.INVALID_RECORD, keyless_error
    assert outcomes[1][1] is None, outcomes[1]


def test_record_errors_name_every_keyless_record_of_the_batch(broker, compacted_topic):
    low_before, high_before = clients.watermarks(broker, compacted_topic, [0])[0]
    batch = kafka_wire.record_batch(
        [(b"a", b"1"), (None, b"2"), (b"c", b"3"), (None, b"4")], timestamp_ms=clients.now_ms())
    with kafka_wire.Connection(broker.host, broker.port) as conn:
        result = kafka_wire.produce(conn, 9, compacted_topic, 0, batch)
    assert result.error_code == INVALID_RECORD, result
    assert [index for index, _ in result.record_errors] == [1, 3], result
    assert all("without key" in (text or "") for _, text in result.record_errors), result
    assert result.base_offset == -1
    # The whole batch was refused: nothing of it is stored.
    assert clients.watermarks(broker, compacted_topic, [0])[0] == (low_before, high_before)


def test_keyless_records_are_fine_on_delete_topics(broker):
    name = clients.unique_topic("delete-keys")
    clients.create_topic(broker, name, partitions=1, config={"cleanup.policy": "delete"})
    batch = kafka_wire.record_batch([(None, b"1"), (None, b"2")], timestamp_ms=clients.now_ms())
    with kafka_wire.Connection(broker.host, broker.port) as conn:
        result = kafka_wire.produce(conn, 9, name, 0, batch)
    assert result.error_code == 0, result
    assert result.record_errors == ()
