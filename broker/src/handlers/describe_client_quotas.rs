//! DescribeClientQuotas (v0-v1): the client quotas whose entities match the request's filter,
//! read from this broker's metadata image with Kafka's matching rules (see
//! `crate::quota::entity::describe`). A malformed filter answers the whole request with Kafka's
//! error and no entries.

use std::rc::Rc;

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::{code, message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::quota::entity::{FilterComponent, describe};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeClientQuotas, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeClientQuotasRequest,
) -> Outcome<DescribeClientQuotasResponse> {
    // As Kafka: DESCRIBE_CONFIGS on the cluster.
    if let Some(error) = denied(&shard, &call, AclOperation::DescribeConfigs, Resource::Cluster) {
        return Outcome::Respond(
            DescribeClientQuotasResponse::default().with_error_code(code(error)).with_entries(None),
        );
    }
    let filter: Vec<FilterComponent> = request
        .components
        .iter()
        .map(|component| FilterComponent {
            entity_type: component.entity_type.to_string(),
            match_type: component.match_type,
            matched: component._match.as_ref().map(ToString::to_string),
        })
        .collect();
    let image = shard.image();
    let response = match describe(&image.client_quotas, &filter, request.strict) {
        Ok(matched) => {
            let entries = matched
                .into_iter()
                .map(|(entity, values)| {
                    let entity = entity
                        .components()
                        .into_iter()
                        .map(|(kind, name)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(kind))
                                .with_entity_name(name.map(str_bytes))
                        })
                        .collect();
                    let values = values
                        .iter()
                        .map(|(key, value)| ValueData::default().with_key(str_bytes(key.name())).with_value(value.0))
                        .collect();
                    EntryData::default().with_entity(entity).with_values(values)
                })
                .collect();
            DescribeClientQuotasResponse::default().with_entries(Some(entries))
        }
        Err(refusal) => DescribeClientQuotasResponse::default()
            .with_error_code(code(refusal.error))
            .with_error_message(message(refusal.message))
            .with_entries(None),
    };
    Outcome::Respond(response)
}
