"""Storage faults: failing writes and fsyncs, and a full disk, hit only the partitions they touch.

Goal: when a segment write or fdatasync fails, or the disk is full, the broker answers
KAFKA_STORAGE_ERROR for the partitions hit, never acknowledges a batch that is not durable,
keeps serving every other partition (produce, fetch, metadata), and never crashes; after a
restart every acknowledged record is there.

Method: injected faults use the engine's FaultInjector, which the broker arms only when started
with SLUICE_FAULT_INJECTION=1, through `POST /faults/...` on its metrics listener (see
broker/src/faults.rs). Produce goes over a raw socket (kafka_wire) so the exact error code of
each batch is seen, with no client retry in between. The full disk is a 8 MiB tmpfs mounted for
the test (skipped, with the reason, where mounting is not allowed).
"""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pytest

import kafka_wire
from clients import (assert_dense, assert_matches, confluent_producer, create_topic, make_records, now_ms, produce,
                     read_all, unique_topic, watermarks)

pytestmark = pytest.mark.sluice_only("Sluice's fault injection (SLUICE_FAULT_INJECTION, POST /faults) and its flags")

ERROR_KAFKA_STORAGE_ERROR = 56
PRODUCE_VERSION = 9


@pytest.fixture
def faulty_broker(own_broker):
    """A broker restarted with fault injection enabled."""
    own_broker.stop()
    own_broker.extra_env["SLUICE_FAULT_INJECTION"] = "1"
    own_broker.start()
    return own_broker


def arm(broker, action: str) -> str:
    request = urllib.request.Request(f"http://{broker.host}:{broker.metrics_port}/faults/{action}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()


def produce_raw(broker, topic: str, partition: int, count: int, tag: str, acks: int = -1, value_size: int = 64):
    batch = kafka_wire.record_batch([(f"{tag}-{i}".encode(), os.urandom(value_size)) for i in range(count)],
                                    now_ms())
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=20) as conn:
        return kafka_wire.produce(conn, PRODUCE_VERSION, topic, partition, batch, acks=acks)


def test_fault_control_is_off_without_the_environment_variable(own_broker):
    request = urllib.request.Request(f"http://{own_broker.host}:{own_broker.metrics_port}/faults/fail-syncs",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        body = answer.read().decode()
    assert "sluice_bytes_in_total" in body, "without SLUICE_FAULT_INJECTION=1 every path serves metrics"
    topic = unique_topic("no-faults")
    create_topic(own_broker, topic, 1)
    assert produce_raw(own_broker, topic, 0, 5, "ok").error_code == 0


@pytest.mark.parametrize("kind", ["fail-syncs", "fail-writes", "panic-appends"])
def test_failed_storage_answers_storage_error_and_spares_other_topics(faulty_broker, kind):
    broker = faulty_broker
    bad, good = unique_topic(f"bad-{kind}"), unique_topic(f"good-{kind}")
    create_topic(broker, bad, 2)
    create_topic(broker, good, 2)
    before = produce(confluent_producer(broker, acks="all"), bad, make_records(300, "before", now_ms()))

    arm(broker, f"{kind}?topic={bad}")
    for partition in (0, 1):
        result = produce_raw(broker, bad, partition, 10, f"hit-{partition}")
        assert result.error_code == ERROR_KAFKA_STORAGE_ERROR, f"{bad}/{partition}: {result}"
    # The partition stays failed: a later batch is refused too, even an acks=1 one.
    assert produce_raw(broker, bad, 0, 10, "again", acks=1).error_code == ERROR_KAFKA_STORAGE_ERROR

    # Other topics are untouched: produce and read back while the bad one is failed.
    others = produce(confluent_producer(broker, acks="all"), good, make_records(2_000, "good", now_ms()))
    assert_matches(others, read_all(broker, good, 2))
    broker.assert_running()

    # Nothing was acknowledged past what was durable: after a restart (faults gone with the
    # process) the bad topic holds exactly what was acknowledged before the fault, and takes
    # new records again.
    arm(broker, "clear")
    broker.restart()
    marks = watermarks(broker, bad, [0, 1])
    got = read_all(broker, bad, 2)
    assert_dense(got, marks)
    assert_matches(before, got)
    after = produce_raw(broker, bad, 0, 5, "after")
    assert after.error_code == 0 and after.base_offset == marks[0][1]


def test_writes_failing_everywhere_never_crash_the_broker(faulty_broker):
    broker = faulty_broker
    topic = unique_topic("countdown")
    create_topic(broker, topic, 4)
    acked = produce(confluent_producer(broker, acks="all"), topic, make_records(500, "pre", now_ms()))
    arm(broker, "fail-writes-after?count=3")
    codes = [produce_raw(broker, topic, i % 4, 20, f"n{i}").error_code for i in range(12)]
    assert set(codes) <= {0, ERROR_KAFKA_STORAGE_ERROR}, codes
    assert ERROR_KAFKA_STORAGE_ERROR in codes, codes
    # Metadata and ApiVersions still answer; the process is alive.
    with kafka_wire.Connection(broker.host, broker.port) as conn:
        assert kafka_wire.api_versions(conn)[0] == 0
    broker.assert_running()
    arm(broker, "clear")
    broker.restart()
    assert_matches(acked, read_all(broker, topic, 4))


# ---------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount an 8 MiB tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_answers_storage_error_keeps_serving_and_loses_nothing(small_disk, tmp_path):
    from conftest import Broker

    broker = Broker(tmp_path / "broker", "full-disk")
    broker.data_dir = small_disk / "data"
    broker.data_dir.mkdir()
    broker.extra_args = ["--topic-config", "segment.bytes=1048576"]
    broker.start()
    try:
        topic, steady = unique_topic("full"), unique_topic("steady")
        create_topic(broker, topic, 2)
        create_topic(broker, steady, 1)
        kept = produce(confluent_producer(broker, acks="all"), steady, make_records(300, "steady", now_ms()))
        acked = []
        codes = []
        # 8 MiB fill up after ~150 batches of 100 records x 512+ bytes; stop after a few refusals.
        for i in range(400):
            partition = i % 2
            result = produce_raw(broker, topic, partition, 100, f"fill{i}", value_size=512)
            codes.append(result.error_code)
            if result.error_code == 0:
                acked.append((partition, result.base_offset))
            elif codes.count(ERROR_KAFKA_STORAGE_ERROR) >= 4:
                break
        assert ERROR_KAFKA_STORAGE_ERROR in codes, f"the disk never filled: codes {set(codes)}"
        assert set(codes) <= {0, ERROR_KAFKA_STORAGE_ERROR}, set(codes)
        broker.assert_running()
        # Still answers metadata, and reads what it has.
        with kafka_wire.Connection(broker.host, broker.port) as conn:
            assert kafka_wire.api_versions(conn)[0] == 0
        marks = watermarks(broker, topic, [0, 1])
        for partition, base_offset in acked:
            assert base_offset + 100 <= marks[partition][1], f"acknowledged {partition}/{base_offset} not readable"
        # A partition that did not write while the disk was full is served as before. (The
        # partitions that hit ENOSPC are latched failed and answer KAFKA_STORAGE_ERROR to
        # fetches too, as a Kafka log directory that went offline does, until a restart.)
        assert_matches(kept, read_all(broker, steady, 1))

        # A restart on the still-full disk recovers and serves everything acknowledged.
        broker.restart()
        full = watermarks(broker, topic, [0, 1])
        for partition, base_offset in acked:
            assert base_offset + 100 <= full[partition][1], f"acknowledged {partition}/{base_offset} lost"
        assert_dense(read_all(broker, topic, 2), full)

        # Free space and restart: everything acknowledged is there, and production resumes.
        broker.stop()
        broker.extra_args = []
        subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
        broker.start()
        after = watermarks(broker, topic, [0, 1])
        for partition, base_offset in acked:
            assert base_offset + 100 <= after[partition][1], f"acknowledged {partition}/{base_offset} lost"
        assert_dense(read_all(broker, topic, 2), after)
        assert produce_raw(broker, topic, 0, 10, "resumed").error_code == 0
    finally:
        broker.stop()
