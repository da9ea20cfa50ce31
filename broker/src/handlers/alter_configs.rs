//! AlterConfigs (v0-v2): replaces a topic's whole config (entries not given return to the broker
//! default), as Kafka's non-incremental call does; for a BROKER resource, its whole set of
//! dynamic broker configs (`crate::dynamic_config`).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC, code, message};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::config_error_code;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AlterConfigs, min: 0, max: 2 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AlterConfigsRequest,
) -> Outcome<AlterConfigsResponse> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let name = resource.resource_name.as_str();
        if let Some((error_code, text)) =
            crate::security::checks::config_denied(&shard, &call, true, resource.resource_type, name)
        {
            responses.push(response.with_error_code(error_code).with_error_message(message(text)));
            continue;
        }
        let entries =
            resource.configs.iter().map(|entry| (entry.name.as_str(), entry.value.as_ref().map(StrBytes::as_str)));
        let outcome = match resource.resource_type {
            RESOURCE_TYPE_TOPIC => {
                replace(&shard, resource.resource_name.as_str(), entries, request.validate_only).await
            }
            RESOURCE_TYPE_BROKER => {
                let operations = crate::dynamic_config::set_operations(&resource.configs);
                crate::dynamic_config::submit(&shard, name, operations, true, request.validate_only).await
            }
            other => Err((code(ResponseError::InvalidRequest), format!("unknown resource type {other}"))),
        };
        responses.push(match outcome {
            Ok(()) => response,
            Err((error_code, text)) => response.with_error_code(error_code).with_error_message(message(text)),
        });
    }
    Outcome::Respond(AlterConfigsResponse::default().with_responses(responses))
}

async fn replace<'a>(
    shard: &ShardContext,
    topic: &str,
    entries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let mut config = shard.config().default_topic_config.clone();
    for (name, value) in entries {
        if let Some(value) = value {
            config.set(name, value).map_err(|error| (config_error_code(&error), error.to_string()))?;
        }
    }
    let change = crate::metadata::config_change::ConfigChange::Replace(config);
    let replaced = shard.shared.metadata.alter_topic_config(topic, change, validate_only).await;
    replaced.map_err(|refusal| (code(refusal.error), refusal.message))
}
