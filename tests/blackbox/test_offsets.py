"""Offsets: list earliest/latest, seek by offset and by timestamp, and delete records.

Goal: ListOffsets, timestamp lookups and DeleteRecords answer what Kafka answers, and fetches
start exactly where a client seeks.

Method: produce records with known, strictly increasing CreateTime timestamps to one partition
(plus a multi-partition topic for list_offsets), then ask through AdminClient.list_offsets,
Consumer.get_watermark_offsets / offsets_for_times (confluent-kafka) and kafka-python's
beginning_offsets / end_offsets / offsets_for_times, and compare with the acknowledged offsets.
Seeks use assign() with an offset or Consumer.seek(); nothing joins a consumer group.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec
from kafka import TopicPartition as KpTopicPartition

import kp
from clients import (admin, assert_matches, confluent_consumer, confluent_producer, consume_range, create_topic,
                     make_records, now_ms, produce, read_all, unique_topic, wait_all, watermarks)

RECORDS = 3_000
STEP_MS = 10  # timestamps are base + 10 * index


@pytest.fixture(scope="module")
def timed_topic(broker):
    """One partition holding RECORDS records with timestamps base + 10 * offset."""
    topic = unique_topic("timed")
    create_topic(broker, topic, 1)
    base = now_ms() - 3_600_000
    records = make_records(RECORDS, "timed", base)
    for i, rec in enumerate(records):
        rec.timestamp_ms = base + STEP_MS * i
    # Several produce calls so that the log holds several batches.
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0, "batch.num.messages": 100})
    produce(producer, topic, records, partition=0)
    assert [r.offset for r in records] == list(range(RECORDS))
    return topic, base, records


def test_admin_list_offsets_reports_earliest_and_latest(broker):
    topic = unique_topic("list-offsets")
    create_topic(broker, topic, 4)
    producer = confluent_producer(broker, acks="all")
    counts = {0: 0, 1: 10, 2: 250, 3: 1}
    for p, n in counts.items():
        if n:
            produce(producer, topic, make_records(n, f"lo{p}", now_ms()), partition=p)
    client = admin(broker)
    for spec, expect in ((OffsetSpec.earliest(), lambda n: 0), (OffsetSpec.latest(), lambda n: n)):
        answers = wait_all(client.list_offsets({TopicPartition(topic, p): spec for p in counts}))
        got = {tp.partition: info.offset for tp, info in answers.items()}
        assert got == {p: expect(n) for p, n in counts.items()}, f"{spec}: {got}"


def test_watermarks_match_acknowledged_offsets(broker, timed_topic):
    topic, _, _ = timed_topic
    assert watermarks(broker, topic, [0]) == {0: (0, RECORDS)}


def test_kafka_python_beginning_and_end_offsets(broker, timed_topic):
    topic, _, _ = timed_topic
    cons = kp.consumer(broker)
    try:
        tp = KpTopicPartition(topic, 0)
        assert cons.beginning_offsets([tp], timeout_ms=15_000) == {tp: 0}
        assert cons.end_offsets([tp], timeout_ms=15_000) == {tp: RECORDS}
    finally:
        cons.close()


@pytest.mark.parametrize("start", [0, 1, 99, 1_234, RECORDS - 1])
def test_assign_at_offset_starts_reading_exactly_there(broker, timed_topic, start):
    topic, _, records = timed_topic
    got = consume_range(broker, topic, {0: (start, min(start + 200, RECORDS))})
    assert [g.offset for g in got[0]] == list(range(start, min(start + 200, RECORDS)))
    assert_matches(records[start:start + 200], got)


def test_seek_moves_the_fetch_position_backwards_and_forwards(broker, timed_topic):
    topic, _, records = timed_topic
    consumer = confluent_consumer(broker)
    try:
        consumer.assign([TopicPartition(topic, 0, 2_000)])
        first = poll_one(consumer)
        assert first.offset() == 2_000
        consumer.seek(TopicPartition(topic, 0, 17))
        assert poll_one(consumer).offset() == 17
        consumer.seek(TopicPartition(topic, 0, 2_999))
        last = poll_one(consumer)
        assert (last.offset(), last.value()) == (2_999, records[2_999].value)
    finally:
        consumer.close()


def poll_one(consumer, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consumer error: {msg.error()}")
        return msg
    raise AssertionError(f"no record within {timeout_s}s")


@pytest.mark.parametrize("index", [0, 1, 500, 1_501, RECORDS - 1])
def test_offsets_for_times_finds_first_record_at_or_after_timestamp(broker, timed_topic, index):
    topic, base, _ = timed_topic
    consumer = confluent_consumer(broker)
    try:
        exact = consumer.offsets_for_times([TopicPartition(topic, 0, base + STEP_MS * index)], timeout=15)
        between = consumer.offsets_for_times([TopicPartition(topic, 0, base + STEP_MS * index - 3)], timeout=15)
    finally:
        consumer.close()
    assert exact[0].error is None and exact[0].offset == index
    assert between[0].error is None and between[0].offset == index


def test_offsets_for_times_before_first_record_returns_offset_zero(broker, timed_topic):
    topic, base, _ = timed_topic
    consumer = confluent_consumer(broker)
    try:
        answer = consumer.offsets_for_times([TopicPartition(topic, 0, base - 1_000_000)], timeout=15)
    finally:
        consumer.close()
    assert answer[0].offset == 0


def test_offsets_for_times_after_last_record_returns_end(broker, timed_topic):
    topic, base, _ = timed_topic
    consumer = confluent_consumer(broker)
    try:
        answer = consumer.offsets_for_times([TopicPartition(topic, 0, base + STEP_MS * RECORDS + 1)], timeout=15)
    finally:
        consumer.close()
    # Kafka answers offset -1 for "no such record"; librdkafka reports it as OFFSET_END (-1).
    assert answer[0].offset == OFFSET_END


def test_admin_list_offsets_for_timestamp(broker, timed_topic):
    topic, base, _ = timed_topic
    tp = TopicPartition(topic, 0)
    by_time = wait_all(admin(broker).list_offsets({tp: OffsetSpec.for_timestamp(base + STEP_MS * 777)}))
    assert (by_time[tp].offset, by_time[tp].timestamp) == (777, base + STEP_MS * 777)


def test_admin_list_offsets_max_timestamp_finds_last_record(broker, timed_topic):
    # ListOffsets v7 (KIP-734): the offset of the record with the largest timestamp.
    topic, base, _ = timed_topic
    tp = TopicPartition(topic, 0)
    max_ts = wait_all(admin(broker).list_offsets({tp: OffsetSpec.max_timestamp()}))
    assert (max_ts[tp].offset, max_ts[tp].timestamp) == (RECORDS - 1, base + STEP_MS * (RECORDS - 1))


def test_kafka_python_offsets_for_times(broker, timed_topic):
    topic, base, _ = timed_topic
    cons = kp.consumer(broker)
    try:
        tp = KpTopicPartition(topic, 0)
        found = cons.offsets_for_times({tp: base + STEP_MS * 1_000 - 5}, timeout_ms=15_000)
        missing = cons.offsets_for_times({tp: base + STEP_MS * RECORDS + 50}, timeout_ms=15_000)
    finally:
        cons.close()
    assert found[tp].offset == 1_000 and found[tp].timestamp == base + STEP_MS * 1_000
    assert missing[tp] is None


def test_seek_by_timestamp_then_read_from_there(broker, timed_topic):
    topic, base, records = timed_topic
    consumer = confluent_consumer(broker)
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + STEP_MS * 2_500)], timeout=15)
        consumer.assign(found)
        msg = poll_one(consumer)
    finally:
        consumer.close()
    assert (msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]) == \
        (2_500, records[2_500].key, records[2_500].value, base + STEP_MS * 2_500)


def test_delete_records_moves_log_start_offset(broker):
    topic = unique_topic("delete-records")
    create_topic(broker, topic, 2)
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0, "batch.num.messages": 50})
    records = {p: produce(producer, topic, make_records(1_000, f"dr{p}", now_ms()), partition=p) for p in (0, 1)}
    client = admin(broker)

    deleted = wait_all(client.delete_records([TopicPartition(topic, 0, 420)]))
    assert [d.low_watermark for d in deleted.values()] == [420]
    assert watermarks(broker, topic, [0, 1]) == {0: (420, 1_000), 1: (0, 1_000)}
    earliest = wait_all(client.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}))
    assert [info.offset for info in earliest.values()] == [420]

    # Reading the partition from its new start returns exactly the records kept.
    got = consume_range(broker, topic, {0: (420, 1_000)})
    assert_matches(records[0][420:], got)


def test_fetch_below_log_start_resets_to_new_start(broker):
    topic = unique_topic("delete-records-reset")
    create_topic(broker, topic, 1)
    records = produce(confluent_producer(broker, acks="all", **{"batch.num.messages": 30}), topic,
                      make_records(300, "drr", now_ms()), partition=0)
    wait_all(admin(broker).delete_records([TopicPartition(topic, 0, 123)]))

    # Offset 5 is out of range now: the consumer must be told so and reset to the log start.
    consumer = confluent_consumer(broker, **{"auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 5)])
        msg = poll_one(consumer)
    finally:
        consumer.close()
    assert (msg.offset(), msg.value()) == (123, records[123].value)


def test_fetch_below_log_start_reports_offset_out_of_range(broker):
    topic = unique_topic("delete-records-oor")
    create_topic(broker, topic, 1)
    produce(confluent_producer(broker, acks="all"), topic, make_records(100, "oor", now_ms()), partition=0)
    wait_all(admin(broker).delete_records([TopicPartition(topic, 0, 60)]))
    consumer = confluent_consumer(broker, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 10)])
        deadline = time.monotonic() + 15
        error = None
        while time.monotonic() < deadline and error is None:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                error = msg.error()
            elif msg is not None and msg.error() is None:
                raise AssertionError(f"read offset {msg.offset()} below the log start offset 60")
    finally:
        consumer.close()
    assert error is not None, "no error within 15s"
    assert error.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET), error


def test_delete_records_to_high_watermark_empties_partition(broker):
    topic = unique_topic("delete-all-records")
    create_topic(broker, topic, 1)
    produce(confluent_producer(broker, acks="all"), topic, make_records(200, "dall", now_ms()), partition=0)
    deleted = wait_all(admin(broker).delete_records([TopicPartition(topic, 0, OFFSET_END)]))
    assert [d.low_watermark for d in deleted.values()] == [200]
    assert watermarks(broker, topic, [0]) == {0: (200, 200)}

    # New records continue the offsets after the deleted ones.
    more = produce(confluent_producer(broker, acks="all"), topic, make_records(5, "dall2", now_ms()), partition=0)
    assert [r.offset for r in more] == [200, 201, 202, 203, 204]
    assert_matches(more, read_all(broker, topic, 1))


def test_delete_records_beyond_high_watermark_is_rejected(broker):
    topic = unique_topic("delete-records-beyond")
    create_topic(broker, topic, 1)
    produce(confluent_producer(broker, acks="all"), topic, make_records(10, "beyond", now_ms()), partition=0)
    futures = admin(broker).delete_records([TopicPartition(topic, 0, 50)])
    with pytest.raises(KafkaException) as info:
        wait_all(futures)
    assert info.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, info.value
    assert watermarks(broker, topic, [0]) == {0: (0, 10)}
