#!/usr/bin/env bash
# Transactional against non-transactional produce, read_committed against read_uncommitted
# consume, with Kafka's own ProducerPerformance and ConsumerPerformance, against Sluice and
# (optionally) the reference Kafka broker, alternating in one window. See docs/benchmarks.md,
# "Transactions: produce and read_committed consume".
#
#   bench/transactions.sh [--rounds N] [--records N] [--txn-records N] [--no-kafka]
#                         [--out FILE] [--run-timeout S]
#
# Each round starts a fresh Sluice ($SLUICE, default target/release/sluice; 6 partitions per
# auto-created topic, --metrics-listen on) and then a fresh Kafka (tests/reference/kafka start
# with num.partitions=6 and log.flush.interval.messages=1, i.e. fsync before acks=all answers,
# as in "Sluice against Apache Kafka"), and on each runs, 100-byte records, acks=all,
# --throughput -1:
#   a  idempotent, non-transactional      --records records into topic ta
#   b  --transaction-duration-ms 100      --records records into topic tb
#   c  --transaction-duration-ms 1        --txn-records records into topic tc (about 1,000
#      records per transaction here): records per transaction from the EndTxn requests in
#      Sluice's metrics; on both brokers, transaction markers = end offsets - records
#      (GetOffsetShell), one per partition a transaction wrote to)
#   then ConsumerPerformance over topic tb (--records committed records), isolation.level
#   read_uncommitted and read_committed, the order swapped every round.
# One tab-separated line per run goes to stdout and FILE (default target/transactions.tsv):
#   round broker variant records_per_s MB_per_s extra
# Every Java tool is bounded by --run-timeout seconds (default 90); a round takes 1-3 minutes.
set -euo pipefail

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
rounds=3 records=2000000 txn_records=500000 kafka=1 run_timeout=90
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/transactions.tsv"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --records) records="$2"; shift 2 ;;
        --txn-records) txn_records="$2"; shift 2 ;;
        --no-kafka) kafka=0; shift ;;
        --out) out="$2"; shift 2 ;;
        --run-timeout) run_timeout="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
    esac
done
sluice="${SLUICE:-$root/target/release/sluice}"
ref="$root/tests/reference/kafka"
cp="$("$ref" classpath)"
java_tool() { timeout "$run_timeout" java -cp "$cp" "$@"; }
mkdir -p "$(dirname "$out")"
work="$(mktemp -d "${BENCH_DATA_DIR:-/tmp}/txn-bench.XXXXXX")"
sluice_pid=""
kafka_dir=""
cleanup() {
    [[ -n "$sluice_pid" ]] && { kill -TERM "$sluice_pid" 2>/dev/null || true; wait "$sluice_pid" 2>/dev/null || true; }
    [[ -n "$kafka_dir" ]] && "$ref" stop --data-dir "$kafka_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

emit() { printf '%s\n' "$*" | tee -a "$out"; }

# ProducerPerformance's summary line: "N records sent, R records/sec (M MB/sec), ..."
produce() { # broker bootstrap variant topic count [extra args...]
    local broker="$1" bs="$2" variant="$3" topic="$4" n="$5"; shift 5
    local log="$work/$broker-$variant.log"
    java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$n" \
        --record-size 100 --throughput -1 \
        --producer-props bootstrap.servers="$bs" acks=all enable.idempotence=true "$@" >"$log" 2>&1 \
        || { echo "round $round $broker $variant: ProducerPerformance failed (log kept: $out.$round-$broker-$variant.log)" >&2
             cp "$log" "$out.$round-$broker-$variant.log"; }
    { grep -E "^$n records sent" "$log" || echo "failed failed"; } | tail -1 \
        | sed -E 's/^.* sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\).*$/\1 \2/'
}

end_offsets_sum() { # bootstrap topic
    java_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$1" --topic "$2" 2>/dev/null \
        | awk -F: '{s += $NF} END {print s + 0}'
}

consume() { # bootstrap isolation count -> "fetch.MB.sec fetch.nMsg.sec"
    local bs="$1" iso="$2" n="$3" conf="$work/consumer-$2.properties"
    printf 'isolation.level=%s\n' "$iso" >"$conf"
    java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" --topic tb \
        --num-records "$n" --group "g-$iso-$RANDOM$RANDOM" --command-config "$conf" --timeout 30000 \
        2>"$work/consume-$iso.err" | tail -1 | awk -F', *' '{print $9, $10}'
}

endtxn_count() { curl -s "http://$1/metrics" | awk '/^sluice_requests_total\{.*api="EndTxn"\}/ {s += $NF} END {print s + 0}'; }

run_broker() { # broker bootstrap [metrics]
    local broker="$1" bs="$2" metrics="${3:-}" r
    r="$(produce "$broker" "$bs" a ta "$records")"; emit "$round	$broker	a-idempotent	${r// /	}	"
    r="$(produce "$broker" "$bs" b tb "$records" --transactional-id "txb-$round" --transaction-duration-ms 100)"
    emit "$round	$broker	b-txn-100ms	${r// /	}	"
    local before=0 after=0
    [[ -n "$metrics" ]] && before="$(endtxn_count "$metrics")"
    r="$(produce "$broker" "$bs" c tc "$txn_records" --transactional-id "txc-$round" --transaction-duration-ms 1)"
    [[ -n "$metrics" ]] && after="$(endtxn_count "$metrics")"
    local markers=$(( $(end_offsets_sum "$bs" tc) - txn_records ))
    local extra="markers=$markers records_per_marker=$((txn_records / (markers > 0 ? markers : 1)))"
    [[ -n "$metrics" ]] && extra="$extra endtxn=$((after - before)) records_per_txn=$((txn_records / (after - before > 0 ? after - before : 1)))"
    emit "$round	$broker	c-txn-1ms	${r// /	}	$extra"
    local order=(read_uncommitted read_committed)
    (( round % 2 == 0 )) && order=(read_committed read_uncommitted)
    for iso in "${order[@]}"; do
        r="$(consume "$bs" "$iso" "$records")"; emit "$round	$broker	consume-$iso	${r##* }	${r%% *}	"
    done
}

emit "# $(date -u +%FT%TZ) commit $(git -C "$root" log -1 --format=%h) records=$records txn_records=$txn_records load: $(cut -d' ' -f1-3 /proc/loadavg)"
emit "# round	broker	variant	records/s	MB/s	extra"
for round in $(seq "$rounds"); do
    port=$((20000 + RANDOM % 20000)); mport=$((port + 1))
    mkdir -p "$work/sluice-$round"
    "$sluice" --listen "127.0.0.1:$port" --data-dir "$work/sluice-$round" --num-partitions 6 \
        --metrics-listen "127.0.0.1:$mport" >"$work/sluice-$round.log" 2>&1 &
    sluice_pid=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    run_broker sluice "127.0.0.1:$port" "127.0.0.1:$mport"
    kill -TERM "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true; sluice_pid=""
    rm -rf "$work/sluice-$round"
    if (( kafka )); then
        kafka_dir="$work/kafka-$round"
        bs="$("$ref" start --data-dir "$kafka_dir" --property num.partitions=6 \
            --property log.flush.interval.messages=1)"
        run_broker kafka "$bs"
        "$ref" stop --data-dir "$kafka_dir" >/dev/null; kafka_dir=""
        rm -rf "$work/kafka-$round"
    fi
    emit "# round $round done $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
