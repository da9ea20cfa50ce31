//! The live dynamic configs: broker defaults of topic configs, applied to the logs a broker
//! holds.
//!
//! A topic's stored config is whole (every field resolved at creation from the static
//! defaults), so "the topic does not set this config" is read as "its value is the static
//! default", the same rule DescribeConfigs reports sources by. Such a config takes the broker's
//! dynamic value: its own, else the cluster default. The metadata publisher computes the
//! effective config of each local partition with [`effective`] and hands changes to the
//! engine, which applies them to open logs (retention, segment rolls, the largest batch).

use sluice_engine::TopicConfig;

use super::{BrokerConfigs, BrokerConfigsImage, SPECS};

/// Where a broker's dynamic value of a topic config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DynamicValue {
    /// The broker config's name (`log.retention.ms` for `retention.ms`).
    pub(crate) broker_name: &'static str,
    pub(crate) value: String,
    /// Set for this broker (DYNAMIC_BROKER_CONFIG), not as the cluster default.
    pub(crate) per_broker: bool,
}

/// The dynamic values of topic config `topic_name` on broker `node_id`, highest precedence
/// first: its own, then the cluster default.
pub(crate) fn dynamic_values(configs: &BrokerConfigsImage, node_id: i32, topic_name: &str) -> Vec<DynamicValue> {
    let Some(spec) = SPECS.iter().find(|spec| spec.topic == Some(topic_name)) else { return Vec::new() };
    let layers = [(configs.broker(node_id), true), (configs.cluster_default(), false)];
    layers
        .into_iter()
        .filter_map(|(layer, per_broker)| {
            let value = layer?.get(spec.name)?;
            Some(DynamicValue { broker_name: spec.name, value: value.clone(), per_broker })
        })
        .collect()
}

/// Broker `node_id`'s topic defaults: the static ones with the cluster default's live configs
/// set over them, then the broker's own.
pub(crate) fn defaults(configs: &BrokerConfigsImage, node_id: i32, static_defaults: &TopicConfig) -> TopicConfig {
    let mut defaults = static_defaults.clone();
    for layer in [configs.cluster_default(), configs.broker(node_id)].into_iter().flatten() {
        set_live(&mut defaults, layer);
    }
    defaults
}

fn set_live(config: &mut TopicConfig, layer: &BrokerConfigs) {
    for spec in SPECS {
        let (Some(topic_name), Some(value)) = (spec.topic, layer.get(spec.name)) else { continue };
        // The controller checked the value against Kafka's bounds; one the engine still
        // refuses (a bound of its own) leaves the default as it was rather than half set.
        let mut candidate = config.clone();
        if candidate.set(topic_name, value).is_ok() {
            *config = candidate;
        }
    }
}

/// The config a log of a topic stored as `topic` runs with, given the static and the broker's
/// dynamic topic defaults: each config the topic does not set (its value is the static
/// default) takes the dynamic default's.
pub(crate) fn effective(
    topic: &TopicConfig,
    static_defaults: &TopicConfig,
    dynamic_defaults: &TopicConfig,
) -> TopicConfig {
    if static_defaults == dynamic_defaults {
        return topic.clone();
    }
    let static_entries = static_defaults.entries();
    let topic_entries = topic.entries();
    let value_in = |entries: &[(String, String)], name: &str| {
        entries.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
    };
    let mut config = topic.clone();
    for (name, value) in dynamic_defaults.entries() {
        let static_value = value_in(&static_entries, &name);
        if static_value.as_deref() != Some(value.as_str()) && value_in(&topic_entries, &name) == static_value {
            // Values in a TopicConfig were accepted by `set` when they got there.
            let _accepted = config.set(&name, &value).is_ok();
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(resource: &str, entries: &[(&str, &str)]) -> BrokerConfigsImage {
        let mut image = BrokerConfigsImage::default();
        let configs = entries.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        image.set(resource, &configs);
        image
    }

    #[test]
    fn a_topic_that_does_not_set_a_config_follows_the_dynamic_default() {
        let configs = image("", &[("log.retention.ms", "1000"), ("message.max.bytes", "2000")]);
        let static_defaults = TopicConfig::default();
        let dynamic = defaults(&configs, 1, &static_defaults);
        assert_eq!((dynamic.retention_ms, dynamic.max_message_bytes), (1000, 2000));
        let own = TopicConfig { retention_ms: 5, ..TopicConfig::default() };
        let effective = effective(&own, &static_defaults, &dynamic);
        assert_eq!(effective.retention_ms, 5, "the topic's own setting wins");
        assert_eq!(effective.max_message_bytes, 2000, "the dynamic default applies where the topic sets nothing");
    }

    #[test]
    fn the_brokers_own_value_beats_the_cluster_default() {
        let mut configs = image("", &[("log.retention.ms", "1000")]);
        configs.set("2", &BrokerConfigs::from([("log.retention.ms".to_owned(), "2000".to_owned())]));
        assert_eq!(defaults(&configs, 2, &TopicConfig::default()).retention_ms, 2000);
        assert_eq!(defaults(&configs, 1, &TopicConfig::default()).retention_ms, 1000);
        let values = dynamic_values(&configs, 2, "retention.ms");
        assert_eq!(values.iter().map(|value| value.per_broker).collect::<Vec<_>>(), vec![true, false]);
        assert_eq!(values[0].value, "2000");
    }

    #[test]
    fn stored_only_configs_change_no_topic_default() {
        let configs = image("", &[("background.threads", "9")]);
        assert_eq!(defaults(&configs, 1, &TopicConfig::default()), TopicConfig::default());
    }
}
