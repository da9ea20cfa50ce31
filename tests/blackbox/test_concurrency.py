"""Concurrent clients, pipelined requests and long-poll fetches.

Goal: several producers writing to one partition at once get dense, distinct offsets with each
producer's records in its own order; requests pipelined on one connection are answered in
order even when they go to partitions owned by different shards; and a consumer waiting at the
end of a partition receives a new record soon after it is written, not after its poll timeout.

Method: threads running confluent-kafka and kafka-python producers against one partition, then a
full read compared with every delivery report; raw Produce requests written back to back on
one socket (kafka_wire) whose responses must come back without error, with correlation ids in
send order; a consumer assigned at the high watermark with fetch.wait.max.ms=5000 and a clock
around it.
"""

from __future__ import annotations

import struct
import threading
import time

from confluent_kafka import KafkaError, TopicPartition

import kafka_wire
import kp
from clients import (assert_dense, assert_matches, confluent_consumer, confluent_producer, create_topic,
                     make_records, now_ms, produce, read_all, unique_topic, watermarks)


def test_concurrent_producers_on_one_partition_get_dense_distinct_offsets(broker):
    topic = unique_topic("concurrent")
    create_topic(broker, topic, 1)
    batches = [make_records(5_000, f"writer{i}", now_ms(), null_headers=(i < 3), seq_base=10_000 * i)
               for i in range(4)]
    errors = []

    def confluent_writer(records):
        try:
            produce(confluent_producer(broker, acks="all", **{"linger.ms": 1}), topic, records, partition=0)
        except BaseException as e:  # reported below
            errors.append(e)

    def kafka_python_writer(records):
        try:
            prod = kp.producer(broker, acks="all", codec="lz4")
            try:
                kp.produce(prod, topic, records, partition=0)
            finally:
                prod.close(timeout=10)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=confluent_writer, args=(b,)) for b in batches[:3]]
    threads.append(threading.Thread(target=kafka_python_writer, args=(batches[3],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a producer thread did not finish"
    assert not errors, errors

    everything = [r for b in batches for r in b]
    assert len({r.offset for r in everything}) == len(everything), "two records acknowledged at one offset"
    marks = watermarks(broker, topic, [0])
    assert marks == {0: (0, len(everything))}
    got = read_all(broker, topic, 1)
    assert_dense(got, marks)
    for records in batches:
        assert_matches(records, got)  # exact bytes, and each writer's records in its own order


def test_pipelined_requests_are_answered_in_order_across_shards(broker):
    topic = unique_topic("pipelined")
    partitions = 8
    create_topic(broker, topic, partitions)
    version = kafka_wire.pick_version(broker.api_versions, kafka_wire.API_PRODUCE, 11)
    assert version is not None and version >= 3
    flexible = kafka_wire.is_flexible(kafka_wire.API_PRODUCE, version)
    count = 64
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=30) as conn:
        frames = []
        for i in range(count):
            batch = kafka_wire.record_batch([(b"k", f"pipelined {i}".encode())], now_ms())
            body = produce_body(topic, i % partitions, batch, flexible)
            frames.append(kafka_wire.request_frame(kafka_wire.API_PRODUCE, version, 1_000 + i, body, flexible=flexible))
        conn.send_raw(b"".join(frames))
        order = []
        errors = []
        for _ in range(count):
            size = struct.unpack(">i", conn.recv_exact(4))[0]
            reader = kafka_wire.Reader(conn.recv_exact(size))
            order.append(reader.int32())
            errors.append(produce_error(reader, flexible))
    assert order == [1_000 + i for i in range(count)]
    assert errors == [0] * count, f"error codes in send order: {errors}"
    assert watermarks(broker, topic, list(range(partitions))) == {p: (0, count // partitions) for p in range(partitions)}


def produce_error(reader: kafka_wire.Reader, flexible: bool) -> int:
    """The error code of a one-topic, one-partition Produce response, read after its correlation id."""
    if flexible:
        reader.tags()
    reader.array_len(flexible)
    reader.compact_string() if flexible else reader.string()
    reader.array_len(flexible)
    reader.int32()  # partition index
    return reader.int16()


def produce_body(topic: str, partition: int, batch: bytes, flexible: bool) -> bytes:
    w = kafka_wire
    if flexible:
        part = w.int32(partition) + w.compact_bytes(batch) + w.NO_TAGS
        data = w.compact_string(topic) + w.compact_array([part]) + w.NO_TAGS
        return w.compact_string(None) + w.int16(-1) + w.int32(10_000) + w.compact_array([data]) + w.NO_TAGS
    part = w.int32(partition) + w.nbytes(batch)
    data = w.string(topic) + w.array([part])
    return w.string(None) + w.int16(-1) + w.int32(10_000) + w.array([data])


def test_waiting_consumer_gets_new_record_before_its_fetch_wait_expires(broker):
    topic = unique_topic("long-poll")
    create_topic(broker, topic, 1)
    produce(confluent_producer(broker, acks="all"), topic, make_records(10, "before", now_ms()), partition=0)
    consumer = confluent_consumer(broker, **{"fetch.wait.max.ms": 5_000, "fetch.min.bytes": 1,
                                             "enable.partition.eof": True})
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0})
    try:
        consumer.assign([TopicPartition(topic, 0, 10)])
        # Wait until the consumer reports it is at the end, so its next fetch is a long poll.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                break
        else:
            raise AssertionError("consumer never reached the end of the partition")
        time.sleep(0.5)  # let the consumer's long-poll fetch reach the broker and park there
        sent = time.monotonic()
        producer.produce(topic, key=b"k", value=b"wake up", partition=0)
        assert producer.flush(10) == 0
        latency = None
        while time.monotonic() - sent < 15:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                latency = time.monotonic() - sent
                assert (msg.offset(), msg.value()) == (10, b"wake up")
                break
    finally:
        consumer.close()
    assert latency is not None, "the new record never arrived"
    # fetch.wait.max.ms is 5 s: arriving well before means the parked fetch was woken.
    assert latency < 2.5, f"new record took {latency:.2f}s: the broker did not answer the waiting fetch early"
