//! Command-line flags and their validation into a [`Config`] every thread reads.
//!
//! Main thread only; the resulting `Config` is immutable and shared by reference.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use sluice_client::batch::Compression;

/// Kafka-protocol load generator: produces to any Kafka-compatible broker and reports
/// throughput and latency percentiles from HDR histograms merged across connections.
#[derive(Debug, Parser)]
#[command(name = "produce-load", version)]
pub(crate) struct Args {
    /// Broker to bootstrap from (`host:port`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Topic to produce to.
    #[arg(long, default_value = "produce-load")]
    pub topic: String,
    /// Partitions of the topic; it is created with this many if missing.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor for a created topic (-1: broker default).
    #[arg(long, default_value_t = -1)]
    pub replication_factor: i16,
    /// Value size of each record in bytes (keys are null).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Total records to produce (including warm-up); the run ends when all are acknowledged.
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Measured run time after the warm-up, e.g. `30s`, `500ms`, `2m` (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up time whose records are produced but not measured.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Target size of one batch in bytes (Kafka's batch.size).
    #[arg(long, default_value_t = 16_384)]
    pub batch_size: usize,
    /// How long a partial batch may wait for more records (Kafka's linger.ms; open loop only).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Producer connections, one thread pair each; partitions are spread over them.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Produce requests in flight per connection (Kafka's max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Largest produce request in bytes (Kafka's max.request.size).
    #[arg(long, default_value_t = 1_048_576)]
    pub max_request_size: usize,
    /// Target records/s over all connections: open loop on a fixed schedule, latency counted
    /// from each record's scheduled time. Without it the run is closed loop (as fast as the
    /// broker acknowledges).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: Compression,
    /// End-to-end mode: this many consumers fetch what is produced and measure
    /// produce-to-consume latency (needs --record-size of at least 12 bytes).
    #[arg(long, default_value_t = 0)]
    pub consumers: usize,
    /// Hard limit for the whole run; by default warm-up + duration + 60s, or 600s with --records.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Per-request timeout (also the produce request's timeout_ms).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,
    /// Seed for the payload bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Client id sent to the broker.
    #[arg(long, default_value = "produce-load")]
    pub client_id: String,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// How the run ends.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Bound {
    /// After this many records in total.
    Records(u64),
    /// After warm-up plus this long.
    Duration(#[serde(serialize_with = "serialize_duration")] Duration),
}

/// The validated run configuration, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Config {
    pub bootstrap_server: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub record_size_bytes: usize,
    pub bound: Bound,
    #[serde(serialize_with = "serialize_duration")]
    pub warmup: Duration,
    pub batch_size_bytes: usize,
    pub linger_ms: u64,
    pub acks: i16,
    pub connections: usize,
    pub max_in_flight: usize,
    pub max_request_size_bytes: usize,
    pub rate_records_per_sec: Option<f64>,
    #[serde(serialize_with = "serialize_compression")]
    pub compression: Compression,
    pub consumers: usize,
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub request_timeout: Duration,
    pub seed: u64,
    pub client_id: String,
}

/// Bytes of the end-to-end stamp at the start of each value: run id (u32) + scheduled time (u64).
pub(crate) const STAMP_SIZE_BYTES: usize = 12;

impl Config {
    /// Validates flags.
    ///
    /// # Errors
    /// A message naming the offending flag.
    pub(crate) fn from_args(args: Args) -> anyhow::Result<Self> {
        if args.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if args.connections < 1 || args.max_in_flight < 1 {
            bail!("--connections and --max-in-flight must be at least 1");
        }
        if args.consumers > 0 && args.record_size < STAMP_SIZE_BYTES {
            bail!("--consumers needs --record-size of at least {STAMP_SIZE_BYTES} bytes for the latency stamp");
        }
        if args.consumers > 0 && args.acks == 0 {
            bail!("--consumers needs --acks 1 or all, to know when every record has been consumed");
        }
        if args.rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
            bail!("--rate must be a positive number of records per second");
        }
        if args.records == Some(0) {
            bail!("--records must be at least 1");
        }
        let bound = match (args.records, args.duration) {
            (Some(records), _) => Bound::Records(records),
            (None, duration) => Bound::Duration(duration.unwrap_or(Duration::from_secs(10))),
        };
        let timeout = args.timeout.unwrap_or(match bound {
            Bound::Records(_) => Duration::from_mins(10),
            Bound::Duration(duration) => args.warmup + duration + Duration::from_mins(1),
        });
        i32::try_from(args.request_timeout.as_millis()).context("--request-timeout is too long")?;
        Ok(Self {
            bootstrap_server: args.bootstrap_server,
            topic: args.topic,
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            record_size_bytes: args.record_size,
            bound,
            warmup: args.warmup,
            batch_size_bytes: args.batch_size,
            linger_ms: args.linger_ms,
            acks: args.acks,
            connections: args.connections,
            max_in_flight: args.max_in_flight,
            max_request_size_bytes: args.max_request_size,
            rate_records_per_sec: args.rate,
            compression: args.compression,
            consumers: args.consumers,
            timeout,
            request_timeout: args.request_timeout,
            seed: args.seed,
            client_id: args.client_id,
        })
    }
}

/// Parses `250ms`, `10s`, `2m`, `1h` or a bare number of seconds (fractions allowed).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().map_err(|error| format!("bad duration {text:?}: {error}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "us" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("bad duration {text:?}: {error}"))
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
    }
}

fn parse_compression(text: &str) -> Result<Compression, String> {
    match text {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!("compression must be none, gzip, snappy, lz4 or zstd, not {other:?}")),
    }
}

/// The Kafka name of a codec.
pub(crate) fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's serialize_with passes a reference")]
fn serialize_compression<S: serde::Serializer>(compression: &Compression, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(compression_name(*compression))
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's serialize_with passes a reference")]
fn serialize_duration<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn consumers_need_room_for_the_stamp() {
        let args = Args::parse_from(["produce-load", "--consumers", "1", "--record-size", "8"]);
        assert!(Config::from_args(args).is_err());
    }

    #[test]
    fn defaults_are_a_ten_second_closed_loop() {
        let config = Config::from_args(Args::parse_from(["produce-load"])).expect("defaults are valid");
        assert!(matches!(config.bound, Bound::Duration(duration) if duration == Duration::from_secs(10)));
        assert_eq!(config.acks, -1);
        assert!(config.rate_records_per_sec.is_none());
        assert_eq!(config.timeout, Duration::from_secs(70));
    }
}
