//! Heartbeat (v0-v4). Forwarded to the group's coordinator shard; keeps the member's session
//! alive and tells it when a rebalance is in progress.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::membership::MemberRef;
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::Heartbeat, min: 0, max: 4 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: HeartbeatRequest,
) -> Outcome<HeartbeatResponse> {
    let group_id = request.group_id.to_string();
    if let Some(error) = denied(&shard, &call, AclOperation::Read, Resource::Group(&group_id)) {
        return Outcome::Respond(HeartbeatResponse::default().with_error_code(error.code()));
    }
    let member_id = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(ToString::to_string);
    let generation_id = request.generation_id;
    let target = group_id.clone();
    let result = on_coordinator(&shard, &target, move |coordinator| async move {
        let member = MemberRef { member_id: &member_id, group_instance_id: instance.as_deref() };
        coordinator.heartbeat(&group_id, member, generation_id)
    })
    .await
    .and_then(|result| result);
    Outcome::Respond(HeartbeatResponse::default().with_error_code(result.err().map_or(0, |error| error.code())))
}
