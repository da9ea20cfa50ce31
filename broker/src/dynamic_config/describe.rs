//! DescribeConfigs of dynamic broker configs: the BROKER resource of a broker (its settings
//! with the dynamic ones over them, by Kafka's precedence), the cluster-default resource (the
//! empty name: only the cluster-wide dynamic configs, as Kafka answers it), and topics (a
//! config the topic does not set reports the broker's dynamic default and its source).
//! Called by the DescribeConfigs handler on a shard thread, reading the published image.

use sluice_engine::TopicConfig;

use super::topic::{self, DynamicValue};
use super::{BrokerConfigsImage, spec};
use crate::context::ShardContext;

/// Config sources, as Kafka numbers them.
pub(crate) const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub(crate) const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;

/// A described config: name, value, source.
pub(crate) type Entry = (String, String, i8);

fn source_of(per_broker: bool) -> i8 {
    if per_broker { SOURCE_DYNAMIC_BROKER } else { SOURCE_DYNAMIC_DEFAULT_BROKER }
}

/// Broker `node_id`'s configs: `static_entries` (its static settings) with its own dynamic
/// configs, else the cluster defaults, over them, then the dynamic configs it has no static
/// entry for, by name.
pub(crate) fn broker(configs: &BrokerConfigsImage, node_id: i32, static_entries: Vec<Entry>) -> Vec<Entry> {
    let dynamic = |name: &str| {
        [(configs.broker(node_id), true), (configs.cluster_default(), false)]
            .into_iter()
            .find_map(|(layer, per_broker)| Some((layer?.get(name)?.clone(), source_of(per_broker))))
    };
    let mut entries: Vec<Entry> = static_entries
        .into_iter()
        .map(|(name, value, source)| match dynamic(&name) {
            Some((value, source)) => (name, value, source),
            None => (name, value, source),
        })
        .collect();
    let mut extra: Vec<Entry> = Vec::new();
    for layer in [configs.broker(node_id), configs.cluster_default()].into_iter().flatten() {
        for name in layer.keys() {
            let listed = entries.iter().chain(&extra).any(|(known, _, _)| known == name);
            if !listed && let Some((value, source)) = dynamic(name) {
                extra.push((name.clone(), value, source));
            }
        }
    }
    extra.sort();
    entries.extend(extra);
    entries
}

/// The cluster-default resource (the empty name): the cluster-wide dynamic configs.
pub(crate) fn cluster_default(configs: &BrokerConfigsImage) -> Vec<Entry> {
    configs
        .cluster_default()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), value.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER))
        .collect()
}

/// The synonyms of broker config `name` on broker `node_id`, highest precedence first: its own
/// dynamic value, the cluster default, the static setting. For the cluster-default resource
/// (`node_id` `None`) only the cluster default, as Kafka lists it.
pub(crate) fn broker_synonyms(
    configs: &BrokerConfigsImage,
    node_id: Option<i32>,
    name: &str,
    static_value: Option<(String, i8)>,
) -> Vec<(String, String, i8)> {
    let own = node_id.and_then(|node_id| configs.broker(node_id));
    let mut synonyms: Vec<(String, String, i8)> = [(own, true), (configs.cluster_default(), false)]
        .into_iter()
        .filter_map(|(layer, per_broker)| Some((name.to_owned(), layer?.get(name)?.clone(), source_of(per_broker))))
        .collect();
    if let Some((value, source)) = static_value.filter(|_| node_id.is_some()) {
        synonyms.push((name.to_owned(), value, source));
    }
    synonyms
}

/// Whether DescribeConfigs reports broker config `name` as read-only: it is unless it may be
/// set dynamically.
pub(crate) fn read_only(name: &str) -> bool {
    spec(name).is_none()
}

/// The effective config of a topic stored as `stored` on this broker, and the dynamic values
/// each of its configs could come from.
pub(crate) fn topic_config(shard: &ShardContext, stored: &TopicConfig) -> TopicConfig {
    let image = shard.image();
    let static_defaults = &shard.config().default_topic_config;
    let node_id = shard.shared.identity.node_id;
    let dynamic_defaults = topic::defaults(&image.broker_configs, node_id, static_defaults);
    topic::effective(stored, static_defaults, &dynamic_defaults)
}

/// The source of topic config `name` when the topic does not set it and a dynamic default
/// gives its value; `None` otherwise.
pub(crate) fn topic_source(shard: &ShardContext, name: &str, value: &str) -> Option<i8> {
    let first = topic_dynamic_values(shard, name).into_iter().next()?;
    (first.value == value).then_some(source_of(first.per_broker))
}

/// The dynamic synonyms of topic config `name`, under their broker names, highest precedence
/// first.
pub(crate) fn topic_synonyms(shard: &ShardContext, name: &str) -> Vec<(String, String, i8)> {
    topic_dynamic_values(shard, name)
        .into_iter()
        .map(|dynamic| (dynamic.broker_name.to_owned(), dynamic.value, source_of(dynamic.per_broker)))
        .collect()
}

fn topic_dynamic_values(shard: &ShardContext, name: &str) -> Vec<DynamicValue> {
    topic::dynamic_values(&shard.image().broker_configs, shard.shared.identity.node_id, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic_config::BrokerConfigs;

    const SOURCE_STATIC_BROKER: i8 = 4;

    fn configs() -> BrokerConfigsImage {
        let mut configs = BrokerConfigsImage::default();
        let set = |entries: &[(&str, &str)]| -> BrokerConfigs {
            entries.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
        };
        configs.set("", &set(&[("log.retention.ms", "1000"), ("background.threads", "9")]));
        configs.set("1", &set(&[("log.retention.ms", "2000"), ("sasl.kerberos.min.time.before.relogin", "58000")]));
        configs
    }

    #[test]
    fn a_broker_reports_its_own_value_over_the_default_over_the_static_one() {
        let static_entries = vec![
            ("log.retention.ms".to_owned(), "604800000".to_owned(), SOURCE_STATIC_BROKER),
            ("num.partitions".to_owned(), "1".to_owned(), SOURCE_STATIC_BROKER),
        ];
        let one = broker(&configs(), 1, static_entries.clone());
        assert_eq!(one[0], ("log.retention.ms".to_owned(), "2000".to_owned(), SOURCE_DYNAMIC_BROKER));
        assert_eq!(one[1], ("num.partitions".to_owned(), "1".to_owned(), SOURCE_STATIC_BROKER));
        assert!(one.contains(&("background.threads".to_owned(), "9".to_owned(), SOURCE_DYNAMIC_DEFAULT_BROKER)));
        assert!(one.contains(&(
            "sasl.kerberos.min.time.before.relogin".to_owned(),
            "58000".to_owned(),
            SOURCE_DYNAMIC_BROKER
        )));
        let two = broker(&configs(), 2, static_entries);
        assert_eq!(two[0], ("log.retention.ms".to_owned(), "1000".to_owned(), SOURCE_DYNAMIC_DEFAULT_BROKER));
        assert!(!two.iter().any(|(name, _, _)| name == "sasl.kerberos.min.time.before.relogin"));
    }

    #[test]
    fn the_default_resource_lists_only_the_cluster_defaults() {
        let entries = cluster_default(&configs());
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|(_, _, source)| *source == SOURCE_DYNAMIC_DEFAULT_BROKER));
    }

    #[test]
    fn synonyms_run_from_the_brokers_own_value_to_the_static_one() {
        let static_value = Some(("604800000".to_owned(), SOURCE_STATIC_BROKER));
        let synonyms = broker_synonyms(&configs(), Some(1), "log.retention.ms", static_value.clone());
        let sources: Vec<i8> = synonyms.iter().map(|(_, _, source)| *source).collect();
        assert_eq!(sources, vec![SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER]);
        let synonyms = broker_synonyms(&configs(), None, "log.retention.ms", static_value);
        assert_eq!(synonyms, vec![("log.retention.ms".to_owned(), "1000".to_owned(), SOURCE_DYNAMIC_DEFAULT_BROKER)]);
        assert!(read_only("num.partitions"));
        assert!(!read_only("log.retention.ms"));
    }
}
