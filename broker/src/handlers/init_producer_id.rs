//! InitProducerId (v0-v5) for the idempotent producer: a fresh producer id at epoch 0 on every
//! call, as Kafka does when no transactional id is given. Ids come from blocks persisted in the
//! data directory, so they are unique across restarts. Transactional ids are refused until
//! transactions exist (their APIs are not advertised, so clients should not ask).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::code;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::InitProducerId, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _call: Call,
    request: InitProducerIdRequest,
) -> Outcome<InitProducerIdResponse> {
    let refused = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.as_ref().is_some_and(|id| !id.is_empty()) {
        return Outcome::Respond(refused.with_error_code(code(ResponseError::UnsupportedVersion)));
    }
    match shard.shared.producer_ids.allocate(&shard.shared.metadata).await {
        Ok(id) => {
            Outcome::Respond(InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0))
        }
        Err(refusal) => {
            tracing::warn!(reason = %refusal.message, "no producer id block from the controller");
            // Retriable for clients: they ask again.
            Outcome::Respond(refused.with_error_code(code(ResponseError::CoordinatorLoadInProgress)))
        }
    }
}
