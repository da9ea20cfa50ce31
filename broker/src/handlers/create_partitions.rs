//! CreatePartitions (v0-v3): grows a topic through the controller. New partitions get the
//! topic's replication factor, placed over the live brokers as Kafka places them, or the
//! assignments given (registered brokers, the same count for every partition).

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{code, message};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::CreatePartitions, min: 0, max: 3 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _call: Call,
    request: CreatePartitionsRequest,
) -> Outcome<CreatePartitionsResponse> {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match grow(&shard, topic, request.validate_only).await {
            Ok(()) => result,
            Err((error_code, text)) => result.with_error_code(error_code).with_error_message(message(text)),
        });
    }
    Outcome::Respond(CreatePartitionsResponse::default().with_results(results))
}

async fn grow(shard: &ShardContext, topic: &CreatePartitionsTopic, validate_only: bool) -> Result<(), (i16, String)> {
    let name = topic.name.as_str();
    let assignments: Vec<Vec<i32>> = topic
        .assignments
        .iter()
        .flatten()
        .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
        .collect();
    let grown = shard.shared.metadata.create_partitions(name, topic.count, assignments, validate_only).await;
    match grown {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = name, partitions = topic.count, "grew topic");
            }
            Ok(())
        }
        Err(refusal) => Err((code(refusal.error), refusal.message)),
    }
}
