//! Goal: consumer groups of the KIP-848 protocol are served end to end by the coordinator: a
//! member joins and reconciles through ConsumerGroupHeartbeat, commits and fetches offsets at its
//! member epoch, is described, listed and deleted as Kafka does; a group id is one kind of group,
//! and each API answers the other kind as Kafka does; and a group whose offsets partition moves
//! away and back is rebuilt from its records with the same epochs.
//!
//! Method: a real broker in process; requests are raw Kafka frames; leadership is moved with the
//! metadata writer (the path the controller uses when a broker fails).

mod common;

use common::{Harness, call, create_topic};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, JoinGroupRequest,
    JoinGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::testing::move_leadership;

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: i32 = 50;
const UNSUPPORTED_VERSION: i16 = 35;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const STALE_MEMBER_EPOCH: i16 = 113;

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Kafka's partition of a group: `abs(javaHash(group)) % partitions`.
fn partition_of(group: &str) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (if hash == i32::MIN { 0 } else { hash.abs() }) % OFFSETS_PARTITIONS
}

/// Creates `__consumer_offsets` (FindCoordinator does) and checks this broker coordinates `group`.
fn find_coordinator(stream: &mut std::net::TcpStream, group: &str) {
    let request = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![name(group)]);
    let response: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 4, &request);
    assert_eq!((response.coordinators[0].error_code, response.coordinators[0].node_id.0), (0, 1));
}

/// A full heartbeat (subscription to `t` and owned partitions) of member `member` at `epoch`.
fn heartbeat(
    stream: &mut std::net::TcpStream,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Vec<TopicPartitions>,
) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_member_id(name(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(name("t"))]))
        .with_topic_partitions(Some(owned));
    call(stream, ApiKey::ConsumerGroupHeartbeat, 1, &request)
}

/// The partitions a heartbeat answer assigns, as the member reports them back.
fn owned(response: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
    let assignment = response.assignment.as_ref().expect("the answer carries the assignment");
    assignment
        .topic_partitions
        .iter()
        .map(|topic| TopicPartitions::default().with_topic_id(topic.topic_id).with_partitions(topic.partitions.clone()))
        .collect()
}

fn commit(stream: &mut std::net::TcpStream, version: i16, group: &str, member: &str, epoch: i32, offset: i64) -> i16 {
    let partition = OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(name("t"))).with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_member_id(name(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![topic]);
    let response: OffsetCommitResponse = call(stream, ApiKey::OffsetCommit, version, &request);
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch v9 of `t`-0 as `member` at `epoch`: the group-level error and the offset.
fn fetch(stream: &mut std::net::TcpStream, group: &str, member: Option<&str>, epoch: i32) -> (i16, i64) {
    let topics = OffsetFetchRequestTopics::default().with_name(TopicName(name("t"))).with_partition_indexes(vec![0]);
    let group = OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(name(group)))
        .with_member_id(member.map(name))
        .with_member_epoch(epoch)
        .with_topics(Some(vec![topics]));
    let response: OffsetFetchResponse =
        call(stream, ApiKey::OffsetFetch, 9, &OffsetFetchRequest::default().with_groups(vec![group]));
    let group = &response.groups[0];
    let offset = group.topics.first().and_then(|topic| topic.partitions.first()).map_or(-1, |p| p.committed_offset);
    (group.error_code, offset)
}

fn describe(stream: &mut std::net::TcpStream, group: &str) -> ConsumerGroupDescribeResponse {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(name(group))]);
    call(stream, ApiKey::ConsumerGroupDescribe, 1, &request)
}

/// ListGroups v5 filtered by type: (group id, type, protocol type, state) of `group`, if listed.
fn listed(stream: &mut std::net::TcpStream, group: &str, kind: &str) -> Option<(String, String, String)> {
    let request = ListGroupsRequest::default().with_types_filter(vec![name(kind)]);
    let response: ListGroupsResponse = call(stream, ApiKey::ListGroups, 5, &request);
    response
        .groups
        .iter()
        .find(|listed| listed.group_id.0.as_str() == group)
        .map(|listed| (listed.group_type.to_string(), listed.protocol_type.to_string(), listed.group_state.to_string()))
}

fn delete(stream: &mut std::net::TcpStream, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(name(group))]);
    let response: DeleteGroupsResponse = call(stream, ApiKey::DeleteGroups, 2, &request);
    response.results[0].error_code
}

/// A classic JoinGroup v3 (no member id round trip), answered when the join phase ends.
fn classic_join(stream: &mut std::net::TcpStream, group: &str) -> JoinGroupResponse {
    let protocol = JoinGroupRequestProtocol::default().with_name(name("range"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(name("consumer"))
        .with_protocols(vec![protocol]);
    call(stream, ApiKey::JoinGroup, 3, &request)
}

#[test]
fn consumer_groups_serve_a_member_that_joins_commits_and_keeps_its_epoch_when_reloaded() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "t", 4);
    let group = "kip848-group";
    find_coordinator(&mut stream, group);

    let joined = heartbeat(&mut stream, group, "m1", 0, Vec::new());
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    let epoch = joined.member_epoch;
    assert!(epoch > 0);
    assert_eq!(joined.heartbeat_interval_ms, 5_000, "Kafka's default group.consumer.heartbeat.interval.ms");
    let assignment = owned(&joined);
    assert_eq!(assignment[0].partitions, vec![0, 1, 2, 3], "a lone member gets every partition");
    let steady = heartbeat(&mut stream, group, "m1", epoch, assignment.clone());
    assert_eq!((steady.error_code, steady.member_epoch), (0, epoch));

    assert_eq!(commit(&mut stream, 9, group, "m1", epoch, 42), 0);
    assert_eq!(commit(&mut stream, 9, group, "m1", epoch + 1, 43), STALE_MEMBER_EPOCH);
    assert_eq!(commit(&mut stream, 9, group, "stranger", epoch, 43), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut stream, 8, group, "m1", epoch, 43), UNSUPPORTED_VERSION, "members commit with v9+");
    assert_eq!(fetch(&mut stream, group, Some("m1"), epoch), (0, 42));
    assert_eq!(fetch(&mut stream, group, Some("m1"), epoch + 1).0, STALE_MEMBER_EPOCH);
    assert_eq!(fetch(&mut stream, group, None, -1), (0, 42), "an admin reads without a member");

    let described = describe(&mut stream, group);
    let described = &described.groups[0];
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!((described.group_epoch, described.assignment_epoch), (epoch, epoch));
    assert_eq!(described.assignor_name.as_str(), "uniform");
    assert_eq!(described.members.len(), 1);
    assert_eq!((described.members[0].member_epoch, described.members[0].member_type), (epoch, 1));
    assert_eq!(described.members[0].client_id.as_str(), "protocol-test");
    let consumer = Some(("consumer".to_owned(), "consumer".to_owned(), "Stable".to_owned()));
    assert_eq!(listed(&mut stream, group, "consumer"), consumer);
    assert_eq!(listed(&mut stream, group, "classic"), None);

    // The other kind's APIs, answered as Kafka answers them: a classic member joins only with a
    // readable consumer subscription.
    assert_eq!(classic_join(&mut stream, group).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(name(group))]);
    let classic: DescribeGroupsResponse = call(&mut stream, ApiKey::DescribeGroups, 5, &request);
    assert_eq!((classic.groups[0].error_code, classic.groups[0].group_state.as_str()), (0, "Dead"));
    assert_eq!(delete(&mut stream, group), NON_EMPTY_GROUP);

    // The group's partition moves away and back: it is rebuilt from its records.
    let index = partition_of(group);
    move_leadership(&harness.broker, OFFSETS_TOPIC, index, None).expect("leadership moves away");
    move_leadership(&harness.broker, OFFSETS_TOPIC, index, Some(1)).expect("leadership comes back");
    let reloaded = heartbeat(&mut stream, group, "m1", epoch, assignment.clone());
    assert_eq!((reloaded.error_code, reloaded.member_epoch), (0, epoch), "{:?}", reloaded.error_message);
    assert_eq!(owned(&reloaded), assignment, "the member keeps its partitions");
    assert_eq!(fetch(&mut stream, group, Some("m1"), epoch), (0, 42));

    let left = heartbeat(&mut stream, group, "m1", -1, Vec::new());
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    assert_eq!(describe(&mut stream, group).groups[0].group_state.as_str(), "Empty");
    assert_eq!(delete(&mut stream, group), 0);
    let gone = describe(&mut stream, group);
    assert_eq!(gone.groups[0].error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(gone.groups[0].error_message.as_deref(), Some("Group kip848-group not found."));
    assert_eq!(fetch(&mut stream, group, None, -1), (0, -1), "its offsets went with it");
    drop(stream);
    harness.stop();
}

#[test]
fn consumer_groups_and_classic_groups_never_share_an_id() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "t", 2);
    let (classic, simple) = ("classic-group", "simple-group");
    find_coordinator(&mut stream, classic);
    find_coordinator(&mut stream, simple);

    // A classic group with a member whose embedded subscription does not parse cannot be
    // upgraded: consumer members are refused, and describe says the group is classic.
    assert_eq!(classic_join(&mut stream, classic).error_code, 0);
    let refused = heartbeat(&mut stream, classic, "m1", 0, Vec::new());
    assert_eq!(refused.error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(
        refused.error_message.as_deref(),
        Some(
            "Cannot upgrade the classic group classic-group to consumer group because the embedded consumer \
             protocol is malformed."
        )
    );
    let described = describe(&mut stream, classic);
    assert_eq!(described.groups[0].error_message.as_deref(), Some("Group classic-group is not a consumer group."));
    assert!(listed(&mut stream, classic, "classic").is_some());

    // An empty classic group (standalone commits) becomes a consumer group, its offsets kept.
    assert_eq!(commit(&mut stream, 9, simple, "", -1, 7), 0);
    let joined = heartbeat(&mut stream, simple, "m1", 0, Vec::new());
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(fetch(&mut stream, simple, None, -1), (0, 7));
    assert_eq!(listed(&mut stream, simple, "consumer").map(|(kind, ..)| kind), Some("consumer".to_owned()));
    assert_eq!(listed(&mut stream, simple, "classic"), None);
    drop(stream);
    harness.stop();
}
