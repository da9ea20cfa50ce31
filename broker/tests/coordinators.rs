//! Goal: the group coordinator follows leadership of `__consumer_offsets`: when this broker stops
//! leading a group's offsets partition, the group's requests get NOT_COORDINATOR and
//! FindCoordinator no longer names this broker; when it leads the partition again (a new leader
//! epoch), the group's committed offsets are reloaded from the log and served. Groups of other
//! partitions never notice.
//!
//! Method: a real broker in process; leadership is moved with the metadata writer (the path the
//! controller uses when a broker fails); requests are raw Kafka frames.

mod common;

use common::{Harness, call, create_topic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::testing::move_leadership;

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: i32 = 50;
const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const LEADER_NOT_AVAILABLE: i16 = 5;

/// Kafka's partition of a group: `abs(javaHash(group)) % partitions`.
fn partition_of(group: &str) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (if hash == i32::MIN { 0 } else { hash.abs() }) % OFFSETS_PARTITIONS
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn commit(stream: &mut std::net::TcpStream, group: &str, offset: i64) -> i16 {
    let partition = OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(name("t"))).with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![topic]);
    let response: OffsetCommitResponse = call(stream, ApiKey::OffsetCommit, 8, &request);
    response.topics[0].partitions[0].error_code
}

/// The group-level error and the committed offset of `t`-0.
fn fetch(stream: &mut std::net::TcpStream, group: &str) -> (i16, i64) {
    let topics = OffsetFetchRequestTopics::default().with_name(TopicName(name("t"))).with_partition_indexes(vec![0]);
    let group = OffsetFetchRequestGroup::default().with_group_id(GroupId(name(group))).with_topics(Some(vec![topics]));
    let request = OffsetFetchRequest::default().with_groups(vec![group]);
    let response: OffsetFetchResponse = call(stream, ApiKey::OffsetFetch, 8, &request);
    let group = &response.groups[0];
    let offset = group.topics.first().and_then(|topic| topic.partitions.first()).map_or(-1, |p| p.committed_offset);
    (group.error_code, offset)
}

fn find_coordinator(stream: &mut std::net::TcpStream, group: &str) -> (i16, i32) {
    let request = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![name(group)]);
    let response: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 4, &request);
    let found = &response.coordinators[0];
    (found.error_code, found.node_id.0)
}

fn offsets_partition_state(stream: &mut std::net::TcpStream, index: i32) -> (i16, i32, i32) {
    let topic = MetadataRequestTopic::default().with_name(Some(TopicName(name(OFFSETS_TOPIC))));
    let request = MetadataRequest::default().with_topics(Some(vec![topic]));
    let response: MetadataResponse = call(stream, ApiKey::Metadata, 12, &request);
    let partition = &response.topics[0].partitions[index as usize];
    (partition.error_code, partition.leader_id.0, partition.leader_epoch)
}

#[test]
fn offsets_follow_the_leadership_of_their_partition() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "t", 1);
    let (moved, steady) = ("moving-group", "steady-group");
    assert_ne!(partition_of(moved), partition_of(steady), "the two groups live in different partitions");
    assert_eq!(commit(&mut stream, moved, 42), 0);
    assert_eq!(commit(&mut stream, steady, 7), 0);
    assert_eq!(fetch(&mut stream, moved), (0, 42));
    assert_eq!(find_coordinator(&mut stream, moved), (0, 1));
    let index = partition_of(moved);
    let epoch_before = offsets_partition_state(&mut stream, index).2;

    move_leadership(&harness.broker, OFFSETS_TOPIC, index, None).expect("leadership moves away");
    assert_eq!(fetch(&mut stream, moved).0, NOT_COORDINATOR);
    assert_eq!(commit(&mut stream, moved, 43), NOT_COORDINATOR);
    assert_eq!(find_coordinator(&mut stream, moved).0, COORDINATOR_NOT_AVAILABLE);
    assert_eq!(offsets_partition_state(&mut stream, index).0, LEADER_NOT_AVAILABLE);
    assert_eq!(fetch(&mut stream, steady), (0, 7), "other partitions' groups are untouched");

    move_leadership(&harness.broker, OFFSETS_TOPIC, index, Some(1)).expect("leadership comes back");
    assert_eq!(fetch(&mut stream, moved), (0, 42), "the committed offset is reloaded from the log");
    assert_eq!(find_coordinator(&mut stream, moved), (0, 1));
    let (error, leader, epoch) = offsets_partition_state(&mut stream, index);
    assert_eq!((error, leader), (0, 1));
    assert_eq!(epoch, epoch_before + 2, "each leadership change bumped the leader epoch");
    assert_eq!(commit(&mut stream, moved, 44), 0, "commits are written at the new epoch");
    assert_eq!(fetch(&mut stream, moved), (0, 44));
    drop(stream);
    harness.stop();
}
