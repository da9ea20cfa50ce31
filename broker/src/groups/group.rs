//! One consumer group: its members, generation, selected protocol, committed offsets, and the
//! state of Kafka's classic group protocol.
//!
//! States, as in Kafka:
//! - `Empty`: no members (possibly committed offsets); a join starts a rebalance;
//! - `PreparingRebalance`: members (re)join; the phase ends when every known member has joined
//!   (at once), or at the rebalance deadline, when members that did not rejoin are removed;
//! - `CompletingRebalance`: join answered, generation bumped; waiting for the leader's
//!   SyncGroup with the assignment;
//! - `Stable`: assignment delivered; members heartbeat;
//! - `Dead`: deleted or expired; removed from the coordinator.
//!
//! Delayed answers (JoinGroup until the join phase ends, SyncGroup until the leader assigns) are
//! channels held by the member. The group has no timers of its own: deadlines are values in
//! monotonic milliseconds, and the coordinator calls [`Group::expire`] when the earliest
//! ([`Group::next_deadline_ms`]) has passed. Membership operations live in `membership.rs`,
//! offsets in `offsets.rs`.
//!
//! Touched only by the group's coordinator shard thread.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::records::{GroupValue, MemberValue, OffsetValue};

/// The classic protocol's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// The time an operation happens at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic milliseconds, for deadlines.
    pub(crate) monotonic_ms: i64,
    /// Milliseconds since the Unix epoch, for stored timestamps.
    pub(crate) unix_ms: i64,
}

/// One protocol a member supports, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) name: String,
    pub(crate) metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader_id: String,
    pub(crate) member_id: String,
    /// Every member with its metadata for the selected protocol; for the leader only.
    pub(crate) members: Vec<JoinedMember>,
    pub(crate) skip_assignment: bool,
}

impl JoinOutcome {
    /// A failed join.
    pub(crate) fn failed(error: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncOutcome {
    /// A failed sync.
    pub(crate) fn failed(error: ResponseError) -> Self {
        Self { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// Where a delayed JoinGroup answer goes.
pub(crate) type JoinWaiter = async_channel::Sender<JoinOutcome>;
/// Where a delayed SyncGroup answer goes.
pub(crate) type SyncWaiter = async_channel::Sender<SyncOutcome>;

/// Answers a waiter. The requester may be gone (connection closed); then nobody needs it.
pub(crate) fn answer<T>(waiter: &async_channel::Sender<T>, outcome: T) {
    if waiter.try_send(outcome).is_err() {
        tracing::debug!("group answer dropped: the requester is gone");
    }
}

/// One member of a group.
#[derive(Debug)]
#[allow(clippy::struct_field_names, reason = "member_id is Kafka's name for it")]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) assignment: Bytes,
    pub(crate) join_waiter: Option<JoinWaiter>,
    pub(crate) sync_waiter: Option<SyncWaiter>,
    /// The member is removed when this passes without a heartbeat (monotonic ms).
    pub(crate) heartbeat_deadline_ms: i64,
}

impl Member {
    /// The member's metadata for `protocol`, or empty.
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|candidate| candidate.name == protocol)
            .map(|found| found.metadata.clone())
            .unwrap_or_default()
    }

    /// Whether the member supports `protocol`.
    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|candidate| candidate.name == protocol)
    }
}

/// The initial rebalance of an empty group: waits `delay`, and again while members keep coming,
/// up to the rebalance timeout (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitialDelay {
    /// Time left for further extensions.
    pub(crate) remaining_ms: i64,
    /// A member was added since the last extension.
    pub(crate) member_added: bool,
}

/// A committed offset in memory.
pub(crate) type CommittedOffset = OffsetValue;

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader_id: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of static members.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline to rejoin (monotonic ms).
    pub(crate) pending_members: BTreeMap<String, i64>,
    /// Members that got their JoinGroup answer but have not sent SyncGroup yet.
    pub(crate) pending_sync: BTreeSet<String>,
    /// End of the join phase (monotonic ms).
    pub(crate) join_deadline_ms: Option<i64>,
    pub(crate) initial_delay: Option<InitialDelay>,
    /// End of the sync phase (monotonic ms).
    pub(crate) sync_deadline_ms: Option<i64>,
    /// When the group entered its state (Unix ms), for offset retention of empty groups.
    pub(crate) state_timestamp_ms: i64,
    /// Committed offsets by (topic, partition).
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets committed in open transactions, by producer id: applied when the producer's
    /// commit marker reaches the offsets partition, dropped at its abort marker.
    pub(crate) pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    /// The stored group metadata is stale; the coordinator writes it and clears this.
    pub(crate) metadata_dirty: bool,
}

impl Group {
    /// A new, empty group.
    pub(crate) fn new(id: &str, now: Now) -> Self {
        Self {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline_ms: None,
            initial_delay: None,
            sync_deadline_ms: None,
            state_timestamp_ms: now.unix_ms,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
            metadata_dirty: false,
        }
    }

    /// A producer's transaction ended: its offsets become committed, or are dropped.
    pub(crate) fn complete_txn(&mut self, producer_id: i64, commit: bool) {
        if let Some(offsets) = self.pending_txn_offsets.remove(&producer_id)
            && commit
        {
            self.offsets.extend(offsets);
        }
    }

    pub(crate) fn transition(&mut self, state: GroupState, now: Now) {
        self.state = state;
        self.state_timestamp_ms = now.unix_ms;
    }

    /// Whether the group has members (Kafka's "not empty").
    pub(crate) fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The earliest deadline of anything in the group.
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        // Members waiting for a JoinGroup or SyncGroup answer are bounded by the phase deadline,
        // not by their session (the same rule `expire` applies).
        let heartbeats = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none() && member.sync_waiter.is_none())
            .map(|member| member.heartbeat_deadline_ms);
        heartbeats
            .chain(self.pending_members.values().copied())
            .chain(self.join_deadline_ms)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// The longest rebalance timeout among members (how long a join phase may last).
    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|member| i64::from(member.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// The protocol every member supports that most members prefer, as Kafka's `selectProtocol`
    /// (ties go to the protocol listed first by the member with the smallest id).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.protocols.iter().find(|protocol| candidates.contains(&protocol.name.as_str()))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates.into_iter().find(|name| votes.get(name) == Some(&best)).map(str::to_owned)
    }

    /// Whether a member joining with `protocol_type` and `protocols` fits the group.
    pub(crate) fn supports_protocols(&self, member_id: &str, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|member| member.member_id != member_id).collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|protocol| others.iter().all(|member| member.supports(&protocol.name)))
    }

    /// Whether `group_instance_id` belongs to another member than `member_id` (Kafka's fencing).
    pub(crate) fn is_static_member_fenced(&self, member_id: &str, group_instance_id: Option<&str>) -> bool {
        group_instance_id.and_then(|instance| self.static_members.get(instance)).is_some_and(|owner| owner != member_id)
    }

    /// The stored form of the group (after a rebalance, or when it became empty).
    pub(crate) fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|member| MemberValue {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its stored form: members come back with a fresh session, so a
    /// restarted broker keeps the generation and assignment of members that keep heartbeating.
    pub(crate) fn restore(&mut self, value: GroupValue, now: Now) {
        self.protocol_type = Some(value.protocol_type).filter(|name| !name.is_empty());
        self.generation_id = value.generation_id;
        self.protocol_name = value.protocol_name;
        self.leader_id = value.leader;
        self.state_timestamp_ms =
            if value.current_state_timestamp_ms >= 0 { value.current_state_timestamp_ms } else { now.unix_ms };
        self.members.clear();
        self.static_members.clear();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        for stored in value.members {
            if let Some(instance) = &stored.group_instance_id {
                self.static_members.insert(instance.clone(), stored.member_id.clone());
            }
            let member = Member {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id,
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocols: vec![Protocol { name: protocol.clone(), metadata: stored.subscription }],
                assignment: stored.assignment,
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline_ms: now.monotonic_ms + i64::from(stored.session_timeout_ms),
            };
            self.members.insert(stored.member_id, member);
        }
        self.state = if self.members.is_empty() || self.protocol_name.is_none() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if self.state == GroupState::Empty {
            self.members.clear();
            self.static_members.clear();
            self.leader_id = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Now {
        Now { monotonic_ms: 1_000, unix_ms: 1_700_000_000_000 }
    }

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_owned(),
            group_instance_id: None,
            client_id: "c".to_owned(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: protocols
                .iter()
                .map(|name| Protocol { name: (*name).to_owned(), metadata: Bytes::new() })
                .collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline_ms: 0,
        }
    }

    #[test]
    fn protocol_selection_takes_the_common_protocol_most_members_prefer() {
        let mut group = Group::new("g", now());
        group.members.insert("a".to_owned(), member("a", &["range", "roundrobin"]));
        group.members.insert("b".to_owned(), member("b", &["roundrobin", "range"]));
        group.members.insert("c".to_owned(), member("c", &["roundrobin", "sticky"]));
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
    }

    #[test]
    fn stored_group_restores_as_stable_with_fresh_sessions() {
        let mut group = Group::new("g", now());
        group.protocol_type = Some("consumer".to_owned());
        group.protocol_name = Some("range".to_owned());
        group.generation_id = 3;
        group.leader_id = Some("a".to_owned());
        group.members.insert("a".to_owned(), member("a", &["range"]));
        let value = group.to_value();
        let mut restored = Group::new("g", now());
        restored.restore(value, now());
        assert_eq!(restored.state, GroupState::Stable);
        assert_eq!(restored.generation_id, 3);
        assert_eq!(restored.members["a"].heartbeat_deadline_ms, now().monotonic_ms + 10_000);
    }
}
