//! Run setup: find or create the topic, then spread its partitions over producer and consumer
//! connections so that each connection talks only to its partitions' leader.
//!
//! Steps:
//! 1. Connect to the bootstrap broker and negotiate versions.
//! 2. Ensure the topic exists with leaders for every partition (create it if missing).
//! 3. Group partitions by leader; give each leader at least one connection (round robin over
//!    leaders), then deal each leader's partitions round robin over its connections.
//!
//! Main thread only.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use kafka_protocol::messages::ApiKey;
use sluice_client::requests::{ClusterInfo, NewTopic, TopicRef};
use sluice_client::{Connection, ConnectionConfig};

use crate::args::Config;

/// One connection's share of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Leader address (`host:port`).
    pub address: String,
    /// Partitions this connection produces to or fetches from.
    pub partitions: Vec<i32>,
}

/// Everything the threads need to start.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub topic: TopicRef,
    pub partition_count: usize,
    pub producers: Vec<Assignment>,
    pub consumers: Vec<Assignment>,
    /// Negotiated versions with the bootstrap broker, for the report.
    pub produce_version: i16,
    pub fetch_version: Option<i16>,
}

pub(crate) fn connection_config(config: &Config) -> ConnectionConfig {
    ConnectionConfig {
        client_id: config.client_id.clone(),
        request_timeout: config.request_timeout,
        ..ConnectionConfig::default()
    }
}

/// Steps 1-3 of the module doc.
pub(crate) fn prepare(config: &Config) -> anyhow::Result<Plan> {
    let mut bootstrap = Connection::connect(&config.bootstrap_server, &connection_config(config))
        .with_context(|| format!("connecting to {}", config.bootstrap_server))?;
    let produce_version = bootstrap.versions().version_for(ApiKey::Produce).context("broker cannot take Produce")?;
    let fetch_version = bootstrap.versions().version_for(ApiKey::Fetch).ok();
    let new_topic = NewTopic {
        name: &config.topic,
        partitions: config.partitions,
        replication_factor: config.replication_factor,
        configs: &[],
    };
    let topic = bootstrap.ensure_topic(&new_topic, Duration::from_secs(30)).context("preparing the topic")?;
    if topic.partitions.len() != config.partitions as usize {
        eprintln!(
            "warning: topic {} exists with {} partitions (asked for {}); using all of them",
            config.topic,
            topic.partitions.len(),
            config.partitions
        );
    }
    let cluster = bootstrap.metadata(Some(&[config.topic.as_str()])).context("reading metadata")?;
    let mut leaders: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for partition in &topic.partitions {
        leaders.entry(partition.leader_id).or_default().push(partition.partition);
    }
    let producers = assign(&cluster, &leaders, config.connections)?;
    let consumers = if config.consumers > 0 { assign(&cluster, &leaders, config.consumers)? } else { Vec::new() };
    Ok(Plan {
        topic: topic.topic.clone(),
        partition_count: topic.partitions.len(),
        producers,
        consumers,
        produce_version,
        fetch_version,
    })
}

/// Step 3: at least one connection per leader, partitions dealt round robin within a leader.
fn assign(cluster: &ClusterInfo, leaders: &BTreeMap<i32, Vec<i32>>, count: usize) -> anyhow::Result<Vec<Assignment>> {
    let leader_list: Vec<(&i32, &Vec<i32>)> = leaders.iter().collect();
    if leader_list.is_empty() {
        bail!("the topic has no partitions");
    }
    let count = count.max(leader_list.len());
    let mut assignments = Vec::with_capacity(count);
    for (leader_index, (leader_id, partitions)) in leader_list.iter().enumerate() {
        let broker = cluster.broker(**leader_id).with_context(|| format!("leader {leader_id} is not in metadata"))?;
        let slots: Vec<usize> = (leader_index..count).step_by(leader_list.len()).collect();
        let mut shares = vec![Vec::new(); slots.len()];
        for (index, partition) in partitions.iter().enumerate() {
            shares[index % slots.len()].push(*partition);
        }
        for partitions in shares.into_iter().filter(|share| !share.is_empty()) {
            assignments.push(Assignment { address: broker.address(), partitions });
        }
    }
    Ok(assignments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::requests::BrokerInfo;

    fn cluster(brokers: &[i32]) -> ClusterInfo {
        ClusterInfo {
            brokers: brokers
                .iter()
                .map(|node_id| BrokerInfo { node_id: *node_id, host: format!("b{node_id}"), port: 9092 })
                .collect(),
            controller_id: 0,
            topics: Vec::new(),
        }
    }

    #[test]
    fn partitions_are_dealt_over_connections() {
        let leaders = BTreeMap::from([(0, vec![0, 1, 2, 3, 4])]);
        let assignments = assign(&cluster(&[0]), &leaders, 2).expect("assigns");
        assert_eq!(assignments.len(), 2);
        assert_eq!(assignments[0].partitions, [0, 2, 4]);
        assert_eq!(assignments[1].partitions, [1, 3]);
    }

    #[test]
    fn every_leader_gets_a_connection_and_idle_connections_are_dropped() {
        let leaders = BTreeMap::from([(1, vec![0, 2]), (2, vec![1])]);
        let assignments = assign(&cluster(&[1, 2]), &leaders, 1).expect("assigns");
        assert_eq!(assignments.len(), 2);
        assert_eq!(assignments[0], Assignment { address: "b1:9092".into(), partitions: vec![0, 2] });
        assert_eq!(assignments[1], Assignment { address: "b2:9092".into(), partitions: vec![1] });
        let many = assign(&cluster(&[1, 2]), &leaders, 8).expect("assigns");
        assert_eq!(many.iter().map(|a| a.partitions.len()).sum::<usize>(), 3);
    }
}
