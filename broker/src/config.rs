//! Broker configuration: built-in defaults, a TOML file (`--config`), `SLUICE_*` environment
//! variables and command-line flags, in increasing precedence. Resolved and validated once at
//! startup, then read-only and shared by every shard thread through an `Arc`.
//!
//! Broker settings that Kafka also has accept Kafka's names in the TOML file
//! (`num.partitions`, `auto.create.topics.enable`, `socket.request.max.bytes`, `max.connections`,
//! `node.id`); default topic configs always use Kafka's topic config names (`retention.ms`, ...).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use sluice_engine::TopicConfig;
use thiserror::Error;

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const REQUEST_SIZE_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;

/// Why the configuration was rejected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file does not parse.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// An address does not parse or resolve.
    #[error("{setting}: cannot resolve address {value:?}")]
    Address {
        /// The setting.
        setting: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A default topic config is unknown or invalid.
    #[error("default topic config {entry:?}: {source}")]
    TopicConfig {
        /// The rejected entry.
        entry: String,
        /// What is wrong.
        #[source]
        source: sluice_engine::ConfigError,
    },
    /// A value is out of range.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Command-line flags; each may also come from its `SLUICE_*` environment variable.
#[derive(Debug, Default, Parser)]
#[command(name = "sluice", version, about = "A Kafka-compatible broker")]
pub struct Args {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve the Kafka protocol on [default: 0.0.0.0:9092].
    #[arg(long, env = "SLUICE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address returned to clients in Metadata [default: the listen address].
    #[arg(long, env = "SLUICE_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (threads) [default: one per available core].
    #[arg(long, env = "SLUICE_SHARDS", value_name = "N")]
    pub shards: Option<u16>,
    /// Address of the Prometheus metrics endpoint [default: off].
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// This broker's node id [default: 1].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Create unknown topics when a client asks for their metadata [default: true].
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic, Kafka's `num.partitions` [default: 1].
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Default topic config with Kafka's name, e.g. `retention.ms=3600000`; repeatable.
    #[arg(long = "topic-config", env = "SLUICE_TOPIC_CONFIG", value_delimiter = ',', value_name = "NAME=VALUE")]
    pub topic_configs: Vec<String>,
    /// Largest request accepted, Kafka's `socket.request.max.bytes` [default: 104857600].
    #[arg(long, env = "SLUICE_MAX_REQUEST_SIZE_BYTES", value_name = "BYTES")]
    pub max_request_size_bytes: Option<u32>,
    /// Most client connections open at once [default: 10000].
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// Most requests one connection may have in flight [default: 32].
    #[arg(long, env = "SLUICE_MAX_IN_FLIGHT_REQUESTS", value_name = "N")]
    pub max_in_flight_requests: Option<u32>,
    /// Request bytes one connection may hold in flight [default: 134217728].
    #[arg(long, env = "SLUICE_CONNECTION_MEMORY_BYTES_MAX", value_name = "BYTES")]
    pub connection_memory_bytes_max: Option<u64>,
    /// Pin each shard thread to a core [default: true].
    #[arg(long, env = "SLUICE_PIN_SHARDS", value_name = "BOOL")]
    pub pin_shards: Option<bool>,
    /// How far ahead of acks=all appends a partition keeps its active segment written with
    /// synced zeros, so that each fsync writes data only; 0 turns it off [default: 2097152].
    #[arg(long, env = "SLUICE_PREALLOCATE_BYTES", value_name = "BYTES")]
    pub preallocate_bytes: Option<u64>,
    /// Start writeback of a partition's acks=0/1 appends every this many bytes, so dirty page
    /// cache never piles up until the kernel throttles every write; 0 leaves it to the kernel
    /// [default: 4194304].
    #[arg(long, env = "SLUICE_WRITEBACK_BYTES", value_name = "BYTES")]
    pub writeback_bytes: Option<u64>,
    /// Memory for the key map of one compaction pass; each shard runs one pass at a time, and
    /// a pass whose map fills cleans up to there and leaves the rest to the next [default:
    /// 134217728].
    #[arg(long, env = "SLUICE_COMPACTION_MAP_BYTES", value_name = "BYTES")]
    pub compaction_map_bytes: Option<u64>,
    /// How often each shard applies retention, time-based rolls and compaction, in ms, in
    /// steps of 100 ms [default: 30000].
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS", value_name = "MS")]
    pub retention_check_interval_ms: Option<u64>,
}

/// The TOML file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertise: Option<String>,
    #[serde(alias = "log.dirs", alias = "log.dir")]
    data_dir: Option<PathBuf>,
    shards: Option<u16>,
    metrics_listen: Option<String>,
    #[serde(alias = "node.id", alias = "broker.id")]
    node_id: Option<i32>,
    #[serde(alias = "auto.create.topics.enable")]
    auto_create_topics: Option<bool>,
    #[serde(alias = "num.partitions")]
    num_partitions: Option<i32>,
    #[serde(alias = "socket.request.max.bytes")]
    max_request_size_bytes: Option<u32>,
    #[serde(alias = "max.connections")]
    max_connections: Option<u32>,
    max_in_flight_requests: Option<u32>,
    connection_memory_bytes_max: Option<u64>,
    pin_shards: Option<bool>,
    preallocate_bytes: Option<u64>,
    writeback_bytes: Option<u64>,
    #[serde(alias = "log.cleaner.dedupe.buffer.size")]
    compaction_map_bytes: Option<u64>,
    #[serde(alias = "log.retention.check.interval.ms")]
    retention_check_interval_ms: Option<u64>,
    /// Default topic configs by Kafka name.
    #[serde(default)]
    topic_defaults: BTreeMap<String, toml::Value>,
}

/// Bounds on what clients may make the broker hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub request_size_bytes_max: u32,
    /// Most connections open at once, over all shards.
    pub connection_count_max: u32,
    /// Most requests read ahead of their responses on one connection.
    pub in_flight_requests_max: u32,
    /// Most request bytes held by one connection's in-flight requests (one request is always
    /// admitted, whatever its size, so a single large produce still makes progress).
    pub connection_memory_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_size_bytes_max: REQUEST_SIZE_BYTES_MAX_DEFAULT,
            connection_count_max: 10_000,
            in_flight_requests_max: 32,
            connection_memory_bytes_max: 128 * 1024 * 1024,
        }
    }
}

/// The resolved broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to serve the Kafka protocol. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// `HOST:PORT` (or `HOST`) returned in Metadata; `None` derives it from the listen address.
    pub advertise: Option<String>,
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// Shard count; `None` uses one per available core.
    pub shard_count: Option<u16>,
    /// Where to serve Prometheus metrics; `None` turns them off.
    pub metrics_listen: Option<SocketAddr>,
    /// This broker's node id.
    pub node_id: i32,
    /// Create unknown topics on Metadata requests that allow it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics requests that ask for the default.
    pub num_partitions: i32,
    /// Config of topics created without one; also what DescribeConfigs reports as defaults.
    pub default_topic_config: TopicConfig,
    /// Connection and request bounds.
    pub limits: Limits,
    /// Pin shard threads to cores.
    pub pin_shards: bool,
    /// Zero-filled space kept ahead of durable appends (`EngineConfig::preallocate_bytes`).
    pub preallocate_bytes: u64,
    /// Writeback step of non-durable appends (`EngineConfig::writeback_bytes`).
    pub writeback_bytes: u64,
    /// Key map memory of one compaction pass (`EngineConfig::compaction_map_bytes`).
    pub compaction_map_bytes: u64,
    /// Interval of retention, rolls and compaction (`EngineConfig::retention_check_interval_ms`).
    pub retention_check_interval_ms: u64,
    /// How long shutdown waits for in-flight requests before closing connections, in ms.
    pub shutdown_timeout_ms: u64,
    /// Where time comes from: the system clock, or a manual one in tests.
    pub clock: sluice_engine::clock::SharedClock,
}

impl BrokerConfig {
    /// Defaults, with the given data directory and listen address.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            data_dir: data_dir.into(),
            shard_count: None,
            metrics_listen: None,
            node_id: 1,
            auto_create_topics: true,
            num_partitions: 1,
            default_topic_config: TopicConfig::default(),
            limits: Limits::default(),
            pin_shards: true,
            preallocate_bytes: sluice_engine::config::PREALLOCATE_BYTES_DEFAULT,
            writeback_bytes: sluice_engine::config::WRITEBACK_BYTES_DEFAULT,
            compaction_map_bytes: sluice_engine::config::COMPACTION_MAP_BYTES_DEFAULT,
            retention_check_interval_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            clock: sluice_engine::clock::SystemClock::shared(),
        }
    }

    /// Resolves flags and environment (already merged in `args`) over the TOML file over defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable file, an unresolvable address, or a bad value.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let listen_text = args.listen.or(file.listen).unwrap_or_else(|| "0.0.0.0:9092".to_owned());
        let listen = resolve("listen", &listen_text)?;
        let metrics_listen = match args.metrics_listen.or(file.metrics_listen) {
            Some(text) => Some(resolve("metrics-listen", &text)?),
            None => None,
        };
        let mut config = Self::new(args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")), listen);
        config.advertise = args.advertise.or(file.advertise);
        config.shard_count = args.shards.or(file.shards);
        config.metrics_listen = metrics_listen;
        config.node_id = args.node_id.or(file.node_id).unwrap_or(config.node_id);
        config.auto_create_topics = args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true);
        config.num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        config.pin_shards = args.pin_shards.or(file.pin_shards).unwrap_or(true);
        config.preallocate_bytes =
            args.preallocate_bytes.or(file.preallocate_bytes).unwrap_or(config.preallocate_bytes);
        config.writeback_bytes = args.writeback_bytes.or(file.writeback_bytes).unwrap_or(config.writeback_bytes);
        config.compaction_map_bytes =
            args.compaction_map_bytes.or(file.compaction_map_bytes).unwrap_or(config.compaction_map_bytes);
        config.retention_check_interval_ms = args
            .retention_check_interval_ms
            .or(file.retention_check_interval_ms)
            .unwrap_or(config.retention_check_interval_ms);
        let limits = &mut config.limits;
        limits.request_size_bytes_max =
            args.max_request_size_bytes.or(file.max_request_size_bytes).unwrap_or(limits.request_size_bytes_max);
        limits.connection_count_max =
            args.max_connections.or(file.max_connections).unwrap_or(limits.connection_count_max);
        limits.in_flight_requests_max =
            args.max_in_flight_requests.or(file.max_in_flight_requests).unwrap_or(limits.in_flight_requests_max);
        limits.connection_memory_bytes_max = args
            .connection_memory_bytes_max
            .or(file.connection_memory_bytes_max)
            .unwrap_or(limits.connection_memory_bytes_max);
        for (name, value) in &file.topic_defaults {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            set_topic_default(&mut config.default_topic_config, name, &text)?;
        }
        for entry in &args.topic_configs {
            let (name, value) = entry.split_once('=').ok_or_else(|| ConfigError::Invalid {
                setting: "topic-config",
                reason: format!("{entry:?} is not NAME=VALUE"),
            })?;
            set_topic_default(&mut config.default_topic_config, name.trim(), value.trim())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value once, so the broker refuses to start rather than fail later.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| Err(ConfigError::Invalid { setting, reason: reason.to_owned() });
        if self.shard_count == Some(0) {
            return invalid("shards", "must be at least 1");
        }
        if self.num_partitions < 1 {
            return invalid("num-partitions", "must be at least 1");
        }
        // A frame must at least hold a request header: api key, version, correlation id.
        if self.limits.request_size_bytes_max < 8 || self.limits.request_size_bytes_max > i32::MAX as u32 {
            return invalid("max-request-size-bytes", "must be between 8 and 2147483647");
        }
        if self.limits.connection_count_max == 0 {
            return invalid("max-connections", "must be at least 1");
        }
        if self.limits.in_flight_requests_max == 0 {
            return invalid("max-in-flight-requests", "must be at least 1");
        }
        if self.advertise.as_ref().is_some_and(|advertise| advertise.trim().is_empty()) {
            return invalid("advertise", "must not be empty");
        }
        Ok(())
    }
}

fn load_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })
}

fn set_topic_default(config: &mut TopicConfig, name: &str, value: &str) -> Result<(), ConfigError> {
    config.set(name, value).map_err(|source| ConfigError::TopicConfig { entry: format!("{name}={value}"), source })
}

/// Resolves `HOST:PORT` to a socket address (the first the resolver returns).
fn resolve(setting: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    let unresolvable = || ConfigError::Address { setting, value: text.to_owned() };
    text.to_socket_addrs().map_err(|_unresolvable| unresolvable())?.next().ok_or_else(unresolvable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_gives_kafka_defaults() {
        let config = BrokerConfig::from_args(Args::default()).expect("defaults are valid");
        assert_eq!(config.listen, "0.0.0.0:9092".parse().expect("literal"));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.auto_create_topics);
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.limits.request_size_bytes_max, 100 * 1024 * 1024);
        assert_eq!(config.preallocate_bytes, sluice_engine::config::PREALLOCATE_BYTES_DEFAULT);
        assert_eq!(config.writeback_bytes, sluice_engine::config::WRITEBACK_BYTES_DEFAULT);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.toml");
        let text = "\"num.partitions\" = 3\nlisten = \"127.0.0.1:1\"\npreallocate_bytes = 0\nwriteback_bytes = 1024\n\"log.cleaner.dedupe.buffer.size\" = 4096\n\"log.retention.check.interval.ms\" = 500\n[topic_defaults]\n\"retention.ms\" = 5000\n";
        std::fs::write(&path, text).expect("write");
        let args = Args {
            config: Some(path),
            listen: Some("127.0.0.1:2".to_owned()),
            retention_check_interval_ms: Some(700),
            ..Args::default()
        };
        let config = BrokerConfig::from_args(args).expect("valid");
        assert_eq!(config.listen.port(), 2);
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.default_topic_config.retention_ms, 5000);
        assert_eq!(config.preallocate_bytes, 0, "from the file");
        assert_eq!(config.writeback_bytes, 1024, "from the file");
        assert_eq!(config.compaction_map_bytes, 4096, "from the file, under Kafka's name");
        assert_eq!(config.retention_check_interval_ms, 700, "the flag over the file");
    }

    #[test]
    fn unknown_topic_default_is_rejected() {
        let args = Args { topic_configs: vec!["no.such=1".to_owned()], ..Args::default() };
        assert!(matches!(BrokerConfig::from_args(args), Err(ConfigError::TopicConfig { .. })));
    }
}
