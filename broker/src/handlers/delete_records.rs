//! DeleteRecords (v0-v2): moves each partition's log start offset forward (-1 means the high
//! watermark), on the owning shards, all at once.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_engine::{Offset, TopicPartition};

use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::read_error_code;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _version: i16,
    request: DeleteRecordsRequest,
) -> Outcome<DeleteRecordsResponse> {
    let deletions = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|partition| {
            let engine = shard.engine().clone();
            let target = TopicPartition::new(topic.name.as_str(), partition.partition_index);
            let offset = Offset(partition.offset);
            async move {
                let result = DeleteRecordsPartitionResult::default().with_partition_index(target.partition.0);
                match engine.delete_records(&target, offset).await {
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
