//! Per-group configs of the consumer group protocol: Kafka's GROUP config resource (type 32),
//! set with IncrementalAlterConfigs and read with DescribeConfigs, stored in the metadata so
//! that whichever broker coordinates the group applies them.
//!
//! Kafka 4.x knows `consumer.*`, `share.*` and `streams.*` group configs; Sluice has consumer
//! groups only, so it accepts the two that shape them, `consumer.session.timeout.ms` and
//! `consumer.heartbeat.interval.ms`, and refuses the others as unknown. A value must lie within
//! the broker's `group.consumer.{min,max}.*` bounds and the session timeout must stay above the
//! heartbeat interval, counting the broker default for a config the group does not set; the
//! refusals carry Kafka's `GroupConfig` messages. A config not set falls back to the broker's
//! `group.consumer.*` value, and a change applies from the group's members' next heartbeats.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::consumer::ConsumerGroupConfig;
use crate::metadata::Refusal;
use crate::metadata::config_change::{ConfigOperation, OPERATION_DELETE, OPERATION_SET};

/// Kafka's config resource type of a group.
pub(crate) const RESOURCE_TYPE_GROUP: i8 = 32;

/// `consumer.session.timeout.ms`.
pub(crate) const SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
/// `consumer.heartbeat.interval.ms`.
pub(crate) const HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";

/// The group configs served, in the order DescribeConfigs lists them.
pub(crate) const NAMES: [&str; 2] = [SESSION_TIMEOUT, HEARTBEAT_INTERVAL];

/// The configs one group sets, by name (values as given, already validated).
pub(crate) type GroupConfigs = BTreeMap<String, String>;

/// Every group's configs, as the metadata image holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupConfigsImage {
    groups: BTreeMap<String, GroupConfigs>,
}

impl GroupConfigsImage {
    /// The configs `group` sets (empty when none).
    pub(crate) fn get(&self, group: &str) -> Option<&GroupConfigs> {
        self.groups.get(group)
    }

    /// Replaces `group`'s configs; an empty set removes the group's entry.
    pub(crate) fn set(&mut self, group: &str, configs: &GroupConfigs) {
        if configs.is_empty() {
            self.groups.remove(group);
        } else {
            self.groups.insert(group.to_owned(), configs.clone());
        }
    }
}

/// `group`'s configs after `operations` (SET and DELETE only, as Kafka allows for groups),
/// checked against the broker's bounds in `defaults`.
///
/// # Errors
/// INVALID_CONFIG with Kafka's message: an unknown name, a value that is not an int, APPEND or
/// SUBTRACT, a value out of bounds, a session timeout not above the heartbeat interval.
pub(crate) fn apply(
    current: Option<&GroupConfigs>,
    operations: &[ConfigOperation],
    defaults: &ConsumerGroupConfig,
) -> Result<GroupConfigs, Refusal> {
    let mut configs = current.cloned().unwrap_or_default();
    for operation in operations {
        if !NAMES.contains(&operation.name.as_str()) {
            return Err(invalid(format!("Unknown group config name: {}", operation.name)));
        }
        match operation.operation {
            OPERATION_SET => {
                let value = operation.value.clone().unwrap_or_default();
                parse_int(&operation.name, &value)?;
                configs.insert(operation.name.clone(), value.trim().to_owned());
            }
            OPERATION_DELETE => {
                configs.remove(&operation.name);
            }
            _ => {
                return Err(invalid(format!("Config value append is not allowed for config key: {}", operation.name)));
            }
        }
    }
    validate(&effective(defaults, Some(&configs)), defaults)?;
    Ok(configs)
}

/// The consumer group settings of a group: the broker's, with the group's own configs over them.
pub(crate) fn effective(defaults: &ConsumerGroupConfig, configs: Option<&GroupConfigs>) -> ConsumerGroupConfig {
    let mut config = defaults.clone();
    let Some(configs) = configs else { return config };
    let value = |name: &str| configs.get(name).and_then(|text| text.trim().parse::<i32>().ok());
    if let Some(session_timeout_ms) = value(SESSION_TIMEOUT) {
        config.session_timeout_ms = session_timeout_ms;
    }
    if let Some(heartbeat_interval_ms) = value(HEARTBEAT_INTERVAL) {
        config.heartbeat_interval_ms = heartbeat_interval_ms;
    }
    config
}

/// One config as DescribeConfigs reports it: name, value, and whether the group sets it
/// (Kafka's GROUP_CONFIG source) or it is the broker's (DEFAULT_CONFIG).
pub(crate) fn describe(
    defaults: &ConsumerGroupConfig,
    configs: Option<&GroupConfigs>,
) -> Vec<(&'static str, String, bool)> {
    let config = effective(defaults, configs);
    let set = |name: &str| configs.is_some_and(|configs| configs.contains_key(name));
    vec![
        (SESSION_TIMEOUT, config.session_timeout_ms.to_string(), set(SESSION_TIMEOUT)),
        (HEARTBEAT_INTERVAL, config.heartbeat_interval_ms.to_string(), set(HEARTBEAT_INTERVAL)),
    ]
}

/// Kafka's `GroupConfig.validateValues` for the consumer configs.
fn validate(config: &ConsumerGroupConfig, bounds: &ConsumerGroupConfig) -> Result<(), Refusal> {
    if config.heartbeat_interval_ms < bounds.heartbeat_interval_ms_min {
        return Err(invalid(format!(
            "{HEARTBEAT_INTERVAL} must be greater than or equal to group.consumer.min.heartbeat.interval.ms"
        )));
    }
    if config.heartbeat_interval_ms > bounds.heartbeat_interval_ms_max {
        return Err(invalid(format!(
            "{HEARTBEAT_INTERVAL} must be less than or equal to group.consumer.max.heartbeat.interval.ms"
        )));
    }
    if config.session_timeout_ms < bounds.session_timeout_ms_min {
        return Err(invalid(format!(
            "{SESSION_TIMEOUT} must be greater than or equal to group.consumer.min.session.timeout.ms"
        )));
    }
    if config.session_timeout_ms > bounds.session_timeout_ms_max {
        return Err(invalid(format!(
            "{SESSION_TIMEOUT} must be less than or equal to group.consumer.max.session.timeout.ms"
        )));
    }
    if config.session_timeout_ms <= config.heartbeat_interval_ms {
        return Err(invalid(format!("{SESSION_TIMEOUT} must be greater than {HEARTBEAT_INTERVAL}")));
    }
    Ok(())
}

fn parse_int(name: &str, value: &str) -> Result<i32, Refusal> {
    value
        .trim()
        .parse::<i32>()
        .map_err(|_| invalid(format!("Invalid value {value} for configuration {name}: Not a number of type INT")))
}

fn invalid(message: String) -> Refusal {
    Refusal::new(ResponseError::InvalidConfig, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> ConfigOperation {
        ConfigOperation { name: name.to_owned(), operation: OPERATION_SET, value: Some(value.to_owned()) }
    }

    fn refusal(result: Result<GroupConfigs, Refusal>) -> String {
        let refusal = result.expect_err("refused");
        assert_eq!(refusal.error, ResponseError::InvalidConfig);
        refusal.message
    }

    #[test]
    fn values_within_the_broker_bounds_are_kept_and_take_effect() {
        let defaults = ConsumerGroupConfig::default();
        let configs =
            apply(None, &[set(SESSION_TIMEOUT, "50000"), set(HEARTBEAT_INTERVAL, "6000")], &defaults).expect("valid");
        let config = effective(&defaults, Some(&configs));
        assert_eq!((config.session_timeout_ms, config.heartbeat_interval_ms), (50_000, 6_000));
        assert_eq!(
            describe(&defaults, Some(&configs)),
            vec![(SESSION_TIMEOUT, "50000".to_owned(), true), (HEARTBEAT_INTERVAL, "6000".to_owned(), true)]
        );
        let delete = ConfigOperation { name: SESSION_TIMEOUT.to_owned(), operation: OPERATION_DELETE, value: None };
        let configs = apply(Some(&configs), &[delete], &defaults).expect("valid");
        assert_eq!(describe(&defaults, Some(&configs))[0], (SESSION_TIMEOUT, "45000".to_owned(), false));
    }

    #[test]
    fn refusals_carry_kafkas_messages() {
        let defaults = ConsumerGroupConfig::default();
        assert_eq!(
            refusal(apply(None, &[set(SESSION_TIMEOUT, "6000")], &defaults)),
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
        );
        assert_eq!(
            refusal(apply(None, &[set(HEARTBEAT_INTERVAL, "20000")], &defaults)),
            "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"
        );
        assert_eq!(
            refusal(apply(None, &[set("share.session.timeout.ms", "45000")], &defaults)),
            "Unknown group config name: share.session.timeout.ms"
        );
        assert!(refusal(apply(None, &[set(SESSION_TIMEOUT, "soon")], &defaults)).contains("Not a number"));
        let low_bounds = ConsumerGroupConfig {
            session_timeout_ms_min: 1_000,
            heartbeat_interval_ms_min: 1_000,
            ..ConsumerGroupConfig::default()
        };
        assert_eq!(
            refusal(apply(None, &[set(SESSION_TIMEOUT, "5000")], &low_bounds)),
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms"
        );
    }

    #[test]
    fn an_empty_set_removes_the_group() {
        let mut image = GroupConfigsImage::default();
        let configs = GroupConfigs::from([(SESSION_TIMEOUT.to_owned(), "50000".to_owned())]);
        image.set("g", &configs);
        assert_eq!(image.get("g"), Some(&configs));
        image.set("g", &GroupConfigs::new());
        assert_eq!(image.get("g"), None);
    }
}
