//! Goal: the group's safety invariants hold under any schedule of joins, heartbeats, leaves,
//! lost responses, owned-partition reports, topic changes and passing time. Method: proptest
//! generates schedules for a few model clients that follow the protocol (they own exactly what
//! the last response they received assigned them, give up everything when fenced, and may stay
//! silent, lose responses or omit their owned partitions), and after every step checks:
//! 1. no partition is held by two members (a member's assigned partitions never overlap
//!    another's assigned or pending-revocation ones), and the partition epochs say exactly that;
//! 2. no member epoch exceeds the group epoch, nor does the assignment epoch;
//! 3. in a stable group, every member's partitions are its target;
//! 4. no two live clients own the same partition, and each owns only what the coordinator
//!    thinks it holds;
//! 5. replaying every record written so far rebuilds the same group.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use proptest::prelude::*;

use super::*;
use crate::groups::consumer::{ConsumerGroupState, TopicId, TopicMetadata};

const GROUP: &str = "group";
/// Wall-clock time at monotonic time 0.
const UNIX_EPOCH_OFFSET_MS: i64 = 1_700_000_000_000;
const CLIENT_COUNT: usize = 4;
/// Clients 0 and 1 are static members.
const STATIC_CLIENT_COUNT: usize = 2;
const REBALANCE_TIMEOUT_MS: i32 = 20_000;

#[derive(Debug, Clone)]
enum Step {
    /// Client joins (or rejoins) with a subscription: a mask of t0..t2 (0-7), or one of two
    /// regular expressions (8, 9).
    Join { client: usize, subscription: u8, assignor: bool },
    /// Client heartbeats; it may omit its owned partitions or lose the response.
    Heartbeat { client: usize, report_owned: bool, lose_response: bool },
    /// Client leaves for good (-1), or a static client leaves for now (-2).
    Leave { client: usize, temporary: bool },
    /// Time passes; timers fire.
    Advance { duration_ms: i64 },
    /// A topic grows, is created, or is deleted.
    Topics { change: u8 },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let client = 0..CLIENT_COUNT;
    prop_oneof![
        2 => (client.clone(), 0u8..10, any::<bool>()).prop_map(|(client, subscription, assignor)| Step::Join { client, subscription, assignor }),
        8 => (client.clone(), prop::bool::weighted(0.85), prop::bool::weighted(0.1))
            .prop_map(|(client, report_owned, lose_response)| Step::Heartbeat { client, report_owned, lose_response }),
        1 => (client, any::<bool>()).prop_map(|(client, temporary)| Step::Leave { client, temporary }),
        2 => (0i64..25_000).prop_map(|duration_ms| Step::Advance { duration_ms }),
        1 => (0u8..4).prop_map(|change| Step::Topics { change }),
    ]
}

/// A model client.
#[derive(Debug, Clone, Default)]
struct Client {
    /// Bumped when the client restarts (a new member id).
    incarnation: u32,
    /// In the group, with the epoch it will send.
    joined: Option<i32>,
    /// The partitions it consumes.
    owned: Assignment,
    /// Its subscription (names, regex), sent again in full requests.
    subscription: (Option<Vec<String>>, Option<String>),
    /// A response was lost: the next heartbeat is a full request, as real clients send after
    /// an error, so that the coordinator repeats the assignment.
    resend_full: bool,
}

impl Client {
    fn member_id(&self, index: usize) -> String {
        format!("member-{index}.{}", self.incarnation)
    }

    fn instance_id(index: usize) -> Option<String> {
        (index < STATIC_CLIENT_COUNT).then(|| format!("instance-{index}"))
    }

    /// Fenced or removed: it stops consuming and will rejoin.
    fn reset(&mut self) {
        self.joined = None;
        self.owned = Assignment::new();
        self.resend_full = false;
    }
}

struct World {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    /// Topic name -> (incarnation, partition count).
    topics: BTreeMap<&'static str, (u32, i32)>,
    image: TopicsImage,
    now_ms: i64,
    clients: Vec<Client>,
    log: Vec<ConsumerGroupRecord>,
}

impl World {
    fn new() -> Self {
        let topics: BTreeMap<&'static str, (u32, i32)> = [("t0", (0, 3)), ("t1", (0, 2))].into();
        let mut world = Self {
            group: ConsumerGroup::new(GROUP),
            config: ConsumerGroupConfig::default(),
            topics,
            image: TopicsImage::default(),
            now_ms: 0,
            clients: vec![Client::default(); CLIENT_COUNT],
            log: Vec::new(),
        };
        world.rebuild_image(1);
        world
    }

    fn rebuild_image(&mut self, version: i64) {
        self.image = TopicsImage::new(
            version,
            self.topics.iter().map(|(name, (incarnation, partition_count))| TopicMetadata {
                id: TopicId::from_u128(u128::from(name.as_bytes()[1]) << 8 | u128::from(*incarnation)),
                name: (*name).to_owned(),
                partition_count: *partition_count,
            }),
        );
    }

    fn send(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, Refusal> {
        if self.group.is_deleted() {
            self.group = ConsumerGroup::for_heartbeat(request, &self.config)?;
        }
        let client = ClientInfo { client_id: "model".to_owned(), client_host: "/10.0.0.1".to_owned() };
        let context = Context {
            now_ms: self.now_ms,
            unix_ms: UNIX_EPOCH_OFFSET_MS + self.now_ms,
            topics: &self.image,
            config: &self.config,
        };
        let before = self.group.data().clone();
        match self.group.heartbeat(request, &client, &context, || unreachable!("v1 clients name themselves")) {
            Ok(outcome) => {
                self.log.extend(outcome.records);
                Ok(outcome.response)
            }
            Err(refusal) => {
                assert_eq!(self.group.data(), &before, "a refused heartbeat changes nothing");
                Err(refusal)
            }
        }
    }

    fn request(&self, index: usize, member_epoch: i32) -> HeartbeatRequest {
        HeartbeatRequest {
            api_version: 1,
            group_id: GROUP.to_owned(),
            member_id: self.clients[index].member_id(index),
            member_epoch,
            instance_id: Client::instance_id(index),
            rack_id: None,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            subscribed_topic_regex: None,
            server_assignor: None,
            topic_partitions: None,
        }
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Join { client, subscription, assignor } => self.join(client, subscription, assignor),
            Step::Heartbeat { client, report_owned, lose_response } => {
                self.heartbeat(client, report_owned, lose_response);
            }
            Step::Leave { client, temporary } => self.leave(client, temporary),
            Step::Advance { duration_ms } => self.advance(duration_ms),
            Step::Topics { change } => self.change_topics(change),
        }
    }

    fn join(&mut self, index: usize, subscription: u8, assignor: bool) {
        if self.clients[index].joined.is_some() {
            return;
        }
        let (names, regex) = match subscription {
            8 => (None, Some("t.*".to_owned())),
            9 => (Some(vec!["t0".to_owned()]), Some("t[12]".to_owned())),
            mask => (
                Some((0..3).filter(|bit| mask & (1 << bit) != 0).map(|bit| format!("t{bit}")).collect()),
                Some(String::new()),
            ),
        };
        let request = HeartbeatRequest {
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            subscribed_topic_names: names.clone(),
            subscribed_topic_regex: regex.clone(),
            server_assignor: Some(if assignor { "range" } else { "uniform" }.to_owned()),
            topic_partitions: Some(Vec::new()),
            ..self.request(index, 0)
        };
        match self.send(&request) {
            Ok(response) => {
                let client = &mut self.clients[index];
                client.joined = Some(response.member_epoch);
                client.owned = response.assignment.expect("a join gets its assignment");
                client.subscription = (names, regex);
            }
            // The previous incarnation of this static member has not left yet: retry later.
            Err(refusal) if refusal.error == ResponseError::UnreleasedInstanceId => {}
            Err(refusal) => panic!("join refused: {refusal}"),
        }
    }

    fn heartbeat(&mut self, index: usize, report_owned: bool, lose_response: bool) {
        let Some(epoch) = self.clients[index].joined else { return };
        let client = &self.clients[index];
        let request = if client.resend_full {
            HeartbeatRequest {
                rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
                subscribed_topic_names: client.subscription.0.clone(),
                subscribed_topic_regex: client.subscription.1.clone(),
                topic_partitions: Some(client.owned.to_topic_partitions()),
                ..self.request(index, epoch)
            }
        } else {
            let owned = report_owned.then(|| client.owned.to_topic_partitions());
            HeartbeatRequest { topic_partitions: owned, ..self.request(index, epoch) }
        };
        match self.send(&request) {
            Ok(response) if !lose_response => {
                let client = &mut self.clients[index];
                client.joined = Some(response.member_epoch);
                client.resend_full = false;
                if let Some(assignment) = response.assignment {
                    client.owned = assignment;
                }
            }
            Ok(_) => self.clients[index].resend_full = true,
            Err(refusal) => {
                assert!(
                    matches!(refusal.error, ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId),
                    "unexpected refusal: {refusal}"
                );
                // Fenced: give everything up and rejoin (keeping the member id, as clients do).
                self.clients[index].reset();
            }
        }
    }

    fn leave(&mut self, index: usize, temporary: bool) {
        if self.clients[index].joined.is_none() {
            return;
        }
        let temporary = temporary && index < STATIC_CLIENT_COUNT;
        let epoch = if temporary { LEAVE_GROUP_STATIC_MEMBER_EPOCH } else { LEAVE_GROUP_MEMBER_EPOCH };
        let request = self.request(index, epoch);
        let result = self.send(&request);
        if let Err(refusal) = &result {
            assert_eq!(refusal.error, ResponseError::UnknownMemberId, "unexpected refusal: {refusal}");
        }
        // Whether or not the coordinator still knew it, the client is gone; it restarts with a
        // new member id.
        let client = &mut self.clients[index];
        client.reset();
        client.incarnation += 1;
    }

    fn advance(&mut self, duration_ms: i64) {
        self.now_ms += duration_ms;
        let context = Context {
            now_ms: self.now_ms,
            unix_ms: UNIX_EPOCH_OFFSET_MS + self.now_ms,
            topics: &self.image,
            config: &self.config,
        };
        let records = self.group.expire(&context);
        self.log.extend(records);
        // A client whose session expired notices (it heartbeats no more than the session
        // timeout allows) and stops consuming before anyone else is given its partitions.
        for index in 0..CLIENT_COUNT {
            let member_id = self.clients[index].member_id(index);
            if self.clients[index].joined.is_some() && self.group.member(&member_id).is_none() {
                self.clients[index].reset();
            }
        }
    }

    fn change_topics(&mut self, change: u8) {
        match change {
            0 | 1 => {
                let name = if change == 0 { "t0" } else { "t1" };
                if let Some((_, count)) = self.topics.get_mut(name)
                    && *count < 6
                {
                    *count += 1;
                }
            }
            2 => {
                let incarnation = self.topics.get("t2").map_or(0, |(incarnation, _)| incarnation + 1);
                self.topics.insert("t2", (incarnation, 2));
            }
            _ => {
                self.topics.remove("t2");
            }
        }
        let version = self.image.version() + 1;
        self.rebuild_image(version);
    }

    fn check(&self) {
        let data = self.group.data();
        // 1. Exclusive holding, matching the partition epochs.
        let mut held: BTreeMap<(TopicId, i32), (&str, i32)> = BTreeMap::new();
        for (member_id, member) in self.group.members() {
            let assignment = &member.assignment;
            assert!(!assignment.assigned.intersects(&assignment.pending_revocation), "{member_id} keeps and revokes");
            for partition in assignment.assigned.iter().chain(assignment.pending_revocation.iter()) {
                let previous = held.insert(partition, (member_id, assignment.member_epoch));
                assert!(previous.is_none(), "{partition:?} held by {member_id} and {previous:?}");
            }
        }
        let epochs: BTreeMap<(TopicId, i32), i32> =
            held.iter().map(|(partition, (_, epoch))| (*partition, *epoch)).collect();
        assert_eq!(epochs, data.partition_epochs, "partition epochs");
        // 2. Epochs.
        assert!(self.group.assignment_epoch() <= self.group.group_epoch());
        for member in self.group.members().values() {
            assert!(member.member_epoch() <= self.group.group_epoch(), "{} is ahead of the group", member.member_id);
        }
        // 3. A stable group has its target.
        if self.group.state() == ConsumerGroupState::Stable {
            for (member_id, member) in self.group.members() {
                let target = self.group.target(member_id).cloned().unwrap_or_default();
                assert_eq!(member.assignment.assigned, target, "{member_id} in a stable group");
            }
        }
        // 4. Clients own disjoint partitions, each only what the coordinator thinks it holds.
        let mut owners: BTreeMap<(TopicId, i32), usize> = BTreeMap::new();
        for (index, client) in self.clients.iter().enumerate() {
            if client.joined.is_none() {
                assert!(client.owned.is_empty());
                continue;
            }
            let member = self.group.member(&client.member_id(index)).expect("a live client is a member");
            let holds = member.assignment.assigned.union(&member.assignment.pending_revocation);
            assert!(
                client.owned.difference(&holds).is_empty(),
                "client {index} owns {:?} beyond {:?}",
                client.owned,
                holds
            );
            for partition in client.owned.iter() {
                let previous = owners.insert(partition, index);
                assert!(previous.is_none(), "{partition:?} consumed by clients {index} and {previous:?}");
            }
        }
        // 5. Replay.
        let mut rebuilt = ConsumerGroup::new(GROUP);
        for record in &self.log {
            rebuilt.replay(record).expect("the log replays");
        }
        assert_eq!(rebuilt.data(), data, "replaying the records rebuilds the group");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn random_schedules_keep_partitions_exclusive_and_replayable(steps in prop::collection::vec(step_strategy(), 1..90)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
            world.check();
        }
    }

    #[test]
    fn clients_that_keep_heartbeating_converge_to_a_stable_group(steps in prop::collection::vec(step_strategy(), 1..40)) {
        let mut world = World::new();
        for step in &steps {
            world.run(step);
        }
        // Everyone still out joins; then all heartbeat faithfully until the group settles.
        for index in 0..CLIENT_COUNT {
            world.join(index, 1, false);
        }
        for _ in 0..12 {
            for index in 0..CLIENT_COUNT {
                if world.clients[index].joined.is_none() {
                    world.join(index, 1, false);
                }
                world.heartbeat(index, true, false);
                world.check();
            }
        }
        let live = world.clients.iter().filter(|client| client.joined.is_some()).count();
        // Static members whose previous incarnation holds the instance id wait for its session.
        if live == world.group.members().len() {
            prop_assert_eq!(world.group.state(), ConsumerGroupState::Stable);
        }
    }
}
