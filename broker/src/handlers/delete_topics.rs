//! DeleteTopics (v1-v6): by name, or (v6) by name or topic id.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{code, message, topic_id_of, topic_name, uuid_of};
use crate::context::ShardContext;
use crate::dispatch::Outcome;
use crate::error::topic_error_code;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    version: i16,
    request: DeleteTopicsRequest,
) -> Outcome<DeleteTopicsResponse> {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| (topic.name.as_ref().map(|name| name.as_str().to_owned()), topic.topic_id))
            .collect()
    } else {
        request.topic_names.iter().map(|name| (Some(name.as_str().to_owned()), Uuid::nil())).collect()
    };
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let info = match &name {
            Some(name) => shard.engine().topic(name),
            None => shard.engine().topic_by_id(topic_id_of(id)),
        };
        let result = DeletableTopicResult::default().with_name(name.as_deref().map(topic_name)).with_topic_id(id);
        let Some(info) = info else {
            let error =
                if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
            results.push(result.with_error_code(code(error)));
            continue;
        };
        let result = result.with_name(Some(topic_name(&info.name))).with_topic_id(if version >= 6 {
            uuid_of(info.id)
        } else {
            Uuid::nil()
        });
        match shard.engine().delete_topic(&info.name).await {
            Ok(()) => {
                tracing::info!(topic = %info.name, "deleted topic");
                results.push(result);
            }
            Err(error) => {
                let result = result.with_error_code(topic_error_code(&error));
                results.push(if version >= 5 { result.with_error_message(message(error.to_string())) } else { result });
            }
        }
    }
    Outcome::Respond(DeleteTopicsResponse::default().with_responses(results))
}
