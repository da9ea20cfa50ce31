//! DescribeTransactions (v0, KIP-664): each transactional id's state, producer id and epoch,
//! timeout, start time and partitions, from its coordinator.

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId};

use super::{str_bytes, topic_name};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::handlers::list_transactions::state_name;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::transactions::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeTransactions, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeTransactionsRequest,
) -> Outcome<DescribeTransactionsResponse> {
    let mut states = Vec::new();
    // As Kafka, a transaction's topics the caller may not DESCRIBE are left out.
    let checker = crate::security::authorizer::Checker::new(&shard, &call);
    for id in &request.transactional_ids {
        let text = id.to_string();
        let target = text.clone();
        let described = match denied(&shard, &call, AclOperation::Describe, Resource::TransactionalId(&text)) {
            Some(error) => Err(error),
            None => on_coordinator(&shard, &target, move |coordinator| async move { coordinator.describe(&text) })
                .await
                .and_then(|outcome| outcome),
        };
        let state = TransactionState::default().with_transactional_id(id.clone());
        states.push(match described {
            Ok(txn) => {
                let mut topics: Vec<TopicData> = Vec::new();
                let describable = |topic: &str| checker.allows(AclOperation::Describe, Resource::Topic(topic));
                for (topic, index) in txn.partitions.iter().filter(|(topic, _)| describable(topic)) {
                    match topics.last_mut() {
                        Some(last) if last.topic.as_str() == topic => last.partitions.push(*index),
                        _ => topics
                            .push(TopicData::default().with_topic(topic_name(topic)).with_partitions(vec![*index])),
                    }
                }
                state
                    .with_transaction_state(str_bytes(state_name(txn.status)))
                    .with_transaction_timeout_ms(txn.timeout_ms)
                    .with_transaction_start_time_ms(txn.start_ms)
                    .with_producer_id(ProducerId(txn.producer_id))
                    .with_producer_epoch(txn.producer_epoch)
                    .with_topics(topics)
            }
            Err(error) => state
                .with_error_code(error.code())
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
        });
    }
    Outcome::Respond(DescribeTransactionsResponse::default().with_transaction_states(states))
}
