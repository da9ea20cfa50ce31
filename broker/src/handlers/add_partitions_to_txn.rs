//! AddPartitionsToTxn (v0-v5). v0-v3 come from transactional producers: the partitions join the
//! producer's open transaction (stored by its coordinator before the answer). v4-v5 batch
//! several transactions and come from partition leaders (KIP-890): with `verify_only` the
//! coordinator answers whether each partition is already in the open transaction, changing
//! nothing; without it, the partitions join the transaction of a transaction-version-2
//! producer, whose produce and offset commits add them. Every partition of a transaction gets
//! the same error.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey};

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::transactions::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AddPartitionsToTxn, min: 0, max: 5 };

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics.iter().flat_map(|topic| topic.partitions.iter().map(|index| (topic.name.to_string(), *index))).collect()
}

fn results(
    topics: &[AddPartitionsToTxnTopic],
    outcome: &[Result<(), ResponseError>],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut outcomes = outcome.iter();
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .zip(outcomes.by_ref())
                .map(|(index, result)| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*index)
                        .with_partition_error_code(result.err().map_or(0, |error| error.code()))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone()).with_results_by_partition(partitions)
        })
        .collect()
}

/// One transaction's partitions added (or verified): one result per partition.
async fn add(
    shard: &ShardContext,
    transactional_id: String,
    producer: (i64, i16),
    partitions: Vec<(String, i32)>,
    verify_only: bool,
    transaction_version: i16,
) -> Vec<Result<(), ResponseError>> {
    let count = partitions.len();
    let image = shard.image();
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, index)| image.topic(topic).is_none_or(|known| !(0..known.partition_count()).contains(index)))
        .collect();
    if unknown.iter().any(|missing| *missing) {
        // As Kafka: the unknown partitions fail, the others are not added.
        return unknown
            .iter()
            .map(|missing| {
                Err(if *missing {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                })
            })
            .collect();
    }
    let id = transactional_id.clone();
    let answered = on_coordinator(shard, &id, move |coordinator| async move {
        if verify_only {
            partitions.iter().map(|partition| coordinator.verify(&transactional_id, producer, partition)).collect()
        } else {
            let outcome =
                coordinator.add_partitions(&transactional_id, producer, &partitions, transaction_version).await;
            vec![outcome; partitions.len()]
        }
    })
    .await;
    answered.unwrap_or_else(|error| vec![Err(error); count])
}

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AddPartitionsToTxnRequest,
) -> Outcome<AddPartitionsToTxnResponse> {
    if call.version <= 3 {
        let producer = (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch);
        let partitions = partitions_of(&request.v3_and_below_topics);
        let id = request.v3_and_below_transactional_id.to_string();
        let outcome = match crate::security::checks::add_partitions_refusals(&shard, &call, &id, &partitions) {
            Some(refused) => refused,
            None => add(&shard, id, producer, partitions, false, 0).await,
        };
        let results = results(&request.v3_and_below_topics, &outcome);
        return Outcome::Respond(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results));
    }
    // Batches of transactions come from partition leaders only.
    if let Some(error) = denied(&shard, &call, AclOperation::ClusterAction, Resource::Cluster) {
        return Outcome::Respond(AddPartitionsToTxnResponse::default().with_error_code(error.code()));
    }
    let mut by_transaction = Vec::new();
    for transaction in &request.transactions {
        let producer = (transaction.producer_id.0, transaction.producer_epoch);
        let partitions = partitions_of(&transaction.topics);
        let id = transaction.transactional_id.to_string();
        let outcome = add(&shard, id, producer, partitions, transaction.verify_only, 2).await;
        by_transaction.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id.clone())
                .with_topic_results(results(&transaction.topics, &outcome)),
        );
    }
    Outcome::Respond(AddPartitionsToTxnResponse::default().with_results_by_transaction(by_transaction))
}
