//! The consumer group protocol's settings (Kafka's `group.consumer.*` broker configs), read like
//! the classic coordinator's (`config.rs`): from `SLUICE_*` environment variables named after
//! Kafka's configs (`group.consumer.session.timeout.ms` is
//! `SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS`), once per process. A value that does not parse,
//! or a set of values Kafka would refuse to start with (see `ConsumerGroupConfig::validate`), is
//! logged and Kafka's defaults are used instead, so that a typo cannot leave the broker without a
//! coordinator. Read-only after the first use; any thread may read them.

use std::sync::OnceLock;

use super::consumer::{ConsumerGroupConfig, MigrationPolicy, ServerAssignor};

/// The process-wide settings, read from the environment on first use.
pub(crate) fn global() -> ConsumerGroupConfig {
    static CONFIG: OnceLock<ConsumerGroupConfig> = OnceLock::new();
    CONFIG.get_or_init(|| from_lookup(|name| std::env::var(name).ok())).clone()
}

/// Settings from a variable lookup (the environment, or a map in tests).
fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ConsumerGroupConfig {
    let defaults = ConsumerGroupConfig::default();
    let mut config = defaults.clone();
    let read = |name: &str, default: i32| -> i32 {
        let Some(text) = lookup(name) else { return default };
        text.trim().parse().unwrap_or_else(|_| {
            tracing::error!(setting = name, value = %text, "invalid consumer group setting, using the default");
            default
        })
    };
    config.session_timeout_ms = read("SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS", defaults.session_timeout_ms);
    config.session_timeout_ms_min =
        read("SLUICE_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", defaults.session_timeout_ms_min);
    config.session_timeout_ms_max =
        read("SLUICE_GROUP_CONSUMER_MAX_SESSION_TIMEOUT_MS", defaults.session_timeout_ms_max);
    config.heartbeat_interval_ms = read("SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", defaults.heartbeat_interval_ms);
    config.heartbeat_interval_ms_min =
        read("SLUICE_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS", defaults.heartbeat_interval_ms_min);
    config.heartbeat_interval_ms_max =
        read("SLUICE_GROUP_CONSUMER_MAX_HEARTBEAT_INTERVAL_MS", defaults.heartbeat_interval_ms_max);
    config.group_size_max = read("SLUICE_GROUP_CONSUMER_MAX_SIZE", defaults.group_size_max);
    if let Some(text) = lookup("SLUICE_GROUP_CONSUMER_ASSIGNORS") {
        let assignors: Option<Vec<ServerAssignor>> =
            text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(ServerAssignor::from_name).collect();
        if let Some(assignors) = assignors {
            config.assignors = assignors;
        } else {
            tracing::error!(value = %text, "unknown group.consumer.assignors, using the default");
        }
    }
    if let Some(text) = lookup("SLUICE_GROUP_CONSUMER_MIGRATION_POLICY") {
        if let Some(policy) = MigrationPolicy::from_name(&text) {
            config.migration_policy = policy;
        } else {
            tracing::error!(value = %text, "unknown group.consumer.migration.policy, using the default");
        }
    }
    match config.validate() {
        Ok(()) => config,
        Err(error) => {
            tracing::error!(%error, "invalid consumer group settings, using Kafka's defaults");
            defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_variables() {
        assert_eq!(from_lookup(|_| None), ConsumerGroupConfig::default());
    }

    #[test]
    fn variables_override_within_bounds_and_a_refused_set_keeps_the_defaults() {
        let config = from_lookup(|name| match name {
            "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS" => Some("7000".to_owned()),
            "SLUICE_GROUP_CONSUMER_ASSIGNORS" => Some("range, uniform".to_owned()),
            _ => None,
        });
        assert_eq!(config.heartbeat_interval_ms, 7000);
        assert_eq!(config.migration_policy, MigrationPolicy::Bidirectional, "Kafka's default");
        assert_eq!(config.default_assignor(), ServerAssignor::Range);
        let refused =
            from_lookup(|name| (name == "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS").then(|| "6000".to_owned()));
        assert_eq!(refused, ConsumerGroupConfig::default(), "6000 is below group.consumer.min.session.timeout.ms");
    }

    #[test]
    fn the_migration_policy_is_read_case_insensitively_and_an_unknown_one_keeps_the_default() {
        let policy = |text: &'static str| {
            from_lookup(|name| (name == "SLUICE_GROUP_CONSUMER_MIGRATION_POLICY").then(|| text.to_owned()))
                .migration_policy
        };
        assert_eq!(policy("UPGRADE"), MigrationPolicy::Upgrade);
        assert_eq!(policy("disabled"), MigrationPolicy::Disabled);
        assert!(!policy("downgrade").upgrade_enabled());
        assert_eq!(policy("sideways"), MigrationPolicy::Bidirectional);
    }
}
