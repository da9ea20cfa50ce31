//! IncrementalAlterConfigs (v0-v1): per-entry SET, DELETE (back to the broker default), and
//! APPEND/SUBTRACT on list configs, applied to a topic's current config. Broker configs are
//! static and refused.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use sluice_engine::TopicConfig;

use super::{RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC, code, message};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::config_error_code;

const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
const OPERATION_APPEND: i8 = 2;
const OPERATION_SUBTRACT: i8 = 3;

/// Configs whose value is a comma-separated list.
const LIST_NAMES: &[&str] =
    &["cleanup.policy", "leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];

type Refusal = (i16, String);

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::IncrementalAlterConfigs, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _call: Call,
    request: IncrementalAlterConfigsRequest,
) -> Outcome<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let outcome = match resource.resource_type {
            RESOURCE_TYPE_TOPIC => {
                alter(&shard, resource.resource_name.as_str(), &resource.configs, request.validate_only).await
            }
            RESOURCE_TYPE_BROKER => Err((code(ResponseError::InvalidRequest), "broker configs are static".to_owned())),
            other => Err((code(ResponseError::InvalidRequest), format!("unknown resource type {other}"))),
        };
        responses.push(match outcome {
            Ok(()) => response,
            Err((error_code, text)) => response.with_error_code(error_code).with_error_message(message(text)),
        });
    }
    Outcome::Respond(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

async fn alter(
    shard: &ShardContext,
    topic: &str,
    entries: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), Refusal> {
    let defaults = &shard.config().default_topic_config;
    let altered = shard
        .shared
        .metadata
        .alter_topic_config(
            topic,
            |current| {
                let mut config = current.clone();
                for entry in entries {
                    apply(&mut config, defaults, entry).map_err(|(error_code, text)| {
                        crate::metadata::Refusal::new(
                            ResponseError::try_from_code(error_code).unwrap_or(ResponseError::InvalidConfig),
                            text,
                        )
                    })?;
                }
                Ok(config)
            },
            validate_only,
        )
        .await;
    altered.map_err(|refusal| (code(refusal.error), refusal.message))
}

fn apply(config: &mut TopicConfig, defaults: &TopicConfig, entry: &AlterableConfig) -> Result<(), Refusal> {
    let name = entry.name.as_str();
    let value = entry.value.as_ref().map_or("", |value| value.as_str());
    let rejected = |error: sluice_engine::ConfigError| (config_error_code(&error), error.to_string());
    match entry.config_operation {
        OPERATION_SET => config.set(name, value).map_err(rejected),
        OPERATION_DELETE => config.reset(name, defaults).map_err(rejected),
        OPERATION_APPEND | OPERATION_SUBTRACT if LIST_NAMES.contains(&name) => {
            let current =
                config.entries().into_iter().find(|(key, _)| key == name).map(|(_, value)| value).unwrap_or_default();
            let mut items: Vec<String> =
                current.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect();
            for item in value.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                if entry.config_operation == OPERATION_APPEND {
                    if !items.iter().any(|existing| existing == item) {
                        items.push(item.to_owned());
                    }
                } else {
                    items.retain(|existing| existing != item);
                }
            }
            config.set(name, &items.join(",")).map_err(rejected)
        }
        OPERATION_APPEND | OPERATION_SUBTRACT => {
            Err((code(ResponseError::InvalidConfig), format!("{name} is not a list config")))
        }
        other => Err((code(ResponseError::InvalidRequest), format!("unknown config operation {other}"))),
    }
}
