//! FindCoordinator (v0-v4, v4 with batched keys). This single broker coordinates every group;
//! within it, group requests are forwarded to the group's shard (see `groups`). Transactions do
//! not exist yet, so transaction coordinators are not available.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{code, message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::Outcome;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    version: i16,
    request: FindCoordinatorRequest,
) -> Outcome<FindCoordinatorResponse> {
    let refusal = match request.key_type {
        KEY_TYPE_GROUP => None,
        KEY_TYPE_TRANSACTION => Some((ResponseError::CoordinatorNotAvailable, "transactions are not supported")),
        _ => Some((ResponseError::InvalidRequest, "unknown coordinator key type")),
    };
    let identity = &shard.shared.identity;
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = Coordinator::default().with_key(key.clone());
                match refusal {
                    None => found
                        .with_node_id(BrokerId(identity.node_id))
                        .with_host(str_bytes(&identity.host))
                        .with_port(identity.port),
                    Some((error, text)) => found
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
    let response = match refusal {
        None => response
            .with_node_id(BrokerId(identity.node_id))
            .with_host(str_bytes(&identity.host))
            .with_port(identity.port),
        Some((error, text)) => {
            let response = response.with_node_id(BrokerId(-1)).with_port(-1).with_error_code(code(error));
            if version >= 1 { response.with_error_message(message(text)) } else { response }
        }
    };
    Outcome::Respond(response)
}
