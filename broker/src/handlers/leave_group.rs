//! LeaveGroup (v0-v5). v0-v2 name one member; v3+ a batch of members, each with its own error,
//! possibly by group.instance.id alone (an admin removing static members). Forwarded to the
//! group's coordinator shard; the group rebalances without the members that left.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::str_bytes;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::membership::MemberRef;
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::LeaveGroup, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: LeaveGroupRequest,
) -> Outcome<LeaveGroupResponse> {
    let version = call.version;
    let group_id = request.group_id.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| (member.member_id.to_string(), member.group_instance_id.as_ref().map(ToString::to_string)))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let leaving = members.clone();
    let target = group_id.clone();
    let refused = denied(&shard, &call, AclOperation::Read, Resource::Group(&group_id));
    let results = on_coordinator(&shard, &target, move |coordinator| async move {
        if let Some(error) = refused {
            return Err(error);
        }
        let refs: Vec<MemberRef<'_>> = leaving
            .iter()
            .map(|(member_id, instance)| MemberRef { member_id, group_instance_id: instance.as_deref() })
            .collect();
        coordinator.leave(&group_id, &refs)
    })
    .await
    .and_then(|results| results);
    let code_of = |result: &Result<(), ResponseError>| result.err().map_or(0, |error| error.code());
    let response = LeaveGroupResponse::default();
    let response = match results {
        Err(error) => response.with_error_code(error.code()),
        Ok(results) if version < 3 => response.with_error_code(results.first().map_or(0, code_of)),
        Ok(results) => response.with_members(
            members
                .iter()
                .zip(&results)
                .map(|((member_id, instance), result)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(code_of(result))
                })
                .collect(),
        ),
    };
    Outcome::Respond(response)
}
