//! OffsetDelete (v0). Forwarded to the group's coordinator shard, which removes committed
//! offsets of topics no member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise) by writing
//! tombstones to `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::topic_name;
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::on_coordinator;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::OffsetDelete, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: OffsetDeleteRequest,
) -> Outcome<OffsetDeleteResponse> {
    let group_id = request.group_id.to_string();
    let topics: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|topic| {
            (topic.name.to_string(), topic.partitions.iter().map(|partition| partition.partition_index).collect())
        })
        .collect();
    let target = group_id.clone();
    let (refusals, topics) = crate::security::checks::OffsetDeleteRefusals::split(&shard, &call, &group_id, topics);
    if let Some(error) = refusals.group {
        return Outcome::Respond(OffsetDeleteResponse::default().with_error_code(error.code()));
    }
    let answer = on_coordinator(&shard, &target, move |coordinator| async move {
        coordinator.delete_offsets(&group_id, topics).await
    })
    .await
    .and_then(|answer| answer)
    .map(|topics| refusals.merge(topics));
    let response = match answer {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(topics) => OffsetDeleteResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(index, result)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(result.err().map_or(0, |error| error.code()))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default().with_name(topic_name(&topic)).with_partitions(partitions)
                })
                .collect(),
        ),
    };
    Outcome::Respond(response)
}
