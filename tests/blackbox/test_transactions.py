"""Transactions and exactly-once semantics, with confluent-kafka (librdkafka) as the client.

Goal: a transactional producer's records are visible to read_committed consumers only once its
transaction commits, never when it aborts; read_uncommitted consumers see everything written.
Every commit or abort writes one control record (a marker) per partition of the transaction, so
the high watermark counts records plus markers, and a read_committed consumer's position moves
past markers and aborted records to the high watermark. An open transaction holds the last
stable offset (LSO) at its first offset: read_committed consumers and ListOffsets(latest,
READ_COMMITTED) stop there, also for later non-transactional records, until it ends. A
consume-transform-produce loop with send_offsets_to_transaction writes each input once to its
output and commits the group's offsets with it; an aborted transaction discards both. A second
producer with the same transactional.id fences the first (its open transaction is aborted, its
next produce or commit fails fatally with _FENCED); the coordinator aborts (and fences) a
transaction that outlives transaction.timeout.ms, also one left open across a kill -9 of the
broker; and InitProducerId refuses a timeout above transaction.max.timeout.ms (900000 by
default) with INVALID_TRANSACTION_TIMEOUT.

Method: produce through transactional producers, then read each partition from offset 0 with
assign() at both isolation levels and compare values, offsets and positions exactly; end
offsets come from ListOffsets at both isolation levels (AdminClient.list_offsets) and from a
consumer's get_watermark_offsets. Kafka writes transaction markers after EndTxn has answered
(commit_transaction returns once the outcome is durable in the transaction log), so visibility
after a commit is awaited, within a bound, before exact reads. Every wait has a deadline and
every loop a bound. The same checks pass against Apache Kafka 4.4.0 (`--reference kafka`).
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (OFFSET_INVALID, Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import OffsetSpec

from clients import (OP_TIMEOUT_S, Got, admin, assert_matches, base_conf, create_topic, make_records, now_ms,
                     produce, to_got, unique_topic, wait_all)

WAIT_S = 60.0
READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
# Kafka's default transaction.max.timeout.ms.
MAX_TXN_TIMEOUT_MS = 900_000
# A transaction timeout short enough for the coordinator to abort a stalled transaction within
# seconds; Kafka looks for expired transactions every 10 s
# (transaction.abort.timed.out.transaction.cleanup.interval.ms), so an abort can take up to
# this plus 10 s.
SHORT_TXN_TIMEOUT_MS = 5_000
# How long an abort of a stalled transaction may take: the timeout, one cleanup interval, and
# the markers, with room for a loaded machine.
TIMEOUT_ABORT_BOUND_S = 45.0
# The open transaction of the crash test: long enough to still be open when the broker is back.
CRASH_TXN_TIMEOUT_MS = 20_000
CRASH_ABORT_BOUND_S = 60.0


# ---------------------------------------------------------------- producers


def unique_txn_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def txn_producer(broker, txn_id: str, timeout_ms: int = 60_000, **extra) -> Producer:
    """A transactional producer (idempotent, acks=all by implication); not yet initialised.

    librdkafka requires socket.timeout.ms to be at least 100 ms below transaction.timeout.ms.
    """
    conf = base_conf(broker, **{
        "transactional.id": txn_id,
        "transaction.timeout.ms": timeout_ms,
        "socket.timeout.ms": min(10_000, timeout_ms - 1_000),
        "linger.ms": 5,
    })
    conf.update(extra)
    return Producer(conf)


def ready_producer(broker, prefix: str, **extra) -> Producer:
    producer = txn_producer(broker, unique_txn_id(prefix), **extra)
    producer.init_transactions(WAIT_S)
    return producer


def send(producer: Producer, topic: str, items: list[tuple[int, bytes]], timeout_s: float = WAIT_S) -> list[int]:
    """Produce (partition, value) items, keyed by value, flush, and return their acknowledged offsets."""
    reports: list[tuple[object, int]] = [(None, -1)] * len(items)

    def on_delivery(index):
        def report(err, msg):
            reports[index] = (err, msg.offset() if err is None else -1)
        return report

    for index, (partition, value) in enumerate(items):
        producer.produce(topic, key=value, value=value, partition=partition, on_delivery=on_delivery(index))
        producer.poll(0)
    left = producer.flush(timeout_s)
    assert left == 0, f"{left} of {len(items)} records not delivered within {timeout_s}s"
    failed = [(items[i], err) for i, (err, offset) in enumerate(reports) if err is not None or offset < 0]
    assert not failed, f"{len(failed)} records failed, first {failed[0]}"
    return [offset for _, offset in reports]


def plain_producer(broker) -> Producer:
    return Producer(base_conf(broker, **{"acks": "all", "linger.ms": 5}))


def spread(tag: str, count: int, partitions: int) -> list[tuple[int, bytes]]:
    """`count` distinct values, round-robin over the partitions: [(partition, value)]."""
    return [(i % partitions, f"{tag}-{i}".encode()) for i in range(count)]


def by_partition(items: list[tuple[int, bytes]], partitions: int) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for partition, value in items:
        out[partition].append(value)
    return out


def kafka_error(what: str, call) -> KafkaError:
    """Run call(), which must raise KafkaException; returns its KafkaError."""
    try:
        call()
    except KafkaException as e:
        return e.args[0]
    raise AssertionError(f"{what} succeeded; it should have failed")


# ---------------------------------------------------------------- offsets


def end_offsets(broker, topic: str, partitions: int, isolation: IsolationLevel) -> dict[int, int]:
    """ListOffsets(latest) at an isolation level: the high watermark, or the LSO for READ_COMMITTED."""
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    futures = admin(broker).list_offsets(specs, isolation_level=isolation, request_timeout=OP_TIMEOUT_S)
    return {tp.partition: info.offset for tp, info in wait_all(futures).items()}


def high_watermarks(broker, topic: str, partitions: int) -> dict[int, int]:
    return end_offsets(broker, topic, partitions, IsolationLevel.READ_UNCOMMITTED)


def stable_offsets(broker, topic: str, partitions: int) -> dict[int, int]:
    return end_offsets(broker, topic, partitions, IsolationLevel.READ_COMMITTED)


def wait_stable_offsets(broker, topic: str, want: dict[int, int], timeout_s: float = WAIT_S,
                        at_least: bool = False) -> float:
    """Wait until ListOffsets(READ_COMMITTED) answers `want` per partition (the markers of every
    ended transaction are written), or at least `want` when at_least; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout_s
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = stable_offsets(broker, topic, len(want))
        except KafkaException as e:
            # After a restart the admin client's cached leader epochs are stale: Kafka answers
            # FENCED_LEADER_EPOCH, and librdkafka's list_offsets does not refresh its metadata
            # itself. A Metadata request does.
            seen = e.args[0]
            admin(broker).list_topics(topic, timeout=10)
            time.sleep(0.2)
            continue
        if seen == want or (at_least and all(seen[p] >= offset for p, offset in want.items())):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{topic}: last stable offsets {seen} did not reach {want} within {timeout_s}s "
                         f"(high watermarks {high_watermarks(broker, topic, len(want))})")


def consumer_watermarks(broker, topic: str, partition: int, isolation: str) -> tuple[int, int]:
    """get_watermark_offsets of a consumer with this isolation.level (a fresh ListOffsets)."""
    consumer = Consumer(base_conf(broker, **{"group.id": f"wm-{uuid.uuid4().hex[:8]}", "isolation.level": isolation}))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        consumer.close()


# ---------------------------------------------------------------- reading


class Reader:
    """An assign()-only consumer at one isolation level that reads partitions from given offsets
    and keeps everything it got, with its position, for exact comparison."""

    def __init__(self, broker, topic: str, partitions: int, isolation: str, starts: dict[int, int] | None = None):
        self.topic = topic
        self.partitions = list(range(partitions))
        self.consumer = Consumer(base_conf(broker, **{
            "group.id": f"txn-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100,
        }))
        starts = starts or {}
        self.final_positions: dict[int, int] = {}  # positions when the reader was closed
        self.got: dict[int, list[Got]] = {p: [] for p in self.partitions}
        self.consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in self.partitions])

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.final_positions = self.positions()
        finally:
            self.consumer.close()

    def positions(self) -> dict[int, int]:
        return {tp.partition: tp.offset
                for tp in self.consumer.position([TopicPartition(self.topic, p) for p in self.partitions])}

    def _poll_once(self) -> None:
        for msg in self.consumer.consume(num_messages=1_000, timeout=0.2):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error on {self.topic}/{msg.partition()}: {err}")
            self.got[msg.partition()].append(to_got(msg))

    def read_to(self, ends: dict[int, int], timeout_s: float = WAIT_S) -> Reader:
        """Poll until the position of each partition is at least its end offset."""
        deadline = time.monotonic() + timeout_s
        while True:
            positions = self.positions()
            if all(positions[p] >= end for p, end in ends.items()):
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: positions {positions} did not reach {ends} within {timeout_s}s; "
                                     f"records read per partition {self.counts()}")
            self._poll_once()

    def settle(self, seconds: float) -> Reader:
        """Keep polling for a while: whatever else the broker would return shows up in `got`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll_once()
        return self

    def counts(self) -> dict[int, int]:
        return {p: len(gs) for p, gs in self.got.items()}

    def values(self) -> dict[int, list[bytes]]:
        return {p: [g.value for g in gs] for p, gs in self.got.items()}

    def offsets(self) -> dict[int, list[int]]:
        return {p: [g.offset for g in gs] for p, gs in self.got.items()}


def read_all(broker, topic: str, partitions: int, isolation: str, ends: dict[int, int],
             settle_s: float = 0.5) -> Reader:
    """Read every partition from 0 up to `ends` at one isolation level, then poll a little longer."""
    with Reader(broker, topic, partitions, isolation) as reader:
        reader.read_to(ends).settle(settle_s)
    return reader


# ---------------------------------------------------------------- committed transactions


def test_committed_transactions_are_read_exactly_once_in_order_at_both_isolation_levels(broker):
    topic = unique_topic("txn-commit")
    create_topic(broker, topic, 3)
    producer = ready_producer(broker, "commit")
    batches = [make_records(300, f"commit-{t}", now_ms(), seq_base=300 * t) for t in range(3)]
    for batch in batches:
        producer.begin_transaction()
        produce(producer, topic, batch)
        producer.commit_transaction(WAIT_S)
    records = [rec for batch in batches for rec in batch]

    # Each transaction wrote to every partition, so each partition holds one commit marker per
    # transaction after its records: the high watermark counts them.
    for t, batch in enumerate(batches):
        assert {rec.partition for rec in batch} == {0, 1, 2}, f"transaction {t} did not reach all 3 partitions"
    expected_end = {p: sum(1 for rec in records if rec.partition == p) + len(batches) for p in range(3)}
    wait_stable_offsets(broker, topic, expected_end)
    assert high_watermarks(broker, topic, 3) == expected_end, "high watermark is not records + one marker per commit"

    for isolation in (READ_COMMITTED, READ_UNCOMMITTED):
        reader = read_all(broker, topic, 3, isolation, expected_end)
        for p in range(3):
            acked = sorted(rec.offset for rec in records if rec.partition == p)
            assert reader.offsets()[p] == acked, \
                f"{isolation} partition {p}: offsets read are not the acknowledged ones, once each, in order"
        assert_matches(records, reader.got)
        assert reader.final_positions == expected_end, f"{isolation}: position did not move past the last marker"


# ---------------------------------------------------------------- aborted transactions


def test_aborted_transactions_are_skipped_by_read_committed_and_returned_to_read_uncommitted(broker):
    topic = unique_topic("txn-abort")
    partitions = 2
    create_topic(broker, topic, partitions)
    producer = ready_producer(broker, "abort")
    outcomes = ["commit", "abort", "commit", "abort", "abort", "commit", "abort"]
    committed: list[tuple[int, bytes]] = []
    written: list[tuple[int, bytes]] = []
    first_offsets: list[dict[int, int]] = []  # per transaction: the first offset in each partition
    for t, outcome in enumerate(outcomes):
        items = spread(f"{outcome}-{t}", 10, partitions)
        producer.begin_transaction()
        offsets = send(producer, topic, items)  # flushed: aborted records are in the log too
        first_offsets.append({p: min(o for (q, _), o in zip(items, offsets) if q == p) for p in range(partitions)})
        if outcome == "commit":
            producer.commit_transaction(WAIT_S)
            committed += items
        else:
            producer.abort_transaction(WAIT_S)
        written += items

    # 10 records and one marker per partition per transaction.
    expected_end = {p: len(outcomes) * (10 // partitions + 1) for p in range(partitions)}
    wait_stable_offsets(broker, topic, expected_end)
    assert high_watermarks(broker, topic, partitions) == expected_end

    committed_reader = read_all(broker, topic, partitions, READ_COMMITTED, expected_end)
    assert committed_reader.values() == by_partition(committed, partitions), \
        "read_committed did not return exactly the committed values in order"
    assert committed_reader.final_positions == expected_end, \
        "read_committed position did not move past the trailing aborted transaction to the high watermark"

    uncommitted_reader = read_all(broker, topic, partitions, READ_UNCOMMITTED, expected_end)
    assert uncommitted_reader.values() == by_partition(written, partitions), \
        "read_uncommitted did not return every written record, committed and aborted, in order"
    assert uncommitted_reader.final_positions == expected_end

    # A read_committed fetch that starts inside an aborted transaction skips the rest of it.
    inside = {p: first_offsets[3][p] + 2 for p in range(partitions)}  # 3rd record of transaction 3 (aborted)
    later_committed = [(p, v) for t, outcome in enumerate(outcomes) if t > 3 and outcome == "commit"
                       for p, v in spread(f"{outcome}-{t}", 10, partitions)]
    with Reader(broker, topic, partitions, READ_COMMITTED, starts=inside) as reader:
        reader.read_to(expected_end).settle(0.5)
        assert reader.values() == by_partition(later_committed, partitions), \
            "read_committed from inside an aborted transaction returned aborted records"
        assert reader.positions() == expected_end


# ---------------------------------------------------------------- the last stable offset


def test_open_transaction_holds_read_committed_at_the_last_stable_offset(broker):
    topic = unique_topic("txn-lso")
    create_topic(broker, topic, 1)
    producer = ready_producer(broker, "lso")
    producer.begin_transaction()
    before = [(0, f"before-{i}".encode()) for i in range(5)]
    assert send(producer, topic, before) == [0, 1, 2, 3, 4]
    producer.commit_transaction(WAIT_S)
    wait_stable_offsets(broker, topic, {0: 6})  # 5 records and the commit marker

    producer.begin_transaction()
    opened = [(0, f"open-{i}".encode()) for i in range(3)]
    assert send(producer, topic, opened) == [6, 7, 8]
    plain = plain_producer(broker)
    after = [(0, f"plain-{i}".encode()) for i in range(4)]
    assert send(plain, topic, after) == [9, 10, 11, 12]

    # The LSO is the first offset of the open transaction; later plain records wait behind it.
    assert high_watermarks(broker, topic, 1) == {0: 13}
    assert stable_offsets(broker, topic, 1) == {0: 6}, "ListOffsets(READ_COMMITTED) is not the LSO"
    assert consumer_watermarks(broker, topic, 0, READ_UNCOMMITTED) == (0, 13)
    assert consumer_watermarks(broker, topic, 0, READ_COMMITTED) == (0, 6), \
        "a read_committed consumer's watermarks do not end at the LSO"

    with Reader(broker, topic, 1, READ_UNCOMMITTED) as reader:
        reader.read_to({0: 13}).settle(0.5)
        assert reader.values()[0] == [v for _, v in before + opened + after]
        assert reader.offsets()[0] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]

    with Reader(broker, topic, 1, READ_COMMITTED) as reader:
        reader.read_to({0: 6}).settle(2.0)
        assert reader.values()[0] == [v for _, v in before], \
            "read_committed returned records of the open transaction or after it"
        assert reader.positions() == {0: 6}, "read_committed moved past the last stable offset"

        producer.commit_transaction(WAIT_S)
        wait_stable_offsets(broker, topic, {0: 14})
        assert high_watermarks(broker, topic, 1) == {0: 14}
        # The same consumer, waiting at the LSO, now gets the rest.
        reader.read_to({0: 14}).settle(0.5)
        assert reader.values()[0] == [v for _, v in before + opened + after], \
            "after the commit read_committed did not get the transaction and the records behind it, in order"
        assert reader.offsets()[0] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
        assert reader.positions() == {0: 14}
    assert consumer_watermarks(broker, topic, 0, READ_COMMITTED) == (0, 14)


# ---------------------------------------------------------------- consume-transform-produce


def test_consume_transform_produce_writes_each_input_once_with_its_offsets(broker):
    partitions, count, batch_size = 3, 300, 25
    source, sink = unique_topic("ctp-in"), unique_topic("ctp-out")
    create_topic(broker, source, partitions)
    create_topic(broker, sink, partitions)
    inputs = spread("in", count, partitions)
    send(plain_producer(broker), source, inputs)
    input_end = {p: count // partitions for p in range(partitions)}

    group = f"ctp-{uuid.uuid4().hex[:10]}"
    consumer = Consumer(base_conf(broker, **{
        "group.id": group,
        "isolation.level": READ_COMMITTED,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }))
    producer = ready_producer(broker, "ctp")
    committed_positions: dict[int, int] = {}  # what the last committed transaction sent for the group
    produced = {p: 0 for p in range(partitions)}  # output records written, committed or aborted
    markers = {p: 0 for p in range(partitions)}  # output markers: one per transaction per partition
    transactions = aborted = 0
    deadline = time.monotonic() + 120
    try:
        consumer.subscribe([source])
        while committed_positions != input_end:
            assert time.monotonic() < deadline, f"loop did not finish: committed {committed_positions}"
            assert transactions < 200, f"{transactions} transactions and still not done"
            batch = consumer.consume(num_messages=batch_size, timeout=1.0)
            errors = [m.error() for m in batch if m.error() is not None]
            assert not errors, f"consumer errors: {errors}"
            if not batch:
                continue
            transactions += 1
            abort = transactions % 3 == 0
            producer.begin_transaction()
            outputs = [(m.partition(), b"out:" + m.value()) for m in batch]
            send(producer, sink, outputs)  # flushed, also before an abort: aborted outputs are in the log
            touched = sorted({m.partition() for m in batch})
            positions = {tp.partition: tp.offset
                         for tp in consumer.position([TopicPartition(source, p) for p in touched])}
            producer.send_offsets_to_transaction([TopicPartition(source, p, o) for p, o in positions.items()],
                                                 consumer.consumer_group_metadata(), WAIT_S)
            for p in {p for p, _ in outputs}:
                markers[p] += 1
            for p, _ in outputs:
                produced[p] += 1
            if not abort:
                producer.commit_transaction(WAIT_S)
                committed_positions.update(positions)
                continue
            producer.abort_transaction(WAIT_S)
            aborted += 1
            # The EOS pattern: rewind to the group's committed offsets. The aborted transaction's
            # offsets were discarded with it, so they are those of the last committed one.
            stored = consumer.committed([TopicPartition(source, p) for p in touched], timeout=WAIT_S)
            stored = {tp.partition: tp.offset for tp in stored}
            assert stored == {p: committed_positions.get(p, OFFSET_INVALID) for p in touched}, \
                f"after an abort the group's offsets are not those of the last commit: {stored} " \
                f"vs {committed_positions}"
            for p in touched:  # nothing committed yet (OFFSET_INVALID): the input's first offset, 0
                consumer.seek(TopicPartition(source, p, max(stored[p], 0)))
    finally:
        consumer.close()
    assert aborted >= 3, f"only {aborted} of {transactions} transactions were aborted"

    expected_end = {p: produced[p] + markers[p] for p in range(partitions)}
    wait_stable_offsets(broker, sink, expected_end)
    outputs = read_all(broker, sink, partitions, READ_COMMITTED, expected_end)
    want = {p: [b"out:" + v for v in values] for p, values in by_partition(inputs, partitions).items()}
    assert outputs.values() == want, "the committed output is not every input once, in input order"
    everything = read_all(broker, sink, partitions, READ_UNCOMMITTED, expected_end)
    assert everything.counts() == produced, "read_uncommitted does not see the aborted outputs"
    assert sum(produced.values()) > count, "no aborted transaction wrote any output"

    checker = Consumer(base_conf(broker, **{"group.id": group, "isolation.level": READ_COMMITTED}))
    try:
        got = checker.committed([TopicPartition(source, p) for p in range(partitions)], timeout=WAIT_S)
    finally:
        checker.close()
    assert {tp.partition: tp.offset for tp in got} == input_end, \
        "the group's committed offsets are not the input's end offsets"


# ---------------------------------------------------------------- fencing


@pytest.mark.parametrize("zombie_then", ["produce", "commit"])
def test_new_producer_with_the_same_transactional_id_fences_the_old_one(broker, zombie_then):
    topic = unique_topic(f"txn-fence-{zombie_then}")
    create_topic(broker, topic, 1)
    txn_id = unique_txn_id("fence")
    zombie = txn_producer(broker, txn_id)
    zombie.init_transactions(WAIT_S)
    zombie.begin_transaction()
    zombie_records = [(0, f"zombie-{i}".encode()) for i in range(5)]
    assert send(zombie, topic, zombie_records) == [0, 1, 2, 3, 4]

    successor = txn_producer(broker, txn_id)
    successor.init_transactions(WAIT_S)  # bumps the epoch and aborts the zombie's transaction

    if zombie_then == "produce":
        zombie.produce(topic, value=b"zombie-late", partition=0)
        err = kafka_error("the fenced producer's late produce", lambda: zombie.flush(WAIT_S))
        assert (err.code(), err.fatal()) == (KafkaError._FENCED, True), f"late produce: {err}"
    err = kafka_error("the fenced producer's commit", lambda: zombie.commit_transaction(WAIT_S))
    assert (err.code(), err.fatal()) == (KafkaError._FENCED, True), f"zombie commit: {err}"
    err = kafka_error("begin_transaction after being fenced", zombie.begin_transaction)
    assert err.fatal(), f"begin_transaction after being fenced: {err}"

    successor.begin_transaction()
    successor_records = [(0, f"successor-{i}".encode()) for i in range(3)]
    # After the zombie's records and the abort marker the coordinator wrote for them.
    assert send(successor, topic, successor_records) == [6, 7, 8]
    successor.commit_transaction(WAIT_S)
    wait_stable_offsets(broker, topic, {0: 10})

    committed = read_all(broker, topic, 1, READ_COMMITTED, {0: 10})
    assert committed.values()[0] == [v for _, v in successor_records], \
        "read_committed saw the fenced producer's records"
    everything = read_all(broker, topic, 1, READ_UNCOMMITTED, {0: 10})
    assert everything.values()[0] == [v for _, v in zombie_records + successor_records], \
        "the log does not hold exactly the zombie's first records and the successor's (a late write got in?)"


# ---------------------------------------------------------------- timeouts


def test_coordinator_aborts_a_transaction_that_outlives_its_timeout(broker):
    topic = unique_topic("txn-timeout")
    create_topic(broker, topic, 1)
    stalled = ready_producer(broker, "stalled", timeout_ms=SHORT_TXN_TIMEOUT_MS)
    other = ready_producer(broker, "other")

    began = time.monotonic()
    stalled.begin_transaction()
    stalled_records = [(0, f"stalled-{i}".encode()) for i in range(3)]
    assert send(stalled, topic, stalled_records) == [0, 1, 2]
    # The stalled producer now does nothing; another one commits behind it on the same partition.
    other.begin_transaction()
    other_records = [(0, f"other-{i}".encode()) for i in range(2)]
    assert send(other, topic, other_records) == [3, 4]
    other.commit_transaction(WAIT_S)
    lso = stable_offsets(broker, topic, 1)
    if time.monotonic() - began < SHORT_TXN_TIMEOUT_MS / 1000:
        # Only meaningful while the stalled transaction cannot have expired yet.
        assert lso == {0: 0}, "the open transaction did not hold the LSO at its first offset"

    # records 0-2, the other's 3-4 and commit marker at 5, the abort marker at 6
    waited = wait_stable_offsets(broker, topic, {0: 7}, timeout_s=TIMEOUT_ABORT_BOUND_S)
    print(f"stalled transaction aborted {time.monotonic() - began:.1f}s after it began (waited {waited:.1f}s)")
    committed = read_all(broker, topic, 1, READ_COMMITTED, {0: 7})
    assert committed.values()[0] == [v for _, v in other_records], \
        "read_committed did not get exactly the later committed transaction"
    assert committed.final_positions == {0: 7}

    # The coordinator fenced the stalled producer when it aborted its transaction.
    err = kafka_error("commit of the timed-out transaction", lambda: stalled.commit_transaction(WAIT_S))
    assert (err.code(), err.fatal()) == (KafkaError._FENCED, True), f"commit after the timeout abort: {err}"
    everything = read_all(broker, topic, 1, READ_UNCOMMITTED, {0: 7})
    assert everything.values()[0] == [v for _, v in stalled_records + other_records]


@pytest.mark.parametrize("timeout_ms", [MAX_TXN_TIMEOUT_MS + 1, 1_000_000])
def test_transaction_timeout_above_the_broker_maximum_is_refused(broker, timeout_ms):
    producer = txn_producer(broker, unique_txn_id("too-long"), timeout_ms=timeout_ms)
    err = kafka_error(f"init_transactions with transaction.timeout.ms={timeout_ms}",
                      lambda: producer.init_transactions(WAIT_S))
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, f"init_transactions: {err}"
    assert err.fatal(), f"INVALID_TRANSACTION_TIMEOUT should be fatal: {err}"


def test_transaction_timeout_equal_to_the_broker_maximum_is_accepted(broker):
    topic = unique_topic("txn-max-timeout")
    create_topic(broker, topic, 1)
    producer = ready_producer(broker, "max-timeout", timeout_ms=MAX_TXN_TIMEOUT_MS)
    producer.begin_transaction()
    assert send(producer, topic, [(0, b"at-the-maximum")]) == [0]
    producer.commit_transaction(WAIT_S)
    wait_stable_offsets(broker, topic, {0: 2})
    assert read_all(broker, topic, 1, READ_COMMITTED, {0: 2}).values()[0] == [b"at-the-maximum"]


# ---------------------------------------------------------------- crash


def test_kill9_keeps_committed_transactions_and_aborts_the_open_one(own_broker):
    broker = own_broker
    partitions = 2
    topic = unique_topic("txn-kill9")
    create_topic(broker, topic, partitions)
    committer = ready_producer(broker, "kill9-commit")
    committed: list[tuple[int, bytes]] = []
    for t in range(3):
        items = spread(f"committed-{t}", 20, partitions)
        committer.begin_transaction()
        send(committer, topic, items)
        committer.commit_transaction(WAIT_S)
        committed += items
    opener = ready_producer(broker, "kill9-open", timeout_ms=CRASH_TXN_TIMEOUT_MS)
    began = time.monotonic()
    opener.begin_transaction()
    opened = spread("open", 10, partitions)
    open_offsets = send(opener, topic, opened)
    # 3 x (10 records + 1 marker) per partition before the open transaction.
    assert sorted(set(open_offsets)) == list(range(33, 38)), open_offsets

    broker.kill9()
    broker.start()

    # The committed transactions' markers are in the log (or written again after the restart).
    # The reloaded open transaction holds the LSO at 33 until the coordinator times it out (then
    # the LSO is 39, past its abort marker); its records are invisible either way.
    wait_stable_offsets(broker, topic, {p: 33 for p in range(partitions)}, at_least=True)
    with Reader(broker, topic, partitions, READ_COMMITTED) as reader:
        reader.read_to({p: 33 for p in range(partitions)}).settle(1.0)
        assert reader.values() == by_partition(committed, partitions), \
            "after kill -9 read_committed does not see exactly the committed transactions"
        positions = reader.positions()
    lso = stable_offsets(broker, topic, partitions)
    if time.monotonic() - began < CRASH_TXN_TIMEOUT_MS / 1000:
        # Only meaningful while the open transaction cannot have expired yet.
        assert lso == {p: 33 for p in range(partitions)}, f"after kill -9 the open transaction lost the LSO: {lso}"
        assert positions == lso, "after kill -9 read_committed moved past the open transaction"

    # The producer that committed outlives the broker's crash and commits again.
    later = spread("later", 10, partitions)
    committer.begin_transaction()
    send(committer, topic, later)
    committer.commit_transaction(WAIT_S)
    # Records 33-37 of the open transaction, the later ones and their commit marker, and the
    # abort marker of the open transaction once the coordinator has timed it out (before or
    # after the later ones, depending on when it looked).
    expected_end = {p: 45 for p in range(partitions)}
    waited = wait_stable_offsets(broker, topic, expected_end, timeout_s=CRASH_ABORT_BOUND_S)
    print(f"open transaction aborted after the crash {time.monotonic() - began:.1f}s after it began "
          f"(waited {waited:.1f}s)")

    result = read_all(broker, topic, partitions, READ_COMMITTED, expected_end)
    assert result.values() == by_partition(committed + later, partitions), \
        "read_committed saw an aborted record or missed a committed one"
    assert result.final_positions == expected_end
    everything = read_all(broker, topic, partitions, READ_UNCOMMITTED, expected_end)
    assert everything.values() == by_partition(committed + opened + later, partitions)
    # The coordinator fenced the producer whose transaction it aborted, also after the crash.
    err = kafka_error("commit of the transaction timed out after the crash",
                      lambda: opener.commit_transaction(WAIT_S))
    assert (err.code(), err.fatal()) == (KafkaError._FENCED, True), f"commit after the timeout abort: {err}"
