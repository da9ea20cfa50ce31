//! `sluicectl topics`: create, list, describe, alter-config, add-partitions and delete, over
//! Metadata, `CreateTopics`, `ListOffsets`, `DescribeConfigs`, `IncrementalAlterConfigs`,
//! `CreatePartitions` and `DeleteTopics`. Main thread only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, CreatePartitionsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, ElectLeadersRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    TopicName, alter_partition_reassignments_request, elect_leaders_request,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use sluice_client::requests::{CreateOutcome, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, NewTopic, TopicInfo};

use crate::output::{Output, Table, lines, push_fmt};
use crate::session::{Session, describe_error};

/// `DescribeConfigs` / `IncrementalAlterConfigs` resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// `IncrementalAlterConfigs` operations.
const CONFIG_OPERATION_SET: i8 = 0;
const CONFIG_OPERATION_DELETE: i8 = 1;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Replication factor; -1 lets the broker choose.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, by Kafka name (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics with their partition counts.
    List {
        /// Hide internal topics (names starting with "__").
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Describe topics: partitions, leaders, log start and end offsets, and configs.
    Describe {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set (KEY=VALUE) or remove (--delete KEY) topic configs.
    AlterConfig {
        /// Topic name.
        name: String,
        /// Configs to set.
        #[arg(value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Configs to remove, returning them to their default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        deletes: Vec<String>,
    },
    /// Grow a topic to a total number of partitions.
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total partition count.
        #[arg(long, short = 'p')]
        partitions: i32,
    },
    /// Elect leaders (Kafka's ElectLeaders): the preferred replica of each partition, or with
    /// --unclean any live replica of a partition without a leader (what only the lost in-sync
    /// replicas had is then lost).
    ElectLeaders {
        /// Topic name.
        name: String,
        /// Partitions to elect for (repeatable) [default: every partition of the topic].
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<i32>,
        /// Unclean election instead of the preferred replica.
        #[arg(long)]
        unclean: bool,
    },
    /// Move a partition's replicas (Kafka's AlterPartitionReassignments): the new replicas catch
    /// up from the leader, then the old ones are dropped; the replication factor may change.
    Reassign {
        /// Topic name.
        name: String,
        /// Partition index.
        #[arg(long, short = 'p')]
        partition: i32,
        /// Target replicas, preferred leader first, e.g. 4,2,3.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the reassignment under way instead.
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
    },
    /// Reassignments under way (ListPartitionReassignments).
    Reassignments,
    /// Delete topics.
    Delete {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed when a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

/// Parses `KEY=VALUE`.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

pub(crate) fn run(session: &mut Session, command: &TopicsCommand, output: Output) -> Result<()> {
    match command {
        TopicsCommand::Create { name, partitions, replication_factor, configs, if_not_exists } => {
            let new_topic = NewTopicArgs { name, partitions: *partitions, replication_factor: *replication_factor };
            create(session, &new_topic, configs, *if_not_exists, output)
        }
        TopicsCommand::List { exclude_internal } => list(session, *exclude_internal, output),
        TopicsCommand::Describe { names } => describe(session, names, output),
        TopicsCommand::AlterConfig { name, configs, deletes } => alter_config(session, name, configs, deletes, output),
        TopicsCommand::AddPartitions { name, partitions } => add_partitions(session, name, *partitions, output),
        TopicsCommand::Delete { names, if_exists } => delete(session, names, *if_exists, output),
        TopicsCommand::ElectLeaders { name, partitions, unclean } => {
            elect_leaders(session, name, partitions, *unclean, output)
        }
        TopicsCommand::Reassign { name, partition, replicas, cancel } => {
            reassign(session, name, *partition, (!*cancel).then_some(replicas.as_slice()), output)
        }
        TopicsCommand::Reassignments => reassignments(session, output),
    }
}

fn reassign(session: &mut Session, name: &str, partition: i32, replicas: Option<&[i32]>, output: Output) -> Result<()> {
    alter_reassignments(session, &[(name.to_owned(), partition, replicas.map(<[i32]>::to_vec))])?;
    let action = if replicas.is_some() { "started" } else { "cancelled" };
    let json = json!({"topic": name, "partition": partition, "replicas": replicas, "reassignment": action});
    output.emit(&json, || format!("Reassignment of {name}-{partition} {action}.\n"));
    Ok(())
}

/// Sends one AlterPartitionReassignments for `partitions` (topic, index, target replicas or
/// `None` to cancel), allowing a change of the replication factor; fails on the first error.
pub(crate) fn alter_reassignments(session: &mut Session, partitions: &[(String, i32, Option<Vec<i32>>)]) -> Result<()> {
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let mut topics: Vec<alter_partition_reassignments_request::ReassignableTopic> = Vec::new();
    for (topic, index, target) in partitions {
        let partition = alter_partition_reassignments_request::ReassignablePartition::default()
            .with_partition_index(*index)
            .with_replicas(target.as_ref().map(|replicas| replicas.iter().map(|replica| BrokerId(*replica)).collect()));
        match topics.iter_mut().find(|found| found.name.0.as_str() == topic) {
            Some(found) => found.partitions.push(partition),
            None => topics.push(
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_allow_replication_factor_change(true)
        .with_topics(topics);
    let response = session.connection().send(&request).context("AlterPartitionReassignments request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot reassign: {}", describe_error(error, response.error_message.as_deref()));
    }
    for topic in &response.responses {
        for answer in &topic.partitions {
            if let Some(error) = answer.error_code.err() {
                bail!(
                    "cannot reassign {}-{}: {}",
                    topic.name.0.as_str(),
                    answer.partition_index,
                    describe_error(error, answer.error_message.as_deref())
                );
            }
        }
    }
    Ok(())
}

fn reassignments(session: &mut Session, output: Output) -> Result<()> {
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(timeout_ms).with_topics(None);
    let response = session.connection().send(&request).context("ListPartitionReassignments request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot list reassignments: {}", describe_error(error, response.error_message.as_deref()));
    }
    let ids = |nodes: &[BrokerId]| nodes.iter().map(|node| node.0).collect::<Vec<_>>();
    let joined = |nodes: &[i32]| nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
    let mut ongoing = Vec::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            let (replicas, adding, removing) =
                (ids(&partition.replicas), ids(&partition.adding_replicas), ids(&partition.removing_replicas));
            table.push(vec![
                topic.name.0.to_string(),
                partition.partition_index.to_string(),
                joined(&replicas),
                joined(&adding),
                joined(&removing),
            ]);
            ongoing.push(json!({
                "topic": topic.name.0.as_str(), "partition": partition.partition_index, "replicas": replicas,
                "adding": adding, "removing": removing,
            }));
        }
    }
    output.emit(&json!({"reassignments": ongoing}), || table.render());
    Ok(())
}

fn elect_leaders(session: &mut Session, name: &str, partitions: &[i32], unclean: bool, output: Output) -> Result<()> {
    let topic = session.topic(name)?;
    let wanted: Vec<i32> = if partitions.is_empty() {
        topic.partitions.iter().map(|partition| partition.partition).collect()
    } else {
        partitions.to_vec()
    };
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ElectLeadersRequest::default()
        .with_election_type(i8::from(unclean))
        .with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partitions(wanted),
        ]))
        .with_timeout_ms(timeout_ms);
    let response = session.connection().send(&request).context("ElectLeaders request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot elect leaders: {error}");
    }
    let mut results = Vec::new();
    let mut table = Table::new(&["PARTITION", "RESULT"]);
    for topic in &response.replica_election_results {
        for partition in &topic.partition_result {
            let result = match partition.error_code.err() {
                None => "elected".to_owned(),
                Some(error) => describe_error(error, partition.error_message.as_deref()),
            };
            results.push(
                json!({"partition": partition.partition_id, "error_code": partition.error_code, "result": result}),
            );
            table.push(vec![partition.partition_id.to_string(), result]);
        }
    }
    let kind = if unclean { "unclean" } else { "preferred" };
    let json = json!({"topic": name, "election": kind, "partitions": results});
    output.emit(&json, || format!("Topic {name}, {kind} election:\n{}", table.render()));
    Ok(())
}

struct NewTopicArgs<'a> {
    name: &'a str,
    partitions: i32,
    replication_factor: i16,
}

fn create(
    session: &mut Session,
    topic: &NewTopicArgs<'_>,
    configs: &[(String, String)],
    if_not_exists: bool,
    output: Output,
) -> Result<()> {
    if topic.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let config_refs: Vec<(&str, &str)> = configs.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let new_topic = NewTopic {
        name: topic.name,
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        configs: &config_refs,
    };
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let outcome = session
        .connection()
        .create_topic(&new_topic, timeout_ms)
        .with_context(|| format!("cannot create topic {}", topic.name))?;
    let created = outcome == CreateOutcome::Created;
    if !created && !if_not_exists {
        bail!("topic {} already exists", topic.name);
    }
    if created {
        wait_for_leaders(session, topic.name, session.config().request_timeout)?;
    }
    let json = json!({"topic": topic.name, "partitions": topic.partitions, "created": created});
    output.emit(&json, || {
        if created {
            format!("Created topic {} with {} partitions.\n", topic.name, topic.partitions)
        } else {
            format!("Topic {} already exists.\n", topic.name)
        }
    });
    Ok(())
}

/// Polls Metadata until every partition of `name` has a leader, so that a script can produce
/// right after `topics create` returns.
fn wait_for_leaders(session: &mut Session, name: &str, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let cluster = session.metadata(Some(&[name]))?;
        let ready = cluster.topic(name).is_some_and(|topic| {
            topic.error.is_none()
                && !topic.partitions.is_empty()
                && topic.partitions.iter().all(|partition| partition.leader_id >= 0 && partition.error.is_none())
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("topic {name} was created but its partitions have no leader after {} ms", wait.as_millis());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn list(session: &mut Session, exclude_internal: bool, output: Output) -> Result<()> {
    let cluster = session.metadata(None)?;
    let mut topics: Vec<&TopicInfo> =
        cluster.topics.iter().filter(|topic| !(exclude_internal && topic.topic.name.starts_with("__"))).collect();
    topics.sort_by(|left, right| left.topic.name.cmp(&right.topic.name));
    let json = Value::Array(
        topics
            .iter()
            .map(|topic| {
                json!({"name": topic.topic.name, "id": topic.topic.id.to_string(), "partitions": topic.partitions.len()})
            })
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&["TOPIC", "PARTITIONS", "ID"]);
        for topic in &topics {
            table.push(vec![topic.topic.name.clone(), topic.partitions.len().to_string(), topic.topic.id.to_string()]);
        }
        table.render()
    });
    Ok(())
}

/// One config entry as `DescribeConfigs` reports it.
#[derive(Debug, Clone)]
struct ConfigEntry {
    name: String,
    value: Option<String>,
    source: &'static str,
    sensitive: bool,
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "broker",
        3 => "broker-default",
        4 => "static-broker",
        5 => "default",
        6 => "broker-logger",
        _ => "unknown",
    }
}

fn describe_configs(session: &mut Session, topic: &str) -> Result<Vec<ConfigEntry>> {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_TOPIC)
        .with_resource_name(StrBytes::from_string(topic.to_owned()))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response = session.connection().send(&request).context("DescribeConfigs request failed")?;
    let mut entries = Vec::new();
    for result in &response.results {
        if let Some(error) = result.error_code.err() {
            bail!("cannot describe configs of {topic}: {}", describe_error(error, result.error_message.as_deref()));
        }
        for config in &result.configs {
            entries.push(ConfigEntry {
                name: config.name.to_string(),
                value: config.value.as_ref().map(ToString::to_string),
                source: source_name(config.config_source),
                sensitive: config.is_sensitive,
            });
        }
    }
    entries.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(entries)
}

/// Log start and end offsets of every partition of `topic` that has a leader, asked of that
/// leader.
///
/// # Errors
/// Connection errors and per-partition errors.
pub(crate) fn log_offsets(session: &mut Session, topic: &TopicInfo) -> Result<BTreeMap<i32, (i64, i64)>> {
    // A partition without a leader (its only replica's broker is down) has no offsets to ask for.
    let led: Vec<i32> = topic
        .partitions
        .iter()
        .filter(|partition| partition.leader_id >= 0)
        .map(|partition| partition.partition)
        .collect();
    let starts = session.offsets_for(topic, Some(&led), EARLIEST_TIMESTAMP)?;
    let ends = session.offsets_for(topic, Some(&led), LATEST_TIMESTAMP)?;
    Ok(starts
        .into_iter()
        .map(|(partition, start)| (partition, (start, ends.get(&partition).copied().unwrap_or(-1))))
        .collect())
}

/// Each partition's eligible leader replicas (KIP-966) from DescribeTopicPartitions, following
/// its cursor; `None` when the broker does not offer it.
fn eligible_leaders(session: &mut Session, topic: &str) -> Result<Option<BTreeMap<i32, Vec<i32>>>> {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use kafka_protocol::messages::{ApiKey, DescribeTopicPartitionsRequest, TopicName};
    if session.connection().versions().version_for(ApiKey::DescribeTopicPartitions).is_err() {
        return Ok(None);
    }
    let mut found = BTreeMap::new();
    let mut cursor = None;
    // Bounded: a topic has at most i32::MAX partitions, and every page moves the cursor on.
    for _ in 0..=i32::MAX {
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(TopicName(StrBytes::from_string(topic.to_owned())))])
            .with_response_partition_limit(2000)
            .with_cursor(cursor.take());
        let response = session.connection().send(&request).context("DescribeTopicPartitions request failed")?;
        for answer in &response.topics {
            if let Some(error) = answer.error_code.err() {
                bail!("cannot describe the partitions of {topic}: {error}");
            }
            for partition in &answer.partitions {
                let elr = partition.eligible_leader_replicas.iter().flatten().map(|node| node.0).collect();
                found.insert(partition.partition_index, elr);
            }
        }
        let Some(next) = response.next_cursor else { break };
        cursor = Some(Cursor::default().with_topic_name(next.topic_name).with_partition_index(next.partition_index));
    }
    Ok(Some(found))
}

fn describe(session: &mut Session, names: &[String], output: Output) -> Result<()> {
    let mut documents = Vec::new();
    let mut text = String::new();
    for name in names {
        let topic = session.topic(name)?;
        let offsets = log_offsets(session, &topic)?;
        let configs = describe_configs(session, name)?;
        let elr = eligible_leaders(session, name)?;
        let (document, rendered) = describe_one(&topic, &offsets, &configs, elr.as_ref());
        documents.push(document);
        text.push_str(&rendered);
    }
    let json = if documents.len() == 1 { documents.remove(0) } else { Value::Array(documents) };
    output.emit(&json, || text);
    Ok(())
}

fn describe_one(
    topic: &TopicInfo,
    offsets: &BTreeMap<i32, (i64, i64)>,
    configs: &[ConfigEntry],
    elr: Option<&BTreeMap<i32, Vec<i32>>>,
) -> (Value, String) {
    let mut partitions = Vec::new();
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "ELR",
        "OFFLINE",
        "LOG-START",
        "LOG-END",
        "RECORDS",
    ]);
    let ids = |nodes: &[i32]| {
        if nodes.is_empty() {
            "-".to_owned()
        } else {
            nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
    };
    let mut record_count = 0;
    for partition in &topic.partitions {
        let (start, end) = offsets.get(&partition.partition).copied().unwrap_or((-1, -1));
        record_count += (end - start).max(0);
        let eligible = elr.map(|elr| elr.get(&partition.partition).cloned().unwrap_or_default());
        partitions.push(json!({
            "partition": partition.partition, "leader": partition.leader_id, "leader_epoch": partition.leader_epoch,
            "replicas": partition.replicas, "isr": partition.isr, "elr": eligible,
            "offline_replicas": partition.offline_replicas,
            "log_start_offset": start, "log_end_offset": end,
            "error": partition.error.map(|error| error.to_string()),
        }));
        table.push(vec![
            partition.partition.to_string(),
            partition.leader_id.to_string(),
            partition.leader_epoch.to_string(),
            ids(&partition.replicas),
            ids(&partition.isr),
            eligible.as_deref().map_or_else(|| "?".to_owned(), ids),
            ids(&partition.offline_replicas),
            start.to_string(),
            end.to_string(),
            (end - start).max(0).to_string(),
        ]);
    }
    let mut config_table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    let mut config_json = serde_json::Map::new();
    for entry in configs {
        let value = if entry.sensitive { Some("(sensitive)".to_owned()) } else { entry.value.clone() };
        config_json.insert(entry.name.clone(), json!({"value": value, "source": entry.source}));
        config_table.push(vec![
            entry.name.clone(),
            value.unwrap_or_else(|| "(null)".to_owned()),
            entry.source.to_owned(),
        ]);
    }
    let document = json!({
        "name": topic.topic.name, "id": topic.topic.id.to_string(), "partition_count": topic.partitions.len(),
        "partitions": partitions, "configs": config_json,
    });
    let mut text = format!(
        "Topic: {}  Id: {}  Partitions: {}  Records: {}\n",
        topic.topic.name,
        topic.topic.id,
        topic.partitions.len(),
        record_count
    );
    text.push_str(&table.render());
    if !config_table.is_empty() {
        text.push('\n');
        text.push_str(&config_table.render());
    }
    (document, text)
}

fn alter_config(
    session: &mut Session,
    name: &str,
    configs: &[(String, String)],
    deletes: &[String],
    output: Output,
) -> Result<()> {
    if configs.is_empty() && deletes.is_empty() {
        bail!("nothing to change: give KEY=VALUE pairs or --delete KEY");
    }
    let mut alterations: Vec<AlterableConfig> = configs
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_config_operation(CONFIG_OPERATION_SET)
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    alterations.extend(deletes.iter().map(|key| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(key.clone()))
            .with_config_operation(CONFIG_OPERATION_DELETE)
            .with_value(None)
    }));
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_TOPIC)
        .with_resource_name(StrBytes::from_string(name.to_owned()))
        .with_configs(alterations);
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    let response = session.connection().send(&request).context("IncrementalAlterConfigs request failed")?;
    for result in &response.responses {
        if let Some(error) = result.error_code.err() {
            bail!("cannot alter configs of {name}: {}", describe_error(error, result.error_message.as_deref()));
        }
    }
    let set: BTreeMap<&str, &str> = configs.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let json = json!({"topic": name, "set": set, "deleted": deletes});
    output.emit(&json, || format!("Updated {} config(s) of topic {name}.\n", configs.len() + deletes.len()));
    Ok(())
}

fn add_partitions(session: &mut Session, name: &str, partitions: i32, output: Output) -> Result<()> {
    let topic = session.topic(name)?;
    let before = topic.partitions.len();
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                .with_count(partitions)
                .with_assignments(None),
        ])
        .with_timeout_ms(timeout_ms);
    let response = session.connection().send(&request).context("CreatePartitions request failed")?;
    for result in &response.results {
        if let Some(error) = result.error_code.err() {
            bail!("cannot add partitions to {name}: {}", describe_error(error, result.error_message.as_deref()));
        }
    }
    wait_for_leaders(session, name, session.config().request_timeout)?;
    let json = json!({"topic": name, "partitions_before": before, "partitions": partitions});
    output.emit(&json, || format!("Topic {name} now has {partitions} partitions (was {before}).\n"));
    Ok(())
}

fn delete(session: &mut Session, names: &[String], if_exists: bool, output: Output) -> Result<()> {
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let wire_names: Vec<TopicName> = names.iter().map(|name| TopicName(StrBytes::from_string(name.clone()))).collect();
    // v6 names topics in `topics`, older versions in `topic_names`; the codec refuses `topics`
    // below v6.
    let version = session.connection().versions().version_for(ApiKey::DeleteTopics)?;
    let mut request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
    if version >= 6 {
        request = request.with_topics(
            wire_names.iter().map(|name| DeleteTopicState::default().with_name(Some(name.clone()))).collect(),
        );
    } else {
        request = request.with_topic_names(wire_names);
    }
    let response = session.connection().send(&request).context("DeleteTopics request failed")?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    for result in &response.responses {
        let name = result.name.as_ref().map(|name| name.0.to_string()).unwrap_or_default();
        match result.error_code.err() {
            None => deleted.push(name),
            Some(kafka_protocol::ResponseError::UnknownTopicOrPartition) if if_exists => missing.push(name),
            Some(kafka_protocol::ResponseError::UnknownTopicOrPartition) => bail!("unknown topic {name}"),
            Some(error) => {
                bail!("cannot delete topic {name}: {}", describe_error(error, result.error_message.as_deref()))
            }
        }
    }
    let json = json!({"deleted": deleted, "missing": missing});
    output.emit(&json, || lines(&deleted, |text, name| push_fmt(text, format_args!("Deleted topic {name}."))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(parse_key_value("k="), Ok(("k".to_owned(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }
}
