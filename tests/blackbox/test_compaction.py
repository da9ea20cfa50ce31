"""Log compaction (cleanup.policy=compact) as Kafka clients see it.

Goal: on a compacted topic, the broker keeps the last record of every key and drops tombstoned
keys once delete.retention.ms has passed, without changing offsets, even when its key map holds
only a fraction of the keys (several passes); and the result survives a restart. (Validation of
the compaction configs is in test_admin.py.)

Method: a broker of its own with maintenance every 200 ms and, for sluice, a 2 KiB compaction key
map (56 keys per pass) and 4 KiB segments (Kafka 4 refuses segments under 1 MiB: against it the
segments are 1 MiB and the fillers grow to match). librdkafka (confluent-kafka) produces five
rounds over 200 keys, then tombstones for every tenth key, then records with unique keys so that
every segment holding the rounds is closed (and, while waiting, one more segment of them every 5 s:
Kafka drops tombstones only in a later pass, which needs newly closed segments). kafka-python,
an independent client, reads the partition from its start until its high watermark, skipping
the offsets compaction removed, until the expected log shows up (bounded).
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from clients import confluent_producer, create_topic, unique_topic

KEYS = 200
ROUNDS = 5
TOMBSTONED = {key for key in range(KEYS) if key % 10 == 0}
FILLERS = 60
SEGMENT_BYTES = 4096
KAFKA_MIN_SEGMENT_BYTES = 1024 * 1024
COMPACTION_WAIT_S = 90.0
MORE_FILLERS_EVERY_S = 5.0


def filler_value(segment_bytes: int) -> bytes:
    """60 fillers of a 17th of a segment each (240 B for 4 KiB) fill more than three segments, so
    whatever segment boundaries the client's batching makes, every segment holding the rounds and
    tombstones gets closed (the active segment is never cleaned, as in Kafka)."""
    return (b"filler" * (segment_bytes // 17 // 6 + 1))[:segment_bytes // 17]


def key_of(key: int) -> bytes:
    return f"key-{key:03}".encode()


def produce_all(broker, topic: str, records: list[tuple[bytes, bytes | None]]) -> list[int]:
    """Produce in order to partition 0 with librdkafka; the acknowledged offsets."""
    producer = confluent_producer(broker, **{"linger.ms": 0, "batch.num.messages": 50})
    offsets: list[int] = [-1] * len(records)
    errors: list[object] = []

    def report(index: int):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)
            else:
                offsets[index] = msg.offset()
        return on_delivery

    for index, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, partition=0, on_delivery=report(index))
        producer.poll(0)
    assert producer.flush(60) == 0, "records left undelivered"
    assert not errors, errors[:3]
    return offsets


def read_log(broker, topic: str) -> tuple[list[tuple[int, bytes, bytes | None]], int]:
    """Every record from the start of partition 0 to its high watermark, with kafka-python."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=100, request_timeout_ms=15_000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        records: list[tuple[int, bytes, bytes | None]] = []
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"kafka-python stopped at {consumer.position(tp)} of {end}"
            for messages in consumer.poll(timeout_ms=500).values():
                records.extend((m.offset, m.key, m.value) for m in messages if m.offset < end)
        return records, end
    finally:
        consumer.close()


def expected_log(acked: dict[tuple[int, int], int], filler_offsets: list[int],
                 filler: bytes) -> list[tuple[int, bytes, bytes | None]]:
    """The last value of each live key at its acknowledged offset, then the fillers."""
    last_round = ROUNDS - 1
    kept = [(acked[(key, last_round)], key_of(key), f"value-{key}-{last_round}".encode())
            for key in range(KEYS) if key not in TOMBSTONED]
    kept += [(offset, f"filler-{index}".encode(), filler) for index, offset in enumerate(filler_offsets)]
    return sorted(kept)


def test_compaction_keeps_the_last_value_of_each_key_and_drops_tombstoned_keys(own_broker):
    own_broker.run_maintenance_every(200)
    segment_bytes = SEGMENT_BYTES
    if own_broker.is_reference:
        segment_bytes = KAFKA_MIN_SEGMENT_BYTES
    else:
        own_broker.extra_args += ["--compaction-map-bytes", "2048"]
    own_broker.restart()
    filler = filler_value(segment_bytes)
    topic = unique_topic("compacted")
    create_topic(own_broker, topic, 1, {
        "cleanup.policy": "compact",
        "segment.bytes": str(segment_bytes),
        "delete.retention.ms": "0",
        "min.cleanable.dirty.ratio": "0",
    })
    records = [(key_of(key), f"value-{key}-{rnd}".encode()) for rnd in range(ROUNDS) for key in range(KEYS)]
    records += [(key_of(key), None) for key in sorted(TOMBSTONED)]
    offsets = produce_all(own_broker, topic, records)
    assert offsets == list(range(len(records))), "offsets are assigned densely in produce order"
    acked = {(key, rnd): offsets[rnd * KEYS + key] for rnd in range(ROUNDS) for key in range(KEYS)}
    filler_offsets: list[int] = []

    def add_fillers(count: int) -> None:
        first = len(filler_offsets)
        filler_offsets.extend(produce_all(own_broker, topic, [(f"filler-{index}".encode(), filler)
                                                              for index in range(first, first + count)]))

    add_fillers(FILLERS)
    # The active segment (the last fillers) is never cleaned: compare the rounds' part. Kafka
    # drops a tombstone only in a pass after the one that set its delete horizon, and starts a
    # pass only when closed segments hold new ("dirty") records: while waiting, close one more
    # segment of fillers now and then.
    below = len(records)
    deadline = time.monotonic() + COMPACTION_WAIT_S
    fillers_added_at = time.monotonic()
    while True:
        log, high_watermark = read_log(own_broker, topic)
        expected = expected_log(acked, filler_offsets, filler)
        if [r for r in log if r[0] < below] == [r for r in expected if r[0] < below]:
            break
        assert time.monotonic() < deadline, (
            f"not compacted within {COMPACTION_WAIT_S}s: {len([r for r in log if r[0] < below])} records "
            f"below offset {below}, expected {len([r for r in expected if r[0] < below])}; "
            f"first: {log[:3]}\n{own_broker.log_tail()}")
        if time.monotonic() - fillers_added_at > MORE_FILLERS_EVERY_S:
            add_fillers(FILLERS // 3)
            fillers_added_at = time.monotonic()
        time.sleep(0.5)
    end = filler_offsets[-1] + 1
    assert high_watermark == end, "compaction leaves the log end alone"
    assert [r for r in log if r[0] >= below] == [r for r in expected if r[0] >= below], "fillers all kept"

    # The compacted log is what a restart reads back, and the log goes on where it ended.
    own_broker.restart()
    assert read_log(own_broker, topic) == (log, end)
    (more,) = produce_all(own_broker, topic, [(key_of(1), b"after restart")])
    assert more == end

