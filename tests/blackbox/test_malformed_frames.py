"""Garbage on the wire never takes the broker down or disturbs other clients.

Goal: random bytes, negative and oversized frame lengths, truncated frames, unknown API keys and
unsupported versions get an error answer or a clean disconnect of that connection only; the
broker keeps running and a well-behaved client keeps producing and consuming meanwhile.

Method: raw sockets (kafka_wire) send each kind of bad frame and observe the broker's answer or
close within a deadline. In the main test a confluent-kafka producer and a consumer run in a
background thread throughout the abuse; afterwards every record they produced must have been
delivered and read back exactly, and the broker process must still be alive.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kafka_wire
from clients import (assert_matches, confluent_consumer, confluent_producer, create_topic, make_records, now_ms,
                     produce, read_all, unique_topic)

CLOSE_WITHIN_S = 10.0


def connect(broker) -> kafka_wire.Connection:
    return kafka_wire.Connection(broker.host, broker.port, timeout_s=CLOSE_WITHIN_S)


def still_serves(broker) -> None:
    broker.assert_running()
    with connect(broker) as conn:
        error, versions = kafka_wire.api_versions(conn)
    assert error == 0 and versions


def header(api_key: int, api_version: int, correlation_id: int = 7) -> bytes:
    return struct.pack(">hhi", api_key, api_version, correlation_id) + kafka_wire.string("garbage-test")


GARBAGE_FRAMES = {
    "negative_length": struct.pack(">i", -1) + b"\x00" * 16,
    "most_negative_length": struct.pack(">i", -(2**31)) + b"\x00" * 16,
    "oversized_length": struct.pack(">i", 2**31 - 1) + b"\x00" * 64,
    "length_over_request_limit": struct.pack(">i", 512 * 1024 * 1024) + b"\x00" * 64,
    "zero_length": struct.pack(">i", 0),
    "length_shorter_than_header": struct.pack(">i", 3) + b"\x00\x12\x00",
    "unknown_api_key": kafka_wire.int32(len(header(9999, 0))) + header(9999, 0),
    "produce_with_truncated_body": kafka_wire.int32(len(header(0, 8)) + 3) + header(0, 8) + b"\xff\xff\x00",
    "metadata_with_garbage_body": kafka_wire.int32(len(header(3, 9)) + 40) + header(3, 9) + bytes(range(40)),
    "client_id_longer_than_frame": kafka_wire.int32(10) + struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 500),
}


@pytest.mark.parametrize("name", sorted(GARBAGE_FRAMES))
def test_bad_frame_closes_only_that_connection(broker, name):
    bystander = connect(broker)
    try:
        with connect(broker) as conn:
            conn.send_raw(GARBAGE_FRAMES[name])
            assert conn.wait_closed(CLOSE_WITHIN_S), f"{name}: the broker neither answered nor closed"
        # A connection opened before the garbage still works.
        error, _ = kafka_wire.api_versions(bystander)
        assert error == 0
    finally:
        bystander.close()
    still_serves(broker)


def test_random_bytes_never_kill_the_broker(broker):
    rng = random.Random(20240611)
    for _ in range(100):
        with connect(broker) as conn:
            try:
                conn.send_raw(rng.randbytes(rng.choice([1, 3, 4, 5, 17, 100, 4096, 70_000])))
                conn.wait_closed(0.05)
            except (ConnectionResetError, BrokenPipeError):
                pass
    still_serves(broker)


def test_truncated_frame_then_close_leaves_no_trace(broker):
    for cut in (1, 2, 4, 8, 15):
        frame = kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 0, 1, b"")
        with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
            sock.sendall(frame[:cut])
    still_serves(broker)


def test_idle_half_sent_frames_do_not_block_other_clients(broker):
    stalled = []
    try:
        for _ in range(50):
            sock = socket.create_connection((broker.host, broker.port), timeout=5)
            sock.sendall(struct.pack(">i", 1000) + b"\x00\x12")  # promises 1000 bytes, sends 2
            stalled.append(sock)
        topic = unique_topic("beside-stalled")
        records = produce(confluent_producer(broker, acks="all"), topic, make_records(200, "stalled", now_ms()))
        assert_matches(records, read_all(broker, topic, max(r.partition for r in records) + 1))
    finally:
        for sock in stalled:
            sock.close()
    still_serves(broker)


def test_unsupported_api_versions_version_is_answered_with_error_and_version_list(broker):
    # KIP-511: an ApiVersions request of an unknown version gets a v0 response with
    # UNSUPPORTED_VERSION and the supported ranges, so the client can retry with a known version.
    with connect(broker) as conn:
        conn.correlation_id = 41
        conn.send_raw(kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 127, 42, b"", flexible=True))
        size = struct.unpack(">i", conn.recv_exact(4))[0]
        reader = kafka_wire.Reader(conn.recv_exact(size))
        assert reader.int32() == 42
        assert reader.int16() == kafka_wire.ERROR_UNSUPPORTED_VERSION
        count = reader.int32()
        keys = {reader.int16(): (reader.int16(), reader.int16()) for _ in range(count)}
        assert kafka_wire.API_API_VERSIONS in keys


def test_clients_keep_working_while_garbage_arrives(broker):
    topic = unique_topic("under-garbage")
    create_topic(broker, topic, 2)
    records = make_records(20_000, "garbage", now_ms())
    outcome = {}

    def produce_and_consume():
        try:
            producer = confluent_producer(broker, acks="all", **{"linger.ms": 1})
            consumer = confluent_consumer(broker)
            consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
            consumed = 0
            deadline = time.monotonic() + 120
            # Produce in slices of 500 and consume what is there in between, so both run throughout.
            for start in range(0, len(records), 500):
                produce(producer, topic, records[start:start + 500])
                for msg in consumer.consume(num_messages=1_000, timeout=0.05):
                    if msg.error() is None:
                        consumed += 1
                    elif msg.error().code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"consumer error: {msg.error()}")
                if time.monotonic() > deadline:
                    raise AssertionError("producing took over 120s")
            while consumed < len(records) and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=1_000, timeout=0.2):
                    if msg.error() is None:
                        consumed += 1
            consumer.close()
            outcome["consumed"] = consumed
        except BaseException as e:  # reported by the main thread
            outcome["error"] = e

    worker = threading.Thread(target=produce_and_consume, daemon=True)
    worker.start()
    rng = random.Random(7)
    frames = list(GARBAGE_FRAMES.values())
    sent = 0
    while worker.is_alive() and sent < 2_000:
        frame = rng.choice(frames) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 2_000))
        try:
            with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
                sock.sendall(frame)
        except OSError:
            pass  # the broker may close before we finish sending: that is allowed
        sent += 1
    worker.join(timeout=180)
    assert not worker.is_alive(), "the client thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    assert sent >= 10, f"only {sent} garbage connections were made while clients ran"
    assert outcome["consumed"] == len(records)
    assert_matches(records, read_all(broker, topic, 2))
    still_serves(broker)
