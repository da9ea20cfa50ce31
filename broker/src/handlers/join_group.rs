//! JoinGroup (v0-v9). The request is forwarded to the group's coordinator shard, which answers
//! when the join phase ends; see `groups::membership` for the protocol. v4+ members without an
//! id first get MEMBER_ID_REQUIRED; v5+ carry group.instance.id (static membership); v9 may tell
//! a rejoining static leader to skip assignment.

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::group::{JoinOutcome, Protocol};
use crate::groups::membership::JoinArgs;
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::JoinGroup, min: 0, max: 9 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: JoinGroupRequest,
) -> Outcome<JoinGroupResponse> {
    let version = call.version;
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let rebalance_timeout_ms = if version >= 1 && request.rebalance_timeout_ms >= 0 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let args = JoinArgs {
        member_id: member_id.clone(),
        group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        client_id: call.client_id.to_string(),
        // Kafka shows the client's address with a leading slash (Java's InetAddress form).
        client_host: call.peer.map_or_else(String::new, |peer| format!("/{}", peer.ip())),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|protocol| Protocol { name: protocol.name.to_string(), metadata: protocol.metadata.clone() })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        new_member_id: String::new(),
    };
    if let Some(error) = denied(&shard, &call, AclOperation::Read, Resource::Group(&group_id)) {
        return Outcome::Respond(response(version, JoinOutcome::failed(error, &member_id)));
    }
    let target = group_id.clone();
    let outcome =
        on_coordinator(&shard, &target, move |coordinator| async move { coordinator.join(&group_id, args).await })
            .await
            .unwrap_or_else(|error| JoinOutcome::failed(error, &member_id));
    Outcome::Respond(response(version, outcome))
}

fn response(version: i16, outcome: JoinOutcome) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable: an error carries an empty one.
    let protocol_name = match outcome.protocol_name {
        Some(name) => Some(str_bytes(&name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    let members = outcome
        .members
        .into_iter()
        .map(|member| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&member.member_id))
                .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                .with_metadata(member.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |error| error.code()))
        .with_generation_id(outcome.generation_id)
        .with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&outcome.leader_id))
        .with_skip_assignment(version >= 9 && outcome.skip_assignment)
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(members)
}
