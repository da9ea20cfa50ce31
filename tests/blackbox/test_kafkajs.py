"""kafkajs: records it produces with every codec read back exactly, and its admin calls work.

Goal: a third client implementation (Node.js, no librdkafka) interoperates with the broker for
produce (acks=1 and acks=all, every codec) and topic administration.

Method: pytest writes the records to a JSON file and runs tests/js/driver.js with node; the
driver produces them with kafkajs and prints each record's acknowledged partition and offset.
confluent-kafka then reads every partition back with assign() and compares bytes, headers,
timestamps and order. kafkajs consumers need consumer groups, so kafkajs does not consume here.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clients import (CODECS, assert_dense, assert_matches, create_topic, make_records, now_ms, read_all, unique_topic,
                     watermarks)

JS_DIR = Path(__file__).resolve().parents[1] / "js"
PARTITIONS = 4
RECORDS_PER_CASE = 2_000


def run_driver(tmp_path: Path, command: str, request: dict, timeout_s: float = 150) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run ./tests/run setup"
    req_file = tmp_path / f"{command}-request.json"
    req_file.write_text(json.dumps(request))
    proc = subprocess.run([node, str(JS_DIR / "driver.js"), command, str(req_file)], capture_output=True,
                          timeout=timeout_s, cwd=JS_DIR)
    assert proc.returncode == 0, f"driver {command} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return json.loads(proc.stdout)


def b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


@pytest.mark.parametrize("acks", [1, -1])
@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_records_read_back_exactly_at_acknowledged_offsets(broker, tmp_path, codec, acks):
    topic = unique_topic(f"js-{codec}-acks{acks}")
    create_topic(broker, topic, PARTITIONS)
    records = make_records(RECORDS_PER_CASE, f"js-{codec}-{acks}", now_ms() - 600_000, null_headers=False)
    for rec in records:
        rec.partition = rec.seq % PARTITIONS
    answer = run_driver(tmp_path, "produce", {
        "brokers": [broker.bootstrap], "topic": topic, "acks": acks, "codec": codec,
        "records": [{"key": b64(r.key), "value": b64(r.value), "timestamp": r.timestamp_ms,
                     "partition": r.partition, "headers": [[k, b64(v)] for k, v in r.headers]} for r in records],
    })
    for rec, result in zip(records, answer["results"], strict=True):
        assert result["partition"] == rec.partition
        rec.offset = result["offset"]

    marks = watermarks(broker, topic, list(range(PARTITIONS)))
    assert marks == {p: (0, RECORDS_PER_CASE // PARTITIONS) for p in range(PARTITIONS)}
    got = read_all(broker, topic, PARTITIONS)
    assert_dense(got, marks)
    assert_matches(records, got)


def test_kafkajs_admin_creates_describes_grows_and_deletes_a_topic(broker, tmp_path):
    topic = unique_topic("js-admin")
    answer = run_driver(tmp_path, "admin", {"brokers": [broker.bootstrap], "topic": topic, "partitions": 8,
                                            "grownPartitions": 10})
    assert answer["created"] is True
    assert answer["createdAgain"] is False, "creating an existing topic should report it was not created"
    assert answer["listed"] is True
    assert answer["partitions"] == list(range(8))
    assert sorted((o["partition"], o["low"], o["high"]) for o in answer["offsets"]) == \
        [(p, "0", "0") for p in range(8)]
    assert answer["grown"] == 10
    assert answer["retention"] == "3600000"
    assert answer["listedAfterDelete"] is False
