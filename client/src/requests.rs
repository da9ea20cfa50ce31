//! Helpers for the APIs a producer and consumer need: Metadata, `CreateTopics`, Produce, Fetch and
//! `ListOffsets`.
//!
//! Request constructors are free functions, so pipelined callers can build a request, enqueue it
//! and receive later; the `Connection` methods send and wait. Topics are addressed by name and id
//! together ([`TopicRef`]) because Produce v13 and Fetch v13+ use ids where older versions use
//! names: both are filled in and the encoder writes whichever the negotiated version has.
//! Plain functions; the thread that owns the connection calls them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::ClientError;

/// `ListOffsets` timestamp asking for the log end offset.
pub const LATEST_TIMESTAMP: i64 = -1;
/// `ListOffsets` timestamp asking for the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;

/// A topic addressed by name and id (the id is nil when the broker did not report one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRef {
    /// Topic name.
    pub name: String,
    /// Topic id from Metadata v10+.
    pub id: Uuid,
}

impl TopicRef {
    /// A topic known only by name.
    pub fn from_name(name: &str) -> Self {
        Self { name: name.to_owned(), id: Uuid::nil() }
    }

    fn wire_name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.name.clone()))
    }
}

/// One broker from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`, ready for [`Connection::connect`].
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Node id of the leader, -1 when none.
    pub leader_id: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Node ids of the replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Node ids of replicas on brokers that are down.
    pub offline_replicas: Vec<i32>,
    /// Error code reported for the partition (e.g. `LEADER_NOT_AVAILABLE`).
    pub error: Option<ResponseError>,
}

/// One topic from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name and id.
    pub topic: TopicRef,
    /// Error code reported for the topic (e.g. `UNKNOWN_TOPIC_OR_PARTITION`).
    pub error: Option<ResponseError>,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// The cluster as one Metadata response describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Controller node id, -1 when unknown.
    pub controller_id: i32,
    /// Topics asked for (or all).
    pub topics: Vec<TopicInfo>,
}

impl ClusterInfo {
    /// Converts a raw Metadata response.
    pub fn from_response(response: &MetadataResponse) -> Self {
        let brokers = response
            .brokers
            .iter()
            .map(|broker| BrokerInfo { node_id: broker.node_id.0, host: broker.host.to_string(), port: broker.port })
            .collect();
        let topics = response
            .topics
            .iter()
            .map(|topic| {
                let mut partitions: Vec<PartitionInfo> = topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionInfo {
                        partition: partition.partition_index,
                        leader_id: partition.leader_id.0,
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replica_nodes.iter().map(|node| node.0).collect(),
                        isr: partition.isr_nodes.iter().map(|node| node.0).collect(),
                        offline_replicas: partition.offline_replicas.iter().map(|node| node.0).collect(),
                        error: partition.error_code.err(),
                    })
                    .collect();
                partitions.sort_by_key(|partition| partition.partition);
                let name = topic.name.as_ref().map(|name| name.0.to_string()).unwrap_or_default();
                TopicInfo { topic: TopicRef { name, id: topic.topic_id }, error: topic.error_code.err(), partitions }
            })
            .collect();
        Self { brokers, controller_id: response.controller_id.0, topics }
    }

    /// The topic named `name`, if present.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|topic| topic.topic.name == name)
    }

    /// The broker with `node_id`, if present.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|broker| broker.node_id == node_id)
    }
}

/// What [`Connection::create_topic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The topic was created.
    Created,
    /// A topic of that name existed already (its partition count may differ).
    AlreadyExists,
}

/// Settings for a new topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic<'a> {
    /// Topic name.
    pub name: &'a str,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor; -1 lets the broker use its default.
    pub replication_factor: i16,
    /// Topic configs by Kafka name (`retention.ms`, ...).
    pub configs: &'a [(&'a str, &'a str)],
}

/// A Produce request for one topic: one batch per partition.
pub fn produce_request(
    topic: &TopicRef,
    acks: i16,
    timeout_ms: i32,
    batches: impl IntoIterator<Item = (i32, Bytes)>,
) -> ProduceRequest {
    let partition_data = batches
        .into_iter()
        .map(|(partition, records)| PartitionProduceData::default().with_index(partition).with_records(Some(records)))
        .collect();
    let topic_data = TopicProduceData::default()
        .with_name(topic.wire_name())
        .with_topic_id(topic.id)
        .with_partition_data(partition_data);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![topic_data])
}

/// The outcome for one partition of a Produce response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedPartition {
    /// Partition index.
    pub partition: i32,
    /// Offset assigned to the first record, or -1 on error.
    pub base_offset: i64,
    /// The broker's error, if any.
    pub error: Option<ResponseError>,
}

/// Flattens a Produce response into per-partition outcomes.
pub fn produced_partitions(response: &ProduceResponse) -> impl Iterator<Item = ProducedPartition> + '_ {
    response.responses.iter().flat_map(|topic| {
        topic.partition_responses.iter().map(|partition| ProducedPartition {
            partition: partition.index,
            base_offset: partition.base_offset,
            error: partition.error_code.err(),
        })
    })
}

/// Limits of one Fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// How long the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes the broker waits for before answering.
    pub min_bytes: i32,
    /// Response size limit.
    pub max_bytes: i32,
    /// Per-partition size limit.
    pub partition_max_bytes: i32,
}

impl Default for FetchLimits {
    fn default() -> Self {
        // The Java consumer's defaults: fetch.max.wait.ms 500, fetch.min.bytes 1,
        // fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB.
        Self { max_wait_ms: 500, min_bytes: 1, max_bytes: 50 * 1024 * 1024, partition_max_bytes: 1024 * 1024 }
    }
}

/// A sessionless Fetch request (`read_uncommitted`) for `(partition, fetch_offset)` pairs of one topic.
pub fn fetch_request(topic: &TopicRef, positions: &[(i32, i64)], limits: FetchLimits) -> FetchRequest {
    let partitions = positions
        .iter()
        .map(|(partition, offset)| {
            FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(limits.partition_max_bytes)
        })
        .collect();
    let fetch_topic =
        FetchTopic::default().with_topic(topic.wire_name()).with_topic_id(topic.id).with_partitions(partitions);
    FetchRequest::default()
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.max_bytes)
        .with_topics(vec![fetch_topic])
}

/// The data for one partition of a Fetch response.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// Partition index.
    pub partition: i32,
    /// The broker's error, if any.
    pub error: Option<ResponseError>,
    /// High watermark.
    pub high_watermark: i64,
    /// Raw batches (decode with [`crate::decode::BatchIter`]); empty when none.
    pub records: Bytes,
}

/// Flattens a Fetch response into per-partition data (topic-level errors are on each partition).
pub fn fetched_partitions(response: &FetchResponse) -> impl Iterator<Item = FetchedPartition> + '_ {
    response.responses.iter().flat_map(|topic| {
        topic.partitions.iter().map(|partition| FetchedPartition {
            partition: partition.partition_index,
            error: partition.error_code.err(),
            high_watermark: partition.high_watermark,
            records: partition.records.clone().unwrap_or_default(),
        })
    })
}

impl Connection {
    /// Metadata for `topics`, or for all topics when `None`. Never auto-creates topics.
    ///
    /// # Errors
    /// Connection errors; topic-level errors are reported in the result, not as `Err`.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterInfo, ClientError> {
        let version = self.versions().version_for(ApiKey::Metadata)?;
        let topics = match topics {
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
                    })
                    .collect(),
            ),
            // v0 has no null: an empty list means all topics there.
            None if version == 0 => Some(Vec::new()),
            None => None,
        };
        let request = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false);
        let response = self.send(&request)?;
        Ok(ClusterInfo::from_response(&response))
    }

    /// Creates one topic.
    ///
    /// # Errors
    /// `Broker` with the topic's error code for failures other than `TOPIC_ALREADY_EXISTS`.
    pub fn create_topic(&mut self, topic: &NewTopic<'_>, timeout_ms: i32) -> Result<CreateOutcome, ClientError> {
        let configs = topic
            .configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string((*name).to_owned()))
                    .with_value(Some(StrBytes::from_string((*value).to_owned())))
            })
            .collect();
        let creatable = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.name.to_owned())))
            .with_num_partitions(topic.partitions)
            .with_replication_factor(topic.replication_factor)
            .with_configs(configs);
        let request = CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(timeout_ms);
        let response = self.send(&request)?;
        let code =
            response.topics.iter().find(|result| result.name.0.as_str() == topic.name).map_or(0, |r| r.error_code);
        match code.err() {
            None => Ok(CreateOutcome::Created),
            Some(ResponseError::TopicAlreadyExists) => Ok(CreateOutcome::AlreadyExists),
            Some(error) => {
                Err(ClientError::Broker { api: ApiKey::CreateTopics, resource: topic.name.to_owned(), error })
            }
        }
    }

    /// Returns the topic's metadata, creating it first when it does not exist, and waits (up to
    /// `wait`) until every partition has a leader.
    ///
    /// # Errors
    /// `UnknownTopic` when it never appears with leaders in time; errors of Metadata and
    /// `CreateTopics`.
    pub fn ensure_topic(&mut self, topic: &NewTopic<'_>, wait: Duration) -> Result<TopicInfo, ClientError> {
        let deadline = Instant::now() + wait;
        let mut created = false;
        loop {
            let cluster = self.metadata(Some(&[topic.name]))?;
            let found = cluster.topic(topic.name).filter(|info| info.error.is_none() && !info.partitions.is_empty());
            match found {
                Some(info) if info.partitions.iter().all(|p| p.leader_id >= 0 && p.error.is_none()) => {
                    return Ok(info.clone());
                }
                None if !created => {
                    let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
                    self.create_topic(topic, timeout_ms)?;
                    created = true;
                    continue;
                }
                // Created but not yet visible with leaders everywhere: poll again.
                Some(_) | None => {}
            }
            if Instant::now() >= deadline {
                return Err(ClientError::UnknownTopic { topic: topic.name.to_owned() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a Produce request; `None` for acks=0, which gets no response.
    ///
    /// # Errors
    /// Connection errors; per-partition errors are in the response.
    pub fn produce(&mut self, request: &ProduceRequest) -> Result<Option<ProduceResponse>, ClientError> {
        if request.acks == 0 {
            self.enqueue_without_response(request)?;
            return Ok(None);
        }
        self.send(request).map(Some)
    }

    /// Fetches once.
    ///
    /// # Errors
    /// Connection errors, or `Broker` for a top-level error code; per-partition errors are in the
    /// result.
    pub fn fetch(&mut self, request: &FetchRequest) -> Result<FetchResponse, ClientError> {
        let response = self.send(request)?;
        if let Some(error) = response.error_code.err() {
            return Err(ClientError::Broker { api: ApiKey::Fetch, resource: "fetch".to_owned(), error });
        }
        Ok(response)
    }

    /// The offset for `timestamp` in each partition ([`LATEST_TIMESTAMP`] for the log end,
    /// [`EARLIEST_TIMESTAMP`] for the log start), as `(partition, offset)` sorted by partition.
    ///
    /// # Errors
    /// `Broker` for the first partition with an error code.
    pub fn list_offsets(
        &mut self,
        topic: &TopicRef,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        let request_partitions = partitions
            .iter()
            .map(|partition| ListOffsetsPartition::default().with_partition_index(*partition).with_timestamp(timestamp))
            .collect();
        let list_topic = ListOffsetsTopic::default().with_name(topic.wire_name()).with_partitions(request_partitions);
        let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![list_topic]);
        let response = self.send(&request)?;
        let mut offsets = Vec::with_capacity(partitions.len());
        for result in response.topics.iter().flat_map(|topic| topic.partitions.iter()) {
            if let Some(error) = result.error_code.err() {
                let resource = format!("{}-{}", topic.name, result.partition_index);
                return Err(ClientError::Broker { api: ApiKey::ListOffsets, resource, error });
            }
            offsets.push((result.partition_index, result.offset));
        }
        offsets.sort_unstable();
        Ok(offsets)
    }
}
