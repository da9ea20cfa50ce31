//! DeleteRecords (v0-v2): moves each partition's log start offset forward (-1 means the high
//! watermark), on the owning shards, all at once.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_engine::Offset;

use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::read_error_code;
use crate::metadata::lead;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DeleteRecords, min: 0, max: 2 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DeleteRecordsRequest,
) -> Outcome<DeleteRecordsResponse> {
    let image = shard.image();
    let node_id = shard.node_id();
    let engine = shard.engine();
    let deletions = request.topics.iter().flat_map(|topic| {
        let known = image.topic(topic.name.as_str()).cloned();
        let denied = denied(&shard, &call, AclOperation::Delete, Resource::Topic(topic.name.as_str()));
        topic.partitions.iter().map(move |partition| {
            let engine = engine.clone();
            let index = partition.partition_index;
            let led = match &known {
                Some(known) => lead(node_id, known, index, -1),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let led = denied.map_or(led, Err);
            let offset = Offset(partition.offset);
            async move {
                let result = DeleteRecordsPartitionResult::default().with_partition_index(index);
                let led = match led {
                    Ok(led) => led,
                    Err(error) => return result.with_low_watermark(-1).with_error_code(error.code()),
                };
                match engine.delete_records(&led.partition, offset).await {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark.0),
                    Err(error) => result.with_low_watermark(-1).with_error_code(read_error_code(&error)),
                }
            }
        })
    });
    let mut results = join_all(deletions).await.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = results.by_ref().take(topic.partitions.len()).collect();
            DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    Outcome::Respond(DeleteRecordsResponse::default().with_topics(topics))
}
