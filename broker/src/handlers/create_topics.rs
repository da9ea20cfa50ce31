//! CreateTopics (v2-v7). A single broker can hold one replica, so the replication factor must be
//! 1 or -1 (default), and manual assignments must name this broker alone. `num_partitions` -1
//! means `num.partitions`. Configs use Kafka's names and start from the broker's topic defaults.
//! With `validate_only` everything is checked and nothing created.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use sluice_engine::TopicConfig;

use super::describe_configs::{config_source, describe_topic_config};
use super::{code, is_valid_topic_name, message, str_bytes, uuid_of};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::{config_error_code, topic_error_code};

/// A refusal: error code and message.
type Refusal = (i16, String);

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    version: i16,
    request: CreateTopicsRequest,
) -> Outcome<CreateTopicsResponse> {
    let mut seen = BTreeMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.as_str().to_owned()).or_insert(0u32) += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if seen.get(topic.name.as_str()).copied().unwrap_or(0) > 1 {
            Err((code(ResponseError::InvalidRequest), "topic listed more than once".to_owned()))
        } else {
            create_one(&shard, topic, request.validate_only).await
        };
        results.push(match outcome {
            Ok((partition_count, config, id)) => {
                let result = result.with_num_partitions(partition_count).with_replication_factor(1);
                let result = if version >= 7 { result.with_topic_id(uuid_of(id)) } else { result };
                if version >= 5 { result.with_configs(Some(describe_created(&shard, &config))) } else { result }
            }
            Err((error_code, text)) => result
                .with_error_code(error_code)
                .with_error_message(message(text))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    Outcome::Respond(CreateTopicsResponse::default().with_topics(results))
}

async fn create_one(
    shard: &ShardContext,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(i32, TopicConfig, sluice_engine::TopicId), Refusal> {
    let name = topic.name.as_str();
    if !is_valid_topic_name(name) {
        return Err((code(ResponseError::InvalidTopicException), format!("invalid topic name {name:?}")));
    }
    if !matches!(topic.replication_factor, -1 | 1) {
        let text = format!("replication factor {} is impossible on a single broker", topic.replication_factor);
        return Err((code(ResponseError::InvalidReplicationFactor), text));
    }
    let partition_count = partition_count(shard, topic)?;
    let mut config = shard.config().default_topic_config.clone();
    for entry in &topic.configs {
        if let Some(value) = &entry.value {
            config
                .set(entry.name.as_str(), value.as_str())
                .map_err(|error| (config_error_code(&error), error.to_string()))?;
        }
    }
    if shard.engine().topic(name).is_some() {
        return Err((code(ResponseError::TopicAlreadyExists), format!("topic {name} already exists")));
    }
    if validate_only {
        return Ok((partition_count, config, sluice_engine::TopicId::default()));
    }
    match shard.engine().create_topic(name, partition_count, config).await {
        Ok(info) => {
            tracing::info!(topic = name, partitions = partition_count, "created topic");
            Ok((info.partition_count(), info.config, info.id))
        }
        Err(error) => Err((topic_error_code(&error), error.to_string())),
    }
}

fn partition_count(shard: &ShardContext, topic: &CreatableTopic) -> Result<i32, Refusal> {
    let node = shard.shared.identity.node_id;
    if topic.assignments.is_empty() {
        return match topic.num_partitions {
            -1 => Ok(shard.config().num_partitions),
            count if count > 0 => Ok(count),
            count => Err((code(ResponseError::InvalidPartitions), format!("partition count {count} must be positive"))),
        };
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        let text = "give either assignments or partition count and replication factor".to_owned();
        return Err((code(ResponseError::InvalidRequest), text));
    }
    for (position, assignment) in topic.assignments.iter().enumerate() {
        let this_broker_only = assignment.broker_ids.len() == 1 && assignment.broker_ids[0].0 == node;
        if assignment.partition_index != position as i32 || !this_broker_only {
            let text = format!("assignments must be partitions 0.. each on broker {node} alone");
            return Err((code(ResponseError::InvalidReplicaAssignment), text));
        }
    }
    Ok(topic.assignments.len() as i32)
}

fn describe_created(shard: &ShardContext, config: &TopicConfig) -> Vec<CreatableTopicConfigs> {
    describe_topic_config(config)
        .into_iter()
        .map(|(name, value)| {
            let source = config_source(shard, &name, &value);
            CreatableTopicConfigs::default()
                .with_name(str_bytes(&name))
                .with_value(Some(str_bytes(&value)))
                .with_config_source(source)
        })
        .collect()
}
