//! AddOffsetsToTxn (v0-v4): adds the group's `__consumer_offsets` partition to the producer's
//! open transaction, so that its TxnOffsetCommit is ended by the transaction's markers.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::{Coordinator, OFFSETS_TOPIC};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::transactions::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AddOffsetsToTxn, min: 0, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AddOffsetsToTxnRequest,
) -> Outcome<AddOffsetsToTxnResponse> {
    let refused =
        denied(&shard, &call, AclOperation::Write, Resource::TransactionalId(request.transactional_id.as_str()))
            .or_else(|| denied(&shard, &call, AclOperation::Read, Resource::Group(request.group_id.as_str())));
    if let Some(error) = refused {
        return Outcome::Respond(AddOffsetsToTxnResponse::default().with_error_code(error.code()));
    }
    let outcome = match shard.image().topic(OFFSETS_TOPIC) {
        None => Err(ResponseError::CoordinatorNotAvailable),
        Some(topic) => {
            let index = Coordinator::partition_of(request.group_id.as_str(), topic.partition_count());
            let producer = (request.producer_id.0, request.producer_epoch);
            let id = request.transactional_id.to_string();
            let target = id.clone();
            on_coordinator(&shard, &target, move |coordinator| async move {
                coordinator.add_partitions(&id, producer, &[(OFFSETS_TOPIC.to_owned(), index)], 0).await
            })
            .await
            .and_then(|outcome| outcome)
        }
    };
    let code = outcome.err().map_or(0, |error| error.code());
    Outcome::Respond(AddOffsetsToTxnResponse::default().with_error_code(code))
}
