//! DescribeLogDirs (v1-v4): the one data directory and the size of every partition in it.
//!
//! Sizes are the engine's: the bytes of log in each partition's segments, asked of the shard that
//! owns the partition. Volume totals are reported as unknown (-1), as Kafka does when it cannot
//! tell.

use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use sluice_engine::TopicPartition;

use super::{str_bytes, topic_name};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeLogDirs, min: 1, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeLogDirsRequest,
) -> Outcome<DescribeLogDirsResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Describe, Resource::Cluster) {
        return Outcome::Respond(DescribeLogDirsResponse::default().with_error_code(error.code()));
    }
    let data_dir = &shard.config().data_dir;
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        None => shard
            .engine()
            .topics()
            .iter()
            .map(|topic| (topic.name.to_string(), topic.partitions.keys().copied().collect()))
            .collect(),
        Some(topics) => {
            topics.iter().map(|topic| (topic.topic.as_str().to_owned(), topic.partitions.clone())).collect()
        }
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, indexes) in wanted {
        let Some(info) = shard.engine().topic(&name) else { continue };
        let mut partitions = Vec::with_capacity(indexes.len());
        for index in indexes.into_iter().filter(|index| info.partitions.contains_key(index)) {
            let partition = TopicPartition::new(name.as_str(), index);
            // A partition deleted meanwhile reports 0 bytes rather than failing the whole answer.
            let size =
                shard.engine().size_bytes(&partition).await.map_or(0, |size| i64::try_from(size).unwrap_or(i64::MAX));
            partitions.push(DescribeLogDirsPartition::default().with_partition_index(index).with_partition_size(size));
        }
        topics.push(DescribeLogDirsTopic::default().with_name(topic_name(&name)).with_partitions(partitions));
    }
    let log_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&log_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    Outcome::Respond(DescribeLogDirsResponse::default().with_results(vec![result]))
}
