"""Power loss: the broker's data directory on a file system that forgets everything not fsynced.

Goal: every record acknowledged at acks=all survives a power loss, at its acknowledged offset,
byte for byte, with dense offsets; this is what a SIGKILL cannot show, since the page cache
outlives a killed process but not a machine that loses power.

Method: the broker runs with its data directory inside a `sluice-powerfail` mount (see
tests/blackbox/powerfail.py and powerfail/README.md): a FUSE passthrough to a backing directory
that keeps every change not made durable (file data before its fsync, names before their
directory's fsync) in memory. One cycle:
1. mount the backing directory (a fresh mount over what the last cycle left) and start the
   broker on <mount>/data; from the second cycle on, first check everything acknowledged so far;
2. produce with confluent-kafka, idempotent (acks=all), records whose bytes are a function of
   their sequence number, three partitions, until a random moment (seeded) after at least
   ACKED_MIN acknowledgments;
3. power the mount off, tearing each file's last unsynced write at a random byte (seeded), and
   SIGKILL the broker, in one of three ways (seeded): the power fails right after the N-th
   write from then on (N random), so the broker is cut in the middle of an append, and is killed
   after; or the power first, at once; or the kill first (the kernel then finishes the requests
   already in flight, an fsync included). Then unmount: the backing directory now holds only
   what was durable.
After the last cycle the broker starts directly on the backing directory and everything is
checked once more. The checks: the topic is there, the log starts at 0, every partition's
offsets are dense from 0 to its high watermark, and every acknowledged record is at its offset
with its exact key, value, headers and timestamp.

Environment: POWER_LOSS_CYCLES (default 3) and POWER_LOSS_SEED. Needs FUSE (root and
/dev/fuse): skipped with the reason where it cannot mount.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import powerfail
from clients import Rec, assert_dense, assert_matches, base_conf, consume_range, create_topic, watermarks
from conftest import Broker
from crashloop import record_bytes

pytestmark = pytest.mark.sluice_only("mounts Sluice's sluice-powerfail file system under the broker's data directory")

CYCLES = int(os.environ.get("POWER_LOSS_CYCLES", "3"))
SEED = int(os.environ.get("POWER_LOSS_SEED", "20261202"))
PARTITIONS = 3
# Records per cycle at most: the producer stops there even if the kill has not come (at full
# speed it does not get there: tens of thousands of records a second on the development machine).
RECORDS_PER_CYCLE_MAX = 500_000
# The kill comes at a random moment after at least this many acknowledgments ...
ACKED_MIN = 200
# ... within this many seconds after them ...
KILL_AFTER_S = (0.0, 1.0)
# ... and the wait for ACKED_MIN is bounded by this.
ACKED_WAIT_S = 60.0
TIMESTAMP_BASE_MS = 1_760_000_000_000
# segment.bytes of the topic, one chosen per run (seeded): a roll every few hundred records, or
# every few thousand.
SEGMENT_BYTES_CHOICES = [64 * 1024, 1024 * 1024]


class PowerLossBroker(Broker):
    """A sluice broker whose data directory is given (inside a mount, or its backing directory)."""

    def __init__(self, workdir: Path, name: str, data_dir: Path):
        super().__init__(workdir, name)
        self.data_dir = data_dir


@pytest.fixture
def fuse_usable():
    reason = powerfail.fuse_unusable_reason()
    if reason is not None:
        pytest.skip(f"FUSE is not usable here: {reason}")


def record(seq: int) -> Rec:
    """Record `seq`: key, value (0 to 1 KiB) and headers are a function of the number."""
    key, value, headers = record_bytes(seq)
    return Rec(seq, key, value, headers, TIMESTAMP_BASE_MS + seq)


def produce_until_killed(broker: Broker, mount: powerfail.PowerfailMount, topic: str, seqs: range,
                         rng: random.Random) -> tuple[list[Rec], dict[str, object]]:
    """Produce `records` until a random moment, then SIGKILL the broker and power the mount off,
    in either order (seeded).

    Returns the records acknowledged and the power-off report."""
    stop = threading.Event()
    lock = threading.Lock()
    acked: list[Rec] = []
    producer = Producer(base_conf(broker, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": rng.choice([0, 1, 5]),
        "compression.type": rng.choice(["none", "lz4", "zstd"]),
        "message.timeout.ms": 30_000, "request.timeout.ms": 5_000,
    }))

    def report(rec: Rec):
        def on_delivery(err, msg):
            if err is None:
                rec.partition, rec.offset = msg.partition(), msg.offset()
                with lock:
                    acked.append(rec)
        return on_delivery

    def produce():
        # As fast as the broker takes them, so that batches are in flight (written, not yet
        # fsynced) when the kill comes.
        for seq in seqs:
            rec = record(seq)
            while not stop.is_set():
                try:
                    producer.produce(topic, key=rec.key, value=rec.value, headers=rec.headers,
                                     partition=rec.seq % PARTITIONS, timestamp=rec.timestamp_ms,
                                     on_delivery=report(rec))
                    break
                except BufferError:
                    producer.poll(0.01)
            if stop.is_set():
                return
            producer.poll(0)
        while not stop.is_set():
            producer.poll(0.05)

    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    deadline = time.monotonic() + ACKED_WAIT_S
    while True:
        with lock:
            count = len(acked)
        if count >= ACKED_MIN:
            break
        assert time.monotonic() < deadline, f"only {count} records acknowledged in {ACKED_WAIT_S} s"
        assert producing.is_alive(), "the producer thread ended before the kill"
        time.sleep(0.01)
    time.sleep(rng.uniform(*KILL_AFTER_S))
    order = rng.choice(["after a write", "power-off, then SIGKILL", "SIGKILL, then power-off"])
    if order == "after a write":
        # The power fails right after the N-th write from now reaches the file system, so at
        # least that write is not fsynced: what follows fails with EIO, and the broker must not
        # acknowledge it. Then the process dies with the machine.
        report_fields: dict[str, object] = dict(mount.power_off(torn=True, after_writes=rng.randint(1, 100)))
        broker.kill9()
    elif order == "power-off, then SIGKILL":
        report_fields = dict(mount.power_off(torn=True))
        broker.kill9()
    else:
        # The process dies first: the kernel finishes the requests already in flight (an fsync
        # included), then the power goes.
        broker.kill9()
        report_fields = dict(mount.power_off(torn=True))
    report_fields["order"] = order
    stop.set()
    producing.join(timeout=30)
    assert not producing.is_alive(), "the producer thread did not stop after the kill"
    # Whatever was not acknowledged fails now; nothing acknowledged later can count, since the
    # broker is gone, but a reply that arrived before the kill is still delivered here.
    producer.purge()
    producer.flush(10)
    with lock:
        return list(acked), report_fields


def check(broker: Broker, topic: str, acked: list[Rec]) -> int:
    """The topic's log is dense from 0 and holds every acknowledged record exactly; returns the
    number of records read."""
    marks = watermarks(broker, topic, list(range(PARTITIONS)))
    for partition, (low, high) in marks.items():
        assert low == 0, f"partition {partition}: the log start moved to {low}"
        last = max((r.offset for r in acked if r.partition == partition), default=-1)
        assert last < high, f"acknowledged offset {partition}/{last} is at or past the high watermark {high}"
    ranges = {partition: (0, high) for partition, (_, high) in marks.items()}
    got = consume_range(broker, topic, ranges, timeout_s=60)
    assert_dense(got, ranges)
    assert_matches(acked, got)
    return sum(len(records) for records in got.values())


def test_acknowledged_records_survive_power_loss(tmp_path, fuse_usable):
    rng = random.Random(SEED)
    backing = tmp_path / "backing"
    backing.mkdir()
    workdir = tmp_path / "broker"
    topic = "power-loss"
    acked: list[Rec] = []
    next_seq = 0
    for cycle in range(CYCLES):
        mount = powerfail.PowerfailMount(backing, tmp_path / "mnt", tmp_path / "control.sock",
                                         seed=SEED + cycle, log_path=tmp_path / "powerfail.log")
        mount.mount()
        broker = None
        try:
            data_dir = mount.mountpoint / "data"
            if cycle == 0:
                powerfail.durable_mkdir(data_dir)
            broker = PowerLossBroker(workdir, f"power-loss-{cycle}", data_dir)
            broker.start()
            if cycle == 0:
                # Small segments, so that segments roll (a new file, a directory fsync) all the time.
                segment_bytes = rng.choice(SEGMENT_BYTES_CHOICES)
                print(f"segment.bytes={segment_bytes}", flush=True)
                create_topic(broker, topic, PARTITIONS,
                             {"retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": str(segment_bytes)})
            else:
                read = check(broker, topic, acked)
                print(f"cycle {cycle}: after recovery on a fresh mount, {read} records read, "
                      f"{len(acked)} acknowledged ones verified", flush=True)
            seqs = range(next_seq, next_seq + RECORDS_PER_CYCLE_MAX)
            next_seq = seqs.stop
            new, power_off = produce_until_killed(broker, mount, topic, seqs, rng)
            acked += new
            print(f"cycle {cycle}: {len(new)} acknowledged, then SIGKILL and power-off {power_off}", flush=True)
            mount.unmount()
        except BaseException:
            if broker is not None:
                print(f"cycle {cycle}, seed {SEED}: broker log\n{broker.log_tail()}")
            print(f"sluice-powerfail log\n{mount.log_tail()}")
            raise
        finally:
            if broker is not None and broker.is_running():
                broker.kill9()
            mount.close()
    broker = PowerLossBroker(workdir, "power-loss-final", backing / "data")
    broker.start()
    try:
        read = check(broker, topic, acked)
        print(f"final, on the backing directory: {read} records read, {len(acked)} acknowledged ones verified")
    except BaseException:
        print(f"final check, seed {SEED}: broker log\n{broker.log_tail()}")
        raise
    finally:
        broker.stop()
    assert len(acked) >= CYCLES * ACKED_MIN
