//! Metadata (v0-v12): this broker, and the topics asked for (all when the list is null, or empty
//! at v0). Unknown topics are created when the broker allows it and the request does (v4+ flag;
//! always for v0-v3), with `num.partitions` partitions and the default topic config.
//!
//! Every partition is led by this broker at leader epoch 0, with itself as the only replica.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use sluice_engine::{TopicError, TopicInfo};
use uuid::Uuid;

use super::{
    AUTHORIZED_OPERATIONS_OMITTED, LEADER_EPOCH, code, is_internal_topic, is_valid_topic_name, str_bytes, topic_id_of,
    topic_name, uuid_of,
};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::topic_error_code;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    version: i16,
    request: MetadataRequest,
) -> Outcome<MetadataResponse> {
    let allow_create = shard.config().auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        None => all_topics(&shard),
        Some(list) if list.is_empty() && version == 0 => all_topics(&shard),
        Some(list) => {
            let mut topics = Vec::with_capacity(list.len());
            for requested in list {
                // As Kafka: a non-zero id wins, whatever the name (the Java client sends an
                // empty name with an id).
                let topic = match requested.name {
                    _ if !requested.topic_id.is_nil() => by_id(&shard, requested.topic_id),
                    Some(name) => by_name(&shard, &name, allow_create).await,
                    None => by_id(&shard, requested.topic_id),
                };
                topics.push(topic);
            }
            topics
        }
    };
    let identity = &shard.shared.identity;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(identity.node_id))
        .with_host(str_bytes(&identity.host))
        .with_port(identity.port);
    let response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(str_bytes(&identity.cluster_id)))
        .with_controller_id(BrokerId(identity.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    Outcome::Respond(response)
}

fn all_topics(shard: &ShardContext) -> Vec<MetadataResponseTopic> {
    shard.engine().topics().iter().map(|topic| describe(shard, topic)).collect()
}

async fn by_name(shard: &ShardContext, name: &str, allow_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = shard.engine().topic(name) {
        return describe(shard, &topic);
    }
    if !is_valid_topic_name(name) {
        return failed(name, Uuid::nil(), ResponseError::InvalidTopicException.code());
    }
    if !allow_create {
        return failed(name, Uuid::nil(), code(ResponseError::UnknownTopicOrPartition));
    }
    let config = shard.config();
    let created = shard.engine().create_topic(name, config.num_partitions, config.default_topic_config.clone()).await;
    match created {
        Ok(topic) => {
            tracing::info!(topic = name, partitions = topic.partition_count(), "auto-created topic");
            describe(shard, &topic)
        }
        // Another request created it first.
        Err(TopicError::AlreadyExists { .. }) => match shard.engine().topic(name) {
            Some(topic) => describe(shard, &topic),
            None => failed(name, Uuid::nil(), code(ResponseError::LeaderNotAvailable)),
        },
        Err(error) => failed(name, Uuid::nil(), topic_error_code(&error)),
    }
}

fn by_id(shard: &ShardContext, id: Uuid) -> MetadataResponseTopic {
    match shard.engine().topic_by_id(topic_id_of(id)) {
        Some(topic) => describe(shard, &topic),
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

/// One topic as Metadata describes it: every partition led by this broker.
fn describe(shard: &ShardContext, topic: &TopicInfo) -> MetadataResponseTopic {
    let node = BrokerId(shard.shared.identity.node_id);
    let partitions = (0..topic.partition_count())
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid_of(topic.id))
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
