//! CreateTopics (v2-v7), decided by the controller: the replication factor (-1: the broker's
//! default) must not exceed the live brokers, manual assignments must name registered brokers,
//! `num_partitions` -1 means `num.partitions`. Configs use Kafka's names and start from the
//! broker's topic defaults. With `validate_only` everything is checked and nothing created.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use sluice_engine::TopicConfig;

use super::describe_configs::{config_source, describe_topic_config};
use super::{code, message, str_bytes, uuid_of};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::config_error_code;
use crate::metadata::NewTopic;

/// A refusal: error code and message.
type Refusal = (i16, String);

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::CreateTopics, min: 2, max: 7 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: CreateTopicsRequest,
) -> Outcome<CreateTopicsResponse> {
    let version = call.version;
    let quota = crate::quota::MutationQuota::of(&shard, &call, version >= 6);
    let mut seen = BTreeMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.as_str().to_owned()).or_insert(0u32) += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if seen.get(topic.name.as_str()).copied().unwrap_or(0) > 1 {
            Err((code(ResponseError::InvalidRequest), "topic listed more than once".to_owned()))
        } else if let Some(error) = crate::security::checks::create_topic_denied(&shard, &call, topic.name.as_str()) {
            Err((code(error), "Authorization failed.".to_owned()))
        } else {
            create_one(&shard, topic, request.validate_only, &quota).await
        };
        results.push(match outcome {
            // As Kafka, the created topic's partitions, replication factor and configs (v5+) only
            // for a caller with DESCRIBE_CONFIGS on it; else TOPIC_AUTHORIZATION_FAILED in
            // `topic_config_error_code`, the topic created all the same.
            Ok((_, _, _, id))
                if version >= 5 && crate::security::checks::topic_configs_hidden(&shard, &call, &topic.name) =>
            {
                let result = result.with_num_partitions(-1).with_replication_factor(-1).with_configs(Some(Vec::new()));
                let result = result.with_topic_config_error_code(code(ResponseError::TopicAuthorizationFailed));
                if version >= 7 { result.with_topic_id(uuid_of(id)) } else { result }
            }
            Ok((partition_count, replication_factor, config, id)) => {
                let result = result.with_num_partitions(partition_count).with_replication_factor(replication_factor);
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
    let throttle_time_ms = quota.finish(&shard, &call);
    Outcome::Respond(CreateTopicsResponse::default().with_topics(results).with_throttle_time_ms(throttle_time_ms))
}

async fn create_one(
    shard: &ShardContext,
    topic: &CreatableTopic,
    validate_only: bool,
    quota: &crate::quota::MutationQuota,
) -> Result<(i32, i16, TopicConfig, sluice_engine::TopicId), Refusal> {
    let mut config = shard.config().default_topic_config.clone();
    for entry in &topic.configs {
        if let Some(value) = &entry.value {
            config
                .set(entry.name.as_str(), value.as_str())
                .map_err(|error| (config_error_code(&error), error.to_string()))?;
        }
    }
    let manual = !topic.assignments.is_empty();
    if manual && (topic.num_partitions != -1 || topic.replication_factor != -1) {
        let text = "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at \
                    the same time.";
        return Err((code(ResponseError::InvalidRequest), text.to_owned()));
    }
    let mut assignments = Vec::with_capacity(topic.assignments.len());
    for (position, assignment) in topic.assignments.iter().enumerate() {
        if assignment.partition_index != position as i32 {
            let text = "partitions in replica assignments must be numbered 0, 1, 2, ... in order".to_owned();
            return Err((code(ResponseError::InvalidReplicaAssignment), text));
        }
        assignments.push(assignment.broker_ids.iter().map(|id| id.0).collect());
    }
    let new_topic = NewTopic {
        name: topic.name.as_str().to_owned(),
        partition_count: (topic.num_partitions != -1).then_some(topic.num_partitions),
        replication_factor: (topic.replication_factor != -1).then_some(topic.replication_factor),
        assignments,
        config,
    };
    quota.admit(shard).map_err(|refusal| (code(refusal.error), refusal.message))?;
    let created = shard.shared.metadata.create_topics(vec![new_topic], validate_only).await.into_iter().next();
    match created {
        Some(Ok(image)) => {
            quota.record(shard, image.partitions.len());
            if !validate_only {
                tracing::info!(topic = %image.name, partitions = image.partition_count(), "created topic");
            }
            let replication_factor = image.partitions.first().map_or(0, |partition| partition.replicas.len() as i16);
            let id = if validate_only { sluice_engine::TopicId::default() } else { image.id };
            Ok((image.partition_count(), replication_factor, image.config.clone(), id))
        }
        Some(Err(refusal)) => Err((code(refusal.error), refusal.message)),
        None => Err((code(ResponseError::UnknownServerError), "no answer".to_owned())),
    }
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
