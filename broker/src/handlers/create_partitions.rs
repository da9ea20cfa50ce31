//! CreatePartitions (v0-v3): grows a topic. Assignments, when given, must place every new
//! partition on this broker alone.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::topic_error_code;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _version: i16,
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
    let Some(info) = shard.engine().topic(name) else {
        return Err((code(ResponseError::UnknownTopicOrPartition), format!("unknown topic {name}")));
    };
    if topic.count <= info.partition_count() {
        let text = format!("topic {name} has {} partitions; the count can only grow", info.partition_count());
        return Err((code(ResponseError::InvalidPartitions), text));
    }
    if let Some(assignments) = &topic.assignments {
        let node = shard.shared.identity.node_id;
        let added = usize::try_from(topic.count - info.partition_count()).unwrap_or(0);
        let valid = assignments.len() == added
            && assignments
                .iter()
                .all(|assignment| assignment.broker_ids.len() == 1 && assignment.broker_ids[0].0 == node);
        if !valid {
            let text = format!("each new partition must be assigned to broker {node} alone");
            return Err((code(ResponseError::InvalidReplicaAssignment), text));
        }
    }
    if validate_only {
        return Ok(());
    }
    match shard.engine().create_partitions(name, topic.count).await {
        Ok(_) => {
            tracing::info!(topic = name, partitions = topic.count, "grew topic");
            Ok(())
        }
        Err(error) => Err((topic_error_code(&error), error.to_string())),
    }
}
