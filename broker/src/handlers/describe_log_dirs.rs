//! DescribeLogDirs (v1-v4): the one data directory and the size of every partition in it.
//!
//! The engine has no size query yet, so sizes are summed from the partition's directory, whose
//! layout (`<data>/<topic>-<partition>/`) is Kafka's and documented in the engine's FORMAT.md.
//! This blocks the shard on a few `stat` calls, acceptable for a rare admin request. Volume
//! totals are reported as unknown (-1), as Kafka does when it cannot tell.

use std::path::Path;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use sluice_engine::TopicPartition;

use super::{str_bytes, topic_name};
use crate::context::ShardContext;
use crate::dispatch::Outcome;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _version: i16,
    request: DescribeLogDirsRequest,
) -> Outcome<DescribeLogDirsResponse> {
    let data_dir = &shard.config().data_dir;
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        None => shard
            .engine()
            .topics()
            .iter()
            .map(|topic| (topic.name.to_string(), (0..topic.partition_count).collect()))
            .collect(),
        Some(topics) => {
            topics.iter().map(|topic| (topic.topic.as_str().to_owned(), topic.partitions.clone())).collect()
        }
    };
    let topics = wanted
        .into_iter()
        .filter_map(|(name, partitions)| {
            let info = shard.engine().topic(&name)?;
            let partitions = partitions
                .into_iter()
                .filter(|index| (0..info.partition_count).contains(index))
                .map(|index| {
                    let size =
                        directory_size_bytes(&data_dir.join(TopicPartition::new(name.as_str(), index).dir_name()));
                    DescribeLogDirsPartition::default().with_partition_index(index).with_partition_size(size)
                })
                .collect();
            Some(DescribeLogDirsTopic::default().with_name(topic_name(&name)).with_partitions(partitions))
        })
        .collect();
    let log_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&log_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    Outcome::Respond(DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// Sum of the sizes of the files directly in `dir` (0 when unreadable).
fn directory_size_bytes(dir: &Path) -> i64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let total: u64 = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|metadata| metadata.len())
        .sum();
    i64::try_from(total).unwrap_or(i64::MAX)
}
