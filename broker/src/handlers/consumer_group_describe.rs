//! ConsumerGroupDescribe (v0-v1): consumer groups of the KIP-848 protocol, each described by its
//! coordinator shard, all at once. An unknown or classic group answers GROUP_ID_NOT_FOUND with
//! Kafka's message (the admin client then asks DescribeGroups); v1 adds each member's type.

use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId};

use super::{AUTHORIZED_OPERATIONS_OMITTED, str_bytes, topic_name};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::groups::consumer::{self, DescribedAssignment, Refusal};
use crate::groups::on_coordinator;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Checker, Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ConsumerGroupDescribe, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: ConsumerGroupDescribeRequest,
) -> Outcome<ConsumerGroupDescribeResponse> {
    let answers = join_all(request.group_ids.iter().map(|group| {
        let group_id = group.to_string();
        let target = group_id.clone();
        let refused = denied(&shard, &call, AclOperation::Describe, Resource::Group(&group_id));
        let shard = &shard;
        async move {
            if let Some(error) = refused {
                return Err(Refusal::new(error, String::new()));
            }
            on_coordinator(shard, &target, move |coordinator| async move { coordinator.consumer_describe(&group_id) })
                .await
                .unwrap_or_else(|error| Err(Refusal::new(error, String::new())))
        }
    }))
    .await;
    // As Kafka, only groups answered without an error carry the caller's operations, and a group
    // whose assignments hold a topic the caller may not DESCRIBE is answered with that error.
    let checker = Checker::new(&shard, &call);
    let groups = request
        .group_ids
        .iter()
        .zip(answers)
        .map(|(group_id, answer)| {
            let answer = answer.and_then(|group| match assignment_refusal(&checker, &group) {
                Some((error, message)) => Err(Refusal::new(error, message)),
                None => Ok(group),
            });
            let operations = if request.include_authorized_operations {
                checker.operations(Resource::Group(group_id))
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            };
            described(group_id.clone(), answer, operations)
        })
        .collect();
    Outcome::Respond(ConsumerGroupDescribeResponse::default().with_groups(groups))
}

fn assignment_refusal(
    checker: &Checker,
    group: &consumer::DescribedGroup,
) -> Option<(kafka_protocol::ResponseError, &'static str)> {
    let topics = group
        .members
        .iter()
        .flat_map(|member| member.assignment.iter().chain(&member.target_assignment))
        .map(|assignment| assignment.topic_name.as_str());
    crate::security::checks::described_topics_denied(checker, topics)
}

fn described(group_id: GroupId, answer: Result<consumer::DescribedGroup, Refusal>, operations: i32) -> DescribedGroup {
    let group = DescribedGroup::default().with_group_id(group_id);
    match answer {
        Err(refusal) => group
            .with_error_code(refusal.error.code())
            .with_error_message((!refusal.message.is_empty()).then(|| str_bytes(&refusal.message))),
        Ok(described) => group
            .with_group_state(str_bytes(described.group_state))
            .with_group_epoch(described.group_epoch)
            .with_assignment_epoch(described.assignment_epoch)
            .with_assignor_name(str_bytes(&described.assignor_name))
            .with_authorized_operations(operations)
            .with_members(described.members.into_iter().map(member).collect()),
    }
}

fn member(member: consumer::DescribedMember) -> Member {
    Member::default()
        .with_member_id(str_bytes(&member.member_id))
        .with_instance_id(member.instance_id.as_deref().map(str_bytes))
        .with_rack_id(member.rack_id.as_deref().map(str_bytes))
        .with_member_epoch(member.member_epoch)
        .with_client_id(str_bytes(&member.client_id))
        .with_client_host(str_bytes(&member.client_host))
        .with_subscribed_topic_names(member.subscribed_topic_names.iter().map(|name| topic_name(name)).collect())
        .with_subscribed_topic_regex(member.subscribed_topic_regex.as_deref().map(str_bytes))
        .with_assignment(assignment(member.assignment))
        .with_target_assignment(assignment(member.target_assignment))
        .with_member_type(member.member_type)
}

fn assignment(topics: Vec<DescribedAssignment>) -> Assignment {
    Assignment::default().with_topic_partitions(
        topics
            .into_iter()
            .map(|topic| {
                TopicPartitions::default()
                    .with_topic_id(topic.topic_id)
                    .with_topic_name(topic_name(&topic.topic_name))
                    .with_partitions(topic.partitions)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use super::*;

    #[test]
    fn an_unknown_group_is_answered_with_kafkas_error_and_message() {
        let refusal = Refusal::new(ResponseError::GroupIdNotFound, "Group g not found.");
        let group = described(GroupId(str_bytes("g")), Err(refusal), 1 << 8);
        assert_eq!(group.error_code, ResponseError::GroupIdNotFound.code());
        assert_eq!(group.error_message.as_deref(), Some("Group g not found."));
        assert!(group.members.is_empty());
        assert_eq!(group.authorized_operations, AUTHORIZED_OPERATIONS_OMITTED, "only groups described carry them");
    }
}
