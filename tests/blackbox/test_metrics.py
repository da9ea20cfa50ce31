"""The Prometheus endpoint serves well-formed metrics that move with traffic.

Goal: `--metrics-listen` serves the text exposition format over HTTP, and the per-shard
counters of bytes in and out, batches in and fetched record sets grow with what a client
produced and fetched.

Method: scrape http://127.0.0.1:PORT/metrics with urllib before and after producing and reading
about 2 MB with confluent-kafka, parse every sample line, and compare the summed counters.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from clients import confluent_producer, create_topic, make_records, now_ms, produce, read_all, unique_topic

pytestmark = pytest.mark.sluice_only("Sluice's Prometheus endpoint (--metrics-listen)")

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$")


def scrape(broker) -> dict[str, float]:
    """Sum of every sample per metric name (over shards and other labels)."""
    with urllib.request.urlopen(broker.metrics_url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get("Content-Type", "").startswith("text/plain"), resp.headers.get("Content-Type")
        text = resp.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
    return sums


def test_metrics_endpoint_serves_prometheus_text(broker):
    sums = scrape(broker)
    assert sums, "no samples"
    assert any(name.startswith("sluice_") for name in sums), sorted(sums)


def test_byte_and_batch_counters_grow_with_traffic(broker):
    topic = unique_topic("metrics")
    create_topic(broker, topic, 2)
    before = scrape(broker)
    records = make_records(20_000, "metrics", now_ms(), value_size=100)
    produce(confluent_producer(broker, acks="all"), topic, records)
    read_all(broker, topic, 2)
    after = scrape(broker)
    produced_bytes = sum(len(r.value or b"") for r in records)
    grew = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert grew.get("sluice_bytes_in_total", 0) >= produced_bytes, grew
    assert grew.get("sluice_bytes_out_total", 0) >= produced_bytes, grew
    assert grew.get("sluice_batches_in_total", 0) >= 1, grew
    assert grew.get("sluice_fetch_record_sets_total", 0) >= 1, grew
