//! EndTxn (v0-v4): commits or aborts the producer's open transaction. The coordinator answers
//! once the Prepare state is stored; the markers follow in the background, and the producer's
//! next transaction waits for them (CONCURRENT_TRANSACTIONS, which clients retry).

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse};

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::transactions::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::EndTxn, min: 0, max: 4 };

pub(crate) async fn handle(shard: Rc<ShardContext>, _call: Call, request: EndTxnRequest) -> Outcome<EndTxnResponse> {
    let producer = (request.producer_id.0, request.producer_epoch);
    let id = request.transactional_id.to_string();
    let target = id.clone();
    let commit = request.committed;
    let outcome =
        on_coordinator(
            &shard,
            &target,
            move |coordinator| async move { coordinator.end_txn(&id, producer, commit).await },
        )
        .await
        .and_then(|outcome| outcome);
    let code = outcome.err().map_or(0, |error| error.code());
    Outcome::Respond(
        EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch),
    )
}
