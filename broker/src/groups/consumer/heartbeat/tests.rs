//! Goal: each Kafka behaviour of the consumer group protocol, one test each. Method: drive a
//! group with heartbeats and timer expiries through a harness that keeps every record written,
//! and check after each test that replaying the records rebuilds the same group.

use kafka_protocol::ResponseError;

use super::*;
use crate::groups::consumer::records::ConsumerGroupPartitionMetadataValue;
use crate::groups::consumer::{ConsumerGroupState, ReplayError, ServerAssignor, TopicId, TopicMetadata};

const GROUP: &str = "group";
/// Wall-clock time at monotonic time 0.
const UNIX_EPOCH_OFFSET_MS: i64 = 1_700_000_000_000;
const SESSION_MS: i64 = 45_000;
const REBALANCE_MS: i32 = 30_000;

fn topic_id(name: &str) -> TopicId {
    TopicId::from_u128(name.bytes().fold(7u128, |hash, byte| hash * 31 + u128::from(byte)))
}

fn image(version: i64, topics: &[(&str, i32)]) -> TopicsImage {
    TopicsImage::new(
        version,
        topics.iter().map(|(name, partition_count)| TopicMetadata {
            id: topic_id(name),
            name: (*name).to_owned(),
            partition_count: *partition_count,
        }),
    )
}

fn partitions(pairs: &[(&str, &[i32])]) -> Assignment {
    Assignment::from_pairs(
        pairs.iter().flat_map(|(name, list)| list.iter().map(move |partition| (topic_id(name), *partition))),
    )
}

fn owned(assignment: &Assignment) -> Vec<TopicPartitions> {
    assignment.to_topic_partitions()
}

fn request(member_id: &str, member_epoch: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        api_version: 1,
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        member_epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        subscribed_topic_regex: None,
        server_assignor: None,
        topic_partitions: None,
    }
}

fn join(member_id: &str, topics: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        rebalance_timeout_ms: REBALANCE_MS,
        subscribed_topic_names: Some(topics.iter().map(|name| (*name).to_owned()).collect()),
        topic_partitions: Some(Vec::new()),
        ..request(member_id, 0)
    }
}

fn beat(member_id: &str, member_epoch: i32, owning: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest { topic_partitions: Some(owned(owning)), ..request(member_id, member_epoch) }
}

/// A group, its topics, the clock, and every record written so far.
struct Harness {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    topics: TopicsImage,
    now_ms: i64,
    log: Vec<ConsumerGroupRecord>,
    generated: usize,
}

impl Harness {
    fn new(topics: &[(&str, i32)]) -> Self {
        Self {
            group: ConsumerGroup::new(GROUP),
            config: ConsumerGroupConfig::default(),
            topics: image(1, topics),
            now_ms: 1_000,
            log: Vec::new(),
            generated: 0,
        }
    }

    fn send(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, Refusal> {
        if self.group.is_deleted() {
            self.group = ConsumerGroup::for_heartbeat(request, &self.config)?;
        }
        let client = ClientInfo { client_id: "client".to_owned(), client_host: "/127.0.0.1".to_owned() };
        let context = Context {
            now_ms: self.now_ms,
            unix_ms: UNIX_EPOCH_OFFSET_MS + self.now_ms,
            topics: &self.topics,
            config: &self.config,
        };
        let before = self.group.data().clone();
        let generated = &mut self.generated;
        let outcome = self.group.heartbeat(request, &client, &context, || {
            *generated += 1;
            format!("generated-{generated}")
        });
        match outcome {
            Ok(outcome) => {
                self.log.extend(outcome.records);
                self.check_replay();
                Ok(outcome.response)
            }
            Err(refusal) => {
                assert_eq!(self.group.data(), &before, "a refused heartbeat changes nothing");
                Err(refusal)
            }
        }
    }

    fn ok(&mut self, request: &HeartbeatRequest) -> HeartbeatResponse {
        self.send(request).expect("heartbeat accepted")
    }

    fn error(&mut self, request: &HeartbeatRequest) -> ResponseError {
        self.send(request).expect_err("heartbeat refused").error
    }

    fn advance(&mut self, duration_ms: i64) -> Vec<ConsumerGroupRecord> {
        self.now_ms += duration_ms;
        let context = Context {
            now_ms: self.now_ms,
            unix_ms: UNIX_EPOCH_OFFSET_MS + self.now_ms,
            topics: &self.topics,
            config: &self.config,
        };
        let records = self.group.expire(&context);
        self.log.extend(records.clone());
        self.check_replay();
        records
    }

    fn set_topics(&mut self, topics: &[(&str, i32)]) {
        self.topics = image(self.topics.version() + 1, topics);
    }

    fn check_replay(&self) {
        let mut rebuilt = ConsumerGroup::new(GROUP);
        for record in &self.log {
            rebuilt.replay(record).expect("the log replays");
        }
        assert_eq!(rebuilt.data(), self.group.data(), "replaying the records rebuilds the group");
    }

    fn member(&self, member_id: &str) -> &ConsumerGroupMember {
        self.group.member(member_id).expect("member exists")
    }
}

#[test]
fn first_member_joins_and_gets_every_partition_at_epoch_one() {
    let mut harness = Harness::new(&[("orders", 3)]);
    let response = harness.ok(&join("a", &["orders"]));
    assert_eq!(response.member_id, "a");
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.heartbeat_interval_ms, 5_000);
    assert_eq!(response.assignment, Some(partitions(&[("orders", &[0, 1, 2])])));
    assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
    assert_eq!(harness.group.group_epoch(), 1);
    assert_eq!(harness.group.assignment_epoch(), 1);
    let types: Vec<i16> = harness.log.iter().map(ConsumerGroupRecord::record_type).collect();
    assert_eq!(types, vec![5, 3, 7, 6, 8], "member, epoch, target, assignment epoch, current assignment");
}

#[test]
fn second_member_waits_for_revocation_then_gets_its_partitions() {
    let mut harness = Harness::new(&[("orders", 4)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    let second = harness.ok(&join("b", &["orders"]));
    // b joins at epoch 2 but everything is still held by a.
    assert_eq!(second.member_epoch, 2);
    assert_eq!(second.assignment, Some(Assignment::new()));
    assert_eq!(harness.member("b").assignment.state, MemberState::UnreleasedPartitions);
    assert_eq!(harness.group.state(), ConsumerGroupState::Reconciling);

    // a is asked to revoke half, staying at epoch 1.
    let revoke = harness.ok(&beat("a", 1, &all));
    assert_eq!(revoke.member_epoch, 1);
    let kept = revoke.assignment.clone().expect("new assignment");
    assert_eq!(kept.partition_count(), 2);
    assert_eq!(harness.member("a").assignment.state, MemberState::UnrevokedPartitions);
    // b still gets nothing while a owns them.
    assert_eq!(harness.ok(&beat("b", 2, &Assignment::new())).assignment, None);

    // a acknowledges: it moves to epoch 2, and b then receives the released partitions.
    let acknowledged = harness.ok(&beat("a", 1, &kept));
    assert_eq!(acknowledged.member_epoch, 2);
    assert_eq!(acknowledged.assignment, None, "a's partitions did not change");
    let received = harness.ok(&beat("b", 2, &Assignment::new()));
    assert_eq!(received.assignment, Some(all.difference(&kept)));
    assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
}

#[test]
fn member_leaving_bumps_the_epoch_and_the_rest_takes_its_partitions() {
    let mut harness = Harness::new(&[("orders", 2)]);
    harness.ok(&join("a", &["orders"]));
    harness.ok(&join("b", &["orders"]));
    let a = harness.ok(&beat("a", 1, &partitions(&[("orders", &[0, 1])]))).assignment.expect("revocation");
    harness.ok(&beat("a", 1, &a));
    let b = harness.ok(&beat("b", 2, &Assignment::new())).assignment.expect("released");
    let left = harness.ok(&beat("b", -1, &b));
    assert_eq!((left.member_epoch, left.heartbeat_interval_ms, left.assignment), (-1, 0, None));
    assert!(harness.group.member("b").is_none());
    assert_eq!(harness.group.group_epoch(), 3);
    assert_eq!(harness.group.state(), ConsumerGroupState::Assigning);
    let after = harness.ok(&beat("a", 2, &a));
    assert_eq!(after.member_epoch, 3);
    assert_eq!(after.assignment, Some(partitions(&[("orders", &[0, 1])])));
}

#[test]
fn last_member_leaving_leaves_an_empty_group() {
    let mut harness = Harness::new(&[("orders", 1)]);
    harness.ok(&join("a", &["orders"]));
    harness.ok(&request("a", -1));
    assert_eq!(harness.group.state(), ConsumerGroupState::Empty);
    assert!(!harness.group.is_deleted());
    assert_eq!(harness.group.validate_delete(), Ok(()));
    assert!(matches!(harness.error(&request("a", 1)), ResponseError::UnknownMemberId));
}

#[test]
fn session_timeout_fences_a_silent_member() {
    let mut harness = Harness::new(&[("orders", 2)]);
    harness.ok(&join("a", &["orders"]));
    harness.advance(20_000);
    harness.ok(&join("b", &["orders"]));
    assert_eq!(harness.group.next_deadline_ms(), Some(1_000 + SESSION_MS));
    assert!(harness.advance(SESSION_MS - 20_000 - 1).is_empty(), "not yet");
    let records = harness.advance(1);
    assert!(!records.is_empty());
    assert!(harness.group.member("a").is_none());
    // b's partitions come free.
    let b = harness.ok(&beat("b", 2, &Assignment::new()));
    assert_eq!(b.member_epoch, 3);
    assert_eq!(b.assignment, Some(partitions(&[("orders", &[0, 1])])));
}

#[test]
fn heartbeats_keep_the_session_alive() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let mut owning = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    for _ in 0..20 {
        harness.advance(5_000);
        if let Some(assignment) = harness.ok(&beat("a", 1, &owning)).assignment {
            owning = assignment;
        }
    }
    assert!(harness.group.member("a").is_some());
}

#[test]
fn rebalance_timeout_fences_a_member_that_does_not_revoke() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    harness.ok(&join("b", &["orders"]));
    harness.ok(&beat("a", 1, &all));
    assert_eq!(harness.member("a").assignment.state, MemberState::UnrevokedPartitions);
    // a keeps heartbeating but never revokes.
    for _ in 0..5 {
        harness.advance(5_000);
        harness.ok(&beat("a", 1, &all));
        harness.ok(&beat("b", 2, &Assignment::new()));
    }
    harness.advance(i64::from(REBALANCE_MS) - 25_000);
    assert!(harness.group.member("a").is_none(), "fenced after the rebalance timeout");
    assert!(matches!(harness.error(&beat("a", 1, &all)), ResponseError::UnknownMemberId));
    let b = harness.ok(&beat("b", 2, &Assignment::new()));
    assert_eq!(b.assignment, Some(all));
}

#[test]
fn a_member_that_revokes_in_time_is_not_fenced() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    harness.ok(&join("b", &["orders"]));
    let kept = harness.ok(&beat("a", 1, &all)).assignment.expect("revocation");
    harness.advance(10_000);
    harness.ok(&beat("a", 1, &kept));
    harness.ok(&beat("b", 2, &Assignment::new()));
    harness.advance(i64::from(REBALANCE_MS));
    assert!(harness.group.member("a").is_some());
}

#[test]
fn static_member_rejoining_after_a_temporary_leave_keeps_its_assignment() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let static_join = |member_id: &str| HeartbeatRequest {
        instance_id: Some("instance-1".to_owned()),
        ..join(member_id, &["orders"])
    };
    let first = harness.ok(&static_join("a"));
    let all = first.assignment.expect("assigned");
    let epoch = harness.group.group_epoch();
    let left = harness.ok(&HeartbeatRequest { instance_id: Some("instance-1".to_owned()), ..beat("a", -2, &all) });
    assert_eq!(left.member_epoch, -2);
    assert_eq!(harness.member("a").member_epoch(), -2);
    assert_eq!(harness.group.partition_epoch(topic_id("orders"), 0), Some(-2), "still held");
    // The new incarnation takes over, without a rebalance.
    let rejoined = harness.ok(&static_join("a2"));
    assert_eq!(rejoined.member_id, "a2");
    assert_eq!(rejoined.member_epoch, epoch);
    assert_eq!(rejoined.assignment, Some(all));
    assert_eq!(harness.group.group_epoch(), epoch);
    assert!(harness.group.member("a").is_none());
    assert_eq!(harness.group.static_member("instance-1").map(|member| member.member_id.as_str()), Some("a2"));
    assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
}

#[test]
fn static_member_rejoining_before_its_previous_incarnation_left_is_refused() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let static_join = |member_id: &str| HeartbeatRequest {
        instance_id: Some("instance-1".to_owned()),
        ..join(member_id, &["orders"])
    };
    harness.ok(&static_join("a"));
    assert!(matches!(harness.error(&static_join("a2")), ResponseError::UnreleasedInstanceId));
    // And the other incarnation's heartbeats are fenced.
    let other = HeartbeatRequest { instance_id: Some("instance-1".to_owned()), ..beat("a2", 1, &Assignment::new()) };
    assert!(matches!(harness.error(&other), ResponseError::FencedInstanceId));
    let unknown = HeartbeatRequest { instance_id: Some("instance-9".to_owned()), ..beat("a", 1, &Assignment::new()) };
    assert!(matches!(harness.error(&unknown), ResponseError::UnknownMemberId));
}

#[test]
fn static_member_that_left_temporarily_is_removed_at_its_session_timeout() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let static_join = HeartbeatRequest { instance_id: Some("instance-1".to_owned()), ..join("a", &["orders"]) };
    let all = harness.ok(&static_join).assignment.expect("assigned");
    harness.ok(&HeartbeatRequest { instance_id: Some("instance-1".to_owned()), ..beat("a", -2, &all) });
    harness.advance(1_000);
    harness.ok(&join("b", &["orders"]));
    // b gets nothing while the static member's partitions are held for it.
    assert_eq!(harness.ok(&beat("b", harness.group.group_epoch(), &Assignment::new())).assignment, None);
    // a's session started at its last heartbeat, before the leave; b's a second later.
    harness.advance(SESSION_MS - 1_000);
    assert!(harness.group.member("a").is_none());
    let b = harness.ok(&beat("b", harness.member("b").member_epoch(), &Assignment::new()));
    assert_eq!(b.assignment, Some(all));
}

#[test]
fn regex_subscription_picks_up_a_topic_created_later() {
    let mut harness = Harness::new(&[("orders-eu", 1), ("payments", 1)]);
    let regex_join = HeartbeatRequest {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("orders-.*".to_owned()),
        ..join("a", &[])
    };
    let first = harness.ok(&regex_join);
    assert_eq!(first.assignment, Some(partitions(&[("orders-eu", &[0])])));
    assert_eq!(harness.group.resolved_regex("orders-.*").map(BTreeSet::len), Some(1));
    assert!(harness.log.iter().any(|record| record.record_type() == 16));
    harness.set_topics(&[("orders-eu", 1), ("payments", 1), ("orders-us", 2)]);
    let later = harness.ok(&beat("a", first.member_epoch, &partitions(&[("orders-eu", &[0])])));
    assert_eq!(later.member_epoch, first.member_epoch + 1);
    assert_eq!(later.assignment, Some(partitions(&[("orders-eu", &[0]), ("orders-us", &[0, 1])])));
}

#[test]
fn regex_never_matches_internal_topics_and_matches_whole_names() {
    let mut harness = Harness::new(&[("__consumer_offsets", 50), ("orders", 1), ("my-orders", 1)]);
    let regex_join = HeartbeatRequest { subscribed_topic_regex: Some(".*".to_owned()), ..join("a", &[]) };
    harness.ok(&regex_join);
    let resolved: Vec<&String> = harness.group.resolved_regex(".*").expect("resolved").iter().collect();
    assert_eq!(resolved, vec!["my-orders", "orders"]);
    let prefix = HeartbeatRequest { subscribed_topic_regex: Some("order".to_owned()), ..join("b", &[]) };
    harness.ok(&prefix);
    assert_eq!(harness.group.resolved_regex("order").map(BTreeSet::len), Some(0), "RE2/J matches() is anchored");
}

#[test]
fn invalid_regex_is_refused() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let bad = HeartbeatRequest { subscribed_topic_regex: Some("orders(".to_owned()), ..join("a", &[]) };
    assert!(matches!(harness.error(&bad), ResponseError::InvalidRegularExpression));
}

#[test]
fn last_member_leaving_a_regex_deletes_its_resolution() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let regex_join = HeartbeatRequest { subscribed_topic_regex: Some("ord.*".to_owned()), ..join("a", &[]) };
    let first = harness.ok(&regex_join);
    let owning = first.assignment.expect("assigned");
    let switch = HeartbeatRequest {
        subscribed_topic_regex: Some(String::new()),
        subscribed_topic_names: Some(vec!["orders".to_owned()]),
        ..beat("a", first.member_epoch, &owning)
    };
    harness.ok(&switch);
    assert!(harness.group.resolved_regex("ord.*").is_none());
    assert!(harness.log.iter().any(|record| record.record_type() == 16 && record.is_tombstone()));
}

#[test]
fn topic_partitions_added_bump_the_epoch_and_are_assigned() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let first = harness.ok(&join("a", &["orders"]));
    harness.set_topics(&[("orders", 3)]);
    let grown = harness.ok(&beat("a", first.member_epoch, &partitions(&[("orders", &[0])])));
    assert_eq!(grown.member_epoch, first.member_epoch + 1);
    assert_eq!(grown.assignment, Some(partitions(&[("orders", &[0, 1, 2])])));
}

#[test]
fn subscribed_topic_created_later_is_assigned_and_deleted_topic_is_revoked() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let first = harness.ok(&join("a", &["orders", "refunds"]));
    assert_eq!(first.assignment, Some(partitions(&[("orders", &[0])])));
    harness.set_topics(&[("orders", 1), ("refunds", 1)]);
    let created = harness.ok(&beat("a", first.member_epoch, &partitions(&[("orders", &[0])])));
    assert_eq!(created.assignment, Some(partitions(&[("orders", &[0]), ("refunds", &[0])])));
    harness.set_topics(&[("refunds", 1)]);
    let owning = partitions(&[("orders", &[0]), ("refunds", &[0])]);
    let deleted = harness.ok(&beat("a", created.member_epoch, &owning));
    assert_eq!(deleted.member_epoch, created.member_epoch, "revoking first");
    let revoked = deleted.assignment.expect("revocation");
    assert_eq!(revoked, partitions(&[("refunds", &[0])]));
    assert_eq!(harness.ok(&beat("a", created.member_epoch, &revoked)).member_epoch, created.member_epoch + 1);
}

#[test]
fn member_epochs_from_the_future_or_the_past_are_fenced() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    assert!(matches!(harness.error(&beat("a", 2, &all)), ResponseError::FencedMemberEpoch));
    harness.ok(&join("b", &["orders"]));
    let kept = harness.ok(&beat("a", 1, &all)).assignment.expect("revocation");
    harness.ok(&beat("a", 1, &kept));
    assert_eq!(harness.member("a").member_epoch(), 2);
    // The previous epoch is accepted while the member owns only what it still has (the response
    // bumping it may have been lost)...
    assert_eq!(harness.ok(&beat("a", 1, &kept)).member_epoch, 2);
    // ...but not with partitions it gave up, nor without saying what it owns.
    assert!(matches!(harness.error(&beat("a", 1, &all)), ResponseError::FencedMemberEpoch));
    assert!(matches!(harness.error(&request("a", 1)), ResponseError::FencedMemberEpoch));
    // A fenced member rejoins with epoch 0 and gets its assignment back.
    let rejoined = harness.ok(&join("a", &["orders"]));
    assert_eq!((rejoined.member_epoch, rejoined.assignment), (2, Some(kept)));
}

#[test]
fn unknown_members_and_groups_are_refused() {
    let mut harness = Harness::new(&[("orders", 1)]);
    assert!(matches!(harness.error(&beat("a", 1, &Assignment::new())), ResponseError::GroupIdNotFound));
    assert!(matches!(harness.error(&request("a", -1)), ResponseError::GroupIdNotFound));
    harness.ok(&join("a", &["orders"]));
    assert!(matches!(harness.error(&beat("z", 1, &Assignment::new())), ResponseError::UnknownMemberId));
    assert!(matches!(harness.error(&request("z", -1)), ResponseError::UnknownMemberId));
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut harness = Harness::new(&[("orders", 1)]);
    harness.config.group_size_max = 1;
    harness.ok(&join("a", &["orders"]));
    assert!(matches!(harness.error(&join("b", &["orders"])), ResponseError::GroupMaxSizeReached));
    assert_eq!(harness.ok(&join("a", &["orders"])).member_id, "a", "members already in may rejoin");
}

#[test]
fn requests_are_validated_as_kafka_does() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let invalid = |request: HeartbeatRequest| request;
    let cases = [
        invalid(join("", &["orders"])),
        invalid(HeartbeatRequest { rebalance_timeout_ms: -1, ..join("a", &["orders"]) }),
        invalid(HeartbeatRequest { topic_partitions: None, ..join("a", &["orders"]) }),
        invalid(HeartbeatRequest {
            topic_partitions: Some(owned(&partitions(&[("orders", &[0])]))),
            ..join("a", &["orders"])
        }),
        invalid(HeartbeatRequest { subscribed_topic_names: None, ..join("a", &["orders"]) }),
        invalid(HeartbeatRequest { instance_id: Some(String::new()), ..join("a", &["orders"]) }),
        invalid(HeartbeatRequest { rack_id: Some(String::new()), ..join("a", &["orders"]) }),
        invalid(HeartbeatRequest { group_id: String::new(), ..join("a", &["orders"]) }),
        invalid(request("a", -3)),
        invalid(request("a", -2)),
    ];
    for case in cases {
        if case.group_id.is_empty() {
            let refusal = ConsumerGroup::for_heartbeat(&case, &harness.config).expect_err("invalid");
            assert!(matches!(refusal.error, ResponseError::InvalidRequest));
        } else {
            assert!(matches!(harness.error(&case), ResponseError::InvalidRequest), "{case:?}");
        }
    }
    let unsupported = HeartbeatRequest { server_assignor: Some("sticky".to_owned()), ..join("a", &["orders"]) };
    assert!(matches!(harness.error(&unsupported), ResponseError::UnsupportedAssignor));
}

#[test]
fn version_zero_join_gets_a_member_id_from_the_coordinator() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let response = harness.ok(&HeartbeatRequest { api_version: 0, ..join("", &["orders"]) });
    assert_eq!(response.member_id, "generated-1");
    assert!(harness.group.member("generated-1").is_some());
}

#[test]
fn joining_with_an_empty_subscription_is_allowed() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let response = harness.ok(&join("a", &[]));
    assert_eq!(response.assignment, Some(Assignment::new()));
    assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
}

#[test]
fn the_assignment_is_sent_only_when_it_changed_or_the_request_was_full() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("join gets it");
    assert_eq!(harness.ok(&beat("a", 1, &all)).assignment, None);
    assert_eq!(harness.ok(&request("a", 1)).assignment, None);
    let full = HeartbeatRequest {
        rebalance_timeout_ms: REBALANCE_MS,
        subscribed_topic_names: Some(vec!["orders".to_owned()]),
        ..beat("a", 1, &all)
    };
    assert_eq!(harness.ok(&full).assignment, Some(all));
}

#[test]
fn the_assignor_the_members_ask_for_is_used() {
    let mut harness = Harness::new(&[("orders", 4), ("payments", 4)]);
    let range_join = |member_id: &str| HeartbeatRequest {
        server_assignor: Some("range".to_owned()),
        ..join(member_id, &["orders", "payments"])
    };
    harness.ok(&range_join("a"));
    harness.ok(&range_join("b"));
    assert_eq!(harness.group.preferred_assignor(&harness.config), ServerAssignor::Range);
    assert_eq!(
        harness.group.target("a"),
        Some(&partitions(&[("orders", &[0, 1]), ("payments", &[0, 1])])),
        "co-partitioned ranges"
    );
    let described = harness.group.describe(&harness.topics, &harness.config);
    assert_eq!(described.assignor_name, "range");
}

#[test]
fn describe_reports_members_with_their_assignment_and_target() {
    let mut harness = Harness::new(&[("orders", 2)]);
    harness.ok(&join("a", &["orders"]));
    harness.ok(&HeartbeatRequest { rack_id: Some("rack-1".to_owned()), ..join("b", &["orders"]) });
    let described = harness.group.describe(&harness.topics, &harness.config);
    assert_eq!(described.group_id, GROUP);
    assert_eq!(described.group_state, "Reconciling");
    assert_eq!((described.group_epoch, described.assignment_epoch), (2, 2));
    assert_eq!(described.assignor_name, "uniform");
    let b = &described.members[1];
    assert_eq!((b.member_id.as_str(), b.member_epoch, b.rack_id.as_deref()), ("b", 2, Some("rack-1")));
    assert_eq!(b.client_id, "client");
    assert_eq!(b.subscribed_topic_names, vec!["orders".to_owned()]);
    assert!(b.assignment.is_empty());
    assert_eq!(b.target_assignment.len(), 1);
    assert_eq!(b.target_assignment[0].topic_name, "orders");
    assert_eq!(b.target_assignment[0].partitions.len(), 1);
    assert_eq!(b.member_type, 1);
    assert_eq!(described.members[0].assignment[0].partitions, vec![0, 1]);
}

#[test]
fn offset_commits_must_carry_the_current_member_epoch() {
    let mut harness = Harness::new(&[("orders", 1)]);
    assert_eq!(harness.group.validate_offset_commit("", -1, false, 9), Ok(()), "admin commits to an empty group");
    harness.ok(&join("a", &["orders"]));
    assert_eq!(harness.group.validate_offset_commit("a", 1, false, 9), Ok(()));
    assert_eq!(harness.group.validate_offset_commit("a", 0, false, 9), Err(ResponseError::StaleMemberEpoch));
    assert_eq!(harness.group.validate_offset_commit("z", 1, false, 9), Err(ResponseError::UnknownMemberId));
    assert_eq!(harness.group.validate_offset_commit("", -1, false, 9), Err(ResponseError::UnknownMemberId));
    assert_eq!(harness.group.validate_offset_commit("a", 1, false, 8), Err(ResponseError::UnsupportedVersion));
    assert_eq!(harness.group.validate_offset_commit("a", 1, true, 3), Ok(()));
    assert_eq!(harness.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(harness.group.validate_offset_fetch(Some("a"), 2), Err(ResponseError::StaleMemberEpoch));
    assert_eq!(harness.group.validate_delete(), Err(ResponseError::NonEmptyGroup));
}

#[test]
fn deleting_an_empty_group_replays_to_nothing() {
    let mut harness = Harness::new(&[("orders", 1)]);
    harness.ok(&HeartbeatRequest { subscribed_topic_regex: Some("ord.*".to_owned()), ..join("a", &[]) });
    harness.ok(&request("a", -1));
    let records = harness.group.delete_records();
    for record in &records {
        harness.group.replay(record).expect("deletion replays");
    }
    assert!(harness.group.is_deleted());
    assert_eq!(harness.group.state(), ConsumerGroupState::Dead);
    harness.log.extend(records);
    harness.check_replay();
    // The group id can be used again.
    assert_eq!(harness.ok(&join("b", &["orders"])).member_epoch, 1);
}

#[test]
fn a_kafka_4_0_subscription_metadata_record_is_tombstoned_at_the_next_bump() {
    let mut harness = Harness::new(&[("orders", 1)]);
    let legacy = ConsumerGroupRecord::PartitionMetadata(
        crate::groups::consumer::ConsumerGroupPartitionMetadataKey { group_id: GROUP.to_owned() },
        Some(ConsumerGroupPartitionMetadataValue { topics: Vec::new() }),
    );
    harness.log.push(ConsumerGroupRecord::epoch(GROUP, 4, 0));
    harness.log.push(legacy);
    for record in harness.log.clone() {
        harness.group.replay(&record).expect("replays");
    }
    harness.group.on_loaded(harness.now_ms, &harness.config);
    let response = harness.ok(&join("a", &["orders"]));
    assert_eq!(response.member_epoch, 5);
    assert!(harness.log.iter().any(|record| record.record_type() == 4 && record.is_tombstone()));
    assert!(!harness.group.data().has_partition_metadata_record);
}

#[test]
fn loading_restarts_sessions_and_rebalance_timeouts() {
    let mut harness = Harness::new(&[("orders", 2)]);
    let all = harness.ok(&join("a", &["orders"])).assignment.expect("assigned");
    harness.ok(&join("b", &["orders"]));
    harness.ok(&beat("a", 1, &all));
    let mut loaded = ConsumerGroup::new(GROUP);
    for record in &harness.log {
        loaded.replay(record).expect("replays");
    }
    assert_eq!(loaded.next_deadline_ms(), None);
    loaded.on_loaded(100_000, &harness.config);
    assert_eq!(loaded.next_deadline_ms(), Some(100_000 + i64::from(REBALANCE_MS)));
    let context = Context {
        now_ms: 100_000 + i64::from(REBALANCE_MS),
        unix_ms: UNIX_EPOCH_OFFSET_MS,
        topics: &harness.topics,
        config: &harness.config,
    };
    loaded.expire(&context);
    assert!(loaded.member("a").is_none(), "a was still revoking");
    assert!(loaded.member("b").is_some());
}

#[test]
fn replay_refuses_logs_kafka_would_not_write() {
    let mut group = ConsumerGroup::new(GROUP);
    group.replay(&ConsumerGroupRecord::epoch(GROUP, 1, 0)).expect("epoch");
    let member = ConsumerGroupMember::new("a");
    group.replay(&ConsumerGroupRecord::member_metadata(GROUP, "a", Some(member.to_metadata_value()))).expect("member");
    let before = group.data().clone();
    assert!(matches!(
        group.replay(&ConsumerGroupRecord::member_metadata(GROUP, "a", None)),
        Err(ReplayError::MemberStillAssigned { .. })
    ));
    assert!(matches!(
        group.replay(&ConsumerGroupRecord::epoch_tombstone(GROUP)),
        Err(ReplayError::GroupNotEmpty { .. })
    ));
    assert!(matches!(group.replay(&ConsumerGroupRecord::epoch("other", 1, 0)), Err(ReplayError::WrongGroup { .. })));
    // Two members holding one partition.
    let mut holding = ConsumerGroupMember::new("a");
    holding.assignment.member_epoch = 1;
    holding.assignment.assigned = partitions(&[("orders", &[0])]);
    group
        .replay(&ConsumerGroupRecord::current_assignment(GROUP, "a", Some(holding.to_assignment_value())))
        .expect("a holds it");
    let after_a = group.data().clone();
    assert!(matches!(
        group.replay(&ConsumerGroupRecord::current_assignment(GROUP, "b", Some(holding.to_assignment_value()))),
        Err(ReplayError::PartitionEpochConflict { .. })
    ));
    assert_eq!(group.data(), &after_a, "a refused record changes nothing");
    assert_ne!(&before, &after_a);
}

#[test]
fn tombstones_for_unknown_state_are_ignored() {
    let mut group = ConsumerGroup::new(GROUP);
    for record in [
        ConsumerGroupRecord::epoch_tombstone(GROUP),
        ConsumerGroupRecord::member_metadata(GROUP, "a", None),
        ConsumerGroupRecord::current_assignment(GROUP, "a", None),
    ] {
        group.replay(&record).expect("ignored");
    }
    assert!(group.is_deleted());
    assert!(group.members().is_empty());
}
