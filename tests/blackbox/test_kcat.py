"""kcat: produce and consume through the command-line client, every codec.

Goal: the broker works with kcat's legacy (non-group) producer and simple consumer, which use
different librdkafka code paths than confluent-kafka's consumer (rd_kafka_consume_start).

Method: pipe delimited key:value lines into `kcat -P` with headers and a codec, read them back
with `kcat -C -e -J` (exit at end of partition, JSON lines with offsets, keys, payloads and
headers) and compare; cross-check with confluent-kafka. Each kcat run has a timeout.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from clients import CODECS, create_topic, read_all, unique_topic, watermarks

COUNT = 2_000


def kcat(broker, *args: str, stdin: bytes | None = None, timeout_s: float = 60) -> bytes:
    proc = subprocess.run(["kcat", "-b", broker.bootstrap, "-X", "broker.address.family=v4", *args],
                          input=stdin, capture_output=True, timeout=timeout_s)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_then_consume_returns_the_same_lines(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    create_topic(broker, topic, 2)
    lines = [f"key-{i % 100}:value {i} {'x' * (i % 50)}" for i in range(COUNT)]
    kcat(broker, "-P", "-t", topic, "-p", "1", "-K", ":", "-z", codec, "-H", "origin=kcat", "-H", f"codec={codec}",
         "-X", "acks=all", stdin=("\n".join(lines) + "\n").encode())
    assert watermarks(broker, topic, [0, 1]) == {0: (0, 0), 1: (0, COUNT)}

    out = kcat(broker, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-J", "-q")
    msgs = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [m["offset"] for m in msgs] == list(range(COUNT))
    assert [f"{m['key']}:{m['payload']}" for m in msgs] == lines
    assert all(m["headers"] == ["origin", "kcat", "codec", codec] for m in msgs)

    got = read_all(broker, topic, 2)
    assert [g.value.decode() for g in got[1]] == [line.split(":", 1)[1] for line in lines]


def test_kcat_reads_from_offset_and_count(broker):
    topic = unique_topic("kcat-offset")
    create_topic(broker, topic, 1)
    kcat(broker, "-P", "-t", topic, "-p", "0", stdin=("\n".join(f"line {i}" for i in range(100)) + "\n").encode())
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "40", "-c", "5", "-f", "%o %s\\n", "-q")
    assert out.decode().splitlines() == [f"{i} line {i}" for i in range(40, 45)]
