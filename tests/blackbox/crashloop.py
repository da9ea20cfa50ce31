"""The crash loop: acks=all producers and a committing group while the broker is SIGKILLed.

Goal: after every crash and restart on the same data directory, every acknowledged record is at
its acknowledged partition and offset with its exact key, value, headers and timestamp; every
partition's offsets are dense from 0 to its high watermark; and the group's committed offsets
are at least what the broker confirmed and never more than what was asked.

Method, one cycle:
1. start a confluent-kafka producer (acks=all, no idempotence, short timeouts) in a thread,
   producing records whose bytes are a function of their sequence number, and a thread that
   commits increasing offsets for one group with synchronous standalone commits;
2. SIGKILL the broker at a random moment (seeded), stop both threads and drop the producer
   (whatever it had not been told about fails: the broker is down);
3. start the broker again and check: the high watermark of every partition covers every
   acknowledged offset, the records acknowledged in this cycle read back exactly, and each
   committed offset lies between the last confirmed and the last attempted commit. Every
   `full_check_every` cycles, and after the last one, every partition is read from 0 and every
   acknowledged record of the whole run is compared, with dense offsets.

Used by tests/blackbox/test_crash_loop.py (a short run in ./tests/run) and by
tests/reliability/crash_loop.py (long runs from the command line).
"""

from __future__ import annotations

import hashlib
import random
from array import array
import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaException, Producer, TopicPartition

from clients import base_conf, consume_range, create_topic, watermarks

TIMESTAMP_BASE_MS = 1_700_000_000_000
# Records read per consumer in a full check: bounds the check's memory.
FULL_CHECK_WINDOW = 250_000


def record_bytes(seq: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of record `seq`: sizes vary from 0 to 1 KiB, content is unique."""
    digest = hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=32).digest()
    size = (digest[0] * 4 + digest[1]) % 1_024 if seq % 13 else 0
    value = (digest * (size // 32 + 1))[:size]
    return f"key-{seq % 4_096}".encode(), value, [("seq", str(seq).encode())]


@dataclass
class Stats:
    cycles: int = 0
    acked: int = 0
    failed: int = 0
    verified_reads: int = 0
    commits_confirmed: int = 0
    seconds: float = 0.0


@dataclass
class CommitState:
    """Per partition: the last offset the broker confirmed committed, and the largest asked."""

    confirmed: dict[int, int] = field(default_factory=dict)
    attempted: dict[int, int] = field(default_factory=dict)


class AckedOffsets:
    """Per partition, the seq acknowledged at each offset (-1 where none was), in flat arrays.

    Eight bytes per offset, so a 1,000-cycle run (tens of millions of records) stays a few
    hundred MB where a dict of tuples would take tens of GB.
    """

    NONE = -1

    def __init__(self, partitions: int):
        self.seqs = [array("q") for _ in range(partitions)]
        self.max_offset = [-1] * partitions

    def add(self, partition: int, offset: int, seq: int) -> None:
        seqs = self.seqs[partition]
        if offset >= len(seqs):
            seqs.extend(array("q", [self.NONE]) * (offset + 1 - len(seqs)))
        assert seqs[offset] == self.NONE, \
            f"offset {partition}/{offset} acknowledged twice (seq {seqs[offset]} and {seq})"
        seqs[offset] = seq
        self.max_offset[partition] = max(self.max_offset[partition], offset)

    def get(self, partition: int, offset: int) -> int | None:
        seqs = self.seqs[partition]
        seq = seqs[offset] if 0 <= offset < len(seqs) else self.NONE
        return None if seq == self.NONE else seq


class CrashLoop:
    def __init__(self, broker, partitions: int = 3, seed: int = 1, kill_after_s: tuple[float, float] = (0.3, 1.5),
                 full_check_every: int = 10, log=print):
        self.broker = broker
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.seed = seed
        self.kill_after_s = kill_after_s
        self.full_check_every = full_check_every
        self.log = log
        self.topic = f"crash-loop-{uuid.uuid4().hex[:8]}"
        self.group = f"crash-loop-group-{uuid.uuid4().hex[:8]}"
        self.acked = AckedOffsets(partitions)
        self.next_seq = 0
        self.commits = CommitState()
        self.stats = Stats()

    # ------------------------------------------------------------ one cycle

    def run(self, cycles: int, seconds_max: float | None = None) -> Stats:
        """Runs `cycles` cycles, or fewer when `seconds_max` passes first (then a last full check)."""
        start = time.monotonic()
        # Records carry timestamps from 2023 (TIMESTAMP_BASE_MS): with the default retention.ms
        # of 7 days, the first segment to roll (at 1 GiB, around cycle 390) would be deleted by
        # retention, as Kafka would, and the log start would move. Keep everything.
        create_topic(self.broker, self.topic, self.partitions, {"retention.ms": "-1", "retention.bytes": "-1"})
        for cycle in range(cycles):
            if seconds_max is not None and time.monotonic() - start > seconds_max:
                self.log(f"time bound of {seconds_max:.0f} s reached after {cycle} cycles")
                self._check_everything()
                break
            new = self._produce_and_crash()
            self.broker.start()
            self._check_cycle(new)
            if (cycle + 1) % self.full_check_every == 0 or cycle + 1 == cycles:
                self._check_everything()
            self.stats.cycles += 1
            self.stats.seconds = time.monotonic() - start
            self.log(f"cycle {cycle + 1}/{cycles}: {len(new)} acknowledged this cycle, "
                     f"{self.stats.acked} in all, {self.stats.failed} failed (broker down), "
                     f"{self.stats.commits_confirmed} commits confirmed")
        return self.stats

    def _produce_and_crash(self) -> list[tuple[int, int, int]]:
        new: list[tuple[int, int, int]] = []
        lock = threading.Lock()
        stop = threading.Event()
        producer = Producer(base_conf(self.broker, **{
            "acks": "all", "linger.ms": self.rng.choice([0, 1, 5]), "enable.idempotence": False,
            "compression.type": self.rng.choice(["none", "lz4", "zstd"]), "retries": 0,
            "message.timeout.ms": 3_000, "socket.timeout.ms": 3_000, "request.timeout.ms": 3_000,
        }))

        def report(seq):
            def on_delivery(err, msg):
                with lock:
                    if err is None:
                        new.append((msg.partition(), msg.offset(), seq))
                    else:
                        self.stats.failed += 1
            return on_delivery

        def produce():
            while not stop.is_set():
                for _ in range(200):
                    seq = self.next_seq
                    self.next_seq += 1
                    key, value, headers = record_bytes(seq)
                    try:
                        producer.produce(self.topic, key=key, value=value, headers=headers,
                                         partition=seq % self.partitions, timestamp=TIMESTAMP_BASE_MS + seq,
                                         on_delivery=report(seq))
                    except BufferError:
                        producer.poll(0.01)
                producer.poll(0.02)  # about 10,000 records/s: enough in flight, little to re-read

        producing = threading.Thread(target=produce, daemon=True)
        producing.start()
        self.committing = threading.Thread(target=self._commit_until, args=(stop, random.Random(self.rng.random())),
                                           daemon=True)
        self.committing.start()
        time.sleep(self.rng.uniform(*self.kill_after_s))
        self.broker.kill9()
        stop.set()
        producing.join(timeout=30)
        assert not producing.is_alive(), "the producer thread did not stop after the crash"
        producer.flush(10)  # everything not yet reported fails: the broker is down
        with lock:
            for partition, offset, seq in new:
                self.acked.add(partition, offset, seq)
            self.stats.acked += len(new)
            return list(new)

    def _commit_until(self, stop: threading.Event, rng: random.Random) -> None:
        """Commits ever larger offsets for the group until stopped; records what was confirmed.

        A synchronous commit waits for the coordinator while the broker is down, so this thread
        is joined only after the restart (see _check_commits); a commit it finishes then is a
        real confirmation.
        """
        consumer = Consumer(base_conf(self.broker, **{
            "group.id": self.group, "enable.auto.commit": False, "socket.timeout.ms": 3_000,
            "session.timeout.ms": 6_000}))
        try:
            while not stop.is_set():
                partition = rng.randrange(self.partitions)
                offset = self.commits.attempted.get(partition, 0) + rng.randint(1, 100)
                self.commits.attempted[partition] = offset
                try:
                    consumer.commit(offsets=[TopicPartition(self.topic, partition, offset)], asynchronous=False)
                except KafkaException:
                    time.sleep(0.05)
                    continue
                self.commits.confirmed[partition] = offset
                self.stats.commits_confirmed += 1
                time.sleep(0.02)
        finally:
            consumer.close()

    # ------------------------------------------------------------ checks

    def _check_cycle(self, new: list[tuple[int, int, int]]) -> None:
        marks = watermarks(self.broker, self.topic, list(range(self.partitions)))
        for partition, (low, high) in marks.items():
            assert low == 0, f"partition {partition}: log start moved to {low}"
            last = self.acked.max_offset[partition]
            assert last < high, f"acknowledged {partition}/{last} is at or past the high watermark {high}"
        if new:
            ranges = {}
            for partition, offset, _ in new:
                lo, hi = ranges.get(partition, (offset, offset + 1))
                ranges[partition] = (min(lo, offset), max(hi, offset + 1))
            self._compare(consume_range(self.broker, self.topic, ranges, timeout_s=60), ranges, dense=False)
        self._check_commits()

    def _check_everything(self) -> None:
        """Reads every partition from its start, in windows so that memory stays bounded."""
        marks = watermarks(self.broker, self.topic, list(range(self.partitions)))
        for partition, (low, high) in marks.items():
            last = self.acked.max_offset[partition]
            assert last < high, f"acknowledged {partition}/{last} is past the high watermark {high}"
            for start in range(low, high, FULL_CHECK_WINDOW):
                window = {partition: (start, min(start + FULL_CHECK_WINDOW, high))}
                self._compare(consume_range(self.broker, self.topic, window, timeout_s=300), window, dense=True)

    def _compare(self, got, ranges, dense: bool) -> None:
        for partition, records in got.items():
            offsets = [g.offset for g in records]
            if dense:
                start, end = ranges[partition]
                assert offsets == list(range(start, end)), \
                    f"partition {partition}: offsets are not dense from {start} to {end - 1} " \
                    f"({len(offsets)} read, first {offsets[:3]}, last {offsets[-3:]})"
            for g in records:
                seq = self.acked.get(partition, g.offset)
                if seq is None:
                    continue  # written but never acknowledged: allowed to survive
                key, value, headers = record_bytes(seq)
                where = f"acknowledged record seq {seq} at {partition}/{g.offset}"
                assert g.key == key, f"{where}: key {g.key!r} != {key!r}"
                assert g.value == value, f"{where}: value of {len(g.value or b'')} bytes differs"
                assert g.headers == headers, f"{where}: headers {g.headers!r} != {headers!r}"
                assert (g.timestamp_type, g.timestamp_ms) == (TIMESTAMP_CREATE_TIME, TIMESTAMP_BASE_MS + seq), \
                    f"{where}: timestamp {g.timestamp_ms}"
                self.stats.verified_reads += 1
        for partition, (start, end) in ranges.items():
            present = {g.offset for g in got.get(partition, [])}
            lost = [o for o in range(start, end) if self.acked.get(partition, o) is not None and o not in present]
            assert not lost, f"partition {partition}: acknowledged offsets {lost[:5]} are missing"

    def _check_commits(self) -> None:
        self.committing.join(timeout=60)
        assert not self.committing.is_alive(), "a group commit did not finish within 60 s of the restart"
        consumer = Consumer(base_conf(self.broker, **{"group.id": self.group, "enable.auto.commit": False}))
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            deadline = time.monotonic() + 60
            while True:
                try:
                    committed = consumer.committed(partitions, timeout=10)
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # the coordinator may still be loading the offsets topic
            for tp in committed:
                confirmed = self.commits.confirmed.get(tp.partition)
                attempted = self.commits.attempted.get(tp.partition)
                if confirmed is None and attempted is None:
                    continue
                offset = tp.offset if tp.offset >= 0 else None
                assert confirmed is None or (offset is not None and offset >= confirmed), \
                    f"group offset of partition {tp.partition} is {offset}, but {confirmed} was confirmed"
                assert offset is None or offset <= attempted, \
                    f"group offset of partition {tp.partition} is {offset}, above anything committed ({attempted})"
                # What survived is now the floor: a later commit only moves it up.
                if offset is not None:
                    self.commits.confirmed[tp.partition] = offset
        finally:
            consumer.close()
