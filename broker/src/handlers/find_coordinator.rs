//! FindCoordinator (v0-v4, v4 with batched keys). A group's coordinator is the leader of its
//! `__consumer_offsets` partition (`abs(javaHash(group)) % partitions`), as the metadata image
//! says; within that broker, group requests are forwarded to the partition's shard (see
//! `groups`). A cluster creates `__consumer_offsets` at the first group lookup (a single node
//! creates it at start); until it exists and has a live leader the answer is
//! COORDINATOR_NOT_AVAILABLE, which clients retry. A transactional id's coordinator is found
//! the same way in `__transaction_state`, created at the first such lookup as Kafka does.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{code, message, str_bytes};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::OFFSETS_TOPIC;
use crate::metadata::MetadataImage;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: node id, host and port, or why it is not available.
type Found = Result<(i32, String, i32), (ResponseError, &'static str)>;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::FindCoordinator, min: 0, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: FindCoordinatorRequest,
) -> Outcome<FindCoordinatorResponse> {
    let version = call.version;
    // The image from before any creation: a lookup that creates the offsets topic answers
    // COORDINATOR_NOT_AVAILABLE, as Kafka's does, and the client asks again. Answering the new
    // leader at once sent clients to brokers that had not applied the topic yet (NOT_COORDINATOR),
    // after which a librdkafka consumer of assigned partitions was seen to wait for a minute
    // and more before fetching its committed offsets again.
    let image = shard.image();
    if request.key_type == KEY_TYPE_GROUP && image.topic(OFFSETS_TOPIC).is_none() {
        // A cluster creates the offsets topic when a group first needs it, as Kafka does.
        if let Err(refusal) = crate::groups::ensure_offsets_topic(&shard.shared).await {
            tracing::debug!(reason = %refusal.message, "the offsets topic could not be created yet");
        }
    }
    if request.key_type == KEY_TYPE_TRANSACTION
        && image.topic(crate::transactions::TXN_TOPIC).is_none()
        && let Err(refusal) = crate::transactions::ensure_txn_topic(&shard.shared).await
    {
        tracing::debug!(reason = %refusal.message, "the transaction state topic could not be created yet");
    }
    let find = |key: &str| -> Found {
        if let Some(error) = crate::security::checks::coordinator_denied(&shard, &call, request.key_type, key) {
            return Err((error, "Not authorized to find the coordinator of this key."));
        }
        let found = match request.key_type {
            KEY_TYPE_GROUP => group_coordinator(&image, key),
            KEY_TYPE_TRANSACTION => coordinator_in(&image, crate::transactions::TXN_TOPIC, key),
            _ => Err((ResponseError::InvalidRequest, "unknown coordinator key type")),
        };
        on_listener(&image, found?, &call.session.listener)
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = Coordinator::default().with_key(key.clone());
                match find(key.as_str()) {
                    Ok((node_id, host, port)) => {
                        found.with_node_id(BrokerId(node_id)).with_host(str_bytes(&host)).with_port(port)
                    }
                    Err((error, text)) => found
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1)
                        .with_error_code(code(error))
                        .with_error_message(message(text)),
                }
            })
            .collect();
        return Outcome::Respond(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let response = FindCoordinatorResponse::default();
    let response = match find(request.key.as_str()) {
        Ok((node_id, host, port)) => {
            response.with_node_id(BrokerId(node_id)).with_host(str_bytes(&host)).with_port(port)
        }
        Err((error, text)) => {
            let response = response.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(error));
            if version >= 1 { response.with_error_message(message(text)) } else { response }
        }
    };
    Outcome::Respond(response)
}

/// The coordinator's endpoint on the listener the request came in on, as Kafka answers; a
/// coordinator without that listener is not available to this client.
fn on_listener(image: &MetadataImage, (node_id, _, _): (i32, String, i32), listener: &str) -> Found {
    let endpoint = image.brokers.get(&node_id).and_then(|broker| broker.endpoint(listener));
    let (host, port) = endpoint.ok_or((ResponseError::CoordinatorNotAvailable, "the coordinator is not available"))?;
    Ok((node_id, host.to_owned(), port))
}

/// The live leader of the group's offsets partition.
fn group_coordinator(image: &MetadataImage, group_id: &str) -> Found {
    coordinator_in(image, OFFSETS_TOPIC, group_id)
}

/// The live leader of `key`'s partition of an internal topic (`__consumer_offsets` for groups,
/// `__transaction_state` for transactional ids).
fn coordinator_in(image: &MetadataImage, internal_topic: &str, key: &str) -> Found {
    let unavailable = (ResponseError::CoordinatorNotAvailable, "the coordinator is not available");
    let topic = image.topic(internal_topic).ok_or(unavailable)?;
    let index = crate::groups::Coordinator::partition_of(key, topic.partition_count());
    let leader = topic.partition(index).map(|partition| partition.leader).ok_or(unavailable)?;
    let broker = image.brokers.get(&leader).filter(|broker| !broker.fenced).ok_or(unavailable)?;
    Ok((broker.node_id, broker.host.clone(), broker.port))
}
