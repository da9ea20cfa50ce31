#!/usr/bin/env bash
# Produce and consume throughput over TLS against plaintext, on one Sluice broker with a
# PLAINTEXT and an SSL listener, with Kafka's own ProducerPerformance and ConsumerPerformance,
# alternating the listeners in one window. See docs/benchmarks.md, "TLS against plaintext".
#
#   bench/tls.sh [--rounds N] [--records N] [--record-size BYTES] [--out FILE]
#
# Makes a throw-away CA and broker certificate (openssl) in a temporary directory, starts
# $SLUICE (default target/release/sluice) with both listeners, and per round and listener (the
# order swapped every round) produces --records records (default 300000) of --record-size bytes
# (default 1024) into a fresh 4-partition topic with acks=1, then consumes them back. One
# tab-separated line per run goes to stdout and FILE (default target/tls.tsv):
#   round listener produce_records_per_s produce_MB_per_s produce_p99_ms consume_MB_per_s
# Each Java tool is bounded by 120 s.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
rounds=3 records=300000 record_size=1024
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/tls.tsv"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --records) records="$2"; shift 2 ;;
        --record-size) record_size="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 64 ;;
    esac
done
sluice="${SLUICE:-$root/target/release/sluice}"
cp="$("$root/tests/reference/kafka" classpath)"
mkdir -p "$(dirname "$out")"
work="$(mktemp -d "${BENCH_DATA_DIR:-/tmp}/tls-bench.XXXXXX")"
broker=""
cleanup() {
    [[ -n "$broker" ]] && { kill -TERM "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >broker.ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 2 \
    -extfile broker.ext 2>/dev/null
printf 'security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s/ca.pem\n' "$work" >ssl.properties
printf 'security.protocol=PLAINTEXT\n' >plaintext.properties

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
plain_port=$(free_port) ssl_port=$(free_port)
"$sluice" --data-dir "$work/data" --listeners "PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port" \
    --ssl-certificate broker.pem --ssl-key broker.key --num-partitions 4 >"$work/sluice.log" 2>&1 &
broker=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$ssl_port") 2>/dev/null && break; sleep 0.1; done

run() { # round listener port
    local topic="tls-$1-$2" produced consumed
    produced="$(timeout 120 java -cp "$cp" org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
        --num-records "$records" --record-size "$record_size" --throughput -1 \
        --producer-props "bootstrap.servers=127.0.0.1:$3" acks=1 linger.ms=5 batch.size=65536 \
        --producer.config "$work/$2.properties" 2>/dev/null | tail -1)"
    consumed="$(timeout 120 java -cp "$cp" org.apache.kafka.tools.ConsumerPerformance --topic "$topic" \
        --messages "$records" --bootstrap-server "127.0.0.1:$3" --command-config "$work/$2.properties" \
        --timeout 60000 2>/dev/null | tail -1)"
    # ProducerPerformance: "N records sent, R records/sec (M MB/sec), ... P99 ms 99th, ..."
    local rps mbps p99 cmbps
    rps="$(sed -E 's/.* records sent, ([0-9.]+) records\/sec.*/\1/' <<<"$produced")"
    mbps="$(sed -E 's/.*records\/sec \(([0-9.]+) MB\/sec\).*/\1/' <<<"$produced")"
    p99="$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$produced")"
    # ConsumerPerformance CSV: start, end, data.consumed.in.MB, MB.sec, ...
    cmbps="$(cut -d, -f4 <<<"$consumed" | tr -d ' ')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rps" "$mbps" "$p99" "$cmbps" | tee -a "$out"
}

for round in $(seq "$rounds"); do
    if (( round % 2 )); then order=(plaintext ssl); else order=(ssl plaintext); fi
    for listener in "${order[@]}"; do
        port=$plain_port; [[ "$listener" == ssl ]] && port=$ssl_port
        run "$round" "$listener" "$port"
    done
done
