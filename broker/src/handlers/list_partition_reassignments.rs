//! ListPartitionReassignments (v0): the reassignments under way, as the metadata image has them
//! (all of them, or those of the partitions named): each partition's replicas and which are
//! joining and leaving.

use std::rc::Rc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::topic_name;
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ListPartitionReassignments, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ListPartitionReassignmentsRequest,
) -> Outcome<ListPartitionReassignmentsResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Describe, Resource::Cluster) {
        return Outcome::Respond(ListPartitionReassignmentsResponse::default().with_error_code(error.code()));
    }
    let image = shard.image();
    let ids = |nodes: &[i32]| nodes.iter().map(|node| BrokerId(*node)).collect::<Vec<_>>();
    let wanted = |topic: &str, index: i32| match &request.topics {
        None => true,
        Some(topics) => {
            topics.iter().any(|named| named.name.0.as_str() == topic && named.partition_indexes.contains(&index))
        }
    };
    let mut topics = Vec::new();
    for topic in image.topics() {
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(index, state)| {
                (!state.adding.is_empty() || !state.removing.is_empty()) && wanted(&topic.name, *index as i32)
            })
            .map(|(index, state)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(index as i32)
                    .with_replicas(ids(&state.replicas))
                    .with_adding_replicas(ids(&state.adding))
                    .with_removing_replicas(ids(&state.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default().with_name(topic_name(&topic.name)).with_partitions(partitions),
            );
        }
    }
    Outcome::Respond(ListPartitionReassignmentsResponse::default().with_topics(topics))
}
