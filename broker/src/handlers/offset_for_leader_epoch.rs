//! OffsetForLeaderEpoch (v2-v4): where a leader epoch ends in this broker's log, from the
//! partition's leader-epoch cache (Kafka's rules: the largest epoch at or below the one asked
//! for, and the first offset of the next epoch, or the log end for the latest; -1, -1 for an
//! epoch above every known one). Consumers (and followers, later) ask the leader.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::code;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::read_error_code;
use crate::metadata::lead;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::OffsetForLeaderEpoch, min: 2, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: OffsetForLeaderEpochRequest,
) -> Outcome<OffsetForLeaderEpochResponse> {
    let image = shard.image();
    let node_id = shard.node_id();
    let engine = shard.engine();
    let lookups = request.topics.iter().flat_map(|topic| {
        let known = image.topic(topic.topic.as_str()).cloned();
        let denied = crate::security::checks::leader_epoch_denied(&shard, &call, request.replica_id.0, &topic.topic);
        topic.partitions.iter().map(move |partition| {
            let engine = engine.clone();
            let index = partition.partition;
            let led = match &known {
                Some(known) => lead(node_id, known, index, partition.current_leader_epoch),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let led = denied.map_or(led, Err);
            let asked = partition.leader_epoch;
            async move {
                let answer = EpochEndOffset::default().with_partition(index);
                let led = match led {
                    Ok(led) => led,
                    Err(error) => return answer.with_error_code(code(error)).with_leader_epoch(-1).with_end_offset(-1),
                };
                match engine.end_offset_for_epoch(&led.partition, asked).await {
                    Ok(end) => answer.with_leader_epoch(end.leader_epoch).with_end_offset(end.end_offset.0),
                    Err(error) => {
                        answer.with_error_code(read_error_code(&error)).with_leader_epoch(-1).with_end_offset(-1)
                    }
                }
            }
        })
    });
    let mut answers = join_all(lookups).await.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = answers.by_ref().take(topic.partitions.len()).collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone()).with_partitions(partitions)
        })
        .collect();
    Outcome::Respond(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
