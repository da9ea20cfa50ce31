//! OffsetForLeaderEpoch (v2-v4): the end offset of a leader epoch. A single broker has had one
//! epoch, [`LEADER_EPOCH`], for every partition, so its end is the log end offset; an older
//! epoch is unknown (-1, -1), and a newer one is answered with the current epoch, as Kafka does
//! for an epoch beyond the latest.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use sluice_engine::TopicPartition;

use super::{LEADER_EPOCH, code};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::read_error_code;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _version: i16,
    request: OffsetForLeaderEpochRequest,
) -> Outcome<OffsetForLeaderEpochResponse> {
    let lookups = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|partition| {
            let engine = shard.engine().clone();
            let target = TopicPartition::new(topic.topic.as_str(), partition.partition);
            let current = partition.current_leader_epoch;
            let asked = partition.leader_epoch;
            async move {
                let answer = EpochEndOffset::default().with_partition(target.partition.0);
                if current > LEADER_EPOCH {
                    return answer.with_error_code(code(ResponseError::UnknownLeaderEpoch));
                }
                match engine.offsets(&target).await {
                    Err(error) => answer.with_error_code(read_error_code(&error)),
                    Ok(_) if asked < LEADER_EPOCH => answer.with_leader_epoch(-1).with_end_offset(-1),
                    Ok(offsets) => answer.with_leader_epoch(LEADER_EPOCH).with_end_offset(offsets.log_end_offset.0),
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
