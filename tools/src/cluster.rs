//! `sluicectl cluster info`: brokers (Metadata, `DescribeCluster` when offered), the active
//! controller (`DescribeQuorum` when offered), the broker's shard count when it reports one among
//! its configs, and the API versions it supports (`ApiVersions`) next to what this tool can
//! speak. `sluicectl cluster quorum`: the controller quorum as `DescribeQuorum` reports it.
//! `sluicectl cluster decommission`: moves every replica off a broker
//! (`AlterPartitionReassignments`, each to the live broker holding the fewest replicas) and
//! waits until the moves are done; `sluicectl cluster unregister`: removes a stopped broker from
//! the cluster (`UnregisterBroker`), as `kafka-cluster.sh unregister` does. Main thread only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, DescribeClusterRequest, DescribeConfigsRequest, DescribeQuorumRequest,
    ListPartitionReassignmentsRequest, TopicName, UnregisterBrokerRequest, describe_quorum_request,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::{Session, describe_error};

/// `DescribeConfigs` resource type of a broker.
const RESOURCE_TYPE_BROKER: i8 = 4;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Brokers, controller, shards and supported API versions.
    Info,
    /// The controller quorum (DescribeQuorum): the active controller, its epoch, and how far
    /// each voter and observer has replicated the metadata log.
    Quorum,
    /// Move every replica off a broker before it leaves: each goes to the live broker that
    /// holds the fewest replicas and not one of that partition's, keeping the replication
    /// factor; waits until every move is done. Then stop the broker and unregister it.
    Decommission {
        /// The broker to empty.
        #[arg(long)]
        node: i32,
        /// How long to wait for the moves, in seconds (they go on in the cluster after that).
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// Remove a broker from the cluster (UnregisterBroker), once it is stopped and holds no
    /// replica. A broker still running registers again at its next heartbeat.
    Unregister {
        /// The broker to remove.
        #[arg(long)]
        node: i32,
    },
}

pub(crate) fn run(session: &mut Session, command: &ClusterCommand, output: Output) -> Result<()> {
    match command {
        ClusterCommand::Info => info(session, output),
        ClusterCommand::Quorum => quorum(session, output),
        ClusterCommand::Decommission { node, timeout_s } => {
            decommission(session, *node, Duration::from_secs(*timeout_s), output)
        }
        ClusterCommand::Unregister { node } => unregister(session, *node, output),
    }
}

/// A partition's replicas: topic, index, replicas.
type Replicas = (String, i32, Vec<i32>);

/// The live brokers, and every partition's replicas.
fn replica_lists(session: &mut Session) -> Result<(Vec<i32>, Vec<Replicas>)> {
    let cluster = session.metadata(None)?;
    let live = cluster.brokers.iter().map(|broker| broker.node_id).collect();
    let partitions = cluster
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.topic.name.clone(), partition.partition, partition.replicas.clone()))
        })
        .collect();
    Ok((live, partitions))
}

/// A partition to move: topic, index, current replicas, target replicas.
type Move = (String, i32, Vec<i32>, Vec<i32>);

/// Where each replica on `node` goes: to the live broker (other than `node`) with the fewest
/// replicas that the partition does not already have, at the position `node` held, so that
/// leadership preferences stay in place. Errors when some partition has nowhere to go.
fn plan_decommission(node: i32, live: &[i32], partitions: &[Replicas]) -> Result<Vec<Move>> {
    let mut load: BTreeMap<i32, usize> =
        live.iter().filter(|broker| **broker != node).map(|broker| (*broker, 0)).collect();
    for (_, _, replicas) in partitions {
        for replica in replicas {
            if let Some(count) = load.get_mut(replica) {
                *count += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for (topic, index, replicas) in partitions {
        let Some(position) = replicas.iter().position(|replica| *replica == node) else { continue };
        let Some((&target, _)) = load
            .iter()
            .filter(|(broker, _)| !replicas.contains(broker))
            .min_by_key(|(broker, count)| (**count, **broker))
        else {
            bail!(
                "{topic}-{index} (replicas {replicas:?}) has no live broker to move its replica on node {node} to; add a \
                 broker first"
            );
        };
        *load.get_mut(&target).expect("a live broker") += 1;
        let mut target_replicas = replicas.clone();
        target_replicas[position] = target;
        moves.push((topic.clone(), *index, replicas.clone(), target_replicas));
    }
    Ok(moves)
}

fn decommission(session: &mut Session, node: i32, timeout: Duration, output: Output) -> Result<()> {
    let (live, partitions) = replica_lists(session)?;
    let moves = plan_decommission(node, &live, &partitions)?;
    if !moves.is_empty() {
        let targets: Vec<_> =
            moves.iter().map(|(topic, index, _, target)| (topic.clone(), *index, Some(target.clone()))).collect();
        crate::topics::alter_reassignments(session, &targets)?;
    }
    let started = Instant::now();
    loop {
        let remaining = holding(session, node)?;
        if remaining.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            bail!(
                "{} partition(s) still have a replica on node {node} after {} s (the moves go on): {}",
                remaining.len(),
                timeout.as_secs(),
                remaining.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let moved: Vec<Value> = moves
        .iter()
        .map(|(topic, index, from, to)| json!({"topic": topic, "partition": index, "from": from, "to": to}))
        .collect();
    output.emit(&json!({"node": node, "moved": moved, "holds_replicas": false}), || {
        let mut table = Table::new(&["TOPIC", "PARTITION", "FROM", "TO"]);
        let joined = |replicas: &[i32]| replicas.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        for (topic, index, from, to) in &moves {
            table.push(vec![topic.clone(), index.to_string(), joined(from), joined(to)]);
        }
        format!(
            "{}Node {node} holds no replica now: stop it, then `sluicectl cluster unregister --node {node}`.\n",
            if moves.is_empty() { String::new() } else { table.render() }
        )
    });
    Ok(())
}

/// The partitions (`topic-index`) whose replicas, or whose reassignment under way, still name
/// `node`.
fn holding(session: &mut Session, node: i32) -> Result<Vec<String>> {
    let (_, partitions) = replica_lists(session)?;
    let mut found: Vec<String> = partitions
        .iter()
        .filter(|(_, _, replicas)| replicas.contains(&node))
        .map(|(topic, index, _)| format!("{topic}-{index}"))
        .collect();
    let timeout_ms = i32::try_from(session.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(timeout_ms).with_topics(None);
    let response = session.connection().send(&request).context("ListPartitionReassignments request failed")?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            let named = |replicas: &[BrokerId]| replicas.iter().any(|replica| replica.0 == node);
            let name = format!("{}-{}", topic.name.0.as_str(), partition.partition_index);
            if (named(&partition.replicas) || named(&partition.removing_replicas)) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    Ok(found)
}

fn unregister(session: &mut Session, node: i32, output: Output) -> Result<()> {
    let response = session
        .connection()
        .send(&UnregisterBrokerRequest::default().with_broker_id(BrokerId(node)))
        .context("UnregisterBroker request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot unregister node {node}: {}", describe_error(error, response.error_message.as_deref()));
    }
    output.emit(&json!({"node": node, "unregistered": true}), || format!("Node {node} unregistered.\n"));
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, index: i32, replicas: &[i32]) -> Replicas {
        (topic.to_owned(), index, replicas.to_vec())
    }

    #[test]
    fn decommission_moves_each_replica_to_the_least_loaded_broker_in_place() {
        let partitions = [
            partition("a", 0, &[1, 2, 3]),
            partition("a", 1, &[2, 3, 4]),
            partition("b", 0, &[3, 1]),
            partition("c", 0, &[2]),
        ];
        let moves = plan_decommission(1, &[1, 2, 3, 4], &partitions).expect("a plan");
        assert_eq!(moves.len(), 2, "only the partitions with a replica on node 1 move");
        assert_eq!(moves[0].3, vec![4, 2, 3], "node 4 holds the fewest replicas and takes node 1's place");
        // After the first move: 2 holds 3 replicas, 3 holds 3, 4 holds 2.
        assert_eq!(moves[1].3, vec![3, 4], "then node 4 again, never a broker already in the partition");
    }

    #[test]
    fn decommission_refuses_when_a_partition_has_nowhere_to_go() {
        let error = plan_decommission(3, &[1, 2, 3], &[partition("a", 0, &[1, 2, 3])]).expect_err("no room");
        assert!(error.to_string().contains("a-0"), "{error}");
    }
}
