"""Apache Kafka's own tools run on files Sluice wrote: DumpLogSegments, and a parser of its output.

Goal: let a test ask Kafka 4.4.0 itself what a segment file holds, so that "Sluice writes Kafka's
format" is checked by Kafka's code rather than by a reimplementation of it.

Method: the jars come from tests/reference/kafka (`classpath` fetches them into the cache outside
the repository when missing); java is JAVA_HOME's or the one on PATH. DumpLogSegments
(org.apache.kafka.tools.DumpLogSegments) runs in a bounded subprocess; its text output is parsed
into batches and records (the line formats are those of Kafka 4.4.0's tool), and the problems it
reports on stderr for index files are returned as lines. `batch_headers` walks a .log file's
batch headers directly (engine/FORMAT.md), as an independent view to compare with the tool's.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_SCRIPT = REPO_ROOT / "tests" / "reference" / "kafka"
LOG4J_CONFIG = REPO_ROOT / "tests" / "reference" / "log4j2.properties"
DUMP_LOG_SEGMENTS = "org.apache.kafka.tools.DumpLogSegments"
FETCH_TIMEOUT_S = float(os.environ.get("KAFKA_FETCH_TIMEOUT_S", "900"))
TOOL_TIMEOUT_S = 120.0

# Lines of DumpLogSegments' problem report on stderr (index and time index checks, offset gaps).
INDEX_PROBLEMS = ("Mismatches in :", "Found timestamp mismatch in :", "Found out of order timestamp in :",
                  "The following indexed offsets are not found in the log.")


class ToolsUnavailable(Exception):
    """Java or Kafka's jars cannot be had here; the reason says which."""


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if java.is_file():
            return str(java)
        raise ToolsUnavailable(f"JAVA_HOME={home} has no bin/java")
    java = shutil.which("java")
    if java is None:
        raise ToolsUnavailable("no java on PATH and no JAVA_HOME (Kafka's tools need Java 17+)")
    return java


def kafka_classpath() -> str:
    """The reference jars' classpath; `tests/reference/kafka classpath` fetches them when missing."""
    try:
        proc = subprocess.run([str(REFERENCE_SCRIPT), "classpath"], capture_output=True, text=True,
                              timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ToolsUnavailable(f"fetching Kafka's jars took over {FETCH_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise ToolsUnavailable(f"Kafka's jars are unavailable ({REFERENCE_SCRIPT.name} classpath exited "
                               f"{proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return proc.stdout.strip()


@dataclass
class ToolRun:
    stdout: str
    stderr: str
    returncode: int


def run_tool(java: str, classpath: str, main_class: str, args: list[str], logs_dir: Path) -> ToolRun:
    logs_dir.mkdir(parents=True, exist_ok=True)
    command = [java, "-Xmx512m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={logs_dir}",
               "-cp", classpath, main_class, *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    return ToolRun(proc.stdout, proc.stderr, proc.returncode)


def dump_log_segments(java: str, classpath: str, files: list[Path], logs_dir: Path, *options: str) -> ToolRun:
    """DumpLogSegments over several files in one JVM (the tool takes a comma-separated list)."""
    return run_tool(java, classpath, DUMP_LOG_SEGMENTS,
                    ["--files", ",".join(str(f) for f in files), *options], logs_dir)


# ---------------------------------------------------------------- parsing the tool's output


@dataclass
class DumpedRecord:
    offset: int
    timestamp_type: str
    timestamp: int
    key: str | None
    value: str | None
    header_keys: list[str]


@dataclass
class DumpedBatch:
    base_offset: int
    last_offset: int
    count: int
    position: int
    size: int
    magic: int
    codec: str
    crc: int
    is_valid: bool
    producer_id: int
    records: list[DumpedRecord] = field(default_factory=list)


@dataclass
class DumpedLog:
    path: Path
    batches: list[DumpedBatch] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)  # "Found N invalid bytes at the end of ..."


BATCH_LINE = re.compile(
    r"^baseOffset: (?P<base>-?\d+) lastOffset: (?P<last>-?\d+) count: (?P<count>\d+) .*?"
    r"producerId: (?P<pid>-?\d+) .*? position: (?P<position>\d+) \w+: -?\d+ size: (?P<size>\d+) "
    r"magic: (?P<magic>\d+) compresscodec: (?P<codec>\w+) crc: (?P<crc>\d+) isvalid: (?P<valid>true|false)$")
RECORD_LINE = re.compile(
    r"^\| offset: (?P<offset>\d+) (?P<ts_type>\w+): (?P<ts>-?\d+) keySize: (?P<key_size>-?\d+) "
    r"valueSize: (?P<value_size>-?\d+) sequence: -?\d+ headerKeys: \[(?P<headers>[^\]]*)\](?P<rest>.*)$")


def _contents(rest: str, key_size: int, value_size: int, line: str) -> tuple[str | None, str | None]:
    """Key and value after the header keys; sizes (bytes, ASCII content) delimit them exactly."""
    key = value = None
    if key_size >= 0:
        assert rest.startswith(" key: "), f"no key in {line!r}"
        key, rest = rest[6:6 + key_size], rest[6 + key_size:]
    if value_size >= 0:
        assert rest.startswith(" payload: "), f"no payload in {line!r}"
        value, rest = rest[10:10 + value_size], rest[10 + value_size:]
    assert rest == "", f"unparsed {rest!r} in {line!r}"
    return key, value


def parse_log_dump(stdout: str) -> dict[Path, DumpedLog]:
    """`--deep-iteration --print-data-log` output of .log files: batches and their records, per file."""
    logs: dict[Path, DumpedLog] = {}
    current: DumpedLog | None = None
    for line in stdout.splitlines():
        if line.startswith("Dumping "):
            current = logs.setdefault(Path(line[len("Dumping "):]), DumpedLog(Path(line[len("Dumping "):])))
            continue
        if current is None or line.startswith("Log starting offset: ") or not line:
            continue
        batch = BATCH_LINE.match(line)
        if batch:
            current.batches.append(DumpedBatch(
                int(batch["base"]), int(batch["last"]), int(batch["count"]), int(batch["position"]),
                int(batch["size"]), int(batch["magic"]), batch["codec"], int(batch["crc"]),
                batch["valid"] == "true", int(batch["pid"])))
            continue
        record = RECORD_LINE.match(line)
        if record:
            assert current.batches, f"a record line before any batch: {line!r}"
            key, value = _contents(record["rest"], int(record["key_size"]), int(record["value_size"]), line)
            headers = [h for h in record["headers"].split(",") if h]
            current.batches[-1].records.append(DumpedRecord(int(record["offset"]), record["ts_type"],
                                                            int(record["ts"]), key, value, headers))
            continue
        if line.startswith("Found ") and "invalid bytes at the end of" in line:
            current.trailing.append(line)
            continue
        raise AssertionError(f"unexpected DumpLogSegments line: {line!r}")
    return logs


def index_problems(stderr: str) -> list[str]:
    """The problem report DumpLogSegments prints for index files, one entry per reported line."""
    lines = stderr.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(INDEX_PROBLEMS):
            details = []
            for follow in lines[i + 1:]:
                if follow.startswith(INDEX_PROBLEMS) or not follow.startswith(("  ", "Indexed offset")):
                    break
                details.append(follow.strip())
            out.append(f"{line} {'; '.join(details[:5])}{' ...' if len(details) > 5 else ''}")
    return out


def non_consecutive_offsets(stderr: str) -> dict[Path, list[tuple[int, int]]]:
    """Per .log file, the (offset, next offset) pairs DumpLogSegments found not consecutive. Each
    file is checked from offset -1, so a segment with a base offset above 0 reports (-1, base)."""
    out: dict[Path, list[tuple[int, int]]] = {}
    current = None
    for line in stderr.splitlines():
        if line.startswith("Non-consecutive offsets in "):
            current = out.setdefault(Path(line[len("Non-consecutive offsets in "):]), [])
        elif current is not None and " is followed by " in line:
            before, after = line.strip().split(" is followed by ")
            current.append((int(before), int(after)))
        else:
            current = None
    return out


# ---------------------------------------------------------------- an independent header walk


@dataclass
class BatchHeader:
    """The fields of a RecordBatch v2 header, as engine/FORMAT.md lays them out."""

    position: int
    base_offset: int
    size: int
    magic: int
    crc: int
    codec: str
    last_offset: int
    producer_id: int
    count: int


CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def batch_headers(log_file: Path) -> list[BatchHeader]:
    """Every batch header of a .log file, in file order; stops at the end or at a zero length."""
    data = log_file.read_bytes()
    out = []
    position = 0
    while position + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, position)
        if length <= 0:
            break
        magic = data[position + 16]
        crc, attributes, last_delta = struct.unpack_from(">IhI", data, position + 17)
        producer_id = struct.unpack_from(">q", data, position + 43)[0]
        count = struct.unpack_from(">i", data, position + 57)[0]
        out.append(BatchHeader(position, base_offset, 12 + length, magic, crc, CODEC_NAMES.get(attributes & 7, "?"),
                               base_offset + last_delta, producer_id, count))
        position += 12 + length
    return out
