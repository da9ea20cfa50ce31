//! InitProducerId (v0-v5). Without a transactional id (the idempotent producer): a fresh
//! producer id at epoch 0 on every call, as Kafka does; ids come from blocks the controller
//! hands out, unique across brokers and restarts. With one: the id's transaction coordinator
//! answers with its producer id and a bumped epoch (fencing older instances), after aborting
//! a transaction the id left open (CONCURRENT_TRANSACTIONS meanwhile, which clients retry).
//! v3+ may name the producer id and epoch the client had (KIP-360).

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
    call: Call,
    request: InitProducerIdRequest,
) -> Outcome<InitProducerIdResponse> {
    let refused = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let transactional_id = request.transactional_id.as_ref().filter(|id| !id.is_empty()).map(|id| id.as_str());
    if let Some(error) = crate::security::checks::init_producer_id_denied(&shard, &call, transactional_id) {
        return Outcome::Respond(refused.with_error_code(code(error)));
    }
    if let Some(id) = request.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        let id = id.to_string();
        let target = id.clone();
        let timeout_ms = request.transaction_timeout_ms;
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let outcome = crate::transactions::on_coordinator(&shard, &target, move |coordinator| async move {
            coordinator.init_producer_id(&id, timeout_ms, expected).await
        })
        .await
        .and_then(|outcome| outcome);
        return Outcome::Respond(match outcome {
            Ok((producer_id, epoch)) => {
                InitProducerIdResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch)
            }
            Err(error) => refused.with_error_code(code(error)),
        });
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
