//! OffsetFetch (v1-v9). v1-v7 ask one group (v2+: all topics when the list is null); v8+ ask
//! several groups at once, each forwarded to its own coordinator shard in parallel. A partition
//! without a committed offset answers offset -1 and no error, as Kafka does. In v9 a member of a
//! KIP-848 consumer group names itself and its epoch: an unknown member or a stale epoch is a
//! group-level error (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH).
//!
//! Authorization, as Kafka's `KafkaApis` (every version through its groups form): DESCRIBE on
//! the group, else GROUP_AUTHORIZATION_FAILED for the group; the topics named that the caller
//! may not DESCRIBE are kept from the coordinator and answered after the others, each partition
//! TOPIC_AUTHORIZATION_FAILED with offset -1; when all topics are asked for, those are left out.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::consumer_groups::FetchMember;
use crate::groups::coordinator::{FetchedOffsets, TopicPartitions};
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// One group's answer: offsets, or a group-level error with the partitions asked for.
type GroupAnswer = Result<(FetchedOffsets, Held), (ResponseError, FetchedOffsets)>;
/// Partitions whose offset an open transaction holds, answered UNSTABLE_OFFSET_COMMIT when the
/// request asks for stable offsets (v7+, KIP-447).
type Unstable = std::collections::BTreeSet<(String, i32)>;

/// The partitions of a group's answer that carry an error of their own instead of an offset.
#[derive(Debug, Default)]
struct Held {
    unstable: Unstable,
    /// Partitions of the named topics the caller may not DESCRIBE.
    refused: std::collections::BTreeSet<(String, i32)>,
}

impl Held {
    /// The partition's own error, if it has one.
    fn error(&self, topic: &str, index: i32) -> Option<ResponseError> {
        let key = (topic.to_owned(), index);
        if self.refused.contains(&key) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else {
            self.unstable.contains(&key).then_some(ResponseError::UnstableOffsetCommit)
        }
    }
}

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::OffsetFetch, min: 1, max: 9 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: OffsetFetchRequest,
) -> Outcome<OffsetFetchResponse> {
    let version = call.version;
    if version >= 8 {
        let answers = join_all(request.groups.iter().map(|group| {
            let topics = group.topics.as_ref().map(|topics| {
                topics.iter().map(|topic| (topic.name.to_string(), topic.partition_indexes.clone())).collect()
            });
            let member = FetchMember {
                member_id: group.member_id.as_ref().map(ToString::to_string),
                member_epoch: group.member_epoch,
            };
            fetch_group((&shard, &call), group.group_id.to_string(), member, topics, request.require_stable)
        }))
        .await;
        let groups = request
            .groups
            .iter()
            .zip(answers)
            .map(|(group, answer)| group_response(version, group.group_id.clone(), answer))
            .collect();
        return Outcome::Respond(OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = request
        .topics
        .as_ref()
        .map(|topics| topics.iter().map(|topic| (topic.name.to_string(), topic.partition_indexes.clone())).collect());
    let require_stable = version >= 7 && request.require_stable;
    let member = FetchMember { member_id: None, member_epoch: -1 };
    let answer = fetch_group((&shard, &call), request.group_id.to_string(), member, topics, require_stable).await;
    let (error, fetched, held) = match answer {
        Ok((fetched, held)) => (None, fetched, held),
        Err((error, fetched)) => (Some(error), fetched, Held::default()),
    };
    let partition_error = error.map_or(0, |error| error.code());
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, offset)| {
                    let own_error = held.error(&topic, index);
                    let (committed, epoch, metadata) = offset_fields(offset.as_ref().filter(|_| own_error.is_none()));
                    let error_code = own_error.map_or(partition_error, |error| error.code());
                    let partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(committed)
                        .with_metadata(Some(metadata))
                        .with_error_code(error_code);
                    if version >= 5 { partition.with_committed_leader_epoch(epoch) } else { partition }
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(topic_name(&topic)).with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    let response = if version >= 2 { response.with_error_code(partition_error) } else { response };
    Outcome::Respond(response)
}

async fn fetch_group(
    (shard, call): (&ShardContext, &Call),
    group_id: String,
    member: FetchMember,
    topics: TopicPartitions,
    require_stable: bool,
) -> GroupAnswer {
    let asked = topics.clone();
    let target = group_id.clone();
    // As Kafka: DESCRIBE on the group, and only the topics the caller may DESCRIBE.
    let refused = denied(shard, call, AclOperation::Describe, Resource::Group(&group_id));
    let checker = crate::security::authorizer::Checker::new(shard, call);
    let describable = move |topic: &str| checker.allows(AclOperation::Describe, Resource::Topic(topic));
    let (topics, refused_topics): (TopicPartitions, Vec<(String, Vec<i32>)>) = match topics {
        None => (None, Vec::new()),
        Some(named) => {
            let (allowed, refused_topics) = named.into_iter().partition(|(topic, _)| describable(topic));
            (Some(allowed), refused_topics)
        }
    };
    let answer = on_coordinator(shard, &target, move |coordinator| async move {
        if let Some(error) = refused {
            return Err(error);
        }
        let unstable = if require_stable { coordinator.unstable_offsets(&group_id) } else { Unstable::new() };
        coordinator.fetch(&group_id, &member, topics).map(|fetched| (fetched, unstable))
    })
    .await
    .and_then(|answer| answer)
    .map(|(mut fetched, unstable)| {
        fetched.retain(|(topic, _)| describable(topic));
        let mut held = Held { unstable, refused: std::collections::BTreeSet::new() };
        for (topic, partitions) in refused_topics {
            held.refused.extend(partitions.iter().map(|index| (topic.clone(), *index)));
            fetched.push((topic, partitions.into_iter().map(|index| (index, None)).collect()));
        }
        (fetched, held)
    });
    answer.map_err(|error| {
        let empty = asked
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, partitions)| (topic, partitions.into_iter().map(|index| (index, None)).collect()))
            .collect();
        (error, empty)
    })
}

fn offset_fields(offset: Option<&crate::groups::group::CommittedOffset>) -> (i64, i32, StrBytes) {
    match offset {
        Some(offset) => (offset.offset, offset.leader_epoch, str_bytes(&offset.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

fn group_response(_version: i16, group_id: GroupId, answer: GroupAnswer) -> OffsetFetchResponseGroup {
    let (error, fetched, held) = match answer {
        Ok((fetched, held)) => (0, fetched, held),
        Err((error, _)) => (error.code(), Vec::new(), Held::default()),
    };
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, offset)| {
                    let own_error = held.error(&topic, index);
                    let (committed, epoch, metadata) = offset_fields(offset.as_ref().filter(|_| own_error.is_none()));
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(committed)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(metadata))
                        .with_error_code(own_error.map_or(0, |error| error.code()))
                })
                .collect();
            OffsetFetchResponseTopics::default().with_name(topic_name(&topic)).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default().with_group_id(group_id).with_topics(topics).with_error_code(error)
}
