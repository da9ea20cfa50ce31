//! The authorization checks of the APIs whose rules take more than one call of
//! [`authorizer::denied`]: Produce, Fetch, Metadata, InitProducerId. Each handler calls one
//! function here, so the rules read next to each other and as Kafka's `KafkaApis` states them.
//! Runs on the request's shard.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;

use super::acl::AclOperation;
use super::authorizer::{self, Checker, Resource};
use crate::context::ShardContext;
use crate::dispatch::Call;

/// Produce: a transactional producer needs WRITE on its transactional id (every partition
/// answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise), and each topic WRITE
/// (TOPIC_AUTHORIZATION_FAILED, whether or not the topic exists).
pub(crate) fn produce_denied(
    shard: &ShardContext,
    call: &Call,
    request: &ProduceRequest,
    topic: &str,
) -> Option<ResponseError> {
    if !authorizer::enabled(shard) {
        return None;
    }
    if let Some(id) = request.transactional_id.as_ref().filter(|id| !id.is_empty())
        && let Some(error) = authorizer::denied(shard, call, AclOperation::Write, Resource::TransactionalId(id))
    {
        return Some(error);
    }
    authorizer::denied(shard, call, AclOperation::Write, Resource::Topic(topic))
}

/// Fetch: which topics the caller may read. A follower's fetch (`replica` at least 0) needs
/// CLUSTER_ACTION on the cluster, and then reads every topic; a consumer needs READ on each.
pub(crate) fn fetch_check(shard: &ShardContext, call: &Call, replica: i32) -> impl Fn(&str) -> bool + use<> {
    let checker = Checker::new(shard, call);
    let follower_allowed = replica >= 0 && checker.allows(AclOperation::ClusterAction, Resource::Cluster);
    move |topic: &str| {
        if replica >= 0 { follower_allowed } else { checker.allows(AclOperation::Read, Resource::Topic(topic)) }
    }
}

/// Metadata's checks, for one request.
#[derive(Debug)]
pub(crate) struct MetadataCheck {
    checker: Checker,
    /// CREATE on the cluster, which allows creating any topic.
    create_any: bool,
}

impl MetadataCheck {
    /// The checks of the caller's Metadata request.
    pub(crate) fn new(shard: &ShardContext, call: &Call) -> Self {
        let checker = Checker::new(shard, call);
        let create_any = checker.allows(AclOperation::Create, Resource::Cluster);
        Self { checker, create_any }
    }

    /// All topics asked for: those the caller may not DESCRIBE are left out.
    pub(crate) fn visible(&self, mut topics: Vec<MetadataResponseTopic>) -> Vec<MetadataResponseTopic> {
        topics.retain(|topic| self.describable(topic));
        topics
    }

    /// Whether an unknown topic may be created for the caller: DESCRIBE on it, and CREATE on the
    /// cluster or on the topic.
    pub(crate) fn may_create(&self, name: &str) -> bool {
        self.checker.allows(AclOperation::Describe, Resource::Topic(name))
            && (self.create_any || self.checker.allows(AclOperation::Create, Resource::Topic(name)))
    }

    /// A topic asked for by name or id, as the caller may see it: TOPIC_AUTHORIZATION_FAILED
    /// without DESCRIBE (and without its name when asked by id), or when it does not exist and
    /// auto-creation was allowed but the caller may not create it.
    pub(crate) fn guard(
        &self,
        mut topic: MetadataResponseTopic,
        by_id: bool,
        allow_create: bool,
    ) -> MetadataResponseTopic {
        let Some(name) = topic.name.as_ref().map(|name| name.0.to_string()) else { return topic };
        let unknown = topic.error_code == ResponseError::UnknownTopicOrPartition.code();
        if !self.describable(&topic) || (unknown && allow_create && !self.may_create(&name)) {
            topic.error_code = ResponseError::TopicAuthorizationFailed.code();
            topic.partitions.clear();
            topic.is_internal = false;
            if by_id {
                topic.name = None;
            } else {
                topic.topic_id = uuid::Uuid::nil();
            }
        }
        topic
    }

    fn describable(&self, topic: &MetadataResponseTopic) -> bool {
        topic.name.as_ref().is_none_or(|name| self.checker.allows(AclOperation::Describe, Resource::Topic(name)))
    }
}

/// InitProducerId: a transactional producer needs WRITE on its transactional id; an idempotent
/// one IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka's
/// `authorizeByResourceType`).
pub(crate) fn init_producer_id_denied(
    shard: &ShardContext,
    call: &Call,
    transactional_id: Option<&str>,
) -> Option<ResponseError> {
    match transactional_id {
        Some(id) => authorizer::denied(shard, call, AclOperation::Write, Resource::TransactionalId(id)),
        None => (!authorizer::authorize(shard, call, AclOperation::IdempotentWrite, Resource::Cluster)
            && !authorizer::authorize_by_resource_type(
                shard,
                call,
                AclOperation::Write,
                super::acl::ResourceType::Topic,
            ))
        .then_some(ResponseError::ClusterAuthorizationFailed),
    }
}

/// Per-partition refusals of a request that names a group and topics (OffsetCommit,
/// TxnOffsetCommit, OffsetDelete): the partitions refused are kept from the coordinator and
/// answered with their error, the others as the coordinator answers them.
#[derive(Debug)]
pub(crate) struct Refusals(Vec<Option<ResponseError>>);

impl Refusals {
    /// OffsetCommit: READ on the group (GROUP_AUTHORIZATION_FAILED for every partition), then
    /// READ on each topic (TOPIC_AUTHORIZATION_FAILED).
    pub(crate) fn offset_commit<'a>(
        shard: &ShardContext,
        call: &Call,
        group: &str,
        topics: impl Iterator<Item = &'a str>,
    ) -> Self {
        let group_refused = authorizer::denied(shard, call, AclOperation::Read, Resource::Group(group));
        Self::per_topic(shard, call, group_refused, AclOperation::Read, topics)
    }

    /// TxnOffsetCommit: WRITE on the transactional id, READ on the group, READ on each topic.
    pub(crate) fn txn_offset_commit<'a>(
        shard: &ShardContext,
        call: &Call,
        (transactional_id, group): (&str, &str),
        topics: impl Iterator<Item = &'a str>,
    ) -> Self {
        let refused = authorizer::denied(shard, call, AclOperation::Write, Resource::TransactionalId(transactional_id))
            .or_else(|| authorizer::denied(shard, call, AclOperation::Read, Resource::Group(group)));
        Self::per_topic(shard, call, refused, AclOperation::Read, topics)
    }

    fn per_topic<'a>(
        shard: &ShardContext,
        call: &Call,
        all_refused: Option<ResponseError>,
        operation: AclOperation,
        topics: impl Iterator<Item = &'a str>,
    ) -> Self {
        let checker = Checker::new(shard, call);
        Self(
            topics
                .map(|topic| {
                    all_refused.or_else(|| {
                        (!checker.allows(operation, Resource::Topic(topic)))
                            .then_some(ResponseError::TopicAuthorizationFailed)
                    })
                })
                .collect(),
        )
    }

    /// The refusal of the whole request, when every partition has the same one (the group's or
    /// the transactional id's).
    pub(crate) fn all(&self) -> Option<ResponseError> {
        let first = self.0.first().copied().flatten()?;
        self.0.iter().all(|refusal| *refusal == Some(first)).then_some(first)
    }

    /// The items (one per partition, in order) that are not refused.
    pub(crate) fn keep<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().zip(&self.0).filter(|(_, refusal)| refusal.is_none()).map(|(item, _)| item).collect()
    }

    /// Every partition's answer, in order: its refusal, or the next of `results` (the answers
    /// to the kept items).
    pub(crate) fn merge<T>(&self, results: Vec<Result<T, ResponseError>>) -> Vec<Result<T, ResponseError>> {
        let mut results = results.into_iter();
        self.0
            .iter()
            .map(|refusal| match refusal {
                Some(error) => Err(*error),
                None => results.next().unwrap_or(Err(ResponseError::UnknownServerError)),
            })
            .collect()
    }
}

/// ListGroups: every group for a caller with DESCRIBE on the cluster, else the groups it may
/// DESCRIBE.
pub(crate) fn group_lister(shard: &ShardContext, call: &Call) -> impl Fn(&str) -> bool + use<> {
    let checker = Checker::new(shard, call);
    let all = checker.allows(AclOperation::Describe, Resource::Cluster);
    move |group: &str| all || checker.allows(AclOperation::Describe, Resource::Group(group))
}

/// FindCoordinator: DESCRIBE on the group (key type 0) or on the transactional id (key type 1).
pub(crate) fn coordinator_denied(shard: &ShardContext, call: &Call, key_type: i8, key: &str) -> Option<ResponseError> {
    match key_type {
        0 => authorizer::denied(shard, call, AclOperation::Describe, Resource::Group(key)),
        1 => authorizer::denied(shard, call, AclOperation::Describe, Resource::TransactionalId(key)),
        _ => None,
    }
}

/// AddPartitionsToTxn from a producer (v0-v3): WRITE on the transactional id (every partition
/// refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then WRITE on each topic (the refused
/// topics' partitions TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED). `None`
/// when nothing is refused.
pub(crate) fn add_partitions_refusals(
    shard: &ShardContext,
    call: &Call,
    transactional_id: &str,
    partitions: &[(String, i32)],
) -> Option<Vec<Result<(), ResponseError>>> {
    if let Some(error) =
        authorizer::denied(shard, call, AclOperation::Write, Resource::TransactionalId(transactional_id))
    {
        return Some(vec![Err(error); partitions.len()]);
    }
    let checker = Checker::new(shard, call);
    let refused: Vec<bool> =
        partitions.iter().map(|(topic, _)| !checker.allows(AclOperation::Write, Resource::Topic(topic))).collect();
    refused.contains(&true).then(|| {
        refused
            .iter()
            .map(|refused| {
                Err(if *refused {
                    ResponseError::TopicAuthorizationFailed
                } else {
                    ResponseError::OperationNotAttempted
                })
            })
            .collect()
    })
}

/// CreateTopics: CREATE on the cluster, or else on the topic (TOPIC_AUTHORIZATION_FAILED).
pub(crate) fn create_topic_denied(shard: &ShardContext, call: &Call, topic: &str) -> Option<ResponseError> {
    if authorizer::authorize(shard, call, AclOperation::Create, Resource::Cluster) {
        return None;
    }
    authorizer::denied(shard, call, AclOperation::Create, Resource::Topic(topic))
}

/// ConsumerGroupHeartbeat, after READ on the group: TOPIC_AUTHORIZATION_FAILED when the member
/// subscribes by name to a topic the caller may not DESCRIBE (a regex subscription is not
/// checked here).
pub(crate) fn subscription_denied(
    shard: &ShardContext,
    call: &Call,
    topics: Option<&[String]>,
) -> Option<ResponseError> {
    let checker = Checker::new(shard, call);
    let refused =
        topics.unwrap_or_default().iter().any(|topic| !checker.allows(AclOperation::Describe, Resource::Topic(topic)));
    refused.then_some(ResponseError::TopicAuthorizationFailed)
}

/// ConsumerGroupDescribe, for a group described: TOPIC_AUTHORIZATION_FAILED, with Kafka's
/// message, when a member's assignment or target assignment holds a topic the caller may not
/// DESCRIBE.
pub(crate) fn described_topics_denied<'a>(
    checker: &Checker,
    mut topics: impl Iterator<Item = &'a str>,
) -> Option<(ResponseError, &'static str)> {
    topics.any(|topic| !checker.allows(AclOperation::Describe, Resource::Topic(topic))).then_some((
        ResponseError::TopicAuthorizationFailed,
        "The group has described topic(s) that the client is not authorized to describe.",
    ))
}

/// CreateTopics (v5+): whether the created topic's configs are kept from the caller, which has
/// no DESCRIBE_CONFIGS on it.
pub(crate) fn topic_configs_hidden(shard: &ShardContext, call: &Call, topic: &str) -> bool {
    !authorizer::authorize(shard, call, AclOperation::DescribeConfigs, Resource::Topic(topic))
}

/// DescribeConfigs (`alter` false: DESCRIBE_CONFIGS) and AlterConfigs and
/// IncrementalAlterConfigs (ALTER_CONFIGS): on the topic for a topic's configs
/// (TOPIC_AUTHORIZATION_FAILED), on the group for a group's (GROUP_AUTHORIZATION_FAILED), on
/// the cluster for the others (CLUSTER_AUTHORIZATION_FAILED). The refusal as those handlers
/// answer one: error code and message.
pub(crate) fn config_denied(
    shard: &ShardContext,
    call: &Call,
    alter: bool,
    resource_type: i8,
    name: &str,
) -> Option<(i16, String)> {
    /// Kafka's `ConfigResource.Type` codes.
    const TOPIC: i8 = 2;
    const GROUP: i8 = 32;
    let operation = if alter { AclOperation::AlterConfigs } else { AclOperation::DescribeConfigs };
    let resource = match resource_type {
        TOPIC => Resource::Topic(name),
        GROUP => Resource::Group(name),
        _ => Resource::Cluster,
    };
    authorizer::denied(shard, call, operation, resource).map(|error| (error.code(), error.to_string()))
}

/// OffsetDelete: DELETE on the group (the whole request refused with
/// GROUP_AUTHORIZATION_FAILED), then READ on each topic (its partitions
/// TOPIC_AUTHORIZATION_FAILED, and its offsets kept).
#[derive(Debug)]
pub(crate) struct OffsetDeleteRefusals {
    /// The group's refusal.
    pub(crate) group: Option<ResponseError>,
    refused: Vec<(String, Vec<i32>)>,
}

/// Per topic, each partition's answer, as the group coordinator gives them.
type TopicResults = Vec<(String, Vec<(i32, Result<(), ResponseError>)>)>;

impl OffsetDeleteRefusals {
    /// The refusals, and the topics the coordinator may act on.
    pub(crate) fn split(
        shard: &ShardContext,
        call: &Call,
        group: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> (Self, Vec<(String, Vec<i32>)>) {
        let group_refused = authorizer::denied(shard, call, AclOperation::Delete, Resource::Group(group));
        let checker = Checker::new(shard, call);
        let (allowed, refused) =
            topics.into_iter().partition(|(topic, _)| checker.allows(AclOperation::Read, Resource::Topic(topic)));
        (Self { group: group_refused, refused }, allowed)
    }

    /// The coordinator's answers, with the refused topics' partitions added.
    pub(crate) fn merge(&self, mut results: TopicResults) -> TopicResults {
        results.extend(self.refused.iter().map(|(topic, partitions)| {
            let refused = partitions.iter().map(|index| (*index, Err(ResponseError::TopicAuthorizationFailed)));
            (topic.clone(), refused.collect())
        }));
        results
    }
}

/// OffsetForLeaderEpoch: a follower's request (`replica` at least 0) needs CLUSTER_ACTION on
/// the cluster, a client's DESCRIBE on the topic; both answer TOPIC_AUTHORIZATION_FAILED.
pub(crate) fn leader_epoch_denied(
    shard: &ShardContext,
    call: &Call,
    replica: i32,
    topic: &str,
) -> Option<ResponseError> {
    let allowed = if replica >= 0 {
        authorizer::authorize(shard, call, AclOperation::ClusterAction, Resource::Cluster)
    } else {
        authorizer::authorize(shard, call, AclOperation::Describe, Resource::Topic(topic))
    };
    (!allowed).then_some(ResponseError::TopicAuthorizationFailed)
}

/// DescribeTopicPartitions: topics the caller may not DESCRIBE are left out when all were asked
/// for, and answered TOPIC_AUTHORIZATION_FAILED (without partitions) when named. The others,
/// unknown ones included, carry the caller's authorized operations, always (the request has no
/// flag for them); an INVALID_REQUEST answer stays as it is.
pub(crate) fn guard_topic_partitions(
    shard: &ShardContext,
    call: &Call,
    all: bool,
    topics: &mut Vec<
        kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic,
    >,
) {
    let checker = Checker::new(shard, call);
    let allowed = |name: Option<&kafka_protocol::messages::TopicName>| {
        name.is_none_or(|name| checker.allows(AclOperation::Describe, Resource::Topic(name)))
    };
    if all {
        topics.retain(|topic| allowed(topic.name.as_ref()));
    }
    for topic in topics.iter_mut() {
        if !allowed(topic.name.as_ref()) {
            topic.error_code = ResponseError::TopicAuthorizationFailed.code();
            topic.partitions.clear();
            topic.topic_id = uuid::Uuid::nil();
            topic.is_internal = false;
        } else if let Some(name) = &topic.name
            && topic.error_code != ResponseError::InvalidRequest.code()
        {
            topic.topic_authorized_operations = checker.operations(Resource::Topic(name));
        }
    }
}

/// Metadata's authorized-operations fields (v8+), as Kafka sets them: each topic's when
/// `include_topic` is set, for the topics answered by name without TOPIC_AUTHORIZATION_FAILED
/// (unknown ones included); the cluster's (v8-v10) when `include_cluster` is set, 0 without
/// DESCRIBE on the cluster. Fields not set keep Kafka's "not requested" value.
pub(crate) fn metadata_operations(
    shard: &ShardContext,
    call: &Call,
    (include_topic, include_cluster): (bool, bool),
    response: &mut kafka_protocol::messages::MetadataResponse,
) {
    if call.version < 8 || !(include_topic || include_cluster) {
        return;
    }
    let checker = Checker::new(shard, call);
    if include_topic {
        for topic in &mut response.topics {
            if let Some(name) = &topic.name
                && topic.error_code != ResponseError::TopicAuthorizationFailed.code()
            {
                topic.topic_authorized_operations = checker.operations(Resource::Topic(name));
            }
        }
    }
    if include_cluster && call.version <= 10 {
        response.cluster_authorized_operations = cluster_operations(&checker);
    }
}

/// The cluster's authorized operations as Metadata (v8-v10) and DescribeCluster answer them:
/// 0 without DESCRIBE on the cluster.
pub(crate) fn cluster_operations(checker: &Checker) -> i32 {
    if checker.allows(AclOperation::Describe, Resource::Cluster) { checker.operations(Resource::Cluster) } else { 0 }
}
