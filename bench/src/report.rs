//! Measurements: live counters for the progress line, per-thread statistics with HDR histograms,
//! and the final report (table and JSON).
//!
//! Each producer and consumer thread owns its histograms and returns them when it ends; the main
//! thread merges them with `Histogram::add` and reads percentiles from the merged histogram,
//! never averaging per-thread percentiles. `Live` holds relaxed atomics that threads bump once
//! per response and the main thread reads once per second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Bound, Config, compression_name};

/// Highest latency tracked: one hour in microseconds; larger values saturate.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("1..1h with 3 digits is a valid histogram")
}

/// Counters shared by all threads, for progress and stop decisions.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub records_sent: AtomicU64,
    pub records_acked: AtomicU64,
    pub records_failed: AtomicU64,
    pub records_consumed: AtomicU64,
    /// Largest record latency since the progress line last read it.
    pub interval_latency_us_max: AtomicU64,
    /// Set on the hard timeout or a fatal error: every thread stops.
    pub stop: AtomicBool,
    /// Set once every producer has finished: consumers drain, then stop.
    pub producers_done: AtomicBool,
}

impl Live {
    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What one producer connection measured.
#[derive(Debug)]
pub(crate) struct ProducerStats {
    /// Per record, from its scheduled (open loop) or enqueue (closed loop) time to the response.
    pub latency_us: Histogram<u64>,
    /// Per request, from writing it to its response.
    pub request_latency_us: Histogram<u64>,
    pub records_sent: u64,
    pub records_acked: u64,
    /// Acknowledged records scheduled after the warm-up.
    pub measured_records: u64,
    /// Time of the last measured acknowledgement (or send, with acks=0).
    pub measured_end_ns: u64,
    pub records_failed: u64,
    pub error_codes: BTreeMap<String, u64>,
    pub fatal: Option<String>,
}

impl ProducerStats {
    pub(crate) fn new() -> Self {
        Self {
            latency_us: latency_histogram(),
            request_latency_us: latency_histogram(),
            records_sent: 0,
            records_acked: 0,
            measured_records: 0,
            measured_end_ns: 0,
            records_failed: 0,
            error_codes: BTreeMap::new(),
            fatal: None,
        }
    }
}

/// What one consumer connection measured.
#[derive(Debug)]
pub(crate) struct ConsumerStats {
    /// Per record, from its scheduled time to its arrival in a fetch response.
    pub latency_us: Histogram<u64>,
    pub records_consumed: u64,
    pub fetch_errors: BTreeMap<String, u64>,
    pub fatal: Option<String>,
}

/// Percentiles of one merged histogram.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// Where and what was run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunInfo {
    pub tool: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
    pub host: String,
    pub started_at_unix_s: u64,
    pub produce_version: i16,
    pub fetch_version: Option<i16>,
    pub partitions: usize,
    pub producer_connections: usize,
    pub consumer_connections: usize,
    pub host_cpu: crate::host::HostCpu,
}

/// The final report; `--json` prints it as one line.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub run: RunInfo,
    pub config: Config,
    pub records_sent: u64,
    pub records_acked: u64,
    pub records_measured: u64,
    pub measured_sec: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub errors: u64,
    pub error_codes: BTreeMap<String, u64>,
    pub latency_us: Percentiles,
    pub request_latency_us: Percentiles,
    pub e2e_latency_us: Option<Percentiles>,
    pub records_consumed: Option<u64>,
    pub timed_out: bool,
    pub fatal: Vec<String>,
}

/// Inputs of [`Report::build`] besides the thread statistics.
pub(crate) struct Outcome {
    pub run: RunInfo,
    pub warmup_ns: u64,
    pub timed_out: bool,
}

impl Report {
    /// Merges thread statistics. MB are MiB of record values, as kafka-producer-perf-test counts.
    pub(crate) fn build(
        config: &Config,
        outcome: Outcome,
        producers: &[ProducerStats],
        consumers: Option<&[ConsumerStats]>,
    ) -> Self {
        let mut latency = latency_histogram();
        let mut request_latency = latency_histogram();
        let mut error_codes = BTreeMap::new();
        let mut fatal = Vec::new();
        for stats in producers {
            latency.add(&stats.latency_us).expect("histograms share bounds");
            request_latency.add(&stats.request_latency_us).expect("histograms share bounds");
            for (code, count) in &stats.error_codes {
                *error_codes.entry(code.clone()).or_insert(0) += count;
            }
            fatal.extend(stats.fatal.clone());
        }
        let measured_records: u64 = producers.iter().map(|stats| stats.measured_records).sum();
        let end_ns = producers.iter().map(|stats| stats.measured_end_ns).max().unwrap_or(0);
        let measured_sec = end_ns.saturating_sub(outcome.warmup_ns) as f64 / 1e9;
        let records_per_sec = if measured_sec > 0.0 { measured_records as f64 / measured_sec } else { 0.0 };
        let mb_per_sec = records_per_sec * config.record_size_bytes as f64 / (1024.0 * 1024.0);
        let (e2e_latency_us, records_consumed) = match consumers {
            Some(consumers) => {
                let mut e2e = latency_histogram();
                for stats in consumers {
                    e2e.add(&stats.latency_us).expect("histograms share bounds");
                    for (code, count) in &stats.fetch_errors {
                        *error_codes.entry(format!("fetch:{code}")).or_insert(0) += count;
                    }
                    fatal.extend(stats.fatal.clone());
                }
                (Some(Percentiles::of(&e2e)), Some(consumers.iter().map(|stats| stats.records_consumed).sum()))
            }
            None => (None, None),
        };
        Self {
            run: outcome.run,
            config: config.clone(),
            records_sent: producers.iter().map(|stats| stats.records_sent).sum(),
            records_acked: producers.iter().map(|stats| stats.records_acked).sum(),
            records_measured: measured_records,
            measured_sec: (measured_sec * 1000.0).round() / 1000.0,
            records_per_sec: records_per_sec.round(),
            mb_per_sec: (mb_per_sec * 100.0).round() / 100.0,
            errors: producers.iter().map(|stats| stats.records_failed).sum(),
            error_codes,
            latency_us: Percentiles::of(&latency),
            request_latency_us: Percentiles::of(&request_latency),
            e2e_latency_us,
            records_consumed,
            timed_out: outcome.timed_out,
            fatal,
        }
    }

    /// Human-readable summary.
    pub(crate) fn table(&self) -> String {
        let config = &self.config;
        let bound = match config.bound {
            Bound::Records(records) => format!("{records} records"),
            Bound::Duration(duration) => format!("{:.1}s", duration.as_secs_f64()),
        };
        let rate =
            config.rate_records_per_sec.map_or_else(|| "max (closed loop)".to_owned(), |rate| format!("{rate} rec/s"));
        let acks = if config.acks == -1 { "all".to_owned() } else { config.acks.to_string() };
        let mut lines = vec![
            format!(
                "produce-load {} ({}) on {}: {} -> {bound}, topic {} ({} partitions)",
                self.run.version,
                self.run.commit,
                self.run.host,
                config.bootstrap_server,
                config.topic,
                self.run.partitions
            ),
            format!(
                "  record {} B, batch {} B, linger {} ms, acks {acks}, {} connections x {} in flight, rate {rate}, \
                 compression {}, produce v{}",
                config.record_size_bytes,
                config.batch_size_bytes,
                config.linger_ms,
                self.run.producer_connections,
                config.max_in_flight,
                compression_name(config.compression),
                self.run.produce_version,
            ),
            format!(
                "  throughput       {:.0} records/s  {:.2} MB/s  ({} records measured over {:.3}s after {:.1}s warm-up)",
                self.records_per_sec,
                self.mb_per_sec,
                self.records_measured,
                self.measured_sec,
                config.warmup.as_secs_f64()
            ),
        ];
        let mut counts = format!("  sent {}  acked {}  errors {}", self.records_sent, self.records_acked, self.errors);
        for (code, count) in &self.error_codes {
            counts = format!("{counts}  {code}={count}");
        }
        lines.push(counts);
        if config.acks == 0 {
            lines.push("  latency          none: acks=0 requests get no response".to_owned());
        } else {
            lines.push(percentile_line("latency (us)", &self.latency_us));
            lines.push(percentile_line("request (us)", &self.request_latency_us));
        }
        if let Some(e2e) = &self.e2e_latency_us {
            lines.push(percentile_line("end-to-end (us)", e2e));
            lines.push(format!("  consumed {}", self.records_consumed.unwrap_or(0)));
        }
        if self.timed_out {
            lines.push("  TIMED OUT: the run hit --timeout; figures cover what finished".to_owned());
        }
        lines.push(host_line(&self.run.host_cpu));
        lines.extend(self.fatal.iter().map(|fatal| format!("  FAILED: {fatal}")));
        lines.push(String::new());
        lines.join("\n")
    }
}

fn host_line(host: &crate::host::HostCpu) -> String {
    let load = host.load_avg_1m_at_start.map_or_else(String::new, |load| format!("; load {load:.2} at start"));
    match host.over_run {
        Some(share) => format!(
            "  host CPU         busy {:.1}%  steal {:.1}%  iowait {:.1}%  idle {:.1}% of {} CPUs over the run{load}",
            share.busy_pct, share.steal_pct, share.iowait_pct, share.idle_pct, host.cpus
        ),
        None => format!("  host CPU         not available ({} CPUs){load}", host.cpus),
    }
}

fn percentile_line(name: &str, percentiles: &Percentiles) -> String {
    format!(
        "  {name:<16} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        percentiles.p50, percentiles.p90, percentiles.p99, percentiles.p999, percentiles.max, percentiles.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_percentiles_come_from_the_merged_histogram() {
        // One connection saw 99 fast records, another one slow record: the merged p99 is fast,
        // the max is slow. Averaging per-connection p99s would report about 5 ms instead.
        let mut fast = ProducerStats::new();
        fast.latency_us.record_n(100, 99).expect("in range");
        let mut slow = ProducerStats::new();
        slow.latency_us.record(10_000).expect("in range");
        let mut merged = latency_histogram();
        merged.add(&fast.latency_us).expect("same bounds");
        merged.add(&slow.latency_us).expect("same bounds");
        let percentiles = Percentiles::of(&merged);
        assert_eq!(percentiles.count, 100);
        assert_eq!(percentiles.p50, 100);
        assert_eq!(percentiles.p99, 100);
        assert!(percentiles.max >= 10_000);
    }
}
