//! A change to a topic's config, as a value: decided by the active controller against the
//! topic's current config, so that two changes at once never overwrite each other.
//!
//! AlterConfigs replaces the whole config (entries not given return to the asking broker's
//! defaults); IncrementalAlterConfigs applies operations in order: SET, DELETE (back to the
//! default), APPEND and SUBTRACT (list configs only).

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_engine::TopicConfig;

use super::controller::Refusal;
use crate::error::config_error_code;

/// IncrementalAlterConfigs operations, as Kafka numbers them.
pub(crate) const OPERATION_SET: i8 = 0;
pub(crate) const OPERATION_DELETE: i8 = 1;
pub(crate) const OPERATION_APPEND: i8 = 2;
pub(crate) const OPERATION_SUBTRACT: i8 = 3;

/// Configs whose value is a comma-separated list.
const LIST_NAMES: &[&str] =
    &["cleanup.policy", "leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];

/// One IncrementalAlterConfigs operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigOperation {
    pub(crate) name: String,
    pub(crate) operation: i8,
    pub(crate) value: Option<String>,
}

/// A change to a topic's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ConfigChange {
    /// The whole config, resolved from the asking broker's defaults.
    Replace(TopicConfig),
    /// Operations applied in order; DELETE returns a config to `defaults`.
    Incremental { operations: Vec<ConfigOperation>, defaults: TopicConfig },
}

impl ConfigChange {
    /// The config `current` becomes.
    ///
    /// # Errors
    /// Kafka's refusal for an unknown name, a bad value, or a list operation on a non-list.
    pub(crate) fn apply(&self, current: &TopicConfig) -> Result<TopicConfig, Refusal> {
        match self {
            Self::Replace(config) => Ok(config.clone()),
            Self::Incremental { operations, defaults } => {
                let mut config = current.clone();
                for operation in operations {
                    apply_operation(&mut config, defaults, operation)?;
                }
                Ok(config)
            }
        }
    }
}

fn apply_operation(config: &mut TopicConfig, defaults: &TopicConfig, entry: &ConfigOperation) -> Result<(), Refusal> {
    let name = entry.name.as_str();
    let value = entry.value.as_deref().unwrap_or("");
    let rejected = |error: sluice_engine::ConfigError| {
        let code = config_error_code(&error);
        Refusal::new(ResponseError::try_from_code(code).unwrap_or(ResponseError::InvalidConfig), error.to_string())
    };
    match entry.operation {
        OPERATION_SET => config.set(name, value).map_err(rejected),
        OPERATION_DELETE => config.reset(name, defaults).map_err(rejected),
        OPERATION_APPEND | OPERATION_SUBTRACT if LIST_NAMES.contains(&name) => {
            let current =
                config.entries().into_iter().find(|(key, _)| key == name).map(|(_, value)| value).unwrap_or_default();
            let mut items: Vec<String> =
                current.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect();
            for item in value.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                if entry.operation == OPERATION_APPEND {
                    if !items.iter().any(|existing| existing == item) {
                        items.push(item.to_owned());
                    }
                } else {
                    items.retain(|existing| existing != item);
                }
            }
            config.set(name, &items.join(",")).map_err(rejected)
        }
        OPERATION_APPEND | OPERATION_SUBTRACT => {
            Err(Refusal::new(ResponseError::InvalidConfig, format!("{name} is not a list config")))
        }
        other => Err(Refusal::new(ResponseError::InvalidRequest, format!("unknown config operation {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(name: &str, operation: i8, value: Option<&str>) -> ConfigOperation {
        ConfigOperation { name: name.to_owned(), operation, value: value.map(str::to_owned) }
    }

    #[test]
    fn operations_apply_in_order_to_the_current_config() {
        let current = TopicConfig::default();
        let change = ConfigChange::Incremental {
            operations: vec![
                operation("retention.ms", OPERATION_SET, Some("1000")),
                operation("cleanup.policy", OPERATION_APPEND, Some("compact")),
                operation("retention.ms", OPERATION_DELETE, None),
            ],
            defaults: TopicConfig::default(),
        };
        let changed = change.apply(&current).expect("valid");
        assert_eq!(changed.retention_ms, TopicConfig::default().retention_ms);
        assert!(changed.cleanup_policy.compact && changed.cleanup_policy.delete);
        let refused = ConfigChange::Incremental {
            operations: vec![operation("retention.ms", OPERATION_APPEND, Some("5"))],
            defaults: TopicConfig::default(),
        };
        assert!(matches!(refused.apply(&current), Err(Refusal { error: ResponseError::InvalidConfig, .. })));
    }
}
