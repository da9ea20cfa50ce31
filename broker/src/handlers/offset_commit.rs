//! OffsetCommit (v2-v9). Forwarded to the group's coordinator shard, which checks the member and
//! generation (generation -1 on an empty group is a standalone commit), writes the offsets to
//! `__consumer_offsets` durably, and only then answers. v2-v4 may set a retention time per
//! commit; v6+ carry the leader epoch; v7+ the group.instance.id; in v9 a member of a KIP-848
//! consumer group sends its member epoch as the generation (an unknown group with a
//! generation then answers GROUP_ID_NOT_FOUND instead of ILLEGAL_GENERATION).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::coordinator::{CommitArgs, CommitEntry};
use crate::groups::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::OffsetCommit, min: 2, max: 9 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: OffsetCommitRequest,
) -> Outcome<OffsetCommitResponse> {
    let version = call.version;
    let group_id = request.group_id.to_string();
    let args = CommitArgs {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        generation_id: request.generation_id_or_member_epoch,
        retention_time_ms: if version <= 4 { request.retention_time_ms } else { -1 },
        api_version: version,
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
    let refusals = crate::security::checks::Refusals::offset_commit(&shard, &call, &group_id, topics);
    let entries = refusals.keep(entries);
    let count = entries.len();
    let target = group_id.clone();
    let results = on_coordinator(&shard, &target, move |coordinator| async move {
        coordinator.commit(&group_id, &args, &entries).await
    })
    .await
    .unwrap_or_else(|error| vec![Err(error); count]);
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(result.err().map_or(0, |error| error.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    Outcome::Respond(OffsetCommitResponse::default().with_topics(topics))
}
