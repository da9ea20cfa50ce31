"""A minimal, independent Kafka wire-protocol client for tests that real clients cannot express.

Goal: let tests speak the protocol byte by byte where a real client hides what matters: the
harness's readiness probe (ApiVersions v0), malformed frames, and replaying one idempotent batch
twice. Method: encode request headers and the few request bodies we need by hand from the Kafka
protocol guide (big-endian integers, classic and compact "flexible" encodings), decode responses
with a small reader that skips tagged fields, and build RecordBatch v2 bytes with kafka-python's
batch builder, which is an independent implementation of the format.

Every socket operation has a deadline; nothing here blocks without bound.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

API_PRODUCE = 0
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_UNSUPPORTED_VERSION = 35
ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45
ERROR_DUPLICATE_SEQUENCE_NUMBER = 46

# First flexible (KIP-482) version of each request we encode.
_FIRST_FLEXIBLE = {API_PRODUCE: 9, API_LIST_OFFSETS: 6, API_API_VERSIONS: 3, API_INIT_PRODUCER_ID: 2}


class WireError(Exception):
    """The peer closed, timed out or answered something we could not decode."""


class ConnectionClosed(WireError):
    """The peer closed the connection (EOF or reset)."""


# ---------------------------------------------------------------- encoding


def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def uvarint(v: int) -> bytes:
    assert v >= 0
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(s: str | None) -> bytes:
    if s is None:
        return int16(-1)
    raw = s.encode()
    return int16(len(raw)) + raw


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return int32(-1)
    return int32(len(b)) + b


def compact_bytes(b: bytes | None) -> bytes:
    if b is None:
        return uvarint(0)
    return uvarint(len(b) + 1) + b


def array(items: list[bytes]) -> bytes:
    return int32(len(items)) + b"".join(items)


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = b"\x00"


def is_flexible(api_key: int, api_version: int) -> bool:
    first = _FIRST_FLEXIBLE.get(api_key)
    assert first is not None, f"api {api_key} is not encoded by this module"
    return api_version >= first


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes,
                  client_id: str | None = "sluice-blackbox", flexible: bool = False) -> bytes:
    """A whole request frame: int32 size, request header v1 (or v2 when flexible), body."""
    header = int16(api_key) + int16(api_version) + int32(correlation_id) + string(client_id)
    if flexible:
        header += NO_TAGS
    payload = header + body
    return int32(len(payload)) + payload


# ---------------------------------------------------------------- decoding


class Reader:
    """Sequential big-endian reader over one response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"short response: need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = 0
        value = 0
        for _ in range(10):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise WireError("varint longer than 10 bytes")

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def array_len(self, flexible: bool) -> int:
        if flexible:
            return self.uvarint() - 1
        return self.int32()

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------- connection


class Connection:
    """One TCP connection to a broker with bounded blocking reads."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = timeout_s
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"timed out after {self.timeout_s}s with {len(out)}/{n} bytes")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(out), 1 << 20))
            except socket.timeout as e:
                raise WireError(f"timed out after {self.timeout_s}s with {len(out)}/{n} bytes") from e
            except ConnectionResetError as e:
                raise ConnectionClosed("connection reset by peer") from e
            if not chunk:
                raise ConnectionClosed(f"peer closed the connection after {len(out)}/{n} bytes")
            out += chunk
        return bytes(out)

    def wait_closed(self, timeout_s: float) -> bool:
        """True when the peer closes (EOF or reset) within timeout_s; any bytes received are drained."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True

    def request(self, api_key: int, api_version: int, body: bytes, flexible: bool | None = None) -> Reader:
        """Send one request and return a Reader positioned after the response header."""
        if flexible is None:
            flexible = is_flexible(api_key, api_version)
        self.correlation_id += 1
        cid = self.correlation_id
        self.send_raw(request_frame(api_key, api_version, cid, body, flexible=flexible))
        size = struct.unpack(">i", self.recv_exact(4))[0]
        if size < 4 or size > 100 * 1024 * 1024:
            raise WireError(f"response size {size} is implausible")
        reader = Reader(self.recv_exact(size))
        got = reader.int32()
        if got != cid:
            raise WireError(f"correlation id {got} in response, expected {cid}")
        # ApiVersions responses always use response header v0 (KIP-511), even when flexible.
        if flexible and api_key != API_API_VERSIONS:
            reader.tags()
        return reader


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class VersionRange:
    min: int
    max: int


def api_versions(conn: Connection) -> tuple[int, dict[int, VersionRange]]:
    """ApiVersions v0: returns (error_code, {api_key: VersionRange})."""
    r = conn.request(API_API_VERSIONS, 0, b"", flexible=False)
    error = r.int16()
    versions = {}
    for _ in range(r.int32()):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        versions[key] = VersionRange(lo, hi)
    return error, versions


def pick_version(versions: dict[int, VersionRange], api_key: int, highest_known: int) -> int | None:
    """Highest version both the broker and this module know, or None."""
    rng = versions.get(api_key)
    if rng is None or rng.min > highest_known:
        return None
    return min(rng.max, highest_known)


@dataclass(frozen=True)
class ProducerIdentity:
    producer_id: int
    producer_epoch: int


def init_producer_id(conn: Connection, version: int) -> tuple[int, ProducerIdentity]:
    """InitProducerId for a non-transactional idempotent producer: (error_code, identity)."""
    flexible = is_flexible(API_INIT_PRODUCER_ID, version)
    if flexible:
        body = compact_string(None) + int32(60_000)
        if version >= 3:
            body += int64(-1) + int16(-1)
        body += NO_TAGS
    else:
        body = string(None) + int32(60_000)
    r = conn.request(API_INIT_PRODUCER_ID, version, body)
    r.int32()  # throttle_time_ms
    error = r.int16()
    identity = ProducerIdentity(r.int64(), r.int16())
    return error, identity


def list_offsets(conn: Connection, topic: str, partitions: list[int],
                 timestamp: int = -1) -> dict[int, tuple[int, int]]:
    """ListOffsets v1 (the Kafka 4 floor) for one topic: {partition: (error_code, offset)}.
    timestamp -1 asks for the log end, -2 for the log start."""
    parts = [int32(p) + int64(timestamp) for p in partitions]
    r = conn.request(API_LIST_OFFSETS, 1, int32(-1) + array([string(topic) + array(parts)]))
    out = {}
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            partition, error = r.int32(), r.int16()
            r.int64()  # timestamp
            out[partition] = (error, r.int64())
    return out


@dataclass(frozen=True)
class PartitionProduceResult:
    error_code: int
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int
    record_errors: tuple[tuple[int, str | None], ...] = ()
    error_message: str | None = None


def produce(conn: Connection, version: int, topic: str, partition: int, batch: bytes,
            acks: int = -1, timeout_ms: int = 10_000) -> PartitionProduceResult:
    """Produce one RecordBatch to one partition (Produce v3 to v11) and return its result."""
    assert 3 <= version <= 11, version
    flexible = is_flexible(API_PRODUCE, version)
    if flexible:
        part = int32(partition) + compact_bytes(batch) + NO_TAGS
        topic_data = compact_string(topic) + compact_array([part]) + NO_TAGS
        body = compact_string(None) + int16(acks) + int32(timeout_ms) + compact_array([topic_data]) + NO_TAGS
    else:
        part = int32(partition) + nbytes(batch)
        topic_data = string(topic) + array([part])
        body = string(None) + int16(acks) + int32(timeout_ms) + array([topic_data])
    r = conn.request(API_PRODUCE, version, body)
    results = []
    for _ in range(r.array_len(flexible)):
        name = r.compact_string() if flexible else r.string()
        for _ in range(r.array_len(flexible)):
            index = r.int32()
            error = r.int16()
            base_offset = r.int64()
            log_append_time = r.int64()
            log_start = r.int64() if version >= 5 else -1
            record_errors = []
            message = None
            if version >= 8:
                for _ in range(r.array_len(flexible)):
                    batch_index = r.int32()
                    text = r.compact_string() if flexible else r.string()
                    if flexible:
                        r.tags()
                    record_errors.append((batch_index, text))
                message = r.compact_string() if flexible else r.string()
            if flexible:
                r.tags()
            results.append((name, index, PartitionProduceResult(
                error, base_offset, log_append_time, log_start, tuple(record_errors), message)))
        if flexible:
            r.tags()
    matching = [res for name, index, res in results if name == topic and index == partition]
    if len(matching) != 1:
        raise WireError(f"produce response has {len(matching)} results for {topic}/{partition}: {results}")
    return matching[0]


def record_batch(records: list[tuple[bytes | None, bytes | None]], timestamp_ms: int,
                 producer: ProducerIdentity | None = None, base_sequence: int = -1) -> bytes:
    """RecordBatch v2 bytes (uncompressed) built by kafka-python's independent encoder."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=producer.producer_id if producer else -1,
        producer_epoch=producer.producer_epoch if producer else -1,
        base_sequence=base_sequence if producer else -1,
        batch_size=64 * 1024 * 1024)
    for offset_delta, (key, value) in enumerate(records):
        meta = builder.append(offset_delta, timestamp=timestamp_ms + offset_delta, key=key, value=value, headers=[])
        assert meta is not None, "record did not fit the batch"
    return bytes(builder.build())
