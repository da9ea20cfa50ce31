//! Dynamic broker configs (Kafka's KIP-226): AlterConfigs and IncrementalAlterConfigs of a
//! BROKER resource, stored in the metadata so that every broker sees the same ones.
//!
//! A BROKER resource named by a broker id holds that broker's own configs (Kafka's
//! DYNAMIC_BROKER_CONFIG); the empty name holds the cluster-wide defaults
//! (DYNAMIC_DEFAULT_BROKER_CONFIG). A broker's value of a config is, highest precedence first:
//! its own dynamic config, the cluster default, its static setting (flags, file, `SLUICE_*`),
//! Kafka's default.
//!
//! Which names are accepted ([`SPECS`]), refused, and with which messages follows Kafka 4.4's
//! `DynamicBrokerConfig.validateConfigs`, with one difference: Kafka stores any name it does
//! not know as a custom config, Sluice refuses it as it refuses every name it cannot update.
//! - Live: the log configs that are broker defaults of topic configs (`log.retention.ms`,
//!   `message.max.bytes`, `log.segment.bytes`, ...). Each broker applies them to the logs it
//!   holds as soon as it publishes the record, to every topic that does not set the config
//!   itself (a topic sets it when its value differs from the static default, the rule
//!   DescribeConfigs already reports sources by): see [`topic::effective`].
//! - Stored and described only: settings of mechanisms Sluice does not have (the thread pools
//!   of `background.threads` and `num.io.threads`, Kerberos, metric reporters, replication
//!   throttles). Kafka accepts them whether or not the mechanism is in use (Kerberos settings
//!   on a broker without a GSSAPI listener), and so does Sluice, so that tools that set them
//!   keep working; they change nothing.
//! - Refused with INVALID_REQUEST, as Kafka refuses a config it cannot update dynamically:
//!   every other name, among them those Sluice has only as static flags (`listeners`,
//!   `sasl.enabled.mechanisms`, `max.connections`, ...). SSL settings get Kafka's own refusal
//!   (they are dynamic only per listener), per-broker settings at the cluster level likewise.
//!
//! Decisions are pure functions of the configs the controller holds ([`alter`]); the
//! controller thread calls them, handlers read [`BrokerConfigsImage`] from the published image.

pub(crate) mod describe;
pub(crate) mod topic;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::context::ShardContext;
use crate::controller::wire::{ControllerRequest, Outcome};
use crate::metadata::config_change::{
    ConfigOperation, OPERATION_APPEND, OPERATION_DELETE, OPERATION_SET, OPERATION_SUBTRACT,
};
use crate::metadata::records::MetadataRecord;
use crate::metadata::{MetadataImage, Refusal};

/// The configs one BROKER resource sets, by name (values as given, trimmed and validated).
pub(crate) type BrokerConfigs = BTreeMap<String, String>;

/// Every BROKER resource's dynamic configs, as the metadata image holds them: by resource
/// name, `""` for the cluster-wide defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BrokerConfigsImage {
    resources: BTreeMap<String, BrokerConfigs>,
}

impl BrokerConfigsImage {
    /// The configs `resource` sets (`None` when it sets none).
    pub(crate) fn get(&self, resource: &str) -> Option<&BrokerConfigs> {
        self.resources.get(resource)
    }

    /// The cluster-wide defaults.
    pub(crate) fn cluster_default(&self) -> Option<&BrokerConfigs> {
        self.get("")
    }

    /// Broker `node_id`'s own configs.
    pub(crate) fn broker(&self, node_id: i32) -> Option<&BrokerConfigs> {
        self.get(&node_id.to_string())
    }

    /// Replaces `resource`'s configs; an empty set removes the resource's entry.
    pub(crate) fn set(&mut self, resource: &str, configs: &BrokerConfigs) {
        if configs.is_empty() {
            self.resources.remove(resource);
        } else {
            self.resources.insert(resource.to_owned(), configs.clone());
        }
    }
}

/// A config's type, with the bounds Kafka's `ConfigDef` declares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Long {
        min: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
    /// A string that must be one of these.
    Choice(&'static [&'static str]),
    /// A comma-separated list; its items must be among these when given.
    List(Option<&'static [&'static str]>),
    Text,
}

/// Where a dynamic config may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Per broker or as the cluster default.
    ClusterWide,
    /// Per broker only.
    PerBroker,
}

/// One config that may be set dynamically.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) scope: Scope,
    /// Kafka's default, as DescribeConfigs prints it (APPEND and SUBTRACT start from it).
    pub(crate) default: Option<&'static str>,
    /// The topic config this is the broker default of: set, it applies live to the logs.
    pub(crate) topic: Option<&'static str>,
}

const fn live(name: &'static str, kind: Kind, default: Option<&'static str>, topic: &'static str) -> Spec {
    Spec { name, kind, scope: Scope::ClusterWide, default, topic: Some(topic) }
}

const fn stored(name: &'static str, kind: Kind, scope: Scope, default: Option<&'static str>) -> Spec {
    Spec { name, kind, scope, default, topic: None }
}

const LONG_ANY: Kind = Kind::Long { min: i64::MIN };
const INT_POSITIVE: Kind = Kind::Int { min: 1, max: i32::MAX as i64 };

/// The configs accepted, with Kafka 4.4's types, bounds and defaults.
pub(crate) const SPECS: &[Spec] = &[
    live("log.cleanup.policy", Kind::List(Some(&["compact", "delete"])), Some("delete"), "cleanup.policy"),
    live("log.cleaner.delete.retention.ms", Kind::Long { min: 0 }, Some("86400000"), "delete.retention.ms"),
    live("log.cleaner.max.compaction.lag.ms", Kind::Long { min: 1 }, None, "max.compaction.lag.ms"),
    live(
        "log.cleaner.min.cleanable.ratio",
        Kind::Double { min: 0.0, max: 1.0 },
        Some("0.5"),
        "min.cleanable.dirty.ratio",
    ),
    live("log.cleaner.min.compaction.lag.ms", Kind::Long { min: 0 }, Some("0"), "min.compaction.lag.ms"),
    live("log.flush.interval.messages", Kind::Long { min: 1 }, None, "flush.messages"),
    live("log.flush.interval.ms", LONG_ANY, None, "flush.ms"),
    live("log.index.interval.bytes", Kind::Int { min: 0, max: i32::MAX as i64 }, Some("4096"), "index.interval.bytes"),
    live(
        "log.message.timestamp.type",
        Kind::Choice(&["CreateTime", "LogAppendTime"]),
        Some("CreateTime"),
        "message.timestamp.type",
    ),
    live("log.retention.bytes", LONG_ANY, Some("-1"), "retention.bytes"),
    live("log.retention.ms", LONG_ANY, None, "retention.ms"),
    live("log.roll.ms", Kind::Long { min: 1 }, None, "segment.ms"),
    live("log.segment.bytes", Kind::Int { min: 1_048_576, max: i32::MAX as i64 }, Some("1073741824"), "segment.bytes"),
    live("message.max.bytes", Kind::Int { min: 0, max: i32::MAX as i64 }, Some("1048588"), "max.message.bytes"),
    stored("background.threads", INT_POSITIVE, Scope::ClusterWide, Some("10")),
    stored("num.io.threads", INT_POSITIVE, Scope::ClusterWide, Some("8")),
    stored("num.network.threads", INT_POSITIVE, Scope::ClusterWide, Some("3")),
    stored("num.recovery.threads.per.data.dir", INT_POSITIVE, Scope::ClusterWide, Some("2")),
    stored("num.replica.fetchers", INT_POSITIVE, Scope::ClusterWide, Some("1")),
    stored("leader.replication.throttled.rate", Kind::Long { min: 0 }, Scope::ClusterWide, None),
    stored("follower.replication.throttled.rate", Kind::Long { min: 0 }, Scope::ClusterWide, None),
    stored("metric.reporters", Kind::List(None), Scope::ClusterWide, Some("")),
    stored("sasl.kerberos.kinit.cmd", Kind::Text, Scope::PerBroker, Some("/usr/bin/kinit")),
    stored("sasl.kerberos.min.time.before.relogin", LONG_ANY, Scope::PerBroker, Some("60000")),
    stored("sasl.kerberos.principal.to.local.rules", Kind::List(None), Scope::PerBroker, Some("DEFAULT")),
    stored("sasl.kerberos.service.name", Kind::Text, Scope::PerBroker, None),
    stored(
        "sasl.kerberos.ticket.renew.jitter",
        Kind::Double { min: f64::MIN, max: f64::MAX },
        Scope::PerBroker,
        Some("0.05"),
    ),
    stored(
        "sasl.kerberos.ticket.renew.window.factor",
        Kind::Double { min: f64::MIN, max: f64::MAX },
        Scope::PerBroker,
        Some("0.8"),
    ),
];

/// The SSL settings Kafka updates only per listener (`SslConfigs.RECONFIGURABLE_CONFIGS`):
/// without a listener prefix they get Kafka's own refusal.
const SECURITY_NAMES: &[&str] = &[
    "ssl.cipher.suites",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "ssl.engine.factory.class",
    "ssl.key.password",
    "ssl.keymanager.algorithm",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.protocol",
    "ssl.provider",
    "ssl.secure.random.implementation",
    "ssl.trustmanager.algorithm",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// The spec of `name`, when it may be set dynamically.
pub(crate) fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.name == name)
}

/// One AlterConfigs or IncrementalAlterConfigs change of a BROKER resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BrokerConfigChange {
    /// `""` (the cluster-wide defaults) or a broker id.
    pub(crate) resource: String,
    pub(crate) operations: Vec<ConfigOperation>,
    /// AlterConfigs: the operations (all SET) are the resource's whole set of configs.
    pub(crate) replace: bool,
}

/// The configs `change.resource` holds after `change`, checked as Kafka checks them.
///
/// # Errors
/// INVALID_REQUEST with Kafka's message: duplicate names, a missing value, an unknown
/// operation, a name that cannot be updated dynamically (or only per listener, or only per
/// broker), a value of the wrong type or out of bounds. INVALID_CONFIG for APPEND or SUBTRACT
/// on a config that is not a list.
pub(crate) fn alter(current: Option<&BrokerConfigs>, change: &BrokerConfigChange) -> Result<BrokerConfigs, Refusal> {
    let operations = &change.operations;
    let mut names = BTreeSet::new();
    if !operations.iter().all(|operation| names.insert(operation.name.as_str())) {
        return Err(invalid_request("Error due to duplicate config keys".to_owned()));
    }
    let missing: Vec<&str> = operations
        .iter()
        .filter(|operation| operation.operation != OPERATION_DELETE && operation.value.is_none())
        .map(|operation| operation.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid_request(format!("Null value not supported for : {}", missing.join(", "))));
    }
    let mut configs = if change.replace { BrokerConfigs::new() } else { current.cloned().unwrap_or_default() };
    for operation in operations {
        apply_operation(&mut configs, operation)?;
    }
    validate(&configs, !change.resource.is_empty())?;
    Ok(configs)
}

fn apply_operation(configs: &mut BrokerConfigs, operation: &ConfigOperation) -> Result<(), Refusal> {
    let name = operation.name.as_str();
    let value = operation.value.as_deref().unwrap_or_default().trim();
    match operation.operation {
        OPERATION_SET => {
            configs.insert(name.to_owned(), value.to_owned());
        }
        OPERATION_DELETE => {
            configs.remove(name);
        }
        OPERATION_APPEND | OPERATION_SUBTRACT => {
            let Some(spec) = spec(name).filter(|spec| matches!(spec.kind, Kind::List(_))) else {
                let verb = if operation.operation == OPERATION_APPEND { "append" } else { "subtract" };
                return Err(Refusal::new(
                    ResponseError::InvalidConfig,
                    format!("Config value {verb} is not allowed for config key: {name}"),
                ));
            };
            let base = configs.get(name).cloned().unwrap_or_else(|| spec.default.unwrap_or_default().to_owned());
            let mut items: Vec<&str> = split_list(&base);
            let given = split_list(value);
            if operation.operation == OPERATION_APPEND {
                for item in given {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
            } else {
                items.retain(|item| !given.contains(item));
            }
            let joined = items.join(",");
            configs.insert(name.to_owned(), joined);
        }
        other => return Err(invalid_request(format!("Unknown operations type {other}"))),
    }
    Ok(())
}

fn split_list(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).collect()
}

/// Kafka's `DynamicBrokerConfig.validateConfigs`, in its order: names that cannot be updated,
/// SSL names without a listener prefix, values, per-broker names at the cluster level.
fn validate(configs: &BrokerConfigs, per_broker: bool) -> Result<(), Refusal> {
    let refuse = |names: Vec<&str>, message: &str| {
        if names.is_empty() { Ok(()) } else { Err(invalid_request(format!("{message}: [{}]", names.join(", ")))) }
    };
    let unknown = configs.keys().map(String::as_str).filter(|name| spec(name).is_none());
    refuse(
        unknown.clone().filter(|name| !SECURITY_NAMES.contains(name)).collect(),
        "Cannot update these configs dynamically",
    )?;
    refuse(
        unknown.filter(|name| SECURITY_NAMES.contains(name)).collect(),
        "These security configs can be dynamically updated only per-listener using the listener prefix",
    )?;
    for (name, value) in configs {
        if let Some(spec) = spec(name) {
            check_value(spec, value).map_err(|reason| {
                invalid_request(format!("Invalid value {value} for configuration {name}: {reason}"))
            })?;
        }
    }
    if per_broker {
        return Ok(());
    }
    let per_broker_names = configs
        .keys()
        .map(String::as_str)
        .filter(|name| spec(name).is_some_and(|spec| spec.scope == Scope::PerBroker))
        .collect();
    refuse(per_broker_names, "Cannot update these configs at default cluster level, broker id must be specified")
}

/// Why `value` is not a value of `spec`, in `ConfigDef`'s words.
fn check_value(spec: &Spec, value: &str) -> Result<(), String> {
    match spec.kind {
        Kind::Int { min, max } => check_number(value.parse::<i32>().map(i64::from).ok(), "INT", min, max),
        Kind::Long { min } => check_number(value.parse::<i64>().ok(), "LONG", min, i64::MAX),
        Kind::Double { min, max } => match value.parse::<f64>() {
            Err(_) => Err("Not a number of type DOUBLE".to_owned()),
            Ok(number) if number < min => Err(format!("Value must be at least {min}")),
            Ok(number) if number > max => Err(format!("Value must be no more than {max}")),
            Ok(_) => Ok(()),
        },
        Kind::Choice(choices) if !choices.contains(&value) => {
            Err(format!("String must be one of: {}", choices.join(", ")))
        }
        Kind::List(Some(choices)) => {
            let items = split_list(value);
            if items.is_empty() {
                return Err("Empty list".to_owned());
            }
            match items.iter().find(|item| !choices.contains(item)) {
                Some(item) => Err(format!("Invalid value {item}, must be one of: {}", choices.join(", "))),
                None => Ok(()),
            }
        }
        Kind::Choice(_) | Kind::List(None) | Kind::Text => Ok(()),
    }
}

fn check_number(number: Option<i64>, type_name: &str, min: i64, max: i64) -> Result<(), String> {
    match number {
        None => Err(format!("Not a number of type {type_name}")),
        Some(number) if number < min => Err(format!("Value must be at least {min}")),
        Some(number) if number > max => Err(format!("Value must be no more than {max}")),
        Some(_) => Ok(()),
    }
}

fn invalid_request(message: String) -> Refusal {
    Refusal::new(ResponseError::InvalidRequest, message)
}

/// Checks a BROKER resource name as Kafka's broker does before it forwards a change: empty
/// (the cluster default) or this broker's id.
///
/// # Errors
/// INVALID_REQUEST with Kafka's message.
pub(crate) fn check_resource(name: &str, node_id: i32) -> Result<(), Refusal> {
    if name.is_empty() {
        return Ok(());
    }
    let id: i32 =
        name.parse().map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {name}")))?;
    if id != node_id {
        return Err(invalid_request(format!("Unexpected broker id, expected {node_id}, but received {name}")));
    }
    Ok(())
}

/// AlterConfigs' entries as SET operations (a missing value stays missing, to be refused).
pub(crate) fn set_operations(
    entries: &[kafka_protocol::messages::alter_configs_request::AlterableConfig],
) -> Vec<ConfigOperation> {
    entries
        .iter()
        .map(|entry| ConfigOperation {
            name: entry.name.as_str().to_owned(),
            operation: OPERATION_SET,
            value: entry.value.as_ref().map(|value| value.as_str().to_owned()),
        })
        .collect()
}

/// The controller's decision on `change`: the record that stores the resource's new configs
/// (none when nothing changes or `validate_only`).
///
/// # Errors
/// [`alter`]'s refusals.
pub(crate) fn decide(
    image: &MetadataImage,
    change: &BrokerConfigChange,
    validate_only: bool,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let current = image.broker_configs.get(&change.resource);
    let configs = alter(current, change)?;
    let unchanged = current.map_or(configs.is_empty(), |current| *current == configs);
    if validate_only || unchanged {
        return Ok(Vec::new());
    }
    Ok(vec![MetadataRecord::AlterBrokerConfig { resource: change.resource.clone(), configs }])
}

/// AlterConfigs (`replace`) or IncrementalAlterConfigs of the BROKER resource `name`, as a
/// handler asks for it: the name checked here, the change decided by the active controller.
///
/// # Errors
/// The Kafka error code and message of the refusal.
pub(crate) async fn submit(
    shard: &ShardContext,
    name: &str,
    operations: Vec<ConfigOperation>,
    replace: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let refused = |refusal: Refusal| (refusal.error.code(), refusal.message);
    check_resource(name, shard.shared.identity.node_id).map_err(refused)?;
    let change = BrokerConfigChange { resource: name.to_owned(), operations, replace };
    match shard.shared.metadata.submit(ControllerRequest::AlterBrokerConfig { change, validate_only }).await {
        Ok(Outcome::One(answer)) => answer.map_err(|refusal| refused(refusal.into())),
        Ok(other) => Err((ResponseError::UnknownServerError.code(), format!("unexpected controller answer {other:?}"))),
        Err(refusal) => Err(refused(refusal)),
    }
}

#[cfg(test)]
mod tests;
