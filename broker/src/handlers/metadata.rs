//! Metadata (v0-v12): the live brokers, the controller, and the topics asked for (all when the
//! list is null, or empty at v0), from the metadata image. Unknown topics are created when the
//! broker allows it and the request does (v4+ flag; always for v0-v3), with `num.partitions`
//! partitions and the default topic config.
//!
//! Each partition lists its leader (-1 and LEADER_NOT_AVAILABLE when it has none), leader
//! epoch, replicas, in-sync replicas and offline replicas (replicas on fenced or unregistered
//! brokers).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{
    AUTHORIZED_OPERATIONS_OMITTED, code, is_internal_topic, is_valid_topic_name, str_bytes, topic_id_of, topic_name,
    uuid_of,
};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::metadata::{MetadataImage, NO_LEADER, NewTopic, TopicImage};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::Metadata, min: 0, max: 12 };

pub(crate) async fn handle(shard: Rc<ShardContext>, call: Call, request: MetadataRequest) -> Outcome<MetadataResponse> {
    let version = call.version;
    let allow_create = shard.config().auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let image = shard.image();
    let acl = crate::security::checks::MetadataCheck::new(&shard, &call);
    let topics = match request.topics {
        None => acl.visible(all_topics(&image)),
        Some(list) if list.is_empty() && version == 0 => acl.visible(all_topics(&image)),
        Some(list) => {
            let mut topics = Vec::with_capacity(list.len());
            for requested in list {
                let asked_by_id = !requested.topic_id.is_nil() || requested.name.is_none();
                // As Kafka: a non-zero id wins, whatever the name (the Java client sends an
                // empty name with an id).
                let topic = match requested.name {
                    _ if !requested.topic_id.is_nil() => by_id(&image, requested.topic_id),
                    Some(name) => by_name(&shard, &image, &name, allow_create && acl.may_create(&name)).await,
                    None => by_id(&image, requested.topic_id),
                };
                topics.push(acl.guard(topic, asked_by_id, allow_create));
            }
            topics
        }
    };
    // Brokers as of now: an auto-created topic's leaders are in the newest image.
    let image = shard.image();
    // Each broker's endpoint on the listener this request came in on; brokers without it are
    // left out, as Kafka does.
    let brokers = image
        .live_brokers()
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(&call.session.listener)?;
            let answer = MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node_id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(broker.rack.as_deref().map(str_bytes));
            Some(answer)
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(shard.shared.metadata.controller_id(&image)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    let include = (request.include_topic_authorized_operations, request.include_cluster_authorized_operations);
    crate::security::checks::metadata_operations(&shard, &call, include, &mut response);
    Outcome::Respond(response)
}

fn all_topics(image: &MetadataImage) -> Vec<MetadataResponseTopic> {
    image.topics().map(|topic| describe(image, topic)).collect()
}

async fn by_name(shard: &ShardContext, image: &MetadataImage, name: &str, allow_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = image.topic(name) {
        return describe(image, topic);
    }
    if !is_valid_topic_name(name) {
        return failed(name, Uuid::nil(), ResponseError::InvalidTopicException.code());
    }
    if !allow_create {
        return failed(name, Uuid::nil(), code(ResponseError::UnknownTopicOrPartition));
    }
    let config = shard.config();
    let topic = NewTopic {
        name: name.to_owned(),
        partition_count: None,
        replication_factor: None,
        assignments: Vec::new(),
        config: config.default_topic_config.clone(),
    };
    let created = shard.shared.metadata.create_topics(vec![topic], false).await.into_iter().next();
    match created {
        Some(Ok(topic)) => {
            tracing::info!(topic = name, partitions = topic.partition_count(), "auto-created topic");
            describe(&shard.image(), &topic)
        }
        // Another request created it first.
        Some(Err(refusal)) if refusal.error == ResponseError::TopicAlreadyExists => match shard.image().topic(name) {
            Some(topic) => describe(&shard.image(), topic),
            None => failed(name, Uuid::nil(), code(ResponseError::LeaderNotAvailable)),
        },
        Some(Err(refusal)) => failed(name, Uuid::nil(), code(refusal.error)),
        None => failed(name, Uuid::nil(), code(ResponseError::UnknownServerError)),
    }
}

fn by_id(image: &MetadataImage, id: Uuid) -> MetadataResponseTopic {
    match image.topic_by_id(topic_id_of(id)) {
        Some(topic) => describe(image, topic),
        None => MetadataResponseTopic::default()
            .with_error_code(code(ResponseError::UnknownTopicId))
            .with_topic_id(id)
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
    }
}

fn failed(name: &str, id: Uuid, error_code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error_code)
        .with_name(Some(topic_name(name)))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// A partition's lists as Metadata and DescribeTopicPartitions give them: LEADER_NOT_AVAILABLE
/// without a leader, offline replicas are those on fenced or unregistered brokers.
pub(crate) struct PartitionView {
    pub(crate) error_code: i16,
    pub(crate) replicas: Vec<BrokerId>,
    pub(crate) isr: Vec<BrokerId>,
    pub(crate) elr: Vec<BrokerId>,
    pub(crate) offline: Vec<BrokerId>,
}

impl PartitionView {
    pub(crate) fn of(image: &MetadataImage, state: &crate::metadata::PartitionState) -> Self {
        let live = |node: &i32| image.brokers.get(node).is_some_and(|broker| !broker.fenced);
        let ids = |nodes: &[i32]| nodes.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let offline: Vec<i32> = state.replicas.iter().copied().filter(|node| !live(node)).collect();
        Self {
            error_code: if state.leader == NO_LEADER { code(ResponseError::LeaderNotAvailable) } else { 0 },
            replicas: ids(&state.replicas),
            isr: ids(&state.isr),
            elr: ids(&state.elr),
            offline: ids(&offline),
        }
    }
}

/// One topic as Metadata describes it.
fn describe(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, state)| {
            let view = PartitionView::of(image, state);
            MetadataResponsePartition::default()
                .with_error_code(view.error_code)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(view.replicas)
                .with_isr_nodes(view.isr)
                .with_offline_replicas(view.offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid_of(topic.id))
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
