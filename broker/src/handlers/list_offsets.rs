//! ListOffsets (v1-v8): earliest (-2, and -4 "earliest local"), latest (-1: the high watermark,
//! or the last stable offset for read_committed), max timestamp (-3), or the first offset at or
//! after a timestamp. All partitions are looked up at once, each on its owning shard.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_engine::{Engine, OffsetAnswer, OffsetQuery, ReadError, TopicPartition};

use super::code;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::read_error_code;
use crate::metadata::lead;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const READ_COMMITTED: i8 = 1;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ListOffsets, min: 1, max: 8 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ListOffsetsRequest,
) -> Outcome<ListOffsetsResponse> {
    let version = call.version;
    let committed = request.isolation_level == READ_COMMITTED;
    let image = shard.image();
    let node_id = shard.node_id();
    let engine = shard.engine();
    let lookups = request.topics.iter().flat_map(|topic| {
        let known = image.topic(topic.name.as_str()).cloned();
        let denied = denied(&shard, &call, AclOperation::Describe, Resource::Topic(topic.name.as_str()));
        topic.partitions.iter().map(move |partition| {
            let engine = engine.clone();
            let led = match &known {
                Some(known) => lead(node_id, known, partition.partition_index, partition.current_leader_epoch),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let led = denied.map_or(led, Err);
            let timestamp = partition.timestamp;
            async move {
                let led = led.map_err(code)?;
                let found = lookup(&engine, &led.partition, timestamp, committed).await?;
                Ok(found.map(|found| (found, led.leader_epoch)))
            }
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
                        Ok(Some((found, leader_epoch))) => {
                            let response = response.with_offset(found.offset.0).with_timestamp(found.timestamp_ms);
                            if version >= 4 { response.with_leader_epoch(leader_epoch) } else { response }
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
    committed: bool,
) -> Result<Option<OffsetAnswer>, i16> {
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
