//! SyncGroup (v0-v5). Forwarded to the group's coordinator shard: the leader's request carries
//! every member's assignment; each member's answer (the leader's too) is its own assignment,
//! sent once the leader's has arrived.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::group::SyncOutcome;
use crate::groups::membership::SyncArgs;
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::SyncGroup, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: SyncGroupRequest,
) -> Outcome<SyncGroupResponse> {
    let version = call.version;
    let group_id = request.group_id.to_string();
    let args = SyncArgs {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(ToString::to_string),
        protocol_name: request.protocol_name.as_ref().map(ToString::to_string),
        assignments: request
            .assignments
            .iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment.clone()))
            .collect(),
    };
    let target = group_id.clone();
    let refused = denied(&shard, &call, AclOperation::Read, Resource::Group(&group_id));
    let outcome = match refused {
        Some(error) => SyncOutcome::failed(error),
        None => {
            on_coordinator(&shard, &target, move |coordinator| async move { coordinator.sync(&group_id, args).await })
                .await
                .unwrap_or_else(SyncOutcome::failed)
        }
    };
    let response = SyncGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |error| error.code()))
        .with_assignment(outcome.assignment);
    let response = if version >= 5 {
        response
            .with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(outcome.protocol_name.as_deref().map(str_bytes))
    } else {
        response
    };
    Outcome::Respond(response)
}
