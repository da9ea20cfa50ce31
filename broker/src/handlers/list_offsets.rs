//! ListOffsets (v1-v8): earliest (-2, and -4 "earliest local"), latest (-1: the high watermark,
//! or the last stable offset for read_committed), max timestamp (-3), or the first offset at or
//! after a timestamp. All partitions are looked up at once, each on its owning shard.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_engine::{Engine, OffsetAnswer, OffsetQuery, ReadError, TopicPartition};

use super::{LEADER_EPOCH, code};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::read_error_code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const READ_COMMITTED: i8 = 1;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    version: i16,
    request: ListOffsetsRequest,
) -> Outcome<ListOffsetsResponse> {
    let committed = request.isolation_level == READ_COMMITTED;
    let lookups = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|partition| {
            let engine = shard.engine().clone();
            let target = TopicPartition::new(topic.name.as_str(), partition.partition_index);
            let timestamp = partition.timestamp;
            let epoch = partition.current_leader_epoch;
            async move { lookup(&engine, &target, timestamp, epoch, committed).await }
        })
    });
    let mut answers = join_all(lookups).await.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .zip(answers.by_ref())
                .map(|(partition, answer)| {
                    let response =
                        ListOffsetsPartitionResponse::default().with_partition_index(partition.partition_index);
                    match answer {
                        Ok(Some(found)) => {
                            let response = response.with_offset(found.offset.0).with_timestamp(found.timestamp_ms);
                            if version >= 4 { response.with_leader_epoch(LEADER_EPOCH) } else { response }
                        }
                        Ok(None) => response.with_offset(-1).with_timestamp(-1),
                        Err(error_code) => response.with_error_code(error_code).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    Outcome::Respond(ListOffsetsResponse::default().with_topics(topics))
}

async fn lookup(
    engine: &Engine,
    partition: &TopicPartition,
    timestamp: i64,
    current_leader_epoch: i32,
    committed: bool,
) -> Result<Option<OffsetAnswer>, i16> {
    if current_leader_epoch > LEADER_EPOCH {
        return Err(code(ResponseError::UnknownLeaderEpoch));
    }
    let query = match timestamp {
        LATEST if committed => {
            let offsets = engine.offsets(partition).await.map_err(|error: ReadError| read_error_code(&error))?;
            return Ok(Some(OffsetAnswer { offset: offsets.last_stable_offset, timestamp_ms: -1 }));
        }
        LATEST => OffsetQuery::Latest,
        EARLIEST | EARLIEST_LOCAL => OffsetQuery::Earliest,
        MAX_TIMESTAMP => OffsetQuery::MaxTimestamp,
        at if at >= 0 => OffsetQuery::Timestamp(at),
        _ => return Err(code(ResponseError::InvalidRequest)),
    };
    engine.list_offsets(partition, query).await.map_err(|error| read_error_code(&error))
}
