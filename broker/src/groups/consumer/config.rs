//! Settings of the consumer group protocol, with Kafka's broker config names (`group.consumer.*`),
//! defaults and bounds.
//!
//! The integrator builds one [`ConsumerGroupConfig`] at startup, checks it with
//! [`ConsumerGroupConfig::validate`] (refusing to start otherwise, as Kafka does), and passes it
//! to every operation. Read-only; any thread may read it.

use super::assignor::ServerAssignor;

/// Settings of the consumer group protocol (Kafka's `group.consumer.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms` (Kafka: 45000): a member that sends no heartbeat for
    /// this long is removed.
    pub(crate) session_timeout_ms: i32,
    /// `group.consumer.min.session.timeout.ms` (Kafka: 45000).
    pub(crate) session_timeout_ms_min: i32,
    /// `group.consumer.max.session.timeout.ms` (Kafka: 60000).
    pub(crate) session_timeout_ms_max: i32,
    /// `group.consumer.heartbeat.interval.ms` (Kafka: 5000): how often members heartbeat.
    pub(crate) heartbeat_interval_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms` (Kafka: 5000).
    pub(crate) heartbeat_interval_ms_min: i32,
    /// `group.consumer.max.heartbeat.interval.ms` (Kafka: 15000).
    pub(crate) heartbeat_interval_ms_max: i32,
    /// `group.consumer.max.size` (Kafka: `i32::MAX`): members beyond it are refused with
    /// GROUP_MAX_SIZE_REACHED.
    pub(crate) group_size_max: i32,
    /// `group.consumer.assignors` (Kafka: uniform, range): the server assignors members may ask
    /// for; the first is the default.
    pub(crate) assignors: Vec<ServerAssignor>,
    /// `group.consumer.migration.policy` (Kafka: bidirectional): whether a classic group may be
    /// upgraded to a consumer group online, and a consumer group downgraded back.
    pub(crate) migration_policy: MigrationPolicy,
}

/// `group.consumer.migration.policy`: which online conversions between a classic group and a
/// consumer group are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MigrationPolicy {
    /// Both ways.
    Bidirectional,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Neither.
    Disabled,
}

impl MigrationPolicy {
    /// The policy a config value names (case-insensitive, as Kafka parses it).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bidirectional" => Some(Self::Bidirectional),
            "upgrade" => Some(Self::Upgrade),
            "downgrade" => Some(Self::Downgrade),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }

    /// Whether a classic group may become a consumer group.
    pub(crate) fn upgrade_enabled(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Upgrade)
    }

    /// Whether a consumer group may become a classic group.
    pub(crate) fn downgrade_enabled(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Downgrade)
    }
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            session_timeout_ms_min: 45_000,
            session_timeout_ms_max: 60_000,
            heartbeat_interval_ms: 5_000,
            heartbeat_interval_ms_min: 5_000,
            heartbeat_interval_ms_max: 15_000,
            group_size_max: i32::MAX,
            assignors: vec![ServerAssignor::Uniform, ServerAssignor::Range],
            migration_policy: MigrationPolicy::Bidirectional,
        }
    }
}

/// A setting out of its bounds (Kafka refuses to start with the same checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// A value must be at least 1.
    #[error("{name} must be positive, got {value}")]
    NotPositive {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: i32,
    },
    /// A value is outside its configured bounds.
    #[error("{name} = {value} is outside [{min}, {max}]")]
    OutOfBounds {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: i32,
        /// The lower bound.
        min: i32,
        /// The upper bound.
        max: i32,
    },
    /// The heartbeat interval must be shorter than the session timeout.
    #[error(
        "group.consumer.heartbeat.interval.ms ({heartbeat_interval_ms}) must be less than group.consumer.session.timeout.ms ({session_timeout_ms})"
    )]
    HeartbeatNotBelowSession {
        /// The heartbeat interval.
        heartbeat_interval_ms: i32,
        /// The session timeout.
        session_timeout_ms: i32,
    },
    /// `group.consumer.assignors` is empty.
    #[error("group.consumer.assignors must name at least one assignor")]
    NoAssignor,
}

impl ConsumerGroupConfig {
    /// Checks the settings as Kafka's `GroupCoordinatorConfig` does.
    ///
    /// # Errors
    /// The first setting out of its bounds.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("group.consumer.session.timeout.ms", self.session_timeout_ms),
            ("group.consumer.min.session.timeout.ms", self.session_timeout_ms_min),
            ("group.consumer.max.session.timeout.ms", self.session_timeout_ms_max),
            ("group.consumer.heartbeat.interval.ms", self.heartbeat_interval_ms),
            ("group.consumer.min.heartbeat.interval.ms", self.heartbeat_interval_ms_min),
            ("group.consumer.max.heartbeat.interval.ms", self.heartbeat_interval_ms_max),
            ("group.consumer.max.size", self.group_size_max),
        ];
        for (name, value) in positive {
            if value < 1 {
                return Err(ConfigError::NotPositive { name, value });
            }
        }
        let bounded = [
            (
                "group.consumer.max.heartbeat.interval.ms",
                self.heartbeat_interval_ms_max,
                self.heartbeat_interval_ms_min,
                i32::MAX,
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.heartbeat_interval_ms,
                self.heartbeat_interval_ms_min,
                self.heartbeat_interval_ms_max,
            ),
            (
                "group.consumer.max.session.timeout.ms",
                self.session_timeout_ms_max,
                self.session_timeout_ms_min,
                i32::MAX,
            ),
            (
                "group.consumer.session.timeout.ms",
                self.session_timeout_ms,
                self.session_timeout_ms_min,
                self.session_timeout_ms_max,
            ),
        ];
        for (name, value, min, max) in bounded {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfBounds { name, value, min, max });
            }
        }
        if self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err(ConfigError::HeartbeatNotBelowSession {
                heartbeat_interval_ms: self.heartbeat_interval_ms,
                session_timeout_ms: self.session_timeout_ms,
            });
        }
        if self.assignors.is_empty() {
            return Err(ConfigError::NoAssignor);
        }
        Ok(())
    }

    /// The assignor used when no member names one: the first configured.
    pub(crate) fn default_assignor(&self) -> ServerAssignor {
        self.assignors.first().copied().unwrap_or(ServerAssignor::Uniform)
    }

    /// The configured assignor called `name`, if any.
    pub(crate) fn assignor(&self, name: &str) -> Option<ServerAssignor> {
        self.assignors.iter().copied().find(|assignor| assignor.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_defaults_are_valid() {
        let config = ConsumerGroupConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.default_assignor(), ServerAssignor::Uniform);
        assert_eq!(config.assignor("range"), Some(ServerAssignor::Range));
        assert_eq!(config.assignor("sticky"), None);
    }

    #[test]
    fn session_timeout_below_its_minimum_is_refused() {
        let config = ConsumerGroupConfig { session_timeout_ms: 10_000, ..ConsumerGroupConfig::default() };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfBounds { name: "group.consumer.session.timeout.ms", .. })
        ));
    }

    #[test]
    fn heartbeat_interval_must_be_below_session_timeout() {
        let config = ConsumerGroupConfig {
            session_timeout_ms: 6_000,
            session_timeout_ms_min: 1_000,
            heartbeat_interval_ms: 6_000,
            heartbeat_interval_ms_max: 10_000,
            ..ConsumerGroupConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::HeartbeatNotBelowSession { .. })));
    }

    #[test]
    fn no_assignor_is_refused() {
        let config = ConsumerGroupConfig { assignors: Vec::new(), ..ConsumerGroupConfig::default() };
        assert_eq!(config.validate(), Err(ConfigError::NoAssignor));
    }
}
