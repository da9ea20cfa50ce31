//! The group coordinator's settings, with Kafka's names and (mostly) Kafka's defaults.
//!
//! They come from `SLUICE_*` environment variables named after Kafka's broker configs
//! (`group.initial.rebalance.delay.ms` is `SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS`), read once
//! per process. A value that does not parse or is out of range is refused with an error log and
//! the default used instead, so that a typo cannot leave the broker without a coordinator.
//! Read-only after the first use; any thread may read them.

use std::sync::OnceLock;

/// Settings of the group coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members. Kafka's default is 3000 ms, tuned for many brokers and slow starts; a
    /// single broker gathers members in well under 100 ms, and tests and clients wait less.
    pub(crate) initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`. Kafka's default is 6000; 1000 lets fast failure
    /// detection be configured on one machine while still refusing nonsense values.
    pub(crate) session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms` (Kafka: 1800000).
    pub(crate) session_timeout_ms_max: i32,
    /// `offsets.retention.minutes` as milliseconds (Kafka: 7 days).
    pub(crate) offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (Kafka: 600000).
    pub(crate) offsets_retention_check_interval_ms: i64,
    /// `offsets.topic.num.partitions`, used only when the topic is first created (Kafka: 50).
    pub(crate) offsets_topic_partition_count: i32,
    /// `offsets.topic.replication.factor`, capped at the brokers registered when the topic is
    /// created (Kafka: 3).
    pub(crate) offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes` (Kafka: 100 MiB).
    pub(crate) offsets_topic_segment_bytes: u64,
    /// `offset.metadata.max.bytes` (Kafka: 4096).
    pub(crate) offset_metadata_bytes_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 100,
            session_timeout_ms_min: 1000,
            session_timeout_ms_max: 1_800_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_partition_count: 50,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offset_metadata_bytes_max: 4096,
        }
    }
}

impl GroupConfig {
    /// The process-wide settings, read from the environment on first use.
    pub(crate) fn global() -> Self {
        static CONFIG: OnceLock<GroupConfig> = OnceLock::new();
        *CONFIG.get_or_init(|| Self::from_lookup(|name| std::env::var(name).ok()))
    }

    /// Settings from a variable lookup (the environment, or a map in tests).
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut config = Self::default();
        let read = |name: &str, min: i64, max: i64, default: i64| -> i64 {
            let Some(text) = lookup(name) else { return default };
            match text.trim().parse::<i64>() {
                Ok(value) if (min..=max).contains(&value) => value,
                _ => {
                    tracing::error!(setting = name, value = %text, min, max, "invalid group setting, using the default");
                    default
                }
            }
        };
        config.initial_rebalance_delay_ms =
            read("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", 0, 3_600_000, config.initial_rebalance_delay_ms);
        config.session_timeout_ms_min = read(
            "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS",
            1,
            i64::from(i32::MAX),
            i64::from(config.session_timeout_ms_min),
        ) as i32;
        config.session_timeout_ms_max = read(
            "SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS",
            i64::from(config.session_timeout_ms_min),
            i64::from(i32::MAX),
            i64::from(config.session_timeout_ms_max),
        ) as i32;
        let retention_minutes =
            read("SLUICE_OFFSETS_RETENTION_MINUTES", 1, i64::from(i32::MAX), config.offsets_retention_ms / 60_000);
        config.offsets_retention_ms = retention_minutes * 60_000;
        config.offsets_retention_check_interval_ms = read(
            "SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
            1,
            i64::from(i32::MAX),
            config.offsets_retention_check_interval_ms,
        );
        config.offsets_topic_partition_count =
            read("SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS", 1, 10_000, i64::from(config.offsets_topic_partition_count))
                as i32;
        config.offsets_topic_replication_factor = read(
            "SLUICE_OFFSETS_TOPIC_REPLICATION_FACTOR",
            1,
            i64::from(i16::MAX),
            i64::from(config.offsets_topic_replication_factor),
        ) as i16;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_variables() {
        assert_eq!(GroupConfig::from_lookup(|_| None), GroupConfig::default());
    }

    #[test]
    fn variables_override_and_bad_values_keep_defaults() {
        let config = GroupConfig::from_lookup(|name| match name {
            "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS" => Some("0".to_owned()),
            "SLUICE_OFFSETS_RETENTION_MINUTES" => Some("2".to_owned()),
            "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS" => Some("not a number".to_owned()),
            _ => None,
        });
        assert_eq!(config.initial_rebalance_delay_ms, 0);
        assert_eq!(config.offsets_retention_ms, 120_000);
        assert_eq!(config.session_timeout_ms_min, GroupConfig::default().session_timeout_ms_min);
    }
}
