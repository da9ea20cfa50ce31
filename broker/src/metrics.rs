//! Prometheus metrics: per-shard counters and request latency histograms, rendered as the text
//! exposition format by a small HTTP server on `--metrics-listen`.
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics on memory no other thread
//! writes, so they are never contended); the metrics thread reads every shard's when scraped.
//! Storage figures (fsync latency, bytes appended) come from the engine's per-shard counters.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use crate::context::Shared;

/// API keys tracked: Kafka's keys are below this.
const API_KEY_COUNT: usize = 96;
/// Upper bounds of the latency buckets, in microseconds (the last bucket is +Inf).
const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const BUCKET_COUNT: usize = LATENCY_BOUNDS_US.len() + 1;

/// One shard's counters.
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    requests: Box<[AtomicU64]>,
    latency_sum_us: Box<[AtomicU64]>,
    /// `API_KEY_COUNT * BUCKET_COUNT` non-cumulative bucket counts.
    latency_buckets: Box<[AtomicU64]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    batches_in: AtomicU64,
    /// Partition record sets sent in Fetch responses (each one file range, sent zero-copy).
    record_sets_out: AtomicU64,
    connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    frames_rejected: AtomicU64,
}

fn counters(count: usize) -> Box<[AtomicU64]> {
    (0..count).map(|_| AtomicU64::new(0)).collect()
}

impl ShardMetrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: counters(API_KEY_COUNT),
            latency_sum_us: counters(API_KEY_COUNT),
            latency_buckets: counters(API_KEY_COUNT * BUCKET_COUNT),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            record_sets_out: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            frames_rejected: AtomicU64::new(0),
        }
    }

    /// Counts one answered request of `api_key` that took `latency`.
    pub(crate) fn record_request(&self, api_key: i16, latency: Duration) {
        let Ok(index) = usize::try_from(api_key) else { return };
        if index >= API_KEY_COUNT {
            return;
        }
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.iter().position(|bound| latency_us <= *bound).unwrap_or(BUCKET_COUNT - 1);
        self.requests[index].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us[index].fetch_add(latency_us, Ordering::Relaxed);
        self.latency_buckets[index * BUCKET_COUNT + bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts request bytes read.
    pub(crate) fn add_bytes_in(&self, size_bytes: u64) {
        self.bytes_in.fetch_add(size_bytes, Ordering::Relaxed);
    }

    /// Counts response bytes written.
    pub(crate) fn add_bytes_out(&self, size_bytes: u64) {
        self.bytes_out.fetch_add(size_bytes, Ordering::Relaxed);
    }

    /// Counts produced batches.
    pub(crate) fn add_batches_in(&self, count: u64) {
        self.batches_in.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts partition record sets sent in Fetch responses. Batches are not counted on the way
    /// out: the broker never reads the bytes it sends.
    pub(crate) fn add_record_sets_out(&self, count: u64) {
        self.record_sets_out.fetch_add(count, Ordering::Relaxed);
    }

    /// A connection was accepted and is being served.
    pub(crate) fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A served connection closed.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused at the connection limit.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed for a bad frame or request.
    pub(crate) fn frame_rejected(&self) {
        self.frames_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the RecordBatches in `records` by walking their length fields (no decoding).
pub(crate) fn batch_count(records: &[u8]) -> u64 {
    let mut count = 0;
    let mut position = 0usize;
    while let Some((_, length)) = sluice_engine::batch::peek_size(&records[position..]) {
        let Ok(length) = usize::try_from(length) else { break };
        position = position.saturating_add(sluice_engine::batch::LOG_OVERHEAD_BYTES + length);
        count += 1;
        if position >= records.len() {
            break;
        }
    }
    count
}

fn api_name(index: usize) -> String {
    i16::try_from(index)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| index.to_string(), |key| format!("{key:?}"))
}

fn render_requests(out: &mut String, shards: &[ShardMetrics]) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    out.push_str("# TYPE sluice_requests_total counter\n");
    for (shard, metrics) in shards.iter().enumerate() {
        for index in (0..API_KEY_COUNT).filter(|index| load(&metrics.requests[*index]) > 0) {
            let (api, count) = (api_name(index), load(&metrics.requests[index]));
            let _ = writeln!(out, "sluice_requests_total{{shard=\"{shard}\",api=\"{api}\"}} {count}");
        }
    }
    out.push_str("# TYPE sluice_request_latency_seconds histogram\n");
    for (shard, metrics) in shards.iter().enumerate() {
        for index in (0..API_KEY_COUNT).filter(|index| load(&metrics.requests[*index]) > 0) {
            let labels = format!("shard=\"{shard}\",api=\"{}\"", api_name(index));
            let mut cumulative = 0;
            for (bucket, bound) in LATENCY_BOUNDS_US.iter().map(Some).chain([None]).enumerate() {
                cumulative += load(&metrics.latency_buckets[index * BUCKET_COUNT + bucket]);
                let le = bound.map_or_else(|| "+Inf".to_owned(), |bound| format!("{}", *bound as f64 / 1e6));
                let _ = writeln!(out, "sluice_request_latency_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let sum_seconds = load(&metrics.latency_sum_us[index]) as f64 / 1e6;
            let _ = writeln!(out, "sluice_request_latency_seconds_sum{{{labels}}} {sum_seconds}");
            let _ = writeln!(out, "sluice_request_latency_seconds_count{{{labels}}} {cumulative}");
        }
    }
}

/// Picks one counter out of a shard's metrics.
type CounterOf = fn(&ShardMetrics) -> &AtomicU64;

/// Writes one metric family with a value per shard.
fn render_family(out: &mut String, name: &str, kind: &str, values: impl Iterator<Item = String>) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (shard, value) in values.enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
    }
}

/// Renders every shard's metrics in the Prometheus text format, one group per family.
pub(crate) fn render(shared: &Shared) -> String {
    let shards = &shared.metrics;
    let mut out = String::new();
    render_requests(&mut out, shards);
    let counters: [(&str, CounterOf); 7] = [
        ("sluice_bytes_in_total", |metrics| &metrics.bytes_in),
        ("sluice_bytes_out_total", |metrics| &metrics.bytes_out),
        ("sluice_batches_in_total", |metrics| &metrics.batches_in),
        ("sluice_fetch_record_sets_total", |metrics| &metrics.record_sets_out),
        ("sluice_connections_accepted_total", |metrics| &metrics.connections_accepted),
        ("sluice_connections_refused_total", |metrics| &metrics.connections_refused),
        ("sluice_frames_rejected_total", |metrics| &metrics.frames_rejected),
    ];
    for (name, counter) in counters {
        let values = shards.iter().map(|metrics| counter(metrics).load(Ordering::Relaxed).to_string());
        render_family(&mut out, name, "counter", values);
    }
    let open = shards.iter().map(|metrics| metrics.connections_open.load(Ordering::Relaxed).to_string());
    render_family(&mut out, "sluice_connections", "gauge", open);
    let mut partitions = vec![0u64; shards.len()];
    for topic in shared.engine.topics() {
        for shard in topic.partitions.values() {
            if let Some(count) = partitions.get_mut(usize::from(shard.0)) {
                *count += 1;
            }
        }
    }
    render_family(&mut out, "sluice_partitions", "gauge", partitions.iter().map(ToString::to_string));
    render_storage(&mut out, &shared.engine);
    render_controller(&mut out, shared);
    out
}

/// The controller quorum as this node sees it: the active controller (-1 while none is known)
/// and the Raft term, which counts elections.
fn render_controller(out: &mut String, shared: &Shared) {
    let Some(controller) = shared.metadata.controller() else { return };
    let status = controller.status();
    let active = status.leader.unwrap_or(-1);
    let _ = writeln!(out, "# TYPE sluice_controller_active_id gauge\nsluice_controller_active_id {active}");
    let _ = writeln!(out, "# TYPE sluice_controller_term gauge\nsluice_controller_term {}", status.term);
}

/// Writes the engine's per-shard storage counters: fsync latency histogram and bytes appended.
fn render_storage(out: &mut String, engine: &sluice_engine::Engine) {
    let stats: Vec<_> =
        (0..engine.shard_count()).filter_map(|shard| engine.storage_stats(sluice_engine::ShardId(shard))).collect();
    out.push_str("# TYPE sluice_fsync_latency_seconds histogram\n");
    for (shard, shard_stats) in stats.iter().enumerate() {
        let mut cumulative = 0;
        let bounds = sluice_engine::stats::FSYNC_LATENCY_BOUNDS_US.iter().map(Some).chain([None]);
        for (count, bound) in shard_stats.fsync_latency_buckets.iter().zip(bounds) {
            cumulative += count;
            let le = bound.map_or_else(|| "+Inf".to_owned(), |bound| format!("{}", *bound as f64 / 1e6));
            let _ = writeln!(out, "sluice_fsync_latency_seconds_bucket{{shard=\"{shard}\",le=\"{le}\"}} {cumulative}");
        }
        let sum_seconds = shard_stats.fsync_latency_us_sum as f64 / 1e6;
        let _ = writeln!(out, "sluice_fsync_latency_seconds_sum{{shard=\"{shard}\"}} {sum_seconds}");
        let _ = writeln!(out, "sluice_fsync_latency_seconds_count{{shard=\"{shard}\"}} {}", shard_stats.fsync_count);
    }
    let appended = stats.iter().map(|shard_stats| shard_stats.appended_bytes.to_string());
    render_family(out, "sluice_storage_appended_bytes_total", "counter", appended);
}

/// Serves `GET /metrics` (any path) on `listener` until the process exits, one scrape at a time.
/// With fault injection enabled, `/faults/` requests arm faults instead (see `crate::faults`).
pub(crate) fn serve(listener: &TcpListener, shared: &Shared) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(error) = answer_scrape(stream, shared) {
                    tracing::debug!(%error, "metrics scrape failed");
                }
            }
            Err(error) => tracing::warn!(%error, "metrics accept failed"),
        }
    }
}

fn answer_scrape(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    // Read the request head (up to 8 KiB); its content does not matter.
    let mut head = [0u8; 8192];
    let mut filled = 0;
    while filled < head.len() {
        let read = stream.read(&mut head[filled..])?;
        if read == 0 {
            break;
        }
        filled += read;
        if head[..filled].windows(4).any(|window| window == b"\r\n\r\n") {
            break;
        }
    }
    if let Some(faults) = &shared.faults
        && let Some(answer) = crate::faults::control(faults, &head[..filled], stream.peer_addr()?)
    {
        let reply = format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            answer.status,
            answer.body.len(),
            answer.body
        );
        return stream.write_all(reply.as_bytes());
    }
    let body = render(shared);
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let metrics = ShardMetrics::new();
        metrics.record_request(0, Duration::from_micros(300));
        assert_eq!(metrics.latency_buckets[2].load(Ordering::Relaxed), 1);
        assert_eq!(metrics.requests[0].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn batch_count_walks_length_fields() {
        let one = sluice_engine::batch::build_batch(&[b"a"], 1);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(batch_count(&two), 2);
        assert_eq!(batch_count(&[]), 0);
    }
}
