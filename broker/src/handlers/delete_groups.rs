//! DeleteGroups (v0-v2). Each group is deleted by its coordinator shard: only an Empty group
//! (NON_EMPTY_GROUP otherwise), with all its committed offsets, by writing tombstones.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DeleteGroups, min: 0, max: 2 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DeleteGroupsRequest,
) -> Outcome<DeleteGroupsResponse> {
    let answers = join_all(request.groups_names.iter().map(|group| {
        let group_id = group.to_string();
        let target = group_id.clone();
        let refused = denied(&shard, &call, AclOperation::Delete, Resource::Group(&group_id));
        let shard = &shard;
        async move {
            if let Some(error) = refused {
                return Err(error);
            }
            on_coordinator(shard, &target, move |coordinator| async move { coordinator.delete(&group_id).await })
                .await
                .and_then(|answer| answer)
        }
    }))
    .await;
    let results = request
        .groups_names
        .iter()
        .zip(answers)
        .map(|(group_id, answer)| {
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(answer.err().map_or(0, |error| error.code()))
        })
        .collect();
    Outcome::Respond(DeleteGroupsResponse::default().with_results(results))
}
