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
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::CreatePartitions, min: 0, max: 3 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: CreatePartitionsRequest,
) -> Outcome<CreatePartitionsResponse> {
    let quota = crate::quota::MutationQuota::of(&shard, &call, call.version >= 3);
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Some(error) = denied(&shard, &call, AclOperation::Alter, Resource::Topic(topic.name.as_str())) {
            results.push(result.with_error_code(error.code()).with_error_message(message("Authorization failed.")));
            continue;
        }
        results.push(match grow(&shard, topic, request.validate_only, &quota).await {
            Ok(()) => result,
            Err((error_code, text)) => result.with_error_code(error_code).with_error_message(message(text)),
        });
    }
    let throttle_time_ms = quota.finish(&shard, &call);
    Outcome::Respond(CreatePartitionsResponse::default().with_results(results).with_throttle_time_ms(throttle_time_ms))
}

async fn grow(
    shard: &ShardContext,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
    quota: &crate::quota::MutationQuota,
) -> Result<(), (i16, String)> {
    let name = topic.name.as_str();
    let assignments: Vec<Vec<i32>> = topic
        .assignments
        .iter()
        .flatten()
        .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
        .collect();
    quota.admit(shard).map_err(|refusal| (code(refusal.error), refusal.message))?;
    let current = shard.image().topic(name).map_or(0, |known| known.partition_count());
    let grown = shard.shared.metadata.create_partitions(name, topic.count, assignments, validate_only).await;
    match grown {
        Ok(()) => {
            quota.record(shard, usize::try_from(topic.count - current).unwrap_or(0));
            if !validate_only {
                tracing::info!(topic = name, partitions = topic.count, "grew topic");
            }
            Ok(())
        }
        Err(refusal) => Err((code(refusal.error), refusal.message)),
    }
}
