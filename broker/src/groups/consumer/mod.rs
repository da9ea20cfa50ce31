//! The consumer group protocol of KIP-848 ("next generation" rebalance protocol,
//! `group.protocol=consumer`): the pure state machine behind ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, with no I/O. Time comes in as `now_ms`, topic metadata as a
//! [`TopicsImage`], and every change to a group comes out as [`ConsumerGroupRecord`]s, the
//! logical records Kafka writes to `__consumer_offsets`.
//!
//! It follows Apache Kafka 4.x (the group coordinator's `GroupMetadataManager`,
//! `CurrentAssignmentBuilder`, `TargetAssignmentBuilder`, and the `uniform` and `range`
//! server-side assignors); differences are listed at the end.
//!
//! # The model
//! A group has a *group epoch*, bumped whenever what the assignment depends on changes (a member
//! joins, leaves or changes its subscription; a subscribed topic is created, deleted or grows). A
//! new group epoch makes the next heartbeat compute a new *target assignment* with the group's
//! server assignor; the target carries the *assignment epoch*. Each member then converges to its
//! target one heartbeat at a time (see `reconcile.rs`): partitions it must give up are revoked first
//! (state UNREVOKED_PARTITIONS, at its old epoch, until it reports owning none of them), then it
//! moves to the assignment epoch and receives the partitions no other member holds any more
//! (UNRELEASED_PARTITIONS while some are still held, STABLE once it has its whole target). The
//! group tracks the epoch at which each partition is held (*partition epochs*), so a partition
//! is never given to a member before its previous owner released it.
//!
//! # How the integrator uses it
//! 1. **Load.** Replay the group's records from `__consumer_offsets` in log order: create the
//!    group with [`ConsumerGroup::new`] at its first record, call [`ConsumerGroup::replay`] for
//!    each, drop it when [`ConsumerGroup::is_deleted`]. When the partition is loaded, call
//!    [`ConsumerGroup::on_loaded`] on each group: it starts the session timer of every member
//!    (and the rebalance timer of members revoking), as Kafka does.
//! 2. **ConsumerGroupHeartbeat.** For a group id without a group, call
//!    [`ConsumerGroup::for_heartbeat`] (it refuses a heartbeat that is not a join with
//!    GROUP_ID_NOT_FOUND, as Kafka does); then [`ConsumerGroup::heartbeat`] with the decoded
//!    request, the client id and host, a [`Context`] (monotonic and wall-clock now, the topics
//!    image, the config) and a generator of member ids, called only by a v0 join without one
//!    (from v1 the client names itself; Kafka generates `Uuid.randomUuid().toString()`). The
//!    outcome holds the records and the response. On `Err`, nothing changed: answer the error
//!    with its message (and drop a group created for this request, which does not exist yet).
//! 3. **Write, then answer.** The group has already applied the records (as Kafka's coordinator
//!    does before the write commits). Append them to the group's `__consumer_offsets` partition
//!    in order, as one batch, and send the response only once they are durable. If the append
//!    fails, rebuild the group from the log (step 1), since memory is ahead of the log.
//! 4. **Timers.** After each operation, (re)arm one timer at [`ConsumerGroup::next_deadline_ms`];
//!    when it fires, call [`ConsumerGroup::expire`] and write its records like a heartbeat's.
//! 5. **Classic members** (online migration, `classic.rs`). Upgrade: when a consumer member joins
//!    a classic group with members, check the policy ([`ConsumerGroupConfig::migration_policy`])
//!    and the protocol type, build the group with [`ConsumerGroup::from_classic`] (write its
//!    records after the classic group's tombstone), then apply the heartbeat to it. JoinGroup,
//!    SyncGroup, Heartbeat and LeaveGroup of classic members: [`ConsumerGroup::classic_join`],
//!    [`ConsumerGroup::classic_sync`], [`ConsumerGroup::classic_heartbeat`],
//!    [`ConsumerGroup::classic_leave`]. Downgrade: before a leave (epoch -1) or an expiry, ask
//!    [`ConsumerGroup::only_classic_members_after`] (or
//!    [`ConsumerGroup::expiring_last_consumer_member`]); if so, [`ConsumerGroup::downgrade`]
//!    gives the classic group and the tombstones to write before its metadata.
//! 6. **ConsumerGroupDescribe**: [`ConsumerGroup::describe`]. **ListGroups**: the state name
//!    from [`ConsumerGroup::state`]. **OffsetCommit / OffsetFetch** from members of the group:
//!    [`ConsumerGroup::validate_offset_commit`] and [`ConsumerGroup::validate_offset_fetch`]
//!    (STALE_MEMBER_EPOCH and UNKNOWN_MEMBER_ID as Kafka answers). **DeleteGroups**:
//!    [`ConsumerGroup::validate_delete`], then write [`ConsumerGroup::delete_records`].
//!
//! # Records written, and when
//! Record type numbers are the key versions Kafka uses; each record is a key plus a value, or a
//! tombstone (no value). See `records.rs`.
//! - A member joins or changes its metadata: `ConsumerGroupMemberMetadata` (5).
//! - The subscription or topic metadata changes, or a member leaves: `ConsumerGroupMetadata` (3)
//!   with the new group epoch and the subscribed topics' metadata hash. A group whose log still
//!   has a `ConsumerGroupPartitionMetadata` (4) record from Kafka 4.0 gets its tombstone then.
//! - A new target assignment: `ConsumerGroupTargetAssignmentMember` (7) for each member whose
//!   target changed, then `ConsumerGroupTargetAssignmentMetadata` (6) with the assignment epoch.
//! - A member's epoch, state or partitions change: `ConsumerGroupCurrentMemberAssignment` (8).
//! - A regular expression resolves to a new set of topics: `ConsumerGroupRegularExpression` (16);
//!   its tombstone when the last member subscribed to it leaves it.
//! - A member leaves or is fenced: tombstones of its current assignment (8), target assignment
//!   (7) and member metadata (5), in that order (replay checks the order), then the epoch bump.
//! - A static member's temporary leave (epoch -2): its current assignment with epoch -2.
//! - A static member replacing its previous incarnation: the previous member's three
//!   tombstones, then the new member's metadata, target assignment and current assignment.
//! - An upgrade from a classic group: every member's metadata (with `ClassicMemberMetadata`),
//!   the group epoch (= the classic generation), every target assignment, the assignment epoch,
//!   every current assignment (Kafka's `createConsumerGroupRecords`).
//! - A classic member's JoinGroup: as a heartbeat's. Its LeaveGroup: its three tombstones, then
//!   one epoch bump for all the members leaving. A downgrade: the group's deletion tombstones.
//!
//! # Threads
//! A group is touched only by the shard thread of its `__consumer_offsets` partition. Nothing
//! here blocks or reads a clock.
//!
//! # Differences from Kafka
//! - Regular expressions are resolved synchronously in the heartbeat (Kafka resolves them in the
//!   background and bumps the epoch when the result arrives, so a Kafka group may take one more
//!   epoch to assign a new regex's topics). They are re-resolved whenever the topics image's
//!   version changes. Topics whose name starts with `__` are never matched (Kafka's broker
//!   matches them too, subject to DESCRIBE ACLs; clients never want internal topics).
//! - The metadata hash in `ConsumerGroupMetadataValue` is computed by this crate (FNV-1a over
//!   each subscribed topic's id, name and partition count). It is not Kafka's XXH3 value, so a
//!   Kafka broker reading a Sluice log would bump the epoch once, harmlessly.
//! - The `uniform` assignor hands the extra partitions of an uneven split to the members that
//!   already hold the most (Kafka hands them out in hash-map order, which can move a partition
//!   for nothing); ties and every other order are by member id, so the same inputs always give
//!   the same target. Rack-aware assignment is not implemented (the built-in server assignors of
//!   Kafka 4.0 ignore racks too).
//! - A known member rejoining with epoch 0 (as clients do after FENCED_MEMBER_EPOCH) is accepted
//!   and gets its current assignment back, as Kafka's current coordinator does; early 4.x
//!   releases fenced it again until its session expired. A static member rejoining while its
//!   instance id is held by a member that did not leave with epoch -2 gets
//!   UNRELEASED_INSTANCE_ID, as in Kafka.
//! - A member asked to revoke partitions always goes through UNREVOKED_PARTITIONS first, even
//!   when the heartbeat that starts the revocation reports owning none of them (Kafka then
//!   moves it to the new epoch at once). Kafka's Java client acknowledges a partially resolved
//!   assignment with only its resolved part and takes the rest later from that stale target, so
//!   Kafka's shortcut can give a partition to a second member while the first still takes it;
//!   see `reconcile.rs`. It costs one more heartbeat in that case.
//! - Classic members inside a consumer group: Kafka's join and sync timeouts (fencing a classic
//!   member told to rejoin that does not rejoin, or that does not sync, within its rebalance
//!   timeout) are not implemented; its session timeout still expires it. A static classic member
//!   rejoining without a member id replaces its previous incarnation (tombstones, then a new
//!   member that gets its partitions through the assignor), instead of taking over its
//!   assignment; the downgrade triggered by such a replacement, and the classic group size check
//!   of a downgrade, are not implemented.
//! - Kafka 4.3's per-partition assignment epochs (KIP-1251) and assignment timestamps
//!   (KIP-1263), per-group dynamic configs and the ACL filtering of regex matches are not
//!   implemented.

mod assignor;
mod classic;
pub(crate) mod codec;
mod config;
mod group;
mod heartbeat;
mod member;
mod reconcile;
mod records;
mod topics;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

// The API the coordinator (`groups::consumer_groups`, `groups::replay`) and the
// ConsumerGroupHeartbeat and ConsumerGroupDescribe handlers use.
pub(crate) use assignor::ServerAssignor;
pub(crate) use classic::{
    CONSUMER_PROTOCOL_TYPE, ClassicGroupMember, ClassicGroupSnapshot, ClassicJoin, ClassicJoinRequest,
};
pub(crate) use config::{ConsumerGroupConfig, MigrationPolicy};
pub(crate) use group::{ConsumerGroup, ConsumerGroupState, DescribedAssignment, DescribedGroup, DescribedMember};
pub(crate) use heartbeat::{ClientInfo, Context, HeartbeatRequest, HeartbeatResponse};
pub(crate) use records::{ClassicProtocol, ConsumerGroupRecord, TopicPartitions};
pub(crate) use topics::{TopicMetadata, TopicsImage};
// The rest of the state machine's API: its own tests and property checks use it.
#[allow(unused_imports)]
pub(crate) use assignor::{MemberSpec, assign};
#[allow(unused_imports)]
pub(crate) use config::ConfigError;
#[allow(unused_imports)]
pub(crate) use group::ReplayError;
#[allow(unused_imports)]
pub(crate) use heartbeat::HeartbeatOutcome;
#[allow(unused_imports)]
pub(crate) use member::ConsumerGroupMember;
#[allow(unused_imports)]
pub(crate) use reconcile::{MemberAssignment, MemberState, ReconcileInput, reconcile};
#[allow(unused_imports)]
pub(crate) use records::*;

/// A topic's id, as Kafka's `Uuid`.
pub(crate) type TopicId = uuid::Uuid;

/// A member epoch meaning "join" in a heartbeat request.
pub(crate) const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// A member epoch meaning "leave the group" in a heartbeat request.
pub(crate) const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// A member epoch meaning "a static member leaves for now, keep its assignment".
pub(crate) const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Partitions by topic: a member's assignment, target, or revocations. Topics never map to an
/// empty set, so two equal assignments compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Assignment(BTreeMap<TopicId, BTreeSet<i32>>);

impl Assignment {
    /// No partitions.
    pub(crate) fn new() -> Self {
        Self(BTreeMap::new())
    }

    /// The assignment of these (topic, partition) pairs.
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (TopicId, i32)>) -> Self {
        let mut assignment = Self::new();
        for (topic_id, partition) in pairs {
            assignment.insert(topic_id, partition);
        }
        assignment
    }

    /// Adds one partition; returns whether it was new.
    pub(crate) fn insert(&mut self, topic_id: TopicId, partition: i32) -> bool {
        self.0.entry(topic_id).or_default().insert(partition)
    }

    /// Removes one partition; returns whether it was there.
    pub(crate) fn remove(&mut self, topic_id: TopicId, partition: i32) -> bool {
        let Some(partitions) = self.0.get_mut(&topic_id) else { return false };
        let removed = partitions.remove(&partition);
        if partitions.is_empty() {
            self.0.remove(&topic_id);
        }
        removed
    }

    /// Removes a whole topic and returns its partitions.
    pub(crate) fn remove_topic(&mut self, topic_id: TopicId) -> BTreeSet<i32> {
        self.0.remove(&topic_id).unwrap_or_default()
    }

    /// Whether it holds this partition.
    pub(crate) fn contains(&self, topic_id: TopicId, partition: i32) -> bool {
        self.0.get(&topic_id).is_some_and(|partitions| partitions.contains(&partition))
    }

    /// The partitions of one topic, if any.
    pub(crate) fn partitions(&self, topic_id: TopicId) -> Option<&BTreeSet<i32>> {
        self.0.get(&topic_id)
    }

    /// Topics with their partitions, by topic id.
    pub(crate) fn topics(&self) -> impl Iterator<Item = (TopicId, &BTreeSet<i32>)> {
        self.0.iter().map(|(topic_id, partitions)| (*topic_id, partitions))
    }

    /// Every (topic, partition) pair, ordered.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TopicId, i32)> + '_ {
        self.0.iter().flat_map(|(topic_id, partitions)| partitions.iter().map(move |partition| (*topic_id, *partition)))
    }

    /// Whether it holds no partition.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many partitions it holds.
    pub(crate) fn partition_count(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Whether any partition is in both.
    pub(crate) fn intersects(&self, other: &Self) -> bool {
        self.iter().any(|(topic_id, partition)| other.contains(topic_id, partition))
    }

    /// The partitions in `self` that are not in `other`.
    pub(crate) fn difference(&self, other: &Self) -> Self {
        Self::from_pairs(self.iter().filter(|(topic_id, partition)| !other.contains(*topic_id, *partition)))
    }

    /// The partitions in both.
    pub(crate) fn intersection(&self, other: &Self) -> Self {
        Self::from_pairs(self.iter().filter(|(topic_id, partition)| other.contains(*topic_id, *partition)))
    }

    /// The partitions in either.
    pub(crate) fn union(&self, other: &Self) -> Self {
        Self::from_pairs(self.iter().chain(other.iter()))
    }

    /// The record form: one entry per topic, partitions ascending.
    pub(crate) fn to_topic_partitions(&self) -> Vec<records::TopicPartitions> {
        self.topics()
            .map(|(topic_id, partitions)| records::TopicPartitions {
                topic_id,
                partitions: partitions.iter().copied().collect(),
            })
            .collect()
    }

    /// From the record form (repeated topics merge; empty lists vanish).
    pub(crate) fn from_topic_partitions(topics: &[records::TopicPartitions]) -> Self {
        Self::from_pairs(
            topics.iter().flat_map(|topic| topic.partitions.iter().map(move |partition| (topic.topic_id, *partition))),
        )
    }
}

/// Why an operation was refused: the Kafka error code and the message Kafka would send with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error:?}: {message}")]
pub(crate) struct Refusal {
    /// The error code for the response.
    pub(crate) error: ResponseError,
    /// The error message for the response.
    pub(crate) message: String,
}

impl Refusal {
    /// A refusal with `error` and `message`.
    pub(crate) fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self { error, message: message.into() }
    }

    /// INVALID_REQUEST with `message`.
    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ResponseError::InvalidRequest, message)
    }
}
