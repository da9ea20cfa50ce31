//! Connections to a cluster: the bootstrap broker, plus one connection per other broker that a
//! command needs (a partition's leader, a group's or transactional id's coordinator), opened on
//! first use.
//!
//! Every broker is addressed as Metadata advertises it, so the tool works against any
//! Kafka-compatible cluster, single broker or many. Errors are worded for a person: which broker
//! could not be reached, which topic does not exist. Main thread only (the consumer's heartbeat
//! thread opens its own connection with [`Session::connect_to`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use sluice_client::group::{COORDINATOR_KEY_GROUP, COORDINATOR_KEY_TRANSACTION};
use sluice_client::requests::{BrokerInfo, ClusterInfo, TopicInfo};
use sluice_client::{ClientError, Connection, ConnectionConfig};

use crate::security::SecurityArgs;

/// How many times a retriable error (leader moving, coordinator loading) is retried.
pub(crate) const RETRY_COUNT_MAX: u32 = 20;
/// Pause between retries of a retriable error.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// The bootstrap connection and connections to brokers by node id.
#[derive(Debug)]
pub(crate) struct Session {
    bootstrap: String,
    config: ConnectionConfig,
    connection: Connection,
    nodes: BTreeMap<i32, Connection>,
    brokers: Vec<BrokerInfo>,
}

impl Session {
    /// Connects to the bootstrap broker.
    ///
    /// # Errors
    /// When the security settings are invalid, or the broker cannot be reached, refuses the TLS
    /// handshake or the authentication, or does not speak the Kafka protocol.
    pub(crate) fn connect(bootstrap: &str, request_timeout: Duration, security: &SecurityArgs) -> Result<Self> {
        let mut config = ConnectionConfig {
            client_id: "sluicectl".to_owned(),
            connect_timeout: request_timeout.min(Duration::from_secs(10)),
            request_timeout,
            // kafka-protocol 0.18 lists OffsetCommit and OffsetFetch v10 (Kafka 4.1+) among its
            // API versions but encodes them only up to v9, so a newer broker would otherwise be
            // sent a version the codec refuses.
            version_caps: vec![(ApiKey::OffsetCommit, 9), (ApiKey::OffsetFetch, 9)],
            ..ConnectionConfig::default()
        };
        // Every connection of the session, and the consumer's heartbeat connection, is opened
        // from this configuration, so all of them use TLS and SASL alike.
        security.apply(&mut config)?;
        let connection = Self::connect_to(bootstrap, &config)?;
        Ok(Self { bootstrap: bootstrap.to_owned(), config, connection, nodes: BTreeMap::new(), brokers: Vec::new() })
    }

    /// Opens one more connection to `address` with the session's settings.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    pub(crate) fn connect_to(address: &str, config: &ConnectionConfig) -> Result<Connection> {
        Connection::connect(address, config).map_err(|error| match error {
            ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::Closed { .. } => {
                anyhow::Error::new(error).context(format!("broker {address} is unreachable"))
            }
            // Their messages name the broker and the reason already.
            error @ (ClientError::Tls { .. } | ClientError::Authentication { .. }) => anyhow::Error::new(error),
            // A TLS record header (content type 21 or 22, version 3.x) read as a size prefix.
            ClientError::FrameSize { size_bytes, .. } if matches!(size_bytes >> 16, 0x1503 | 0x1603) => {
                anyhow::Error::new(error).context(format!(
                    "broker {address} answered with TLS: set security.protocol SSL or SASL_SSL (--command-config or \
                     --security-protocol)"
                ))
            }
            other => anyhow::Error::new(other).context(format!("broker {address} did not answer ApiVersions")),
        })
    }

    pub(crate) fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The bootstrap connection.
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// Metadata for `topics` (all when `None`); remembers the brokers it lists.
    ///
    /// # Errors
    /// Connection errors.
    pub(crate) fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterInfo> {
        let cluster = self.connection.metadata(topics).context("Metadata request failed")?;
        self.brokers.clone_from(&cluster.brokers);
        Ok(cluster)
    }

    /// Metadata of one topic that must exist.
    ///
    /// # Errors
    /// `unknown topic NAME` when the broker does not know it; connection errors.
    pub(crate) fn topic(&mut self, name: &str) -> Result<TopicInfo> {
        let cluster = self.metadata(Some(&[name]))?;
        let Some(topic) = cluster.topic(name) else { bail!("unknown topic {name}") };
        match topic.error {
            None if !topic.partitions.is_empty() => Ok(topic.clone()),
            None | Some(ResponseError::UnknownTopicOrPartition) => bail!("unknown topic {name}"),
            Some(error) => bail!("topic {name}: {error}"),
        }
    }

    /// The connection to broker `node_id`, opened on first use.
    ///
    /// # Errors
    /// When Metadata does not list the broker, or it cannot be reached.
    pub(crate) fn node(&mut self, node_id: i32) -> Result<&mut Connection> {
        if !self.nodes.contains_key(&node_id) {
            if !self.brokers.iter().any(|broker| broker.node_id == node_id) {
                self.metadata(Some(&[]))?;
            }
            let Some(broker) = self.brokers.iter().find(|broker| broker.node_id == node_id) else {
                bail!("broker {node_id} is not in the cluster metadata");
            };
            let connection = Self::connect_to(&broker.address(), &self.config)?;
            self.nodes.insert(node_id, connection);
        }
        Ok(self.nodes.get_mut(&node_id).expect("inserted above when missing"))
    }

    /// The connection to the broker at `broker`'s address (a coordinator), opened on first use.
    ///
    /// # Errors
    /// When it cannot be reached.
    pub(crate) fn broker(&mut self, broker: &BrokerInfo) -> Result<&mut Connection> {
        if !self.brokers.iter().any(|known| known.node_id == broker.node_id) {
            self.brokers.push(broker.clone());
        }
        self.node(broker.node_id)
    }

    /// The offset for `timestamp` (or [`sluice_client::requests::LATEST_TIMESTAMP`] /
    /// [`sluice_client::requests::EARLIEST_TIMESTAMP`]) of `partitions` (all when `None`),
    /// asked of each partition's leader. An offset of -1 means no record at or after `timestamp`.
    ///
    /// # Errors
    /// Connection errors and per-partition errors.
    pub(crate) fn offsets_for(
        &mut self,
        topic: &TopicInfo,
        partitions: Option<&[i32]>,
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in &topic.partitions {
            if partitions.is_none_or(|wanted| wanted.contains(&partition.partition)) {
                by_leader.entry(partition.leader_id).or_default().push(partition.partition);
            }
        }
        let mut offsets = BTreeMap::new();
        for (leader, partitions) in by_leader {
            if leader < 0 {
                bail!("partition {}-{} has no leader", topic.topic.name, partitions[0]);
            }
            let connection = self.node(leader)?;
            let found = connection
                .list_offsets(&topic.topic, &partitions, timestamp)
                .with_context(|| format!("cannot list offsets of topic {}", topic.topic.name))?;
            offsets.extend(found);
        }
        Ok(offsets)
    }

    /// The connection to the coordinator of `group`, retrying while it is not yet available.
    ///
    /// # Errors
    /// When no coordinator is found in time, or it cannot be reached.
    pub(crate) fn coordinator(&mut self, group: &str) -> Result<&mut Connection> {
        let coordinator = find_coordinator(&mut self.connection, group)?;
        self.broker(&coordinator)
    }

    /// The coordinator of transactional id `transactional_id` and the connection to it,
    /// retrying while it is not yet available.
    ///
    /// # Errors
    /// When no coordinator is found in time, or it cannot be reached.
    pub(crate) fn txn_coordinator(&mut self, transactional_id: &str) -> Result<(i32, &mut Connection)> {
        let coordinator = find_coordinator_of(&mut self.connection, COORDINATOR_KEY_TRANSACTION, transactional_id)?;
        Ok((coordinator.node_id, self.broker(&coordinator)?))
    }
}

/// `FindCoordinator` for `group`, retrying retriable errors.
///
/// # Errors
/// Non-retriable errors, or retriable ones that outlast the retries.
pub(crate) fn find_coordinator(connection: &mut Connection, group: &str) -> Result<BrokerInfo> {
    find_coordinator_of(connection, COORDINATOR_KEY_GROUP, group)
}

/// `FindCoordinator` for `key` of `key_type` (a group or a transactional id), retrying
/// retriable errors (the broker may still be creating the internal topic that places it).
///
/// # Errors
/// Non-retriable errors, or retriable ones that outlast the retries.
fn find_coordinator_of(connection: &mut Connection, key_type: i8, key: &str) -> Result<BrokerInfo> {
    let what = if key_type == COORDINATOR_KEY_TRANSACTION { "transactional id" } else { "group" };
    let mut attempt = 0;
    loop {
        match connection.find_coordinator_of(key_type, key) {
            Ok(coordinator) => return Ok(coordinator),
            Err(ClientError::Broker { error, .. }) if error.is_retriable() && attempt < RETRY_COUNT_MAX => {
                attempt += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            Err(ClientError::UnsupportedVersion { broker: None, .. }) => {
                let feature = if key_type == COORDINATOR_KEY_TRANSACTION { "transactions" } else { "consumer groups" };
                bail!("the broker does not support {feature} (no FindCoordinator API)")
            }
            Err(error) => return Err(error).with_context(|| format!("cannot find the coordinator of {what} {key}")),
        }
    }
}

/// A Kafka error code with the broker's message, when it sent one.
pub(crate) fn describe_error(error: ResponseError, message: Option<&str>) -> String {
    match message {
        Some(message) if !message.is_empty() => format!("{error}: {message}"),
        _ => error.to_string(),
    }
}
