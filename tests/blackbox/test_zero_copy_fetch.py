"""Fetch responses whose record bytes are spliced from segment files arrive intact.

Goal: the zero-copy Fetch path (file ranges sent with splice, pipes pooled per shard) serves the
same bytes a client produced, including ranges that end inside a batch, and keeps serving
correctly to many consumers reading at once through the same shard's pipes.

Method: produce small one-record batches with confluent-kafka (batch.num.messages=1), then read
them with per-partition fetch limits a little above one batch, so most responses end in a
partial batch the client must drop and fetch again, with both confluent-kafka and kafka-python;
check order, keys, values and headers. Then eight confluent-kafka consumers read a 4-partition
topic of larger batches concurrently, each checking every record.
"""

from __future__ import annotations

import threading

import kp
from clients import (assert_matches, confluent_producer, create_topic, make_records, now_ms, partition_ranges, produce,
                     read_all, unique_topic)


def test_ranges_ending_inside_a_batch_are_refetched_by_both_clients(broker):
    topic = unique_topic("partial")
    create_topic(broker, topic, 1)
    records = make_records(300, "partial", now_ms(), value_size=400)
    producer = confluent_producer(broker, acks="all", **{"batch.num.messages": 1, "linger.ms": 0})
    produce(producer, topic, records, partition=0)
    limits = {"fetch.max.bytes": 1100, "max.partition.fetch.bytes": 1100, "message.max.bytes": 1100,
              "receive.message.max.bytes": 1100 + 1024}
    assert_matches(records, read_all(broker, topic, 1, **limits))
    got = kp.consume_range(broker, topic, partition_ranges(records), max_partition_fetch_bytes=1100,
                           fetch_max_bytes=1100)
    assert_matches(records, got)


def test_many_consumers_read_the_same_ranges_at_once(broker):
    topic = unique_topic("fanout")
    create_topic(broker, topic, 4)
    records = make_records(20_000, "fanout", now_ms(), value_size=300)
    produce(confluent_producer(broker, acks="1", **{"linger.ms": 5}), topic, records)
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            assert_matches(records, read_all(broker, topic, 4))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a consumer did not finish in 180 s"
    assert not failures, failures[0]
