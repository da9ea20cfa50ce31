#!/usr/bin/env python3
"""Third-party cross-check for produce-load: a librdkafka producer (confluent-kafka) configured
like produce-load's closed loop, measuring acknowledged records/s over a fixed duration.

Configured as produce-load runs by default: batch.size 16 KiB, linger.ms 5, no compression,
5 requests in flight per connection, null keys, records spread stickily over the partitions.
The topic is created with --partitions if missing.

Python's per-record overhead (one produce() call per record) can be the limit, not the broker:
the report prints this process's CPU time beside the rate, so a run near one full core says the
client was the bottleneck. Values are pre-built so the loop only calls produce() and poll().

Usage (tests/.venv from `./tests/run setup` has confluent-kafka):
    tests/.venv/bin/python bench/rdkafka_produce.py --bootstrap-server 127.0.0.1:9092 \
        --topic xcheck --partitions 4 --record-size 100 --acks 1 --duration 10
Prints one line of text and, with --json, one JSON object as the last line.
"""

import argparse
import json
import os
import random
import string
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-server", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="rdkafka-produce")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--record-size", type=int, default=100)
    parser.add_argument("--acks", choices=["0", "1", "all"], default="all")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds produced but not measured")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--max-in-flight", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def ensure_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1)])
    for future in futures.values():
        try:
            future.result(timeout=10)
        except KafkaException as error:
            if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                raise


def main():
    args = parse_args()
    ensure_topic(args.bootstrap_server, args.topic, args.partitions)
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap_server,
            "acks": args.acks,
            "batch.size": args.batch_size,
            "linger.ms": args.linger_ms,
            "compression.type": "none",
            "max.in.flight.requests.per.connection": args.max_in_flight,
            "enable.idempotence": False,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "sticky.partitioning.linger.ms": args.linger_ms,
        }
    )
    rng = random.Random(1)
    alphabet = (string.ascii_letters + string.digits).encode()
    # A pool of distinct values, built once; the loop only indexes into it.
    values = [bytes(rng.choice(alphabet) for _ in range(args.record_size)) for _ in range(64)]
    acked = [0]
    errors = [0]

    def on_delivery(error, _message):
        if error is None:
            acked[0] += 1
        else:
            errors[0] += 1

    produce = producer.produce
    poll = producer.poll
    topic = args.topic
    started = time.monotonic()
    measure_from = started + args.warmup
    deadline = measure_from + args.duration
    acked_at_start = None
    cpu_at_start = None
    index = 0
    while True:
        now = time.monotonic()
        if acked_at_start is None and now >= measure_from:
            acked_at_start = acked[0]
            cpu_at_start = os.times()
        if now >= deadline:
            break
        for _ in range(1000):
            try:
                produce(topic, values[index & 63], on_delivery=on_delivery)
            except BufferError:
                poll(0.001)
            index += 1
        poll(0)
    acked_measured = acked[0] - acked_at_start
    cpu_end = os.times()
    elapsed = time.monotonic() - measure_from
    producer.flush(30)
    cpu_seconds = (cpu_end.user - cpu_at_start.user) + (cpu_end.system - cpu_at_start.system)
    records_per_sec = acked_measured / elapsed
    report = {
        "tool": "rdkafka_produce.py",
        "librdkafka": producer_version(),
        "partitions": args.partitions,
        "record_size_bytes": args.record_size,
        "acks": args.acks,
        "measured_sec": round(elapsed, 3),
        "records_per_sec": round(records_per_sec, 1),
        "mb_per_sec": round(records_per_sec * args.record_size / (1 << 20), 2),
        "errors": errors[0],
        "client_cpu_cores": round(cpu_seconds / elapsed, 2),
    }
    print(
        f"{report['records_per_sec']:.0f} records/s, {report['mb_per_sec']} MiB/s, "
        f"{errors[0]} errors, client CPU {report['client_cpu_cores']} cores"
    )
    if args.json:
        print(json.dumps(report))
    return 1 if errors[0] else 0


def producer_version():
    from confluent_kafka import libversion

    return libversion()[0]


if __name__ == "__main__":
    sys.exit(main())
