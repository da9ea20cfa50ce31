//! TxnOffsetCommit (v0-v5): offsets committed inside the producer's transaction, stored by the
//! group's coordinator in a batch of that transaction and counted only once its commit marker
//! reaches the offsets partition. v3+ carry the consumer's generation and member, checked as
//! OffsetCommit checks them. v5 comes from a transaction version 2 producer, which sends no
//! AddOffsetsToTxn: the group's offsets partition is added to its transaction first, as Kafka's
//! group coordinator does.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::coordinator::CommitEntry;
use crate::groups::storage::TxnProducer;
use crate::groups::{Coordinator, OFFSETS_TOPIC, TxnCommitArgs, on_coordinator};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::TxnOffsetCommit, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: TxnOffsetCommitRequest,
) -> Outcome<TxnOffsetCommitResponse> {
    let group_id = request.group_id.to_string();
    let args = TxnCommitArgs {
        producer: TxnProducer { producer_id: request.producer_id.0, producer_epoch: request.producer_epoch },
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        generation_id: if call.version >= 3 { request.generation_id } else { -1 },
        api_version: call.version,
    };
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| CommitEntry {
                topic: topic.name.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition.committed_metadata.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let topics = entries.iter().map(|entry| entry.topic.as_str());
    let refusals = crate::security::checks::Refusals::txn_offset_commit(
        &shard,
        &call,
        (request.transactional_id.as_str(), &group_id),
        topics,
    );
    let entries = refusals.keep(entries);
    let count = entries.len();
    let target = group_id.clone();
    let added = match refusals.all() {
        Some(error) => Err(error),
        None if call.version >= 5 => add_offsets_partition(&shard, &request).await,
        None => Ok(()),
    };
    let results = match added {
        Ok(()) => on_coordinator(&shard, &target, move |coordinator| async move {
            coordinator.txn_commit(&group_id, &args, &entries).await
        })
        .await
        .unwrap_or_else(|error| vec![Err(error); count]),
        Err(error) => vec![Err(error); count],
    };
    let mut results = refusals.merge(results).into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .zip(results.by_ref())
                .map(|(partition, result): (_, Result<(), ResponseError>)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(result.err().map_or(0, |error| error.code()))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    Outcome::Respond(TxnOffsetCommitResponse::default().with_topics(topics))
}

/// Adds the group's offsets partition to the producer's transaction (transaction version 2).
async fn add_offsets_partition(shard: &ShardContext, request: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let image = shard.image();
    let topic = image.topic(OFFSETS_TOPIC).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let index = Coordinator::partition_of(request.group_id.as_str(), topic.partition_count());
    let producer = (request.producer_id.0, request.producer_epoch);
    let partition = (OFFSETS_TOPIC.to_owned(), index);
    let id = request.transactional_id.to_string();
    crate::transactions::verify_partition(shard, &id, producer, partition, true).await.map_err(|error| match error {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::NetworkException => ResponseError::CoordinatorLoadInProgress,
        other => other,
    })
}
