//! AlterPartitionReassignments (v0-v1): start, replace or cancel (null replicas) the
//! reassignment of each partition named, decided by the active controller. A reassignment adds
//! the target replicas, which fetch from the leader; once every one of them is in sync the
//! controller drops the replicas that leave and moves leadership if its leader leaves.
//! ListPartitionReassignments shows the ones under way.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AlterPartitionReassignments, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AlterPartitionReassignmentsRequest,
) -> Outcome<AlterPartitionReassignmentsResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Alter, Resource::Cluster) {
        return Outcome::Respond(AlterPartitionReassignmentsResponse::default().with_error_code(error.code()));
    }
    let image = shard.image();
    let mut partitions = Vec::new();
    let mut refused = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let target: Option<Vec<i32>> =
                partition.replicas.as_ref().map(|replicas| replicas.iter().map(|replica| replica.0).collect());
            // v1 may forbid a change of the replication factor (KIP-860).
            let current = image.topic(topic.name.as_str()).and_then(|found| found.partition(partition.partition_index));
            let changes_factor = match (&target, current) {
                (Some(target), Some(current)) => {
                    let original = current.replicas.len() - current.adding.len();
                    target.len() != original
                }
                _ => false,
            };
            if call.version >= 1 && !request.allow_replication_factor_change && changes_factor {
                refused.push((topic.name.to_string(), partition.partition_index));
            } else {
                partitions.push((topic.name.to_string(), partition.partition_index, target));
            }
        }
    }
    let answers = shard.shared.metadata.reassign(partitions.clone()).await;
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    let mut push = |topic: &str, index: i32, outcome: Result<(), (ResponseError, String)>| {
        let response = ReassignablePartitionResponse::default().with_partition_index(index);
        let response = match outcome {
            Ok(()) => response,
            Err((error, text)) => response.with_error_code(code(error)).with_error_message(message(text)),
        };
        match responses.iter_mut().find(|found| found.name.0.as_str() == topic) {
            Some(found) => found.partitions.push(response),
            None => responses.push(
                ReassignableTopicResponse::default()
                    .with_name(super::topic_name(topic))
                    .with_partitions(vec![response]),
            ),
        }
    };
    for ((topic, index, _), answer) in partitions.iter().zip(answers) {
        push(topic, *index, answer.map_err(|refusal| (refusal.error, refusal.message)));
    }
    for (topic, index) in refused {
        let why = "the reassignment changes the replication factor".to_owned();
        push(&topic, index, Err((ResponseError::InvalidReplicationFactor, why)));
    }
    let response = AlterPartitionReassignmentsResponse::default().with_responses(responses);
    let response = if call.version >= 1 {
        response.with_allow_replication_factor_change(request.allow_replication_factor_change)
    } else {
        response
    };
    Outcome::Respond(response)
}
