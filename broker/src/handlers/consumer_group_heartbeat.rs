//! ConsumerGroupHeartbeat (v0-v1), the KIP-848 consumer protocol's one membership API: join
//! (epoch 0), heartbeat, leave (-1) and a static member's temporary leave (-2). Forwarded to the
//! group's coordinator shard, which answers once the group's records are durable; see
//! `groups::consumer_groups`. v1 clients name themselves (the member id is required); v1 adds
//! the subscription's regular expression.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::str_bytes;
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::consumer::{self, ClientInfo, HeartbeatRequest, HeartbeatResponse, Refusal};
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ConsumerGroupHeartbeat, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ConsumerGroupHeartbeatRequest,
) -> Outcome<ConsumerGroupHeartbeatResponse> {
    let heartbeat = heartbeat_request(call.version, request);
    let client = ClientInfo {
        client_id: call.client_id.to_string(),
        // Kafka shows the client's address with a leading slash (Java's InetAddress form).
        client_host: call.peer.map_or_else(String::new, |peer| format!("/{}", peer.ip())),
    };
    let target = heartbeat.group_id.clone();
    if let Some(error) = denied(&shard, &call, AclOperation::Read, Resource::Group(&target)).or_else(|| {
        crate::security::checks::subscription_denied(&shard, &call, heartbeat.subscribed_topic_names.as_deref())
    }) {
        return Outcome::Respond(response(Err(Refusal::new(error, String::new()))));
    }
    let answer = on_coordinator(&shard, &target, move |coordinator| async move {
        coordinator.consumer_heartbeat(heartbeat, client).await
    })
    .await
    .unwrap_or_else(|error| Err(Refusal::new(error, String::new())));
    Outcome::Respond(response(answer))
}

/// The request as the state machine takes it.
fn heartbeat_request(version: i16, request: ConsumerGroupHeartbeatRequest) -> HeartbeatRequest {
    HeartbeatRequest {
        api_version: version,
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(ToString::to_string),
        rack_id: request.rack_id.as_ref().map(ToString::to_string),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|name| name.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.as_ref().map(ToString::to_string),
        server_assignor: request.server_assignor.as_ref().map(ToString::to_string),
        topic_partitions: request.topic_partitions.map(|topics| {
            topics
                .into_iter()
                .map(|topic| consumer::TopicPartitions { topic_id: topic.topic_id, partitions: topic.partitions })
                .collect()
        }),
    }
}

fn response(answer: Result<HeartbeatResponse, Refusal>) -> ConsumerGroupHeartbeatResponse {
    match answer {
        Ok(answer) => {
            let assignment = answer.assignment.map(|assignment| {
                let topics = assignment
                    .topics()
                    .map(|(topic_id, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(topic_id)
                            .with_partitions(partitions.iter().copied().collect())
                    })
                    .collect();
                Assignment::default().with_topic_partitions(topics)
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(&answer.member_id)))
                .with_member_epoch(answer.member_epoch)
                .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
        Err(refusal) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(refusal.error.code())
            .with_error_message((!refusal.message.is_empty()).then(|| str_bytes(&refusal.message))),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use super::*;

    #[test]
    fn a_refusal_carries_kafkas_code_and_message_and_no_member() {
        let refused = response(Err(Refusal::new(ResponseError::GroupIdNotFound, "Group g not found.")));
        assert_eq!(refused.error_code, ResponseError::GroupIdNotFound.code());
        assert_eq!(refused.error_message.as_deref(), Some("Group g not found."));
        assert!(refused.member_id.is_none());
        let bare = response(Err(Refusal::new(ResponseError::NotCoordinator, String::new())));
        assert!(bare.error_message.is_none());
    }

    #[test]
    fn an_assignment_is_sent_only_when_the_state_machine_gives_one() {
        let topic = uuid::Uuid::from_u128(7);
        let answer = HeartbeatResponse {
            member_id: "m".to_owned(),
            member_epoch: 3,
            heartbeat_interval_ms: 5000,
            assignment: Some(consumer::Assignment::from_pairs([(topic, 1), (topic, 0)])),
        };
        let sent = response(Ok(answer.clone()));
        let topics = sent.assignment.expect("an assignment").topic_partitions;
        assert_eq!(topics.len(), 1);
        assert_eq!((topics[0].topic_id, topics[0].partitions.clone()), (topic, vec![0, 1]));
        assert_eq!((sent.member_epoch, sent.heartbeat_interval_ms), (3, 5000));
        let quiet = response(Ok(HeartbeatResponse { assignment: None, ..answer }));
        assert!(quiet.assignment.is_none());
    }
}
