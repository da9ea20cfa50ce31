//! ListTransactions (v0-v2, KIP-664): every transactional id this broker coordinates (on all of
//! its shards), filtered by state, producer id, how long the transaction has run (v1) and an
//! id pattern (v2, a regular expression over the whole id; only `.*` and literal ids are
//! understood, others match nothing).

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ApiKey, ListTransactionsRequest, ListTransactionsResponse, ProducerId};
use sluice_engine::ShardId;

use super::str_bytes;
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Resource;
use crate::transactions::coordinator::DescribedTxn;
use crate::transactions::records::TxnStatus;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ListTransactions, min: 0, max: 2 };

/// Kafka's name of a transaction state, as ListTransactions and DescribeTransactions show it.
pub(crate) fn state_name(status: TxnStatus) -> &'static str {
    match status {
        TxnStatus::Empty => "Empty",
        TxnStatus::Ongoing => "Ongoing",
        TxnStatus::PrepareCommit => "PrepareCommit",
        TxnStatus::PrepareAbort => "PrepareAbort",
        TxnStatus::CompleteCommit => "CompleteCommit",
        TxnStatus::CompleteAbort => "CompleteAbort",
        TxnStatus::Dead => "Dead",
        TxnStatus::PrepareEpochFence => "PrepareEpochFence",
    }
}

const STATE_NAMES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ListTransactionsRequest,
) -> Outcome<ListTransactionsResponse> {
    let mut listed: Vec<DescribedTxn> = Vec::new();
    let mut error_code = 0;
    for target in 0..shard.engine().shard_count() {
        let list = |context: Rc<ShardContext>| async move { context.transactions.list() };
        match crate::context::on_shard(shard.engine(), ShardId(target), list).await {
            Ok(found) => listed.extend(found),
            Err(_stopped) => error_code = ResponseError::CoordinatorNotAvailable.code(),
        }
    }
    let states: Vec<String> = request.state_filters.iter().map(ToString::to_string).collect();
    let unknown: Vec<_> =
        states.iter().filter(|state| !STATE_NAMES.contains(&state.as_str())).map(|state| str_bytes(state)).collect();
    let producers: Vec<i64> = request.producer_id_filters.iter().map(|id| id.0).collect();
    let now_ms = shard.shared.clock.unix_ms();
    let duration_ms = if call.version >= 1 { request.duration_filter } else { -1 };
    let pattern =
        if call.version >= 2 { request.transactional_id_pattern.as_ref().map(ToString::to_string) } else { None };
    let checker = crate::security::authorizer::Checker::new(&shard, &call);
    let transaction_states = listed
        .into_iter()
        .filter(|txn| checker.allows(AclOperation::Describe, Resource::TransactionalId(&txn.transactional_id)))
        .filter(|txn| states.is_empty() || states.iter().any(|state| state == state_name(txn.status)))
        .filter(|txn| producers.is_empty() || producers.contains(&txn.producer_id))
        .filter(|txn| duration_ms < 0 || now_ms.saturating_sub(txn.start_ms) > duration_ms)
        .filter(|txn| pattern.as_deref().is_none_or(|pattern| pattern == ".*" || pattern == txn.transactional_id))
        .map(|txn| {
            TransactionState::default()
                .with_transactional_id(str_bytes(&txn.transactional_id).into())
                .with_producer_id(ProducerId(txn.producer_id))
                .with_transaction_state(str_bytes(state_name(txn.status)))
        })
        .collect();
    Outcome::Respond(
        ListTransactionsResponse::default()
            .with_error_code(error_code)
            .with_unknown_state_filters(unknown)
            .with_transaction_states(transaction_states),
    )
}
