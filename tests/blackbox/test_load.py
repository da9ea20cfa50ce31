"""Load: thousands of connections, slow and vanishing clients, slowloris frames.

Goal: 5,000 concurrent connections (most idle, some active), consumers that never read their
responses, clients that vanish in the middle of a request, and frames dribbled one byte at a
time keep the broker's memory bounded, leak no file descriptor, hold no thread for a consumer that
stopped reading, and leave a well-behaved client's produce latency within bounds.

Method: raw sockets from this process (its open-file limit raised to the hard limit; the broker
inherits it) on loopback. The broker's RSS (VmRSS, VmHWM), descriptor and thread counts come
from /proc/<pid>; they are measured before, at the peak and after the connections close, and printed
so docs/reliability.md can quote them. A confluent-kafka producer measures acks=all round trips
before and during the load.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import struct
import time

import pytest

import kafka_wire
from clients import confluent_producer, create_topic, unique_topic

CONNECTIONS = 5_000
ACTIVE = 500
SLOW_CONSUMERS = 50
PER_CONNECTION_KIB_MAX = 160

_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < min(_hard, 65_536):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 65_536), _hard))


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) // 1024  # MiB
        elif name == "Threads":
            out[name] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def produce_latencies_ms(producer, topic: str, count: int) -> list[float]:
    """Round trips of single acks=all records, one at a time."""
    out = []
    for i in range(count):
        start = time.monotonic()
        delivered = []
        producer.produce(topic, value=b"x" * 100, on_delivery=lambda err, msg: delivered.append(err))
        producer.flush(30)
        assert delivered == [None], delivered
        out.append((time.monotonic() - start) * 1_000)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def connect(broker) -> socket.socket:
    sock = socket.create_connection((broker.host, broker.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def fetch_frame(topic: str, correlation_id: int) -> bytes:
    """Fetch v4 of partition 0 from offset 0, up to 1 MiB, waiting at most 10 ms."""
    body = (kafka_wire.int32(-1) + kafka_wire.int32(10) + kafka_wire.int32(1) + kafka_wire.int32(1 << 20)
            + kafka_wire.int8(0) + kafka_wire.array([kafka_wire.string(topic) + kafka_wire.array(
                [kafka_wire.int32(0) + kafka_wire.int64(0) + kafka_wire.int32(1 << 20)])]))
    return kafka_wire.request_frame(1, 4, correlation_id, body)


@pytest.fixture
def many_connections_broker(own_broker):
    own_broker.stop()
    own_broker.extra_args = ["--max-connections", str(CONNECTIONS + 1_000)]
    own_broker.start()
    return own_broker


@pytest.mark.sluice_only("--max-connections is a Sluice flag, and the memory, descriptor and thread bounds are "
                        "Sluice's (a JVM's threads and heap follow other rules)")
def test_five_thousand_connections_bounded_memory_no_fd_leak(many_connections_broker):
    broker = many_connections_broker
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * CONNECTIONS + 500:
        pytest.skip(f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)} is too low for "
                    f"{CONNECTIONS} connections")
    pid = broker.proc.pid
    topic = unique_topic("load")
    create_topic(broker, topic, 1)
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0})
    # A topic with data for the slow consumers: 4 MiB they will never read.
    for _ in range(40):
        producer.produce(topic, value=os.urandom(100_000))
    producer.flush(30)
    baseline_latency = produce_latencies_ms(producer, topic, 100)
    before = proc_status(pid)

    sockets = [connect(broker) for _ in range(CONNECTIONS)]
    try:
        # Active: an ApiVersions round trip on some of them, all in flight at once.
        frame = kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 0, 1, b"")
        for sock in sockets[:ACTIVE]:
            sock.sendall(frame)
        for sock in sockets[:ACTIVE]:
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            assert recv_exact(sock, size)[:4] == kafka_wire.int32(1)
        # Slow consumers: pipeline fetches of 1 MiB and never read the answers.
        for index, sock in enumerate(sockets[ACTIVE:ACTIVE + SLOW_CONSUMERS]):
            for correlation_id in range(8):
                sock.sendall(fetch_frame(topic, correlation_id))
        # Vanishing clients: half a request, then a reset.
        for sock in sockets[ACTIVE + SLOW_CONSUMERS:ACTIVE + 2 * SLOW_CONSUMERS]:
            sock.sendall(fetch_frame(topic, 99)[:20])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(1.0)
        loaded_latency = produce_latencies_ms(producer, topic, 100)
        peak = proc_status(pid)
        # io_uring's idle workers exit after 5 s; what is left then is waiting on something.
        time.sleep(6.0)
        settled = proc_status(pid)
        assert peak["fds"] >= before["fds"] + CONNECTIONS - 2 * SLOW_CONSUMERS, \
            f"the broker holds {peak['fds']} descriptors; {CONNECTIONS} connections were opened"
    finally:
        for sock in sockets:
            sock.close()

    deadline = time.monotonic() + 30
    after = proc_status(pid)
    while after["fds"] > before["fds"] + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = proc_status(pid)
    print(f"\nload: {CONNECTIONS} connections; broker RSS MiB before {before['VmRSS']}, peak "
          f"{peak['VmRSS']} (high-water {peak['VmHWM']}), after {after['VmRSS']}; fds before {before['fds']}, "
          f"peak {peak['fds']}, after {after['fds']}; threads before {before['Threads']}, peak {peak['Threads']}, "
          f"6 s later with the slow consumers still connected {settled['Threads']}; "
          f"acks=all p99 ms idle {p99(baseline_latency):.2f}, "
          f"loaded {p99(loaded_latency):.2f}")
    broker.assert_running()
    assert after["fds"] <= before["fds"] + 5, f"descriptors leaked: {before['fds']} before, {after['fds']} after"
    # Bounded memory: RSS grows linearly with connections and is bounded by --max-connections.
    # Measured: about 9 KiB per connection since Fetch replies hold file ranges rather than
    # bytes (about 120 KiB before, most of it the slow consumers' pipelined 1 MiB replies);
    # the bound is kept loose for allocator slack.
    assert peak["VmRSS"] - before["VmRSS"] < CONNECTIONS * PER_CONNECTION_KIB_MAX // 1024, (before, peak)
    assert p99(loaded_latency) < max(10 * p99(baseline_latency), 100.0), (baseline_latency, loaded_latency)
    # A consumer that stops reading must not hold a thread: fetch replies wait for socket room
    # in an io_uring poll, not in a splice on one of io_uring's worker threads.
    assert settled["Threads"] < before["Threads"] + SLOW_CONSUMERS // 2, (before, settled)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def test_slowloris_frames_are_answered_and_do_not_block_others(broker):
    topic = unique_topic("slowloris")
    create_topic(broker, topic, 1)
    frame = kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 0, 5, b"")
    dribblers = [connect(broker) for _ in range(200)]
    producer = confluent_producer(broker, acks="all", **{"linger.ms": 0})
    latencies = []
    try:
        # One byte per round to every connection, with a produce round trip in between.
        for position in range(len(frame)):
            for sock in dribblers:
                sock.sendall(frame[position:position + 1])
            latencies += produce_latencies_ms(producer, topic, 1)
        for sock in dribblers:
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            assert recv_exact(sock, size)[:4] == kafka_wire.int32(5), "a dribbled frame got a wrong answer"
    finally:
        for sock in dribblers:
            sock.close()
    assert max(latencies) < 2_000, latencies
    broker.assert_running()


@pytest.mark.sluice_only("--max-connections is a Sluice flag; Kafka's max.connections (KIP-402) makes its "
                        "acceptor wait for a free slot rather than close the connection over the limit")
def test_connection_limit_refuses_cleanly_and_recovers(own_broker):
    broker = own_broker
    broker.stop()
    broker.extra_args = ["--max-connections", "50"]
    broker.start()
    held = [connect(broker) for _ in range(50)]
    try:
        # Each held connection is answered, so all 50 are counted before the 51st arrives (the
        # shards accept concurrently: without this the refused one could be any of them).
        for sock in held:
            sock.sendall(kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 0, 1, b""))
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            recv_exact(sock, size)
        extra = connect(broker)
        extra.settimeout(5)
        try:
            extra.sendall(kafka_wire.request_frame(kafka_wire.API_API_VERSIONS, 0, 1, b""))
            refused = extra.recv(4) == b""
        except (ConnectionResetError, BrokenPipeError):
            refused = True
        finally:
            extra.close()
        assert refused, "a connection over --max-connections was served"
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with kafka_wire.Connection(broker.host, broker.port, timeout_s=5) as conn:
                assert kafka_wire.api_versions(conn)[0] == 0
            break
        except (OSError, kafka_wire.WireError):
            assert time.monotonic() < deadline, "the broker did not serve again after connections closed"
            time.sleep(0.1)
