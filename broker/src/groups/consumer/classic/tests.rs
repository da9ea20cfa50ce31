//! Goal: the online migration between a classic group and a consumer group, and classic members
//! served inside a consumer group, as Kafka does them. Method: upgrade a classic group, drive its
//! classic members (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and consumer-protocol members
//! (ConsumerGroupHeartbeat) as clients do, check after each step that replaying the records
//! rebuilds the group and that no partition is held by two members (in the group and in the
//! clients), and downgrade it back.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_protocol_subscription;

use super::*;
use crate::groups::consumer::{
    ConsumerGroupConfig, ConsumerGroupState, HeartbeatRequest, HeartbeatResponse, TopicId, TopicMetadata, TopicsImage,
    codec,
};

const GROUP: &str = "group";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const CLASSIC_SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn topic_id() -> TopicId {
    TopicId::from_u128(0x0123)
}

fn topics() -> TopicsImage {
    TopicsImage::new(1, [TopicMetadata { id: topic_id(), name: TOPIC.to_owned(), partition_count: PARTITIONS }])
}

fn partitions(list: &[i32]) -> Assignment {
    Assignment::from_pairs(list.iter().map(|partition| (topic_id(), *partition)))
}

/// A ConsumerProtocolSubscription (v1) to the topic, listing `owned`.
fn subscription(owned: &Assignment) -> Bytes {
    let owned_partitions = owned
        .partitions(topic_id())
        .map(|list| {
            vec![
                consumer_protocol_subscription::TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(list.iter().copied().collect()),
            ]
        })
        .unwrap_or_default();
    let decoded = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str(TOPIC)])
        .with_owned_partitions(owned_partitions);
    let mut out = BytesMut::new();
    out.put_i16(1);
    decoded.encode(&mut out, 1).expect("encodes");
    out.freeze()
}

fn protocols(owned: &Assignment) -> Vec<ClassicProtocol> {
    vec![
        ClassicProtocol { name: "range".to_owned(), metadata: subscription(owned) },
        ClassicProtocol { name: "cooperative-sticky".to_owned(), metadata: subscription(owned) },
    ]
}

fn classic_member(member_id: &str, assigned: &[i32]) -> ClassicGroupMember {
    ClassicGroupMember {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: CLASSIC_SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocols: protocols(&Assignment::new()),
        assignment: encode_assignment(&partitions(assigned), &topics(), 1),
    }
}

/// A stable classic group at generation 3: c1, c2, c3 with two partitions each.
fn classic_group() -> ClassicGroupSnapshot {
    ClassicGroupSnapshot {
        generation_id: 3,
        protocol_name: Some("range".to_owned()),
        members: vec![classic_member("c1", &[0, 1]), classic_member("c2", &[2, 3]), classic_member("c3", &[4, 5])],
    }
}

fn client() -> ClientInfo {
    ClientInfo { client_id: "client".to_owned(), client_host: "/127.0.0.1".to_owned() }
}

fn consumer_join(member_id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        api_version: 1,
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: REBALANCE_MS,
        subscribed_topic_names: Some(vec![TOPIC.to_owned()]),
        subscribed_topic_regex: None,
        server_assignor: None,
        topic_partitions: Some(Vec::new()),
    }
}

fn consumer_beat(member_id: &str, member_epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        topic_partitions: Some(owned.to_topic_partitions()),
        member_epoch,
        ..consumer_join(member_id)
    }
}

fn classic_join_request(member_id: &str, owned: &Assignment) -> ClassicJoinRequest {
    ClassicJoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        session_timeout_ms: CLASSIC_SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
        protocols: protocols(owned),
        require_known_member_id: true,
    }
}

/// A converted group, its clock, and every record written since the conversion.
struct Harness {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    topics: TopicsImage,
    now_ms: i64,
    log: Vec<ConsumerGroupRecord>,
}

impl Harness {
    fn upgraded(classic: &ClassicGroupSnapshot) -> Self {
        let config = ConsumerGroupConfig::default();
        let topics = topics();
        let now_ms = 1_000;
        let context = Context { now_ms, unix_ms: now_ms, topics: &topics, config: &config };
        let (group, log) = ConsumerGroup::from_classic(GROUP, classic, &context).expect("upgradable");
        let harness = Self { group, config, topics, now_ms, log };
        harness.check();
        harness
    }

    fn heartbeat(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, Refusal> {
        let context = Context { now_ms: self.now_ms, unix_ms: self.now_ms, topics: &self.topics, config: &self.config };
        let outcome = self.group.heartbeat(request, &client(), &context, || unreachable!("members name themselves"))?;
        self.log.extend(outcome.records);
        self.check();
        Ok(outcome.response)
    }

    fn join(&mut self, request: &ClassicJoinRequest) -> Result<(String, i32), ResponseError> {
        let context = Context { now_ms: self.now_ms, unix_ms: self.now_ms, topics: &self.topics, config: &self.config };
        match self.group.classic_join(request, &client(), &context, || "generated".to_owned())? {
            ClassicJoin::MemberIdRequired(member_id) => Ok((member_id, -1)),
            ClassicJoin::Joined { member_id, generation_id, protocol_name, records } => {
                assert_eq!(protocol_name, "range", "the member's first protocol");
                self.log.extend(records);
                self.check();
                Ok((member_id, generation_id))
            }
        }
    }

    fn sync(&mut self, member_id: &str, generation_id: i32) -> Result<Assignment, ResponseError> {
        let context = Context { now_ms: self.now_ms, unix_ms: self.now_ms, topics: &self.topics, config: &self.config };
        let synced =
            self.group.classic_sync(member_id, None, generation_id, (Some("consumer"), Some("range")), &context)?;
        Ok(decode_assignment(&synced.assignment, &self.topics).expect("a readable assignment"))
    }

    fn advance(&mut self, duration_ms: i64) {
        self.now_ms += duration_ms;
        let context = Context { now_ms: self.now_ms, unix_ms: self.now_ms, topics: &self.topics, config: &self.config };
        let records = self.group.expire(&context);
        self.log.extend(records);
        self.check();
    }

    /// Replaying the log rebuilds the group; no partition is held (assigned or being revoked)
    /// by two members.
    fn check(&self) {
        let mut rebuilt = ConsumerGroup::new(GROUP);
        for record in &self.log {
            rebuilt.replay(record).expect("the log replays");
            let (key, value) = codec::encode(record);
            let decoded = codec::decode(&key, value.as_deref()).expect("decodes").expect("a consumer group record");
            assert_eq!(&decoded, record, "the record round-trips through its bytes");
        }
        assert_eq!(rebuilt.data(), self.group.data(), "replaying the records rebuilds the group");
        let mut holders: BTreeMap<(TopicId, i32), &str> = BTreeMap::new();
        for member in self.group.members().values() {
            for partition in member.assignment.assigned.iter().chain(member.assignment.pending_revocation.iter()) {
                if let Some(other) = holders.insert(partition, &member.member_id) {
                    panic!("partition {partition:?} held by {other} and {}", member.member_id);
                }
            }
        }
    }
}

#[test]
fn upgrade_keeps_members_assignments_and_epoch_and_writes_kafkas_records() {
    let harness = Harness::upgraded(&classic_group());
    let group = &harness.group;
    assert_eq!(group.group_epoch(), 3);
    assert_eq!(group.assignment_epoch(), 3);
    assert_eq!(group.state(), ConsumerGroupState::Stable);
    let c2 = group.member("c2").expect("kept");
    assert_eq!(c2.member_epoch(), 3);
    assert_eq!(c2.assignment.assigned, partitions(&[2, 3]));
    assert_eq!(group.target("c2"), Some(&partitions(&[2, 3])));
    let classic = c2.classic.as_ref().expect("a classic member");
    assert_eq!(classic.session_timeout_ms, CLASSIC_SESSION_MS);
    assert_eq!(classic.supported_protocols.len(), 2);
    assert_eq!(c2.rebalance_timeout_ms, REBALANCE_MS);
    assert_eq!(c2.subscribed_topic_names, [TOPIC.to_owned()].into());
    let types: Vec<i16> = harness.log.iter().map(ConsumerGroupRecord::record_type).collect();
    assert_eq!(types, vec![5, 5, 5, 3, 7, 7, 7, 6, 8, 8, 8], "metadata, epoch, targets, target epoch, assignments");
    let described = group.describe(&harness.topics, &harness.config);
    assert!(described.members.iter().all(|member| member.member_type == 0), "classic members");
    assert_eq!(group.next_deadline_ms(), Some(1_000 + i64::from(CLASSIC_SESSION_MS)), "classic session timeouts");
}

#[test]
fn upgrade_refuses_an_unreadable_subscription() {
    let mut classic = classic_group();
    classic.members[1].protocols[0].metadata = Bytes::from_static(&[0, 1, 0xff]);
    let (config, topics) = (ConsumerGroupConfig::default(), topics());
    let context = Context { now_ms: 0, unix_ms: 0, topics: &topics, config: &config };
    let refusal = ConsumerGroup::from_classic(GROUP, &classic, &context).expect_err("malformed");
    assert_eq!(refusal.error, ResponseError::GroupIdNotFound);
}

#[test]
fn classic_members_rejoin_and_converge_when_a_consumer_member_joins() {
    let mut harness = Harness::upgraded(&classic_group());
    let joined = harness.heartbeat(&consumer_join("n1")).expect("joins");
    assert_eq!(joined.member_epoch, 4, "the join bumps the group epoch");
    assert_eq!(harness.group.state(), ConsumerGroupState::Reconciling);
    assert_eq!(joined.assignment, Some(Assignment::new()), "everything is still held by classic members");
    assert_eq!(
        harness.group.describe(&harness.topics, &harness.config).members.iter().filter(|m| m.member_type == 1).count(),
        1
    );

    // Each classic member learns of the rebalance from its heartbeat, revokes everything (eager)
    // and rejoins; its sync gives it what it keeps.
    let mut owned: BTreeMap<&str, Assignment> = BTreeMap::new();
    for member_id in ["c1", "c2", "c3"] {
        assert_eq!(
            harness.group.classic_heartbeat(member_id, None, 3, harness.now_ms),
            Err(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            harness.group.classic_heartbeat(member_id, None, 2, harness.now_ms),
            Err(ResponseError::IllegalGeneration)
        );
        let (_, generation) = harness.join(&classic_join_request(member_id, &Assignment::new())).expect("rejoins");
        let assignment = harness.sync(member_id, generation).expect("synced");
        owned.insert(member_id, assignment);
    }
    // Until every member reaches the new epoch, heartbeats ask the members to rejoin again.
    for _ in 0..4 {
        for member_id in ["c1", "c2", "c3"] {
            let generation = harness.group.member(member_id).expect("member").member_epoch();
            if harness.group.classic_heartbeat(member_id, None, generation, harness.now_ms).is_err() {
                let held = owned.remove(member_id).unwrap_or_default();
                let (_, generation) = harness.join(&classic_join_request(member_id, &held)).expect("rejoins");
                owned.insert(member_id, harness.sync(member_id, generation).expect("synced"));
            }
        }
        let epoch = harness.group.member("n1").expect("member").member_epoch();
        let held = owned.get("n1").cloned().unwrap_or_default();
        if let Some(assignment) = harness.heartbeat(&consumer_beat("n1", epoch, &held)).expect("beats").assignment {
            owned.insert("n1", assignment);
        }
    }
    assert_eq!(harness.group.state(), ConsumerGroupState::Stable);
    let mut counts: Vec<usize> = owned.values().map(Assignment::partition_count).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 1, 2, 2], "six partitions over four members");
    assert_eq!(owned.values().map(Assignment::partition_count).sum::<usize>(), 6, "every partition held once");
    for member_id in ["c1", "c2", "c3"] {
        let generation = harness.group.member(member_id).expect("member").member_epoch();
        assert_eq!(generation, 4);
        assert_eq!(harness.group.classic_heartbeat(member_id, None, generation, harness.now_ms), Ok(()));
        assert_eq!(
            harness.group.validate_offset_commit(member_id, generation, false, 8),
            Ok(()),
            "classic commits below v9"
        );
        assert_eq!(harness.group.validate_offset_commit(member_id, 3, false, 8), Err(ResponseError::IllegalGeneration));
    }
}

#[test]
fn a_new_classic_member_needs_an_id_and_the_consumer_protocol_type() {
    let mut harness = Harness::upgraded(&classic_group());
    let (member_id, generation) = harness.join(&classic_join_request("", &Assignment::new())).expect("answered");
    assert_eq!((member_id.as_str(), generation), ("generated", -1), "MEMBER_ID_REQUIRED with an id");
    assert!(harness.group.member("generated").is_none(), "nothing changed");
    let other_type =
        ClassicJoinRequest { protocol_type: "connect".to_owned(), ..classic_join_request("x", &Assignment::new()) };
    assert_eq!(harness.join(&other_type), Err(ResponseError::InconsistentGroupProtocol));
    let other_protocol = ClassicJoinRequest {
        protocols: vec![ClassicProtocol { name: "roundrobin".to_owned(), metadata: subscription(&Assignment::new()) }],
        ..classic_join_request("x", &Assignment::new())
    };
    assert_eq!(harness.join(&other_protocol), Err(ResponseError::InconsistentGroupProtocol));
    let (member_id, generation) = harness.join(&classic_join_request("generated", &Assignment::new())).expect("joins");
    assert_eq!((member_id.as_str(), generation), ("generated", 4));
    assert_eq!(harness.sync("generated", 4), Ok(Assignment::new()), "its partitions are still held");
    assert_eq!(harness.sync("c1", 3).map(drop), Err(ResponseError::RebalanceInProgress));
    assert_eq!(harness.sync("n1", 4).map(drop), Err(ResponseError::UnknownMemberId));
}

#[test]
fn classic_leave_removes_members_with_one_epoch_bump_and_sessions_expire() {
    let mut harness = Harness::upgraded(&classic_group());
    let (results, records) =
        harness.group.classic_leave(&[("c1".to_owned(), None), ("nobody".to_owned(), None)], &harness.topics);
    assert_eq!(results, vec![Ok("c1".to_owned()), Err(ResponseError::UnknownMemberId)]);
    harness.log.extend(records);
    harness.check();
    assert_eq!(harness.group.group_epoch(), 4);
    assert!(harness.group.member("c1").is_none());
    harness.heartbeat(&consumer_join("n1")).expect("joins");
    assert_eq!(
        harness.group.classic_leave(&[("n1".to_owned(), None)], &harness.topics).0,
        vec![Err(ResponseError::UnknownMemberId)],
        "n1 is not classic"
    );
    // c2 keeps its session; c3 does not.
    harness.advance(i64::from(CLASSIC_SESSION_MS) / 2);
    let generation = harness.group.member("c2").expect("member").member_epoch();
    let _ = harness.group.classic_heartbeat("c2", None, generation, harness.now_ms);
    harness.heartbeat(&consumer_beat("n1", 5, &Assignment::new())).expect("beats");
    harness.advance(i64::from(CLASSIC_SESSION_MS) / 2 + 1);
    assert!(harness.group.member("c2").is_some());
    assert!(harness.group.member("c3").is_none(), "its session expired");
}

#[test]
fn the_last_consumer_member_leaving_downgrades_to_the_classic_members() {
    let mut harness = Harness::upgraded(&classic_group());
    harness.heartbeat(&consumer_join("n1")).expect("joins");
    assert!(harness.group.only_classic_members_after("n1"));
    assert!(!harness.group.only_classic_members_after("c1"), "a classic member leaving changes nothing");
    let (classic, tombstones) = harness.group.downgrade("n1", &harness.topics);
    assert_eq!(classic.generation_id, 4);
    assert_eq!(classic.protocol_name.as_deref(), Some("range"));
    let members: Vec<&str> = classic.members.iter().map(|member| member.member_id.as_str()).collect();
    assert_eq!(members, vec!["c1", "c2", "c3"]);
    let assigned: Vec<Assignment> = classic
        .members
        .iter()
        .map(|member| decode_assignment(&member.assignment, &harness.topics).expect("readable"))
        .collect();
    assert_eq!(assigned, vec![partitions(&[0, 1]), partitions(&[2, 3]), partitions(&[4, 5])], "what each still holds");
    let mut deleted = harness.group.clone();
    for record in &tombstones {
        deleted.replay(record).expect("the tombstones replay");
    }
    assert!(deleted.is_deleted());
}

/// A client of either protocol, as the Java and librdkafka clients behave: classic members are
/// eager (they give up everything before rejoining) and take what SyncGroup gives them;
/// consumer-protocol members take each assignment the heartbeat sends.
#[derive(Debug, Default)]
struct Client {
    classic: bool,
    generation: i32,
    owned: Assignment,
    rejoin: bool,
}

/// A small deterministic generator (xorshift), so that failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % bound as u64).expect("small")
    }
}

fn step(harness: &mut Harness, clients: &mut BTreeMap<String, Client>, member_id: &str) {
    let client = clients.get_mut(member_id).expect("client");
    if client.classic {
        if !client.rejoin {
            match harness.group.classic_heartbeat(member_id, None, client.generation, harness.now_ms) {
                Ok(()) => return,
                Err(ResponseError::RebalanceInProgress) => client.rejoin = true,
                Err(error) => panic!("{member_id}: heartbeat {error:?}"),
            }
        }
        client.owned = Assignment::new();
        let (_, generation) = harness.join(&classic_join_request(member_id, &client.owned)).expect("rejoins");
        client.generation = generation;
        match harness.sync(member_id, generation) {
            Ok(assignment) => {
                client.owned = assignment;
                client.rejoin = false;
            }
            Err(ResponseError::RebalanceInProgress) => {}
            Err(error) => panic!("{member_id}: sync {error:?}"),
        }
    } else {
        let response = harness.heartbeat(&consumer_beat(member_id, client.generation, &client.owned)).expect("beats");
        client.generation = response.member_epoch;
        if let Some(assignment) = response.assignment {
            client.owned = assignment;
        }
    }
}

fn assert_clients_disjoint(clients: &BTreeMap<String, Client>) {
    let mut holders = BTreeMap::new();
    for (member_id, client) in clients {
        for partition in client.owned.iter() {
            if let Some(other) = holders.insert(partition, member_id) {
                panic!("clients {other} and {member_id} both own {partition:?}");
            }
        }
    }
}

#[test]
fn member_by_member_upgrades_never_give_a_partition_to_two_clients() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut harness = Harness::upgraded(&classic_group());
        let mut clients: BTreeMap<String, Client> = ["c1", "c2", "c3"]
            .iter()
            .zip([[0, 1], [2, 3], [4, 5]])
            .map(|(id, held)| {
                ((*id).to_owned(), Client { classic: true, generation: 3, owned: partitions(&held), rejoin: false })
            })
            .collect();
        let mut upgraded = 0;
        for round in 0..120 {
            if round % 30 == 10 && upgraded < 3 {
                // A classic member leaves (after giving up its partitions); a new one joins.
                upgraded += 1;
                let leaving = format!("c{upgraded}");
                clients.remove(&leaving);
                let (results, records) = harness.group.classic_leave(&[(leaving, None)], &harness.topics);
                assert!(results[0].is_ok());
                harness.log.extend(records);
                harness.check();
                let joining = format!("n{upgraded}");
                let response = harness.heartbeat(&consumer_join(&joining)).expect("joins");
                let owned = response.assignment.unwrap_or_default();
                clients.insert(
                    joining,
                    Client { classic: false, generation: response.member_epoch, owned, rejoin: false },
                );
            }
            let ids: Vec<String> = clients.keys().cloned().collect();
            let member_id = &ids[rng.below(ids.len())];
            step(&mut harness, &mut clients, member_id);
            assert_clients_disjoint(&clients);
            harness.now_ms += 100;
        }
        for _ in 0..6 {
            let ids: Vec<String> = clients.keys().cloned().collect();
            for member_id in &ids {
                step(&mut harness, &mut clients, member_id);
                assert_clients_disjoint(&clients);
            }
        }
        assert_eq!(harness.group.state(), ConsumerGroupState::Stable, "seed {seed}");
        let total: usize = clients.values().map(|client| client.owned.partition_count()).sum();
        assert_eq!(total, 6, "seed {seed}: every partition owned once at the end");
        assert!(clients.values().all(|client| client.owned.partition_count() == 2), "seed {seed}: balanced");
    }
}
