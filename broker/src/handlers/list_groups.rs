//! ListGroups (v0-v5). Asks every shard's coordinator at once and gathers their groups, classic
//! and consumer (KIP-848, protocol type "consumer"); v4+ filter by state and v5+ by group type
//! ("classic" or "consumer"; an unknown type matches nothing), case-insensitively, as Kafka
//! does.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use sluice_engine::ShardId;

use super::str_bytes;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::on_shard;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ListGroups, min: 0, max: 5 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ListGroupsRequest,
) -> Outcome<ListGroupsResponse> {
    let version = call.version;
    let shard_count = shard.engine().shard_count();
    let answers = join_all(
        (0..shard_count).map(|index| on_shard(&shard, ShardId(index), |coordinator| async move { coordinator.list() })),
    )
    .await;
    let states: Vec<String> = request.states_filter.iter().map(|state| state.trim().to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|kind| kind.trim().to_lowercase()).collect();
    let mut error_code = 0;
    let mut groups = Vec::new();
    let may_describe = crate::security::checks::group_lister(&shard, &call);
    for answer in answers {
        match answer {
            Ok(listed) => groups.extend(
                listed
                    .into_iter()
                    .filter(|group| may_describe(&group.group_id))
                    .filter(|group| types.is_empty() || types.iter().any(|kind| kind == group.group_type.name()))
                    .filter(|group| states.is_empty() || states.contains(&group.state.to_lowercase()))
                    .map(|group| {
                        let listed = ListedGroup::default()
                            .with_group_id(GroupId(str_bytes(&group.group_id)))
                            .with_protocol_type(str_bytes(&group.protocol_type));
                        let listed =
                            if version >= 4 { listed.with_group_state(str_bytes(group.state)) } else { listed };
                        if version >= 5 { listed.with_group_type(str_bytes(group.group_type.name())) } else { listed }
                    }),
            ),
            Err(error) => error_code = error.code(),
        }
    }
    groups.sort_by(|left, right| left.group_id.0.cmp(&right.group_id.0));
    Outcome::Respond(ListGroupsResponse::default().with_error_code(error_code).with_groups(groups))
}
