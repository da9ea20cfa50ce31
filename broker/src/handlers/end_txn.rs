//! EndTxn (v0-v5): commits or aborts the producer's open transaction. The coordinator answers
//! once the Prepare state is stored; the markers follow in the background, and the producer's
//! next transaction waits for them (CONCURRENT_TRANSACTIONS, which clients retry). v5 is
//! transaction version 2 (KIP-890 part 2): the epoch is bumped at every end, and the answer
//! carries the producer id and epoch of the next transaction.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse};

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::transactions::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::EndTxn, min: 0, max: 5 };

pub(crate) async fn handle(shard: Rc<ShardContext>, call: Call, request: EndTxnRequest) -> Outcome<EndTxnResponse> {
    let transaction_version = if call.version >= 5 { 2 } else { 0 };
    let producer = (request.producer_id.0, request.producer_epoch);
    let id = request.transactional_id.to_string();
    let target = id.clone();
    let commit = request.committed;
    let refused = denied(&shard, &call, AclOperation::Write, Resource::TransactionalId(&id));
    let outcome = match refused {
        Some(error) => Err(error),
        None => on_coordinator(&shard, &target, move |coordinator| async move {
            coordinator.end_txn(&id, producer, commit, transaction_version).await
        })
        .await
        .and_then(|outcome| outcome),
    };
    let (code, (producer_id, producer_epoch)) = match outcome {
        Ok(next) => (0, next),
        Err(error) => (error.code(), (-1, -1)),
    };
    Outcome::Respond(
        EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id(kafka_protocol::messages::ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
    )
}
