//! Engine and topic configuration: every limit in one place, validated at startup.
//!
//! Topic configs use Kafka's names (`segment.bytes`, `retention.ms`, ...) so that a broker can
//! pass them through unchanged. Values are plain data, shared between threads by clone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::io::FaultInjector;

/// How the batch timestamp is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// What retention does with old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupPolicy {
    /// Delete whole segments past `retention.ms` / `retention.bytes`.
    pub delete: bool,
    /// Keep only the last record per key.
    pub compact: bool,
}

/// A rejected config entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Not a topic config this engine knows.
    #[error("unknown topic config {name}")]
    UnknownName {
        /// The config name.
        name: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for topic config {name}")]
    InvalidValue {
        /// The config name.
        name: String,
        /// The rejected value.
        value: String,
    },
}

/// Per-topic configuration, with Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `segment.bytes`: roll the active segment past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment after this age.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments older than this; -1 keeps them forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments past this partition size; -1 is unbounded.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many records even for non-durable appends.
    pub flush_messages: i64,
    /// `flush.ms`: fsync at least this often even for non-durable appends.
    pub flush_ms: i64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: u32,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `index.interval.bytes`: bytes of log between sparse index entries.
    pub index_interval_bytes: u32,
    /// Other Kafka topic configs, stored and reported but not acted on.
    pub other: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            timestamp_type: TimestampType::CreateTime,
            max_message_bytes: 1_048_588,
            cleanup_policy: CleanupPolicy { delete: true, compact: false },
            index_interval_bytes: 4096,
            other: BTreeMap::new(),
        }
    }
}

/// Kafka topic configs that are stored verbatim in [`TopicConfig::other`] and reported. Most are
/// accepted and not acted on; compaction reads `delete.retention.ms`,
/// `min.cleanable.dirty.ratio`, `min.compaction.lag.ms` and `max.compaction.lag.ms` from there.
const PASSTHROUGH_NAMES: &[&str] = &[
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "segment.index.bytes",
    "segment.jitter.ms",
    "unclean.leader.election.enable",
];

fn parse_i64(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(parsed) if parsed >= min => Ok(parsed),
        _ => Err(ConfigError::InvalidValue { name: name.to_owned(), value: value.to_owned() }),
    }
}

impl TopicConfig {
    /// Sets one config by its Kafka name.
    ///
    /// # Errors
    /// `UnknownName` for a name Kafka does not define for topics, `InvalidValue` for a bad value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = || ConfigError::InvalidValue { name: name.to_owned(), value: value.to_owned() };
        match name {
            "segment.bytes" => self.segment_bytes = parse_i64(name, value, 14)? as u64,
            "segment.ms" => self.segment_ms = parse_i64(name, value, 1)?,
            "retention.ms" => self.retention_ms = parse_i64(name, value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_i64(name, value, -1)?,
            "flush.messages" => self.flush_messages = parse_i64(name, value, 1)?,
            "flush.ms" => self.flush_ms = parse_i64(name, value, 0)?,
            "max.message.bytes" => {
                self.max_message_bytes = u32::try_from(parse_i64(name, value, 0)?).map_err(|_| invalid())?;
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = u32::try_from(parse_i64(name, value, 0)?).map_err(|_| invalid())?;
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid()),
                };
            }
            "cleanup.policy" => {
                let mut policy = CleanupPolicy { delete: false, compact: false };
                for part in value.split(',').map(str::trim) {
                    match part {
                        "delete" => policy.delete = true,
                        "compact" => policy.compact = true,
                        _ => return Err(invalid()),
                    }
                }
                if !policy.delete && !policy.compact {
                    return Err(invalid());
                }
                self.cleanup_policy = policy;
            }
            "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => {
                    self.other.insert(name.to_owned(), value.to_owned());
                }
                _ => return Err(invalid()),
            },
            "delete.retention.ms" | "min.compaction.lag.ms" | "max.compaction.lag.ms" => {
                parse_i64(name, value, i64::from(name == "max.compaction.lag.ms"))?;
                self.other.insert(name.to_owned(), value.to_owned());
            }
            _ if PASSTHROUGH_NAMES.contains(&name) => {
                self.other.insert(name.to_owned(), value.to_owned());
            }
            _ => return Err(ConfigError::UnknownName { name: name.to_owned() }),
        }
        Ok(())
    }

    /// Resets one config to its default (Kafka's `DELETE` operation of IncrementalAlterConfigs).
    ///
    /// # Errors
    /// `UnknownName` for a name that is not a topic config.
    pub fn reset(&mut self, name: &str, defaults: &TopicConfig) -> Result<(), ConfigError> {
        if PASSTHROUGH_NAMES.contains(&name) {
            self.other.remove(name);
            return Ok(());
        }
        let default_value = defaults
            .entries()
            .into_iter()
            .find(|(entry_name, _)| entry_name == name)
            .map(|(_, value)| value)
            .ok_or_else(|| ConfigError::UnknownName { name: name.to_owned() })?;
        self.set(name, &default_value)
    }

    /// Every config this engine acts on, by Kafka name, with its value as Kafka prints it,
    /// followed by the stored pass-through configs.
    pub fn entries(&self) -> Vec<(String, String)> {
        let policy = match (self.cleanup_policy.delete, self.cleanup_policy.compact) {
            (true, true) => "compact,delete",
            (false, true) => "compact",
            _ => "delete",
        };
        let timestamp_type = match self.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let mut entries = vec![
            ("cleanup.policy".to_owned(), policy.to_owned()),
            ("flush.messages".to_owned(), self.flush_messages.to_string()),
            ("flush.ms".to_owned(), self.flush_ms.to_string()),
            ("index.interval.bytes".to_owned(), self.index_interval_bytes.to_string()),
            ("max.message.bytes".to_owned(), self.max_message_bytes.to_string()),
            ("message.timestamp.type".to_owned(), timestamp_type.to_owned()),
            ("retention.bytes".to_owned(), self.retention_bytes.to_string()),
            ("retention.ms".to_owned(), self.retention_ms.to_string()),
            ("segment.bytes".to_owned(), self.segment_bytes.to_string()),
            ("segment.ms".to_owned(), self.segment_ms.to_string()),
        ];
        entries.extend(self.other.iter().map(|(name, value)| (name.clone(), value.clone())));
        entries
    }

    /// Whether `name` is a topic config Kafka defines.
    pub fn is_known_name(name: &str) -> bool {
        PASSTHROUGH_NAMES.contains(&name) || TopicConfig::default().entries().iter().any(|(known, _)| known == name)
    }
}

/// The default of [`EngineConfig::preallocate_bytes`]: 2 MiB.
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 2 << 20;

/// The default of [`EngineConfig::writeback_bytes`]: 4 MiB.
pub const WRITEBACK_BYTES_DEFAULT: u64 = 4 << 20;

/// The default of [`EngineConfig::compaction_map_bytes`]: 128 MiB, Kafka's
/// `log.cleaner.dedupe.buffer.size`.
pub const COMPACTION_MAP_BYTES_DEFAULT: u64 = 128 << 20;

/// The default of [`EngineConfig::producer_id_expiration_ms`]: one day, Kafka's
/// `producer.id.expiration.ms`.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;

/// Everything needed to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory holding one folder per partition plus the engine's metadata.
    pub data_dir: PathBuf,
    /// Number of shard threads; `None` uses the cores available to the process.
    pub shard_count: Option<u16>,
    /// Pin each shard thread to one core.
    pub pin_shards: bool,
    /// Depth of each shard's inbound mailbox (jobs waiting before senders wait).
    pub mailbox_depth: usize,
    /// io_uring submission queue entries per shard.
    pub ring_entries: u32,
    /// Config applied to topics created without one.
    pub default_topic_config: TopicConfig,
    /// How often each shard checks retention and time-based rolls, in milliseconds.
    pub retention_check_interval_ms: u64,
    /// How far ahead of durable appends a partition keeps its active segment written with
    /// synced zeros, so that the fdatasync of an acks=all append writes data only, not the
    /// file's size and block allocation. Zero turns it off. Partitions taking only non-durable
    /// appends never preallocate.
    pub preallocate_bytes: u64,
    /// Start writeback of a partition's non-durable appends every time this many bytes have
    /// been written since the last start, so that dirty page cache never piles up until the
    /// kernel throttles every writer at once. Zero leaves writeback to the kernel alone.
    pub writeback_bytes: u64,
    /// Memory for the key map of one compaction pass (each shard runs at most one pass at a
    /// time). A pass maps the keys of the log's dirty part until the map is full and cleans up
    /// to there; the next pass goes on from that point.
    pub compaction_map_bytes: u64,
    /// How long a partition remembers a producer with no open transaction after its last batch
    /// (Kafka's `producer.id.expiration.ms`); checked at each retention check.
    pub producer_id_expiration_ms: i64,
    /// Faults to inject into storage I/O (tests only; `None` in production).
    pub faults: Option<Arc<FaultInjector>>,
    /// Where time comes from: the system clock, or a manual one in tests.
    pub clock: crate::clock::SharedClock,
}

impl EngineConfig {
    /// A config with defaults and the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            shard_count: None,
            pin_shards: true,
            mailbox_depth: 4096,
            ring_entries: 1024,
            default_topic_config: TopicConfig::default(),
            retention_check_interval_ms: 30_000,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
            writeback_bytes: WRITEBACK_BYTES_DEFAULT,
            compaction_map_bytes: COMPACTION_MAP_BYTES_DEFAULT,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            faults: None,
            clock: crate::clock::SystemClock::shared(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parses_kafka_names() {
        let mut config = TopicConfig::default();
        config.set("retention.ms", "1000").expect("valid");
        config.set("cleanup.policy", "compact,delete").expect("valid");
        config.set("compression.type", "zstd").expect("passthrough");
        assert_eq!(config.retention_ms, 1000);
        assert!(config.cleanup_policy.compact && config.cleanup_policy.delete);
        assert!(config.entries().iter().any(|(name, value)| name == "compression.type" && value == "zstd"));
    }

    #[test]
    fn unknown_and_invalid_values_are_rejected() {
        let mut config = TopicConfig::default();
        assert!(matches!(config.set("no.such", "1"), Err(ConfigError::UnknownName { .. })));
        assert!(matches!(config.set("segment.bytes", "abc"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(config.set("retention.ms", "-5"), Err(ConfigError::InvalidValue { .. })));
        for ratio in ["1.5", "-0.1", "half"] {
            assert!(matches!(config.set("min.cleanable.dirty.ratio", ratio), Err(ConfigError::InvalidValue { .. })));
        }
        assert!(matches!(config.set("delete.retention.ms", "-1"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(config.set("min.compaction.lag.ms", "-1"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(config.set("max.compaction.lag.ms", "0"), Err(ConfigError::InvalidValue { .. })));
        config.set("min.compaction.lag.ms", "0").expect("no lag");
        config.set("min.cleanable.dirty.ratio", "0.25").expect("a ratio in 0..=1");
        assert!(config.entries().iter().any(|(name, value)| name == "min.cleanable.dirty.ratio" && value == "0.25"));
    }

    #[test]
    fn reset_restores_default() {
        let defaults = TopicConfig::default();
        let mut config = TopicConfig::default();
        config.set("retention.ms", "5").expect("valid");
        config.reset("retention.ms", &defaults).expect("known");
        assert_eq!(config.retention_ms, defaults.retention_ms);
    }
}
