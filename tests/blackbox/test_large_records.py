"""Large records: 1 MiB values go through when the topic allows them, and are refused when not.

Goal: max.message.bytes is honoured per topic: raised, it lets 1 MiB records through intact with
every codec; at its default, an oversized batch is refused with MSG_SIZE_TOO_LARGE and nothing
is written.

Method: create a topic with max.message.bytes raised to 4 MiB, produce 1 MiB incompressible
values with confluent-kafka (message.max.bytes raised client-side too) and read them back with a
consumer whose fetch limits are smaller than a record (the broker must still return at least one
whole batch); compare SHA-256 digests. Then produce one 1.5 MiB record to a default topic.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from confluent_kafka import KafkaError

import kp
from clients import (CODECS, Rec, assert_matches, confluent_producer, create_topic, now_ms, produce, read_all,
                     unique_topic, watermarks)

MIB = 1024 * 1024


def big_records(count: int, size: int, tag: str) -> list[Rec]:
    base = now_ms()
    return [Rec(i, f"{tag}-{i}".encode(), os.urandom(size), [("sha", b"")], base + i) for i in range(count)]


def with_digests(records: list[Rec]) -> list[Rec]:
    for rec in records:
        rec.headers = [("sha256", hashlib.sha256(rec.value).hexdigest().encode())]
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_one_mebibyte_records_round_trip_when_topic_allows_them(broker, codec):
    topic = unique_topic(f"big-{codec}")
    create_topic(broker, topic, 2, {"max.message.bytes": str(4 * MIB)})
    records = with_digests(big_records(12, MIB, f"big-{codec}"))
    # batch.size 2 MiB keeps each (incompressible) batch to one record, under the topic's 4 MiB.
    producer = confluent_producer(broker, acks="all", **{"compression.type": codec,
                                                         "message.max.bytes": 5 * MIB,
                                                         "batch.size": 2 * MIB})
    produce(producer, topic, records)
    # Fetch limits below one record: Kafka still returns the first batch whole.
    got = read_all(broker, topic, 2, **{"fetch.max.bytes": 64 * 1024, "max.partition.fetch.bytes": 64 * 1024,
                                        "message.max.bytes": 64 * 1024})
    assert_matches(records, got)
    for gs in got.values():
        for g in gs:
            assert hashlib.sha256(g.value).hexdigest().encode() == dict(g.headers)["sha256"]


def test_kafka_python_reads_one_mebibyte_records(broker):
    topic = unique_topic("big-kp")
    create_topic(broker, topic, 1, {"max.message.bytes": str(4 * MIB)})
    records = with_digests(big_records(5, MIB, "big-kp"))
    produce(confluent_producer(broker, acks="all", **{"message.max.bytes": 5 * MIB}), topic, records, partition=0)
    got = kp.consume_range(broker, topic, {0: (0, 5)}, max_partition_fetch_bytes=64 * 1024)
    assert_matches(records, got)


def test_record_over_default_max_message_bytes_is_refused(broker):
    topic = unique_topic("too-big")
    create_topic(broker, topic, 1)
    records = big_records(1, 3 * MIB // 2, "too-big")
    producer = confluent_producer(broker, acks="all", **{"message.max.bytes": 5 * MIB, "retries": 0})
    produce(producer, topic, records, partition=0, check=False)
    assert records[0].error is not None, "a 1.5 MiB record was accepted by a topic with default max.message.bytes"
    assert records[0].error.code() == KafkaError.MSG_SIZE_TOO_LARGE, records[0].error
    assert watermarks(broker, topic, [0]) == {0: (0, 0)}


def test_raising_max_message_bytes_later_lets_large_records_in(broker):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    from clients import admin, wait_all

    topic = unique_topic("raise-later")
    create_topic(broker, topic, 1)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(4 * MIB), incremental_operation=AlterConfigOpType.SET)])
    wait_all(admin(broker).incremental_alter_configs([res]))
    records = with_digests(big_records(3, 2 * MIB, "raise-later"))
    produce(confluent_producer(broker, acks="all", **{"message.max.bytes": 5 * MIB}), topic, records, partition=0)
    assert_matches(records, read_all(broker, topic, 1))
