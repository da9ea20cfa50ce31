//! `sluicectl groups list` and `groups describe` with KIP-848 consumer groups beside classic ones.
//!
//! Goal: `list` shows each group's type (classic or consumer) and state and filters by both;
//! `describe` shows a consumer group through ConsumerGroupDescribe (epochs, assignor, members
//! with their epochs, subscriptions, current and target assignments, lag) and a classic group
//! through DescribeGroups as before, with the JSON keeping every field it had; `reset-offsets`
//! refuses a consumer group with members and works once they left.
//!
//! Method: the test starts its own `sluice` broker (the real binary, loopback, a temporary data
//! directory), or uses the broker at `SLUICECTL_TEST_BOOTSTRAP` when that is set (how it is run
//! against Apache Kafka). Two consumer-group members are written here over the raw protocol
//! (ConsumerGroupHeartbeat, OffsetCommit with the member epoch); the classic group is
//! `sluicectl consume --group`. The test skips at runtime, loudly, when the broker does not
//! advertise ConsumerGroupHeartbeat (API 68) and ConsumerGroupDescribe (API 69), so it passes
//! before Sluice serves the consumer-group protocol and runs for real once it does.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sluice_client::kafka_protocol::ResponseError;
use sluice_client::kafka_protocol::error::ParseResponseErrorCode;
use sluice_client::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use sluice_client::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_client::kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, GroupId, OffsetCommitRequest, TopicName,
};
use sluice_client::kafka_protocol::protocol::StrBytes;
use sluice_client::{ClientError, Connection, ConnectionConfig};
use uuid::Uuid;

/// How long the group may take to settle, and a coordinator to load.
const SETTLE_TIMEOUT: Duration = Duration::from_mins(1);
/// Pause between heartbeats while the group settles (the coordinator's interval is longer; a
/// member may heartbeat sooner).
const HEARTBEAT_PAUSE: Duration = Duration::from_millis(200);
const PARTITION_COUNT: i32 = 4;
const RECORDS_PER_PARTITION: i64 = 10;
/// Where each consumer-group member commits every partition it owns.
const COMMITTED_OFFSET: i64 = 4;

/// The broker under test: our own `sluice`, or one given by address.
enum Target {
    Sluice(support::Broker),
    External(String),
}

impl Target {
    fn start() -> Option<Self> {
        match std::env::var("SLUICECTL_TEST_BOOTSTRAP") {
            Ok(address) if !address.is_empty() => Some(Self::External(address)),
            _ => support::Broker::start().map(Self::Sluice),
        }
    }

    fn address(&self) -> &str {
        match self {
            Self::Sluice(broker) => &broker.address,
            Self::External(address) => address,
        }
    }

    fn run(&self, args: &[&str]) -> support::Run {
        let mut full = vec!["--bootstrap-server", self.address()];
        full.extend_from_slice(args);
        support::run_raw(&full, b"")
    }

    fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> support::Run {
        let mut full = vec!["--bootstrap-server", self.address()];
        full.extend_from_slice(args);
        support::run_raw(&full, stdin)
    }
}

/// Versions capped where kafka-protocol 0.18 lists a version its encoder lacks.
fn connection_config() -> ConnectionConfig {
    ConnectionConfig { version_caps: vec![(ApiKey::OffsetCommit, 9)], ..ConnectionConfig::default() }
}

fn serves_consumer_groups(address: &str) -> bool {
    let connection = Connection::connect(address, &connection_config()).expect("broker answers");
    [ApiKey::ConsumerGroupHeartbeat, ApiKey::ConsumerGroupDescribe]
        .into_iter()
        .all(|api| connection.versions().version_for(api).is_ok())
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A member id no other run picks (ConsumerGroupHeartbeat v1 has the client choose it).
fn fresh_member_id(index: u32) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    Uuid::from_u128(nanos ^ (u128::from(std::process::id()) << 64) ^ u128::from(index)).to_string()
}

/// A KIP-848 consumer-group member over the raw protocol: it owns at once whatever it is
/// assigned (nothing to reconcile), and reports what it owns in every heartbeat.
struct Member {
    connection: Connection,
    group: String,
    id: String,
    epoch: i32,
    owned: Vec<(Uuid, Vec<i32>)>,
}

impl Member {
    fn join(address: &str, group: &str, topic: &str, index: u32) -> Self {
        let mut bootstrap = Connection::connect(address, &connection_config()).expect("broker answers");
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let coordinator = loop {
            match bootstrap.find_coordinator(group) {
                Ok(coordinator) => break coordinator,
                Err(ClientError::Broker { error, .. }) if error.is_retriable() && Instant::now() < deadline => {
                    std::thread::sleep(HEARTBEAT_PAUSE);
                }
                Err(error) => panic!("FindCoordinator: {error}"),
            }
        };
        let connection = Connection::connect(&coordinator.address(), &connection_config()).expect("coordinator");
        let version = connection.versions().version_for(ApiKey::ConsumerGroupHeartbeat).expect("served");
        // v0 has the coordinator choose the member id; v1 has the member choose it.
        let id = if version >= 1 { fresh_member_id(index) } else { String::new() };
        let mut member = Self { connection, group: group.to_owned(), id, epoch: 0, owned: Vec::new() };
        let subscribe = ConsumerGroupHeartbeatRequest::default()
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(str_bytes(topic))]));
        member.heartbeat_with(subscribe);
        member
    }

    fn heartbeat(&mut self) {
        // The defaults say "unchanged": rebalance timeout -1, no subscription.
        self.heartbeat_with(ConsumerGroupHeartbeatRequest::default());
    }

    fn heartbeat_with(&mut self, request: ConsumerGroupHeartbeatRequest) {
        let owned = self
            .owned
            .iter()
            .map(|(id, partitions)| TopicPartitions::default().with_topic_id(*id).with_partitions(partitions.clone()))
            .collect();
        let request = request
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_member_id(str_bytes(&self.id))
            .with_member_epoch(self.epoch)
            .with_topic_partitions(Some(owned));
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let response = loop {
            let response = self.connection.send(&request).expect("ConsumerGroupHeartbeat answered");
            match response.error_code.err() {
                None => break response,
                // The coordinator may still be loading the group's partition of its log.
                Some(error) if error.is_retriable() && Instant::now() < deadline => {
                    std::thread::sleep(HEARTBEAT_PAUSE);
                }
                Some(error) => {
                    panic!("ConsumerGroupHeartbeat of {}: {error} {:?}", self.id, response.error_message)
                }
            }
        };
        if let Some(id) = response.member_id.filter(|id| !id.is_empty()) {
            self.id = id.to_string();
        }
        self.epoch = response.member_epoch;
        if let Some(assignment) = response.assignment {
            self.owned =
                assignment.topic_partitions.iter().map(|topic| (topic.topic_id, topic.partitions.clone())).collect();
        }
    }

    /// OffsetCommit of `offset` for every partition this member owns, with its member epoch.
    fn commit_owned(&mut self, topic: &str, offset: i64) {
        let partitions: Vec<OffsetCommitRequestPartition> = self
            .owned
            .iter()
            .flat_map(|(_, partitions)| partitions)
            .map(|partition| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id_or_member_epoch(self.epoch)
            .with_member_id(str_bytes(&self.id))
            .with_retention_time_ms(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(partitions),
            ]);
        let response = self.connection.send(&request).expect("OffsetCommit answered");
        for partition in response.topics.iter().flat_map(|topic| &topic.partitions) {
            assert_eq!(
                partition.error_code.err(),
                None::<ResponseError>,
                "commit of partition {}",
                partition.partition_index
            );
        }
    }

    /// Leaves the group (member epoch -1).
    fn leave(mut self) {
        self.epoch = -1;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_member_id(str_bytes(&self.id))
            .with_member_epoch(-1);
        let response = self.connection.send(&request).expect("leave answered");
        assert_eq!(response.error_code.err(), None::<ResponseError>, "leave of {}", self.id);
    }
}

/// The group's assignments as `groups describe` reports them, member id -> topic -> partitions.
fn assignments(described: &Value, key: &str) -> BTreeMap<String, Value> {
    let members = described["members"].as_array().expect("members");
    members.iter().map(|member| (member["member_id"].as_str().expect("id").to_owned(), member[key].clone())).collect()
}

/// Whether both members own exactly their target and together own every partition.
fn settled(described: &Value, topic: &str) -> bool {
    let current = assignments(described, "assignment");
    let owned: Vec<i64> =
        current.values().filter_map(|topics| topics[topic].as_array()).flatten().filter_map(Value::as_i64).collect();
    described["state"] == "Stable"
        && current.len() == 2
        && current == assignments(described, "target_assignment")
        && owned.len() == usize::try_from(PARTITION_COUNT).expect("small")
        && current.values().all(|topics| topics[topic].as_array().is_some_and(|partitions| !partitions.is_empty()))
}

/// Heartbeats both members until `groups describe` shows the group settled.
fn settle(target: &Target, group: &str, topic: &str, members: &mut [Member]) -> Value {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        for member in members.iter_mut() {
            member.heartbeat();
        }
        let described = target.run(&["groups", "describe", group, "-o", "json"]).json();
        if settled(&described, topic) {
            return described;
        }
        assert!(Instant::now() < deadline, "the consumer group never settled: {described}");
        std::thread::sleep(HEARTBEAT_PAUSE);
    }
}

fn listed<'a>(listing: &'a Value, group: &str) -> Option<&'a Value> {
    listing.as_array().expect("array").iter().find(|entry| entry["group"] == group)
}

fn produce_to_every_partition(target: &Target, topic: &str) {
    target.run(&["topics", "create", topic, "--partitions", &PARTITION_COUNT.to_string()]).ok();
    let lines = "record\n".repeat(usize::try_from(RECORDS_PER_PARTITION).expect("small"));
    for partition in 0..PARTITION_COUNT {
        target.run_with_input(&["produce", topic, "--partition", &partition.to_string()], lines.as_bytes()).ok();
    }
}

#[test]
fn consumer_and_classic_groups_are_listed_and_described_by_type() {
    let Some(target) = Target::start() else {
        eprintln!(
            "!!!!! SKIPPED consumer_and_classic_groups_are_listed_and_described_by_type: no sluice broker binary"
        );
        return;
    };
    if !serves_consumer_groups(target.address()) {
        eprintln!(
            "!!!!! SKIPPED consumer_and_classic_groups_are_listed_and_described_by_type: the broker does not \
             advertise ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69)"
        );
        return;
    }
    let topic = support::unique("kip848");
    let (consumer_group, classic_group) = (support::unique("kip848-consumer"), support::unique("kip848-classic"));
    produce_to_every_partition(&target, &topic);
    let total = i64::from(PARTITION_COUNT) * RECORDS_PER_PARTITION;
    let classic_args = ["consume", topic.as_str(), "--group", classic_group.as_str(), "--from-beginning"];
    target.run(&[&classic_args[..], &["--max-messages", &total.to_string()]].concat()).ok();

    let mut members: Vec<Member> =
        (0..2).map(|index| Member::join(target.address(), &consumer_group, &topic, index)).collect();
    settle(&target, &consumer_group, &topic, &mut members);
    for member in &mut members {
        member.commit_owned(&topic, COMMITTED_OFFSET);
    }
    check_listing(&target, &consumer_group, &classic_group);
    check_active_consumer_group(&target, &consumer_group, &topic, &members);

    for member in members {
        member.leave();
    }
    check_left_consumer_group(&target, &consumer_group, &topic, total);
    check_classic_group(&target, &classic_group);
}

fn check_listing(target: &Target, consumer_group: &str, classic_group: &str) {
    let listing = target.run(&["groups", "list", "-o", "json"]).json();
    let consumer = listed(&listing, consumer_group).expect("consumer group listed");
    assert_eq!(
        consumer,
        &json!({"group": consumer_group, "type": "consumer", "state": "Stable", "protocol_type": "consumer"})
    );
    let classic = listed(&listing, classic_group).expect("classic group listed");
    assert_eq!((&classic["type"], &classic["state"]), (&json!("classic"), &json!("Empty")));

    let consumers = target.run(&["groups", "list", "--type", "consumer", "-o", "json"]).json();
    assert!(listed(&consumers, consumer_group).is_some() && listed(&consumers, classic_group).is_none(), "{consumers}");
    let empty_classic = target.run(&["groups", "list", "--type", "CLASSIC", "--state", "empty", "-o", "json"]).json();
    assert!(listed(&empty_classic, classic_group).is_some(), "{empty_classic}");
    assert!(listed(&empty_classic, consumer_group).is_none(), "{empty_classic}");

    let text = target.run(&["groups", "list"]).ok().to_owned();
    assert!(text.starts_with("GROUP"), "{text}");
    let row =
        text.lines().find(|line| line.starts_with(consumer_group)).expect("row").split_whitespace().collect::<Vec<_>>();
    assert_eq!(row, [consumer_group, "consumer", "Stable", "consumer"]);
}

fn check_active_consumer_group(target: &Target, group: &str, topic: &str, members: &[Member]) {
    let described = target.run(&["groups", "describe", group, "-o", "json"]).json();
    assert_eq!((&described["type"], &described["protocol_type"]), (&json!("consumer"), &json!("consumer")));
    assert_eq!(described["state"], "Stable");
    let group_epoch = described["group_epoch"].as_i64().expect("group epoch");
    assert!(group_epoch >= 2, "two members joined: {described}");
    assert_eq!(described["assignment_epoch"], described["group_epoch"], "{described}");
    assert!(described["assignor"].as_str().is_some_and(|name| !name.is_empty()), "{described}");
    assert_eq!(described["protocol"], described["assignor"]);
    for member in members {
        let shown = described["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|shown| shown["member_id"] == member.id.as_str())
            .unwrap_or_else(|| panic!("member {} shown: {described}", member.id));
        assert_eq!(shown["member_epoch"].as_i64(), Some(i64::from(member.epoch)), "{shown}");
        assert_eq!(shown["subscribed_topic_names"], json!([topic]));
        assert_eq!(shown["subscribed_topic_regex"], Value::Null);
        let partitions = member.owned.iter().flat_map(|(_, partitions)| partitions.clone()).collect::<Vec<_>>();
        let mut sorted = partitions.clone();
        sorted.sort_unstable();
        assert_eq!(shown["assignment"], json!({ topic: sorted }), "{shown}");
    }
    let lag_per_partition = RECORDS_PER_PARTITION - COMMITTED_OFFSET;
    for row in described["offsets"].as_array().expect("offsets") {
        assert_eq!(
            (row["current_offset"].as_i64(), row["lag"].as_i64()),
            (Some(COMMITTED_OFFSET), Some(lag_per_partition))
        );
        assert!(row["member_id"].is_string(), "every partition has an owner: {row}");
    }
    assert_eq!(described["total_lag"].as_i64(), Some(lag_per_partition * i64::from(PARTITION_COUNT)));

    let text = target.run(&["groups", "describe", group]).ok().to_owned();
    assert!(text.starts_with(&format!("Group: {group}  Type: consumer  State: Stable  Assignor: ")), "{text}");
    assert!(
        text.contains(&format!("Group epoch: {group_epoch}  Assignment epoch: {group_epoch}  Members: 2")),
        "{text}"
    );
    assert!(
        text.contains("MEMBER-EPOCH") && text.contains("TARGET-ASSIGNMENT") && text.contains("LOG-END-OFFSET"),
        "{text}"
    );

    let refused = target.run(&["groups", "reset-offsets", group, "--topic", topic, "--to-earliest"]);
    assert!(refused.error().contains("stop its consumers"), "{}", refused.stderr);
}

fn check_left_consumer_group(target: &Target, group: &str, topic: &str, total: i64) {
    let described = target.run(&["groups", "describe", group, "-o", "json"]).json();
    assert_eq!((&described["type"], &described["state"]), (&json!("consumer"), &json!("Empty")), "{described}");
    assert_eq!(described["members"], json!([]));
    assert_eq!(described["total_lag"].as_i64(), Some(total - COMMITTED_OFFSET * i64::from(PARTITION_COUNT)));
    target.run(&["groups", "reset-offsets", group, "--topic", topic, "--to-earliest"]).ok();
    assert_eq!(target.run(&["groups", "describe", group, "-o", "json"]).json()["total_lag"].as_i64(), Some(total));
    target.run(&["groups", "delete", group]).ok();
    assert!(target.run(&["groups", "describe", group]).error().contains("unknown group"));
}

fn check_classic_group(target: &Target, group: &str) {
    let described = target.run(&["groups", "describe", group, "-o", "json"]).json();
    assert_eq!((&described["type"], &described["state"]), (&json!("classic"), &json!("Empty")), "{described}");
    assert_eq!((&described["group_epoch"], &described["assignment_epoch"]), (&Value::Null, &Value::Null));
    assert_eq!(described["total_lag"].as_i64(), Some(0));
    let text = target.run(&["groups", "describe", group]).ok().to_owned();
    assert!(text.starts_with(&format!("Group: {group}  Type: classic  State: Empty  Protocol: ")), "{text}");
    assert!(!text.contains("MEMBER-EPOCH"), "{text}");
}
