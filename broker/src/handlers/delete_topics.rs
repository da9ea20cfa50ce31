//! DeleteTopics (v1-v6): by name, or (v6) by name or topic id.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{code, message, topic_id_of, topic_name, uuid_of};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DeleteTopics, min: 1, max: 6 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DeleteTopicsRequest,
) -> Outcome<DeleteTopicsResponse> {
    let version = call.version;
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| (topic.name.as_ref().map(|name| name.as_str().to_owned()), topic.topic_id))
            .collect()
    } else {
        request.topic_names.iter().map(|name| (Some(name.as_str().to_owned()), Uuid::nil())).collect()
    };
    let quota = crate::quota::MutationQuota::of(&shard, &call, version >= 5);
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = shard.image();
        let info = match &name {
            Some(name) => image.topic(name).cloned(),
            None => image.topic_by_id(topic_id_of(id)).cloned(),
        };
        let result = DeletableTopicResult::default().with_name(name.as_deref().map(topic_name)).with_topic_id(id);
        let Some(info) = info else {
            let error =
                if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
            // As Kafka: a name the caller may not DESCRIBE is refused whether or not it exists.
            let hidden =
                name.as_deref().and_then(|name| denied(&shard, &call, AclOperation::Describe, Resource::Topic(name)));
            results.push(result.with_error_code(code(hidden.unwrap_or(error))));
            continue;
        };
        let result = result.with_name(Some(topic_name(&info.name))).with_topic_id(if version >= 6 {
            uuid_of(info.id)
        } else {
            Uuid::nil()
        });
        if let Some(error) = denied(&shard, &call, AclOperation::Delete, Resource::Topic(&info.name)) {
            results.push(result.with_error_code(code(error)));
            continue;
        }
        if let Err(refusal) = quota.admit(&shard) {
            let result = result.with_error_code(code(refusal.error));
            results.push(if version >= 5 { result.with_error_message(message(refusal.message)) } else { result });
            continue;
        }
        let deleted = shard.shared.metadata.delete_topics(vec![info.id]).await.into_iter().next();
        match deleted {
            Some(Ok(())) => {
                quota.record(&shard, info.partitions.len());
                tracing::info!(topic = %info.name, "deleted topic");
                results.push(result);
            }
            Some(Err(refusal)) => {
                let result = result.with_error_code(code(refusal.error));
                results.push(if version >= 5 { result.with_error_message(message(refusal.message)) } else { result });
            }
            None => results.push(result.with_error_code(code(ResponseError::UnknownServerError))),
        }
    }
    let throttle_time_ms = quota.finish(&shard, &call);
    Outcome::Respond(DeleteTopicsResponse::default().with_responses(results).with_throttle_time_ms(throttle_time_ms))
}
