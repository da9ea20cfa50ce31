"""Kafka's own DumpLogSegments reads the segment files Sluice writes, and sees what clients saw.

Goal: Sluice's partitions are Kafka segment files (engine/FORMAT.md): Apache Kafka 4.4.0's
DumpLogSegments, which shares no code with Sluice, finds every batch valid (CRC included), with
the codec it was produced with, at the offsets the producer was acknowledged for, holding the
keys, values, header keys and timestamps the producer sent and a consumer reads; after
compaction, exactly the records a consumer reads; and Sluice's .index and .timeindex files pass
Kafka's checks.

Method: one Sluice broker for the module, with maintenance every 200 ms so that compaction runs
within seconds. librdkafka (confluent-kafka) produces three topics, each record acknowledged
with its offset: "plain" (no compression, several partitions and batches), "compressed" (one
partition per codec: gzip, snappy, lz4, zstd) and "compacted" (cleanup.policy=compact, 4 KiB
segments, rounds of the same keys, tombstones, then fillers that close every segment holding
them), and confluent-kafka reads everything back once compaction shows. The broker is stopped
with SIGTERM and DumpLogSegments runs over every segment it left (`--deep-iteration
--print-data-log` on the .log files; `--verify-index-only` and `--index-sanity-check` on the
index files), its output parsed by kafka_tools. Batch boundaries are also read straight from the
file headers, an independent view to compare the tool's batches with. Kafka's jars come from
tests/reference/kafka (fetched into its cache when missing); without Java or the jars the tests
are skipped with the reason.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

import kafka_tools
from clients import (Got, Rec, confluent_producer, create_topic, make_records, now_ms, produce, read_all,
                     unique_topic)

pytestmark = pytest.mark.sluice_only("reads Sluice's segment files with Kafka's DumpLogSegments")

PLAIN_PARTITIONS = 3
PLAIN_RECORDS = 3_000
COMPRESSED_CODECS = ["gzip", "snappy", "lz4", "zstd"]  # partition i holds COMPRESSED_CODECS[i]
COMPRESSED_RECORDS = 1_500
COMPACTED_KEYS = 150
COMPACTED_ROUNDS = 4
COMPACTED_TOMBSTONED = {key for key in range(COMPACTED_KEYS) if key % 10 == 0}
FILLERS = 60
# 60 fillers of 240 B fill more than three 4 KiB segments: every segment holding the rounds and
# tombstones gets closed, and only closed segments are compacted (as in Kafka).
FILLER_VALUE = b"filler" * 40
COMPACTION_WAIT_S = 90.0


class Dumped:
    """What the clients saw, and what DumpLogSegments said about the files, per topic and partition."""

    def __init__(self):
        self.topics: dict[str, str] = {}  # role ("plain", "compressed", "compacted") -> topic name
        self.acked: dict[str, list[Rec]] = {}
        self.consumed: dict[str, dict[int, list[Got]]] = {}
        self.segments: dict[tuple[str, int], list[Path]] = {}  # (role, partition) -> .log files by base offset
        self.logs: dict[Path, kafka_tools.DumpedLog] = {}
        self.log_run: kafka_tools.ToolRun | None = None
        self.verify_run: kafka_tools.ToolRun | None = None
        self.sanity_run: kafka_tools.ToolRun | None = None

    def batches(self, role: str, partition: int) -> list[kafka_tools.DumpedBatch]:
        return [b for path in self.segments[(role, partition)] for b in self.logs[path].batches]

    def records(self, role: str, partition: int) -> list[kafka_tools.DumpedRecord]:
        return [r for b in self.batches(role, partition) for r in b.records]


def compacted_key(key: int) -> bytes:
    return f"ckey-{key:03}".encode()


def produce_compacted(broker, topic: str) -> list[Rec]:
    """Rounds over the keys, tombstones for every tenth key, then fillers, all to partition 0."""
    base = now_ms()
    records = [Rec(rnd * COMPACTED_KEYS + key, compacted_key(key), f"cval-{key}-{rnd}".encode(), [], base)
               for rnd in range(COMPACTED_ROUNDS) for key in range(COMPACTED_KEYS)]
    records += [Rec(len(records) + i, compacted_key(key), None, [], base) for i, key in
                enumerate(sorted(COMPACTED_TOMBSTONED))]
    records += [Rec(len(records) + i, f"filler-{i:02}".encode(), FILLER_VALUE, [], base) for i in range(FILLERS)]
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0, "batch.num.messages": 50})
    return produce(producer, topic, records, partition=0)


def expected_compacted(acked: list[Rec]) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) left by compaction below the fillers: each live key's last value."""
    last: dict[bytes, Rec] = {}
    for rec in acked:
        if not rec.key.startswith(b"filler-"):
            last[rec.key] = rec
    return sorted((r.offset, r.key, r.value) for r in last.values() if r.value is not None)


def wait_compacted(broker, topic: str, acked: list[Rec]) -> dict[int, list[Got]]:
    first_filler = min(r.offset for r in acked if r.key.startswith(b"filler-"))
    want = expected_compacted(acked)
    deadline = time.monotonic() + COMPACTION_WAIT_S
    while True:
        got = read_all(broker, topic, 1)
        below = [(g.offset, g.key, g.value) for g in got[0] if g.offset < first_filler]
        if below == want:
            return got
        assert time.monotonic() < deadline, (
            f"not compacted within {COMPACTION_WAIT_S}s: {len(below)} records below offset {first_filler}, "
            f"expected {len(want)}")
        time.sleep(0.5)


def segment_files(partition_dir: Path) -> list[Path]:
    return sorted(partition_dir.glob("*.log"), key=lambda p: int(p.stem))


@pytest.fixture(scope="module")
def tools():
    """(java, classpath) of the reference Kafka, or a skip that says what is missing."""
    try:
        return kafka_tools.find_java(), kafka_tools.kafka_classpath()
    except kafka_tools.ToolsUnavailable as missing:
        pytest.skip(f"Kafka's DumpLogSegments is unavailable: {missing}")


@pytest.fixture(scope="module")
def dumped(broker, tools, tmp_path_factory) -> Dumped:
    java, classpath = tools
    broker.run_maintenance_every(200)
    broker.restart()
    out = Dumped()

    out.topics["plain"] = topic = unique_topic("format-plain")
    create_topic(broker, topic, PLAIN_PARTITIONS)
    records = make_records(PLAIN_RECORDS, "plain", now_ms() - 60_000)
    producer = confluent_producer(broker, acks="all", **{"compression.type": "none", "batch.num.messages": 100})
    out.acked["plain"] = produce(producer, topic, records)

    out.topics["compressed"] = topic = unique_topic("format-compressed")
    create_topic(broker, topic, len(COMPRESSED_CODECS))
    out.acked["compressed"] = []
    for partition, codec in enumerate(COMPRESSED_CODECS):
        records = make_records(COMPRESSED_RECORDS, f"z-{codec}", now_ms() - 30_000)
        producer = confluent_producer(broker, acks="all", **{"compression.type": codec, "batch.num.messages": 250})
        out.acked["compressed"] += produce(producer, topic, records, partition=partition)

    out.topics["compacted"] = topic = unique_topic("format-compacted")
    create_topic(broker, topic, 1, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                    "delete.retention.ms": "0", "min.cleanable.dirty.ratio": "0"})
    out.acked["compacted"] = produce_compacted(broker, topic)
    out.consumed["compacted"] = wait_compacted(broker, topic, out.acked["compacted"])
    out.consumed["plain"] = read_all(broker, out.topics["plain"], PLAIN_PARTITIONS)
    out.consumed["compressed"] = read_all(broker, out.topics["compressed"], len(COMPRESSED_CODECS))

    assert broker.stop() == 0, "sluice did not exit cleanly on SIGTERM"
    partitions = {"plain": PLAIN_PARTITIONS, "compressed": len(COMPRESSED_CODECS), "compacted": 1}
    for role, count in partitions.items():
        for partition in range(count):
            directory = broker.partition_dir(out.topics[role], partition)
            files = segment_files(directory)
            assert files, f"no segment of {role} partition {partition} in {directory}"
            out.segments[(role, partition)] = files
    logs = [f for files in out.segments.values() for f in files]
    indexes = [f.with_suffix(suffix) for f in logs for suffix in (".index", ".timeindex")]
    work = tmp_path_factory.mktemp("dump-log-segments")
    out.log_run = kafka_tools.dump_log_segments(java, classpath, logs, work, "--deep-iteration", "--print-data-log")
    (work / "logs.txt").write_text(out.log_run.stdout + "\n----- stderr -----\n" + out.log_run.stderr)
    out.logs = kafka_tools.parse_log_dump(out.log_run.stdout)
    out.verify_run = kafka_tools.dump_log_segments(java, classpath, indexes, work, "--verify-index-only")
    out.sanity_run = kafka_tools.dump_log_segments(java, classpath, indexes, work, "--index-sanity-check")
    broker.start()  # the module's fixture stops it at the end
    return out


def test_every_segment_is_read_whole_and_every_batch_is_valid(dumped):
    assert dumped.log_run.returncode == 0, dumped.log_run.stderr[-3000:]
    assert set(dumped.logs) == {f for files in dumped.segments.values() for f in files}
    for (role, _), files in dumped.segments.items():
        if role != "compacted":  # compaction may empty a segment; the others hold what was produced
            assert all(dumped.logs[path].batches for path in files), f"DumpLogSegments found no batch in {files}"
    for path, log in dumped.logs.items():
        assert not log.trailing, f"{path}: {log.trailing}"
        invalid = [b for b in log.batches if not b.is_valid or b.magic != 2]
        assert not invalid, f"{path}: batches Kafka finds invalid (CRC) or not magic 2: {invalid[:3]}"
        for batch in log.batches:
            where = f"{path}: batch {batch.base_offset}..{batch.last_offset} at {batch.position}"
            assert len(batch.records) == batch.count, f"{where} lists {len(batch.records)} records, " \
                f"its header says {batch.count}"
            offsets = [r.offset for r in batch.records]
            if not offsets:
                continue  # an empty batch (Kafka's cleaner keeps some for producer state) holds no record
            assert offsets == sorted(set(offsets)), f"{where}: offsets not increasing {offsets[:5]}"
            assert batch.base_offset <= offsets[0] and offsets[-1] <= batch.last_offset, f"{where} holds {offsets[:5]}"


def test_batches_are_those_of_the_file_headers_with_the_codec_produced(dumped):
    for (role, partition), files in dumped.segments.items():
        codec = COMPRESSED_CODECS[partition] if role == "compressed" else "none"
        for path in files:
            headers = kafka_tools.batch_headers(path)
            assert path.stat().st_size == sum(h.size for h in headers), f"{path}: bytes after the last batch"
            seen = [(b.position, b.base_offset, b.last_offset, b.count, b.size, b.crc, b.codec)
                    for b in dumped.logs[path].batches]
            assert seen == [(h.position, h.base_offset, h.last_offset, h.count, h.size, h.crc, h.codec)
                            for h in headers], f"{path}: Kafka's batches differ from the file's headers"
            assert {b.codec for b in dumped.logs[path].batches} <= {codec}, f"{role} partition {partition}"
        assert {b.codec for b in dumped.batches(role, partition)} == {codec}, f"{role} partition {partition}"


@pytest.mark.parametrize("role", ["plain", "compressed"])
def test_batches_cover_the_acknowledged_offsets_densely(dumped, role):
    acked_end = defaultdict(int)
    for rec in dumped.acked[role]:
        acked_end[rec.partition] = max(acked_end[rec.partition], rec.offset + 1)
    for (name, partition), _ in dumped.segments.items():
        if name != role:
            continue
        batches = dumped.batches(role, partition)
        assert batches[0].base_offset == 0
        for before, after in zip(batches, batches[1:]):
            assert after.base_offset == before.last_offset + 1, f"{role}/{partition}: gap after {before.last_offset}"
        for batch in batches:
            assert batch.count == batch.last_offset - batch.base_offset + 1
            assert batch.producer_id == -1, "librdkafka without idempotence sends producer id -1"
        assert batches[-1].last_offset + 1 == acked_end[partition], f"{role}/{partition}"
    gaps = kafka_tools.non_consecutive_offsets(dumped.log_run.stderr)
    for (name, partition), files in dumped.segments.items():
        if name == role:
            assert not [gaps[f] for f in files if f in gaps], f"{role}/{partition}: offsets not consecutive"


@pytest.mark.parametrize("role", ["plain", "compressed"])
def test_records_are_the_acknowledged_ones_byte_for_byte(dumped, role):
    by_position = {(r.partition, r.offset): r for r in dumped.acked[role]}
    partitions = sorted({p for name, p in dumped.segments if name == role})
    for partition in partitions:
        records = dumped.records(role, partition)
        assert [r.offset for r in records] == sorted(o for p, o in by_position if p == partition)
        for got in records:
            rec = by_position[(partition, got.offset)]
            where = f"{role}/{partition} offset {got.offset}"
            assert got.key == rec.key.decode(), f"{where}: key {got.key!r}"
            assert got.value == (None if rec.value is None else rec.value.decode()), f"{where}: value differs"
            assert got.header_keys == [name for name, _ in rec.headers], f"{where}: header keys {got.header_keys}"
            assert (got.timestamp_type, got.timestamp) == ("CreateTime", rec.timestamp_ms), where


@pytest.mark.parametrize("role", ["plain", "compressed", "compacted"])
def test_records_are_what_the_consumer_read(dumped, role):
    for partition, consumed in dumped.consumed[role].items():
        expected = [(g.offset, g.key.decode(), None if g.value is None else g.value.decode()) for g in consumed]
        assert [(r.offset, r.key, r.value) for r in dumped.records(role, partition)] == expected, \
            f"{role}/{partition}: DumpLogSegments and the consumer disagree"


def test_compacted_segments_hold_each_live_key_once_with_its_last_value(dumped):
    records = dumped.records("compacted", 0)
    want = expected_compacted(dumped.acked["compacted"])
    fillers = [(r.offset, r.key, r.value) for r in dumped.acked["compacted"] if r.key.startswith(b"filler-")]
    got = [(r.offset, r.key.encode(), None if r.value is None else r.value.encode()) for r in records]
    assert got == want + fillers
    assert len(dumped.segments[("compacted", 0)]) > 1, "the compacted partition should span several segments"


def test_index_files_pass_kafkas_sanity_check(dumped):
    run = dumped.sanity_run
    assert run.returncode == 0, run.stderr[-3000:]
    for files in dumped.segments.values():
        for log in files:
            for index in (log.with_suffix(".index"), log.with_suffix(".timeindex")):
                assert f"{index} passed sanity check." in run.stdout or f"{index} is empty." in run.stdout, \
                    f"{index}: {run.stdout[-2000:]}\n{run.stderr[-2000:]}"


def test_time_indexes_match_the_log(dumped):
    run = dumped.verify_run
    assert run.returncode == 0, run.stderr[-3000:]
    problems = [p for p in kafka_tools.index_problems(run.stderr) if ".timeindex" in p or "indexed offsets" in p]
    assert not problems, problems


def test_offset_indexes_match_the_log(dumped):
    run = dumped.verify_run
    assert run.returncode == 0, run.stderr[-3000:]
    problems = [p for p in kafka_tools.index_problems(run.stderr) if p.startswith("Mismatches in :")]
    assert not problems, problems
