"""kafka-python helpers: a second, pure-Python client implementation for the black-box suites.

Goal: show the broker works with a client that shares no code with librdkafka. Method: produce
with KafkaProducer and take each record's acknowledged partition and offset from its future;
consume with KafkaConsumer using assign() and seek() (group_id=None: no consumer group at all).
Every wait is bounded.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from clients import Got, Rec


def producer(broker, acks, codec: str, **extra) -> KafkaProducer:
    conf = dict(
        bootstrap_servers=broker.bootstrap,
        acks=acks,
        compression_type=None if codec == "none" else codec,
        # kafka-python enables idempotence by default, which needs acks=all.
        enable_idempotence=acks in ("all", -1),
        linger_ms=5,
        request_timeout_ms=15_000,
        bootstrap_timeout_ms=15_000,
        max_block_ms=30_000,
        delivery_timeout_ms=60_000,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def produce(prod: KafkaProducer, topic: str, records: list[Rec], partition: int | None = None,
            timeout_s: float = 60.0) -> list[Rec]:
    """Send all records, then resolve every future into the record's partition and offset."""
    futures = []
    for rec in records:
        headers = [(k, v) for k, v in rec.headers]
        futures.append((rec, prod.send(topic, value=rec.value, key=rec.key, headers=headers,
                                       partition=partition, timestamp_ms=rec.timestamp_ms)))
    prod.flush(timeout=timeout_s)
    for rec, fut in futures:
        meta = fut.get(timeout=timeout_s)
        rec.partition, rec.offset = meta.partition, meta.offset
    return records


def consumer(broker, **extra) -> KafkaConsumer:
    conf = dict(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=15_000,
        bootstrap_timeout_ms=15_000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def consume_range(broker, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float = 60.0,
                  **extra) -> dict[int, list[Got]]:
    """Read offsets [start, end) of each partition; fails when incomplete at the deadline.

    Timestamp types are mapped to confluent-kafka's constants (kafka-python's 0 = CreateTime
    becomes 1) so that clients.assert_matches checks both clients alike.
    """
    cons = consumer(broker, **extra)
    out: dict[int, list[Got]] = {p: [] for p in ranges}
    pending = {p for p, (start, end) in ranges.items() if end > start}
    try:
        tps = {p: TopicPartition(topic, p) for p in pending}
        cons.assign(list(tps.values()))
        for p, tp in tps.items():
            cons.seek(tp, ranges[p][0])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                progress = {p: (out[p][-1].offset if out[p] else None, ranges[p]) for p in pending}
                raise AssertionError(f"kafka-python timed out reading {topic}: {progress}")
            for tp, msgs in cons.poll(timeout_ms=500, max_records=10_000).items():
                end = ranges[tp.partition][1]
                for m in msgs:
                    if m.offset < end:
                        out[tp.partition].append(Got(tp.partition, m.offset, m.key, m.value, list(m.headers or []),
                                                     m.timestamp_type + 1, m.timestamp))
                    if m.offset >= end - 1:
                        pending.discard(tp.partition)
    finally:
        cons.close()
    return out
