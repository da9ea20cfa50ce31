//! `sluicectl cluster info`: brokers (Metadata, `DescribeCluster` when offered), the active
//! controller (`DescribeQuorum` when offered), the broker's shard count when it reports one among
//! its configs, and the API versions it supports (`ApiVersions`) next to what this tool can
//! speak. `sluicectl cluster quorum`: the controller quorum as `DescribeQuorum` reports it. Main
//! thread only.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeQuorumRequest, TopicName,
    describe_quorum_request,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::Session;

/// `DescribeConfigs` resource type of a broker.
const RESOURCE_TYPE_BROKER: i8 = 4;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Brokers, controller, shards and supported API versions.
    Info,
    /// The controller quorum (DescribeQuorum): the active controller, its epoch, and how far
    /// each voter and observer has replicated the metadata log.
    Quorum,
}

pub(crate) fn run(session: &mut Session, command: &ClusterCommand, output: Output) -> Result<()> {
    match command {
        ClusterCommand::Info => info(session, output),
        ClusterCommand::Quorum => quorum(session, output),
    }
}

fn info(session: &mut Session, output: Output) -> Result<()> {
    let cluster = session.metadata(Some(&[]))?;
    let cluster_id = describe_cluster_id(session);
    let active = describe_quorum(session).ok().map(|partition| partition.leader_id.0);
    let versions = session.connection().send(&ApiVersionsRequest::default()).context("ApiVersions request failed")?;
    let mut brokers = Vec::new();
    let mut broker_table = Table::new(&["NODE", "ADDRESS", "CONTROLLER", "SHARDS"]);
    for broker in &cluster.brokers {
        let shards = broker_shards(session, broker.node_id);
        let controller = broker.node_id == cluster.controller_id;
        let active_controller = active == Some(broker.node_id);
        brokers.push(json!({
            "node_id": broker.node_id, "host": broker.host, "port": broker.port, "controller": controller,
            "active_controller": active_controller, "shards": shards,
        }));
        broker_table.push(vec![
            broker.node_id.to_string(),
            broker.address(),
            if active_controller {
                "active"
            } else if controller {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            shards.map_or_else(|| "-".to_owned(), |count| count.to_string()),
        ]);
    }
    let mut apis = Vec::new();
    let mut api_table = Table::new(&["API", "KEY", "BROKER", "SLUICECTL"]);
    for api in &versions.api_keys {
        let name = ApiKey::try_from(api.api_key)
            .map_or_else(|()| format!("Unknown({})", api.api_key), |key| format!("{key:?}"));
        let client = ApiKey::try_from(api.api_key).ok().map(|key| key.valid_versions());
        apis.push(json!({
            "name": name, "key": api.api_key, "min_version": api.min_version, "max_version": api.max_version,
            "client_max_version": client.map(|range| range.max),
        }));
        api_table.push(vec![
            name,
            api.api_key.to_string(),
            format!("{}-{}", api.min_version, api.max_version),
            client.map_or_else(|| "-".to_owned(), |range| format!("{}-{}", range.min, range.max)),
        ]);
    }
    let json = json!({
        "bootstrap": session.bootstrap(), "cluster_id": cluster_id, "controller_id": cluster.controller_id,
        "active_controller_id": active, "brokers": brokers, "api_versions": apis,
    });
    output.emit(&json, || {
        let mut text = format!(
            "Cluster: {}  Controller: {}  Active controller: {}  Brokers: {}\n",
            cluster_id.as_deref().unwrap_or("-"),
            cluster.controller_id,
            active.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            cluster.brokers.len()
        );
        text.push_str(&broker_table.render());
        text.push('\n');
        text.push_str(&api_table.render());
        text
    });
    Ok(())
}

/// The metadata log's partition as `DescribeQuorum` describes it.
///
/// # Errors
/// The broker does not offer DescribeQuorum, the request failed, or the quorum has no leader.
fn describe_quorum(session: &mut Session) -> Result<PartitionData> {
    session.connection().versions().version_for(ApiKey::DescribeQuorum).context("the broker has no DescribeQuorum")?;
    let partition = describe_quorum_partition("__cluster_metadata");
    let request = DescribeQuorumRequest::default().with_topics(vec![partition]);
    let response = session.connection().send(&request).context("DescribeQuorum request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("DescribeQuorum failed: {error}");
    }
    let found = response.topics.into_iter().flat_map(|topic| topic.partitions).next();
    let partition = found.context("DescribeQuorum answered no partition")?;
    if let Some(error) = partition.error_code.err() {
        bail!("DescribeQuorum failed: {error}");
    }
    Ok(partition)
}

fn describe_quorum_partition(topic: &str) -> describe_quorum_request::TopicData {
    describe_quorum_request::TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partitions(vec![describe_quorum_request::PartitionData::default().with_partition_index(0)])
}

fn quorum(session: &mut Session, output: Output) -> Result<()> {
    let partition = describe_quorum(session)?;
    let now_ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis()),
    )
    .unwrap_or(i64::MAX);
    let mut table = Table::new(&["NODE", "ROLE", "LOG-END", "LAG", "LAST-FETCH-AGO-MS", "CAUGHT-UP-AGO-MS"]);
    let mut replicas = Vec::new();
    let members = partition.current_voters.iter().map(|replica| ("voter", replica));
    let members = members.chain(partition.observers.iter().map(|replica| ("observer", replica)));
    for (role, replica) in members {
        let role = if replica.replica_id == partition.leader_id { "leader" } else { role };
        let lag = (partition.high_watermark - replica.log_end_offset).max(0);
        let ago = |timestamp: i64| (timestamp >= 0).then(|| (now_ms - timestamp).max(0));
        replicas.push(json!({
            "node_id": replica.replica_id.0, "role": role, "log_end_offset": replica.log_end_offset, "lag": lag,
            "last_fetch_timestamp": replica.last_fetch_timestamp,
            "last_caught_up_timestamp": replica.last_caught_up_timestamp,
        }));
        let shown = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
        table.push(vec![
            replica.replica_id.0.to_string(),
            role.to_owned(),
            replica.log_end_offset.to_string(),
            lag.to_string(),
            shown(ago(replica.last_fetch_timestamp)),
            shown(ago(replica.last_caught_up_timestamp)),
        ]);
    }
    let json = json!({
        "leader_id": partition.leader_id.0, "leader_epoch": partition.leader_epoch,
        "high_watermark": partition.high_watermark, "replicas": replicas,
    });
    output.emit(&json, || {
        let mut text = format!(
            "Active controller: {}  Epoch: {}  High watermark: {}\n",
            partition.leader_id.0, partition.leader_epoch, partition.high_watermark
        );
        text.push_str(&table.render());
        text
    });
    Ok(())
}

/// The cluster id from `DescribeCluster`, when the broker offers it.
fn describe_cluster_id(session: &mut Session) -> Option<String> {
    session.connection().versions().version_for(ApiKey::DescribeCluster).ok()?;
    let response = session.connection().send(&DescribeClusterRequest::default()).ok()?;
    (response.error_code == 0).then(|| response.cluster_id.to_string())
}

/// The broker's shard count, when its configs report one (a config whose name mentions shards).
/// Kafka brokers have none; the answer is then `None`.
fn broker_shards(session: &mut Session, node_id: i32) -> Option<Value> {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_BROKER)
        .with_resource_name(StrBytes::from_string(node_id.to_string()))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response = session.node(node_id).ok()?.send(&request).ok()?;
    let result = response.results.first().filter(|result| result.error_code.err().is_none())?;
    let entry = result.configs.iter().find(|config| config.name.as_str().contains("shard"))?;
    let value = entry.value.as_ref()?;
    Some(value.as_str().parse::<u64>().map_or_else(|_| Value::String(value.to_string()), Value::from))
}
