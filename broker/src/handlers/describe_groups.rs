//! DescribeGroups (v0-v5). Each group is described by its coordinator shard, all at once. An
//! unknown group is reported as Dead with no error, as Kafka does; so is a consumer group of the
//! KIP-848 protocol (Kafka describes classic groups only here, and answers GROUP_ID_NOT_FOUND
//! for the others only from v6); member metadata and assignments are shown only for a Stable
//! group.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{AUTHORIZED_OPERATIONS_OMITTED, str_bytes};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Checker, Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeGroups, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeGroupsRequest,
) -> Outcome<DescribeGroupsResponse> {
    let version = call.version;
    let answers = join_all(request.groups.iter().map(|group| {
        let group_id = group.to_string();
        let target = group_id.clone();
        let refused = denied(&shard, &call, AclOperation::Describe, Resource::Group(&group_id));
        let shard = &shard;
        async move {
            if let Some(error) = refused {
                return Err(error);
            }
            on_coordinator(shard, &target, move |coordinator| async move { coordinator.describe(&group_id) })
                .await
                .and_then(|answer| answer)
        }
    }))
    .await;
    // As Kafka, only groups answered without an error carry the caller's operations.
    let checker = (version >= 3 && request.include_authorized_operations).then(|| Checker::new(&shard, &call));
    let operations = |group_id: &str| {
        checker.as_ref().map_or(AUTHORIZED_OPERATIONS_OMITTED, |checker| checker.operations(Resource::Group(group_id)))
    };
    let groups = request
        .groups
        .iter()
        .zip(answers)
        .map(|(group_id, answer)| {
            let described = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            match answer {
                Err(error) => described.with_error_code(error.code()).with_group_state(str_bytes("Dead")),
                Ok(group) => described
                    .with_authorized_operations(operations(group_id))
                    .with_group_state(str_bytes(group.state.name()))
                    .with_protocol_type(str_bytes(&group.protocol_type))
                    .with_protocol_data(str_bytes(&group.protocol_name))
                    .with_members(
                        group
                            .members
                            .into_iter()
                            .map(|member| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&member.member_id))
                                    .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                                    .with_client_id(str_bytes(&member.client_id))
                                    .with_client_host(str_bytes(&member.client_host))
                                    .with_member_metadata(member.metadata)
                                    .with_member_assignment(member.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    Outcome::Respond(DescribeGroupsResponse::default().with_groups(groups))
}
