//! IncrementalAlterConfigs (v0-v1): per-entry SET, DELETE (back to the broker default), and
//! APPEND/SUBTRACT on list configs, applied to a topic's current config, a group's configs, or
//! a BROKER resource's dynamic configs (`crate::dynamic_config`).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::{RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC, code, message};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::metadata::config_change::{ConfigChange, ConfigOperation};

type Refusal = (i16, String);

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::IncrementalAlterConfigs, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: IncrementalAlterConfigsRequest,
) -> Outcome<IncrementalAlterConfigsResponse> {
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
        let outcome = match resource.resource_type {
            RESOURCE_TYPE_TOPIC => {
                alter(&shard, resource.resource_name.as_str(), &resource.configs, request.validate_only).await
            }
            RESOURCE_TYPE_BROKER => {
                let operations = operations(&resource.configs);
                crate::dynamic_config::submit(&shard, name, operations, false, request.validate_only).await
            }
            crate::groups::group_config::RESOURCE_TYPE_GROUP => {
                alter_group(&shard, resource.resource_name.as_str(), &resource.configs, request.validate_only).await
            }
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
    let operations = operations(entries);
    let change = ConfigChange::Incremental { operations, defaults: shard.config().default_topic_config.clone() };
    let altered = shard.shared.metadata.alter_topic_config(topic, change, validate_only).await;
    altered.map_err(|refusal| (code(refusal.error), refusal.message))
}

/// IncrementalAlterConfigs of a GROUP resource: SET and DELETE of the group's consumer configs,
/// decided by the controller against the configs it holds.
async fn alter_group(
    shard: &ShardContext,
    group: &str,
    entries: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if group.is_empty() {
        return Err((code(ResponseError::InvalidRequest), "the group id must not be empty".to_owned()));
    }
    let operations = operations(entries);
    let altered = shard.shared.metadata.alter_group_config(group, operations, validate_only).await;
    altered.map_err(|refusal| (code(refusal.error), refusal.message))
}

/// The request's entries as config operations, in order.
fn operations(entries: &[AlterableConfig]) -> Vec<ConfigOperation> {
    entries
        .iter()
        .map(|entry| ConfigOperation {
            name: entry.name.as_str().to_owned(),
            operation: entry.config_operation,
            value: entry.value.as_ref().map(|value| value.as_str().to_owned()),
        })
        .collect()
}
