//! Transaction markers: the commit or abort control batch written to every partition of a
//! transaction, as Kafka's WriteTxnMarkers does.
//!
//! - [`write_local`]: appends one marker to a partition this broker leads (durably, and once
//!   every in-sync replica has it, as Kafka's markers are written with acks=all), then settles
//!   the transactional offsets a marker on an offsets partition ends. The WriteTxnMarkers
//!   handler and the local coordinator both use it.
//! - [`write_all`]: the coordinator's side: groups the transaction's partitions by leader,
//!   writes locally or sends WriteTxnMarkers to the leader, and retries what failed (a leader
//!   moved, a broker was unreachable) with a fresh metadata image until every partition has its
//!   marker, the partition no longer exists, or the coordinator stops owning the transaction
//!   (checked before every round, the first included).
//!
//! Runs on the calling shard's thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_engine::batch::{ControlType, EndTxnMarker};
use sluice_engine::{AppendOptions, TopicPartition};

use crate::context::Shared;
use crate::error::{EngineError, kafka_error};
use crate::groups::OFFSETS_TOPIC;

/// The WriteTxnMarkers version sent to other brokers (flexible).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long a marker waits for the in-sync replicas, and a remote call for its answer.
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before retrying the partitions that failed.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// One transaction's end, as its markers carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) commit: bool,
    /// The leader epoch of the coordinator's `__transaction_state` partition.
    pub(crate) coordinator_epoch: i32,
}

/// Appends `marker` to `partition`, which this broker must lead.
///
/// # Errors
/// NOT_LEADER_OR_FOLLOWER when it does not lead it (or leadership moved meanwhile),
/// UNKNOWN_TOPIC_OR_PARTITION, the append's error, or NOT_ENOUGH_REPLICAS / REQUEST_TIMED_OUT
/// when the in-sync replicas did not take it in time.
pub(crate) async fn write_local(
    shared: &Arc<Shared>,
    partition: &TopicPartition,
    marker: Marker,
) -> Result<(), ResponseError> {
    let image = shared.metadata.image();
    let topic = image.topic(&partition.topic).ok_or(ResponseError::UnknownTopicOrPartition)?;
    let led = crate::metadata::lead(shared.identity.node_id, topic, partition.partition.0, -1)?;
    let control_type = if marker.commit { ControlType::Commit } else { ControlType::Abort };
    let batch = sluice_engine::batch::build_control_batch(
        marker.producer_id,
        marker.producer_epoch,
        EndTxnMarker { control_type, coordinator_epoch: marker.coordinator_epoch },
        shared.clock.unix_ms(),
    );
    let options = AppendOptions { durable: true, leader_epoch: led.leader_epoch };
    let appended = shared.engine.append(partition, batch, options).await.map_err(|error| {
        tracing::debug!(%partition, %error, "a transaction marker was refused");
        kafka_error(EngineError::Append(&error))
    })?;
    let replication = shared.metadata.replication();
    if replication
        .in_sync_replicas(partition, led.leader_epoch, led.replica_count)
        .map_err(crate::replication::NotReplicated::error)?
        .is_some()
    {
        let deadline = shared.clock.now() + MARKER_TIMEOUT;
        let end = appended.last_offset.0 + 1;
        replication
            .wait_replicated(partition, led.leader_epoch, end, 1, deadline)
            .await
            .map_err(crate::replication::NotReplicated::error)?;
    }
    if &*partition.topic == OFFSETS_TOPIC {
        settle_offsets(shared, partition, marker).await;
    }
    Ok(())
}

/// Tells the group coordinator of an offsets partition that a transaction ended there.
async fn settle_offsets(shared: &Arc<Shared>, partition: &TopicPartition, marker: Marker) {
    let Some(target) = shared.engine.shard_of(partition) else { return };
    let index = partition.partition.0;
    let settled = crate::context::on_shard(&shared.engine, target, move |context| async move {
        context.groups.coordinator.complete_txn(index, marker.producer_id, marker.commit);
    })
    .await;
    if settled.is_err() {
        tracing::debug!(%partition, "the shard stopped before settling transactional offsets");
    }
}

/// Writes `marker` to every partition in `partitions`, retrying until each has it or no longer
/// exists, or `owned` says the coordinator gave the transaction up. `owned` is asked before each
/// round: a coordinator that no longer owns the transaction writes no marker, not even a first
/// one. Returns whether it finished.
pub(crate) async fn write_all(
    shared: &Arc<Shared>,
    marker: Marker,
    partitions: &BTreeSet<(String, i32)>,
    owned: impl Fn() -> bool,
) -> bool {
    let mut remaining: BTreeSet<(String, i32)> = partitions.clone();
    loop {
        if !owned() {
            return false;
        }
        let image = shared.metadata.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        remaining.retain(|(topic, index)| {
            let Some(state) = image.topic(topic).and_then(|known| known.partition(*index)) else {
                tracing::info!(topic, partition = index, "a transaction's partition is gone; no marker for it");
                return false;
            };
            by_leader.entry(state.leader).or_default().push((topic.clone(), *index));
            true
        });
        if remaining.is_empty() {
            return true;
        }
        let writes = by_leader.into_iter().map(|(leader, batch)| {
            let image = image.clone();
            async move {
                if leader == shared.identity.node_id {
                    let mut done = Vec::new();
                    for (topic, index) in batch {
                        let partition = TopicPartition::new(topic.as_str(), index);
                        if finished(write_local(shared, &partition, marker).await, &partition) {
                            done.push((topic, index));
                        }
                    }
                    return done;
                }
                let Some(broker) = image.brokers.get(&leader).filter(|broker| !broker.fenced) else {
                    return Vec::new();
                };
                let address = format!("{}:{}", broker.host, broker.port);
                write_remote(&address, marker, batch).await
            }
        });
        for done in futures_util::future::join_all(writes).await {
            for partition in done {
                remaining.remove(&partition);
            }
        }
        if remaining.is_empty() {
            return true;
        }
        shared.clock.sleep(RETRY_BACKOFF).await;
    }
}

/// Whether a marker write's outcome settles the partition: written, or refused for good (a
/// newer producer epoch there already ended the transaction, as Kafka stops sending then).
fn finished(outcome: Result<(), ResponseError>, partition: &TopicPartition) -> bool {
    match outcome {
        Ok(()) | Err(ResponseError::UnknownTopicOrPartition) => true,
        Err(
            ResponseError::InvalidProducerEpoch
            | ResponseError::ProducerFenced
            | ResponseError::TransactionCoordinatorFenced,
        ) => {
            tracing::warn!(%partition, "a marker was refused for an old producer or coordinator epoch; not retried");
            true
        }
        Err(error) => {
            tracing::debug!(%partition, ?error, "a transaction marker failed; retrying");
            false
        }
    }
}

/// Sends the markers of `partitions` to the leader at `address`; returns those written.
async fn write_remote(address: &str, marker: Marker, partitions: Vec<(String, i32)>) -> Vec<(String, i32)> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, index) in &partitions {
        topics.entry(topic.clone()).or_default().push(*index);
    }
    let request = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(crate::handlers::str_bytes(&topic)))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            ),
    ]);
    let answer: std::io::Result<WriteTxnMarkersResponse> =
        crate::net::peer::call(address, ApiKey::WriteTxnMarkers, WRITE_TXN_MARKERS_VERSION, &request, MARKER_TIMEOUT)
            .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(address, %error, "WriteTxnMarkers to a leader failed; retrying");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for result in response.markers {
        for topic in result.topics {
            for partition in topic.partitions {
                let name = topic.name.0.to_string();
                let target = TopicPartition::new(name.as_str(), partition.partition_index);
                let outcome = match ResponseError::try_from_code(partition.error_code) {
                    None => Ok(()),
                    Some(error) => Err(error),
                };
                if finished(outcome, &target) {
                    done.push((name, partition.partition_index));
                }
            }
        }
    }
    done
}
