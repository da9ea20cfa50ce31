//! DescribeTopicPartitions (v0, KIP-966): what Metadata says of topics and partitions, plus each
//! partition's eligible leader replicas, paged. Kafka's 4.x admin client describes topics with
//! it when a broker serves it.
//!
//! Topics come in name order: the ones named (each unknown one with UNKNOWN_TOPIC_OR_PARTITION),
//! or every topic when none is named. The answer holds at most `response_partition_limit`
//! partitions (at most [`PARTITIONS_MAX`], Kafka's `max.request.partition.size.limit`), from
//! the cursor's topic and partition on, and a cursor to the next partition when some are left.
//! A cursor naming a topic that the request does not name is INVALID_REQUEST, as in Kafka.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};

use super::metadata::PartitionView;
use super::{AUTHORIZED_OPERATIONS_OMITTED, code, is_internal_topic, topic_name, uuid_of};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::metadata::{MetadataImage, TopicImage};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeTopicPartitions, min: 0, max: 0 };

/// The most partitions one answer holds (Kafka's `max.request.partition.size.limit` default).
const PARTITIONS_MAX: usize = 2000;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeTopicPartitionsRequest,
) -> Outcome<DescribeTopicPartitionsResponse> {
    let mut response = describe(&shard.image(), &request);
    crate::security::checks::guard_topic_partitions(&shard, &call, request.topics.is_empty(), &mut response.topics);
    Outcome::Respond(response)
}

fn describe(image: &MetadataImage, request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let mut names: Vec<String> = if request.topics.is_empty() {
        image.topics().map(|topic| topic.name.to_string()).collect()
    } else {
        request.topics.iter().map(|topic| topic.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = match &request.cursor {
        Some(cursor) => (Some(cursor.topic_name.0.to_string()), cursor.partition_index.max(0)),
        None => (None, 0),
    };
    if let Some(start) = &start_topic
        && !request.topics.is_empty()
        && !names.contains(start)
    {
        // Kafka answers the whole request with the error, as a topic-less failure.
        let failed = DescribeTopicPartitionsResponseTopic::default()
            .with_error_code(code(ResponseError::InvalidRequest))
            .with_name(Some(topic_name(start)))
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        return DescribeTopicPartitionsResponse::default().with_topics(vec![failed]);
    }
    let mut room = usize::try_from(request.response_partition_limit).unwrap_or(0).clamp(1, PARTITIONS_MAX);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.iter().filter(|name| start_topic.as_ref().is_none_or(|start| *name >= start)) {
        if room == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(name)).with_partition_index(0));
            break;
        }
        let Some(topic) = image.topic(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(code(ResponseError::UnknownTopicOrPartition))
                    .with_name(Some(topic_name(name)))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) { start_partition } else { 0 };
        let first = usize::try_from(first).unwrap_or(0);
        let end = topic.partitions.len().min(first.saturating_add(room));
        topics.push(topic_answer(image, topic, first, end));
        room -= end.saturating_sub(first);
        if end < topic.partitions.len() {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(name)).with_partition_index(end as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

/// Partitions `first..end` of `topic`.
fn topic_answer(
    image: &MetadataImage,
    topic: &TopicImage,
    first: usize,
    end: usize,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .take(end)
        .skip(first)
        .map(|(index, state)| {
            let view = PartitionView::of(image, state);
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(view.error_code)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(view.replicas)
                .with_isr_nodes(view.isr)
                .with_eligible_leader_replicas(Some(view.elr))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(view.offline)
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid_of(topic.id))
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::MetadataRecord;
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor as AskedCursor, TopicRequest};

    fn image(topics: &[(&str, usize)]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for (position, (name, count)) in topics.iter().enumerate() {
            image.apply(&MetadataRecord::CreateTopic {
                name: (*name).to_owned(),
                id: sluice_engine::TopicId([position as u8 + 1; 16]),
                config: sluice_engine::TopicConfig::default(),
                partitions: vec![vec![1]; *count],
            });
        }
        image
    }

    fn pages(image: &MetadataImage, named: &[&str], limit: i32) -> Vec<Vec<(String, i32)>> {
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let request = DescribeTopicPartitionsRequest::default()
                .with_topics(named.iter().map(|name| TopicRequest::default().with_name(topic_name(name))).collect())
                .with_response_partition_limit(limit)
                .with_cursor(cursor.take());
            let answer = describe(image, &request);
            pages.push(
                answer
                    .topics
                    .iter()
                    .flat_map(|topic| {
                        let name = topic.name.as_ref().map(|name| name.0.to_string()).unwrap_or_default();
                        let listed: Vec<(String, i32)> = topic
                            .partitions
                            .iter()
                            .map(|partition| (name.clone(), partition.partition_index))
                            .collect();
                        if listed.is_empty() { vec![(name, -1)] } else { listed }
                    })
                    .collect(),
            );
            let Some(next) = answer.next_cursor else { return pages };
            cursor = Some(
                AskedCursor::default().with_topic_name(next.topic_name).with_partition_index(next.partition_index),
            );
        }
    }

    #[test]
    fn pages_cover_every_partition_once_in_name_order() {
        let image = image(&[("b", 3), ("a", 2), ("c", 1)]);
        let all = pages(&image, &[], 2);
        assert_eq!(
            all,
            vec![
                vec![("a".to_owned(), 0), ("a".to_owned(), 1)],
                vec![("b".to_owned(), 0), ("b".to_owned(), 1)],
                vec![("b".to_owned(), 2), ("c".to_owned(), 0)],
            ]
        );
        let named = pages(&image, &["c", "missing", "a"], 10);
        assert_eq!(
            named,
            vec![vec![("a".to_owned(), 0), ("a".to_owned(), 1), ("c".to_owned(), 0), ("missing".to_owned(), -1)]]
        );
    }

    #[test]
    fn a_cursor_outside_the_named_topics_is_invalid() {
        let image = image(&[("a", 1), ("b", 1)]);
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(topic_name("a"))])
            .with_response_partition_limit(10)
            .with_cursor(Some(AskedCursor::default().with_topic_name(topic_name("b"))));
        let answer = describe(&image, &request);
        assert_eq!(answer.topics[0].error_code, code(ResponseError::InvalidRequest));
    }
}
