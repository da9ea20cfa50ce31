#!/usr/bin/env bash
# Time from a consumer joining a group to a stable assignment, classic protocol against KIP-848's
# consumer protocol, on Sluice and (optionally) the reference Kafka broker, alternating in one
# window. See docs/benchmarks.md, "Consumer groups: joining, classic against consumer protocol".
#
#   bench/group-join.sh [--rounds N] [--members N] [--partitions N] [--heartbeat-ms MS]
#                       [--no-kafka] [--out FILE]
#
# Each round starts a fresh Sluice ($SLUICE, default target/release/sluice) and a fresh Kafka
# (tests/reference/kafka start), and on each runs bench/group-join/GroupJoinLatency.java once
# per protocol (the order swapped every round): members join one at a time (default 6) to a
# topic of --partitions partitions (default 12). --heartbeat-ms sets both protocols' heartbeat
# interval (classic: the client's heartbeat.interval.ms; consumer: the broker's
# group.consumer.heartbeat.interval.ms and its minimum); by default each keeps its own default
# (3 s and 5 s). One tab-separated line per join goes to stdout
# and FILE (default target/group-join.tsv): round broker protocol members ms. Each run is bounded
# by 300 s.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
rounds=3 members=6 partitions=12 kafka=1 heartbeat_ms=
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/group-join.tsv"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --members) members="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --heartbeat-ms) heartbeat_ms="$2"; shift 2 ;;
        --no-kafka) kafka=0; shift ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
    esac
done
sluice="${SLUICE:-$root/target/release/sluice}"
ref="$root/tests/reference/kafka"
cp="$("$ref" classpath)"
program="$root/bench/group-join/GroupJoinLatency.java"
mkdir -p "$(dirname "$out")"
work="$(mktemp -d "${BENCH_DATA_DIR:-/tmp}/group-join.XXXXXX")"
sluice_pid="" kafka_dir="" kafka_properties=()
cleanup() {
    [[ -n "$sluice_pid" ]] && { kill -TERM "$sluice_pid" 2>/dev/null || true; wait "$sluice_pid" 2>/dev/null || true; }
    [[ -n "$kafka_dir" ]] && "$ref" stop --data-dir "$kafka_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

measure() { # round broker bootstrap
    local protocols=(classic consumer) protocol
    (( $1 % 2 == 0 )) && protocols=(consumer classic)
    for protocol in "${protocols[@]}"; do
        timeout 300 java -cp "$cp" "$program" "$3" "$protocol" "$members" "$partitions" $heartbeat_ms 2>>"$work/java.log" \
            | grep -E $'^(classic|consumer)\t[0-9]+\t[0-9]+$' \
            | while IFS=$'\t' read -r proto count ms; do
                printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$proto" "$count" "$ms" | tee -a "$out"
            done
    done
}

for round in $(seq "$rounds"); do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if [[ -n "$heartbeat_ms" ]]; then
        export SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS="$heartbeat_ms" SLUICE_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS="$heartbeat_ms"
        kafka_properties=(--property "group.consumer.heartbeat.interval.ms=$heartbeat_ms"
            --property "group.consumer.min.heartbeat.interval.ms=$heartbeat_ms")
    fi
    "$sluice" --listen "127.0.0.1:$port" --data-dir "$work/sluice-$round" >"$work/sluice-$round.log" 2>&1 &
    sluice_pid=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    measure "$round" sluice "127.0.0.1:$port"
    kill -TERM "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true; sluice_pid=""
    if (( kafka )); then
        kafka_dir="$work/kafka-$round"
        bootstrap="$("$ref" start --data-dir "$kafka_dir" ${kafka_properties[@]+"${kafka_properties[@]}"})"
        measure "$round" kafka "$bootstrap"
        "$ref" stop --data-dir "$kafka_dir" >/dev/null; kafka_dir=""
    fi
done
