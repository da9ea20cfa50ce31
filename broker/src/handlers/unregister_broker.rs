//! UnregisterBroker (v0): a broker leaves the cluster, decided by the active controller (what
//! `kafka-cluster.sh unregister` sends, after the broker's replicas were moved away and it was
//! stopped). A broker that is still running registers again at its next heartbeat, as in Kafka.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, UnregisterBrokerRequest, UnregisterBrokerResponse};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::UnregisterBroker, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: UnregisterBrokerRequest,
) -> Outcome<UnregisterBrokerResponse> {
    if let Some(error) = denied(&shard, &call, AclOperation::Alter, Resource::Cluster) {
        return Outcome::Respond(UnregisterBrokerResponse::default().with_error_code(error.code()));
    }
    let response = match shard.shared.metadata.unregister_broker(request.broker_id.0).await {
        Ok(()) => UnregisterBrokerResponse::default(),
        Err(refusal) => UnregisterBrokerResponse::default()
            .with_error_code(code(refusal.error))
            .with_error_message(message(refusal.message)),
    };
    Outcome::Respond(response)
}
