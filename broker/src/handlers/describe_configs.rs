//! DescribeConfigs (v1-v4) for topics (every config with its value and source) and for this
//! broker (its static settings, and the topic defaults under Kafka's broker names, with the
//! dynamic broker configs of `crate::dynamic_config` over them; the empty broker name: the
//! cluster-wide dynamic configs only, as in Kafka). Broker loggers have no configs to show. With `include_synonyms`, each config lists where its value
//! could come from, highest precedence first, as Kafka does: the topic's own setting, the
//! broker's setting under its broker name, and Kafka's default. Documentation is not reported.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::TopicConfig;

use super::{RESOURCE_TYPE_BROKER, RESOURCE_TYPE_BROKER_LOGGER, RESOURCE_TYPE_TOPIC, code, message, str_bytes};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};

/// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Config types, as Kafka numbers them.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// Broker config names of the topic configs the broker sets defaults for, and whether Kafka
/// declares a default for that broker config. Where it does not (`log.retention.ms`,
/// `log.roll.ms`, `log.flush.interval.ms` default to null: their values come from
/// `log.retention.hours`, `log.roll.hours` and the flush scheduler), Kafka lists no default
/// synonym, and neither does Sluice.
const BROKER_NAMES: &[(&str, &str, bool)] = &[
    ("cleanup.policy", "log.cleanup.policy", true),
    ("flush.messages", "log.flush.interval.messages", true),
    ("flush.ms", "log.flush.interval.ms", false),
    ("index.interval.bytes", "log.index.interval.bytes", true),
    ("max.message.bytes", "message.max.bytes", true),
    ("message.timestamp.type", "log.message.timestamp.type", true),
    ("retention.bytes", "log.retention.bytes", true),
    ("retention.ms", "log.retention.ms", false),
    ("segment.bytes", "log.segment.bytes", true),
    ("segment.ms", "log.roll.ms", false),
];

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeConfigs, min: 1, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeConfigsRequest,
) -> Outcome<DescribeConfigsResponse> {
    let version = call.version;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let keys = resource.configuration_keys.as_deref();
            let name = resource.resource_name.as_str();
            let refused = crate::security::checks::config_denied(&shard, &call, false, resource.resource_type, name);
            match refused.map_or_else(|| describe(&shard, resource.resource_type, name), Err) {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|(name, _, _)| keys.is_none_or(|keys| keys.iter().any(|key| key.as_str() == name)))
                        .map(|(name, value, source)| {
                            let synonyms = if request.include_synonyms {
                                let own = (resource.resource_type, resource.resource_name.as_str());
                                synonyms(&shard, own, &name, &value, source)
                            } else {
                                Vec::new()
                            };
                            entry(version, resource.resource_type, &name, value, source).with_synonyms(synonyms)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((error_code, text)) => result.with_error_code(error_code).with_error_message(message(text)),
            }
        })
        .collect();
    Outcome::Respond(DescribeConfigsResponse::default().with_results(results))
}

type Entry = (String, String, i8);

fn describe(shard: &ShardContext, resource_type: i8, name: &str) -> Result<Vec<Entry>, (i16, String)> {
    match resource_type {
        RESOURCE_TYPE_TOPIC => {
            let image = shard.image();
            let Some(topic) = image.topic(name) else {
                return Err((code(ResponseError::UnknownTopicOrPartition), format!("unknown topic {name}")));
            };
            let config = crate::dynamic_config::describe::topic_config(shard, &topic.config);
            Ok(describe_topic_config(&config)
                .into_iter()
                .map(|(key, value)| {
                    let source = crate::dynamic_config::describe::topic_source(shard, &key, &value)
                        .unwrap_or_else(|| config_source(shard, &key, &value));
                    (key, value, source)
                })
                .collect())
        }
        RESOURCE_TYPE_BROKER => {
            let node = shard.shared.identity.node_id;
            let dynamic = &shard.image().broker_configs;
            if name.is_empty() {
                return Ok(crate::dynamic_config::describe::cluster_default(dynamic));
            }
            if name != node.to_string() {
                let text = format!("Unexpected broker id, expected {node} or empty string, but received {name}");
                return Err((code(ResponseError::InvalidRequest), text));
            }
            Ok(crate::dynamic_config::describe::broker(dynamic, node, broker_entries(shard)))
        }
        RESOURCE_TYPE_BROKER_LOGGER => Ok(Vec::new()),
        crate::groups::group_config::RESOURCE_TYPE_GROUP => Ok(describe_group(shard, name)),
        other => Err((code(ResponseError::InvalidRequest), format!("unknown resource type {other}"))),
    }
}

/// A group's configs: those it sets (Kafka's GROUP_CONFIG source), else the broker's defaults
/// (DEFAULT_CONFIG). A group need not exist to be described, as in Kafka.
fn describe_group(shard: &ShardContext, group: &str) -> Vec<Entry> {
    const SOURCE_GROUP_CONFIG: i8 = 8;
    const SOURCE_DEFAULT_CONFIG: i8 = 5;
    let image = shard.image();
    let defaults = crate::groups::consumer_config_global();
    crate::groups::group_config::describe(&defaults, image.group_configs.get(group))
        .into_iter()
        .map(|(name, value, set)| {
            (name.to_owned(), value, if set { SOURCE_GROUP_CONFIG } else { SOURCE_DEFAULT_CONFIG })
        })
        .collect()
}

/// One config as DescribeConfigs reports it. Broker settings are read-only unless they may be
/// set dynamically; topic configs are alterable.
fn entry(version: i16, resource_type: i8, name: &str, value: String, source: i8) -> DescribeConfigsResourceResult {
    let result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_read_only(resource_type == RESOURCE_TYPE_BROKER && crate::dynamic_config::describe::read_only(name));
    if version >= 3 { result.with_config_type(config_type(name)) } else { result }
}

fn synonym(name: &str, value: String, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(StrBytes::from_string(value)))
        .with_source(source)
}

/// The synonyms of one config, highest precedence first. A topic config: its own setting when
/// the topic overrides it, the broker's setting when it differs from Kafka's default, then
/// Kafka's default where Kafka declares one (both under the broker name, for configs that have
/// one). A broker setting: itself.
fn synonyms(
    shard: &ShardContext,
    (resource_type, resource_name): (i8, &str),
    name: &str,
    value: &str,
    source: i8,
) -> Vec<DescribeConfigsSynonym> {
    if resource_type == RESOURCE_TYPE_BROKER {
        let node = shard.shared.identity.node_id;
        let static_value = broker_entries(shard).into_iter().find(|(key, _, _)| key == name);
        let static_value = static_value.map(|(_, value, source)| (value, source));
        let dynamic = crate::dynamic_config::describe::broker_synonyms(
            &shard.image().broker_configs,
            (!resource_name.is_empty()).then_some(node),
            name,
            static_value,
        );
        return dynamic.into_iter().map(|(name, value, source)| synonym(&name, value, source)).collect();
    }
    if resource_type != RESOURCE_TYPE_TOPIC {
        return vec![synonym(name, value.to_owned(), source)];
    }
    let value_of = |config: &TopicConfig| config_value(config, name);
    let mut synonyms = Vec::new();
    if source == SOURCE_TOPIC {
        synonyms.push(synonym(name, value.to_owned(), SOURCE_TOPIC));
    }
    for (broker_name, dynamic_value, dynamic_source) in crate::dynamic_config::describe::topic_synonyms(shard, name) {
        synonyms.push(synonym(&broker_name, dynamic_value, dynamic_source));
    }
    if let Some((_, broker_name, has_default)) = BROKER_NAMES.iter().find(|(topic_name, _, _)| *topic_name == name) {
        let broker_value = value_of(&shard.config().default_topic_config);
        let kafka_default = value_of(&TopicConfig::default());
        if let Some(broker_value) = broker_value.clone().filter(|_| broker_value != kafka_default) {
            synonyms.push(synonym(broker_name, broker_value, SOURCE_STATIC_BROKER));
        }
        if let Some(kafka_default) = kafka_default.filter(|_| *has_default) {
            synonyms.push(synonym(broker_name, kafka_default, SOURCE_DEFAULT));
        }
    } else if source != SOURCE_TOPIC {
        synonyms.push(synonym(name, value.to_owned(), source));
    }
    synonyms
}

/// The value `config` has for the topic config `name`.
fn config_value(config: &TopicConfig, name: &str) -> Option<String> {
    config.entries().into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// Every config of a topic, by Kafka name.
pub(crate) fn describe_topic_config(config: &TopicConfig) -> Vec<(String, String)> {
    config.entries()
}

/// Where a topic config's value comes from: set on the topic, a broker default, or Kafka's.
pub(crate) fn config_source(shard: &ShardContext, name: &str, value: &str) -> i8 {
    let value_of = |config: &TopicConfig| config_value(config, name);
    let broker_default = value_of(&shard.config().default_topic_config);
    if broker_default.as_deref() != Some(value) {
        SOURCE_TOPIC
    } else if broker_default != value_of(&TopicConfig::default()) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    }
}

fn broker_entries(shard: &ShardContext) -> Vec<Entry> {
    let config = shard.config();
    let identity = &shard.shared.identity;
    let mut entries = vec![
        ("node.id".to_owned(), identity.node_id.to_string()),
        ("broker.id".to_owned(), identity.node_id.to_string()),
        ("num.partitions".to_owned(), config.num_partitions.to_string()),
        ("auto.create.topics.enable".to_owned(), config.auto_create_topics.to_string()),
        ("socket.request.max.bytes".to_owned(), config.limits.request_size_bytes_max.to_string()),
        ("max.connections".to_owned(), config.limits.connection_count_max.to_string()),
        ("log.dirs".to_owned(), config.data_dir.display().to_string()),
        ("listeners".to_owned(), identity.bound.clone()),
        ("advertised.listeners".to_owned(), crate::security::listeners::advertised_value(&identity.listeners)),
        ("inter.broker.listener.name".to_owned(), config.listener_set().inter_broker),
    ];
    for (topic_name, value) in config.default_topic_config.entries() {
        if let Some((_, broker_name, _)) = BROKER_NAMES.iter().find(|(name, _, _)| *name == topic_name) {
            entries.push(((*broker_name).to_owned(), value));
        }
    }
    entries.into_iter().map(|(name, value)| (name, value, SOURCE_STATIC_BROKER)).collect()
}

/// Configs Kafka declares as lists, booleans, doubles and ints; the rest are longs (by suffix)
/// or strings.
const LIST_NAMES: &[&str] = &[
    "cleanup.policy",
    "log.cleanup.policy",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];
const BOOLEAN_NAMES: &[&str] = &[
    "preallocate",
    "unclean.leader.election.enable",
    "message.downconversion.enable",
    "remote.storage.enable",
    "auto.create.topics.enable",
];
const DOUBLE_NAMES: &[&str] = &["min.cleanable.dirty.ratio"];
const INT_NAMES: &[&str] = &[
    crate::groups::group_config::SESSION_TIMEOUT,
    crate::groups::group_config::HEARTBEAT_INTERVAL,
    "max.message.bytes",
    "message.max.bytes",
    "index.interval.bytes",
    "segment.bytes",
    "min.insync.replicas",
    "segment.index.bytes",
    "num.partitions",
    "node.id",
    "broker.id",
    "socket.request.max.bytes",
    "max.connections",
    "log.index.interval.bytes",
    "log.segment.bytes",
];
const LONG_SUFFIXES: &[&str] = &[".ms", ".bytes", ".messages"];

/// The type Kafka declares for a config name.
fn config_type(name: &str) -> i8 {
    if LIST_NAMES.contains(&name) {
        TYPE_LIST
    } else if BOOLEAN_NAMES.contains(&name) {
        TYPE_BOOLEAN
    } else if DOUBLE_NAMES.contains(&name) {
        TYPE_DOUBLE
    } else if INT_NAMES.contains(&name) {
        TYPE_INT
    } else if LONG_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
        TYPE_LONG
    } else {
        TYPE_STRING
    }
}
