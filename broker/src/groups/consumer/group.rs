//! One consumer group: its members, epochs, target assignment, partition epochs and resolved
//! regular expressions, rebuilt exactly from its records by [`ConsumerGroup::replay`], and the
//! read-only views the handlers need (state, describe, offset validation, deletion).
//!
//! The group's *hard state* (everything in [`GroupData`]) is a function of its records: the
//! operations in `heartbeat.rs` change it only by generating records and replaying them into
//! the group, as Kafka's coordinator does, so a group rebuilt from its log equals the live one.
//! Its *soft state* is not stored: member timers (restarted by [`ConsumerGroup::on_loaded`]) and
//! the topics version regular expressions were last resolved at.
//!
//! States (Kafka's names, reported by ListGroups and ConsumerGroupDescribe):
//! - `Empty`: no members;
//! - `Assigning`: the group epoch is ahead of the target assignment's epoch;
//! - `Reconciling`: some member does not have its whole target at the assignment epoch yet;
//! - `Stable`: every member has its target;
//! - `Dead`: the group does not exist (never created, or deleted).
//!
//! Invariants (checked by the schedule tests): a partition is held (assigned or being revoked)
//! by at most one member, at that member's epoch; no member epoch exceeds the group epoch; in
//! `Stable`, every member's partitions are its target.
//!
//! Touched only by the group's coordinator shard thread.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use super::assignor::ServerAssignor;
use super::config::ConsumerGroupConfig;
use super::member::ConsumerGroupMember;
use super::reconcile::MemberAssignment;
use super::records::{ConsumerGroupRecord, ConsumerGroupRegularExpressionValue};
use super::topics::TopicsImage;
use super::{Assignment, TopicId};

/// The states of a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerGroupState {
    /// No members.
    Empty,
    /// A new target assignment is due.
    Assigning,
    /// Members are converging to the target.
    Reconciling,
    /// Every member has its target.
    Stable,
    /// The group does not exist.
    Dead,
}

impl ConsumerGroupState {
    /// The name Kafka reports in ListGroups and ConsumerGroupDescribe.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// Why a record does not apply: the log is not one Kafka (or this crate) would have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReplayError {
    /// The record belongs to another group.
    #[error("record of group {record_group} replayed into group {group}")]
    WrongGroup {
        /// This group.
        group: String,
        /// The record's group.
        record_group: String,
    },
    /// The group tombstone came while the group still had members or targets.
    #[error("group {group} deleted while it still has members, targets or an assignment epoch")]
    GroupNotEmpty {
        /// This group.
        group: String,
    },
    /// The target assignment epoch tombstone came while members still had targets.
    #[error("target assignment of group {group} deleted while members still have targets")]
    TargetsNotEmpty {
        /// This group.
        group: String,
    },
    /// A member's metadata tombstone came before its assignment and target tombstones.
    #[error("member {member_id} of group {group} deleted before its assignment")]
    MemberStillAssigned {
        /// This group.
        group: String,
        /// The member.
        member_id: String,
    },
    /// A partition would be held by two members, or released at an epoch it was not held at.
    #[error("partition {topic_id}-{partition} of group {group} is held at epoch {held:?}, not {expected:?}")]
    PartitionEpochConflict {
        /// This group.
        group: String,
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        partition: i32,
        /// The epoch it is held at, if any.
        held: Option<i32>,
        /// The epoch the record expected (`None`: free).
        expected: Option<i32>,
    },
}

/// A regular expression and the topics it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedRegex {
    /// The matching topic names.
    pub(crate) topics: BTreeSet<String>,
    /// The metadata version it was resolved at.
    pub(crate) version: i64,
    /// When it was resolved (ms since the Unix epoch).
    pub(crate) timestamp_ms: i64,
}

/// The group's hard state: exactly what its records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupData {
    /// Whether the log holds the group (a value was replayed since its creation or deletion).
    pub(super) exists: bool,
    /// The group epoch.
    pub(super) group_epoch: i32,
    /// The subscribed topics' metadata hash at the last epoch bump.
    pub(super) metadata_hash: i64,
    /// The target assignment's epoch; -1 after its tombstone.
    pub(super) assignment_epoch: i32,
    /// Member id -> member.
    pub(super) members: BTreeMap<String, ConsumerGroupMember>,
    /// Instance id -> member id of static members.
    pub(super) static_members: BTreeMap<String, String>,
    /// Member id -> target assignment.
    pub(super) targets: BTreeMap<String, Assignment>,
    /// (topic, partition) -> epoch of the member holding it (assigned or being revoked).
    pub(super) partition_epochs: BTreeMap<(TopicId, i32), i32>,
    /// Regex -> the topics it matched.
    pub(super) resolved_regexes: BTreeMap<String, ResolvedRegex>,
    /// Regex -> members subscribed with it.
    pub(super) regex_subscribers: BTreeMap<String, usize>,
    /// Topic name -> subscriptions to it: one per member naming it, one per resolved regex
    /// matching it.
    pub(super) subscribed_topic_counts: BTreeMap<String, usize>,
    /// The log holds a Kafka 4.0 subscription metadata record (type 4) not yet tombstoned.
    pub(super) has_partition_metadata_record: bool,
}

impl GroupData {
    fn new() -> Self {
        Self {
            exists: false,
            group_epoch: 0,
            metadata_hash: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            targets: BTreeMap::new(),
            partition_epochs: BTreeMap::new(),
            resolved_regexes: BTreeMap::new(),
            regex_subscribers: BTreeMap::new(),
            subscribed_topic_counts: BTreeMap::new(),
            has_partition_metadata_record: false,
        }
    }
}

/// A member's timers (soft state, monotonic ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberTimers {
    /// The member is fenced when this passes without a heartbeat.
    pub(super) session_deadline_ms: i64,
    /// The member is fenced when this passes while it is still at this epoch (it did not
    /// revoke in time).
    pub(super) rebalance: Option<(i32, i64)>,
}

/// ConsumerGroupDescribe v1's member type of a member using the classic protocol.
const CLASSIC_MEMBER_TYPE: i8 = 0;
/// ConsumerGroupDescribe v1's member type of a member using the consumer protocol.
const CONSUMER_MEMBER_TYPE: i8 = 1;

/// One consumer group.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub(super) group_id: String,
    /// The hard state.
    pub(super) data: GroupData,
    /// Member id -> its timers.
    pub(super) timers: BTreeMap<String, MemberTimers>,
    /// The topics version the regular expressions were last resolved at.
    pub(super) regexes_resolved_at: Option<i64>,
}

/// A member's assignment or target in ConsumerGroupDescribe: one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedAssignment {
    /// The topic id.
    pub(crate) topic_id: TopicId,
    /// The topic name.
    pub(crate) topic_name: String,
    /// The partitions, ascending.
    pub(crate) partitions: Vec<i32>,
}

/// A member in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedMember {
    /// The member id.
    pub(crate) member_id: String,
    /// The static member's instance id.
    pub(crate) instance_id: Option<String>,
    /// The member's rack.
    pub(crate) rack_id: Option<String>,
    /// The member's epoch.
    pub(crate) member_epoch: i32,
    /// The client id of its last heartbeat.
    pub(crate) client_id: String,
    /// The client address of its last heartbeat.
    pub(crate) client_host: String,
    /// The topics it subscribes to by name, sorted.
    pub(crate) subscribed_topic_names: Vec<String>,
    /// The stored expression ("" when none, as Kafka answers).
    pub(crate) subscribed_topic_regex: Option<String>,
    /// The partitions it has.
    pub(crate) assignment: Vec<DescribedAssignment>,
    /// The partitions the target assignment gives it.
    pub(crate) target_assignment: Vec<DescribedAssignment>,
    /// ConsumerGroupDescribe v1's member type: 0 for a classic-protocol member, 1 for a consumer-protocol one.
    pub(crate) member_type: i8,
}

/// A group in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedGroup {
    /// The group id.
    pub(crate) group_id: String,
    /// The state's name.
    pub(crate) group_state: &'static str,
    /// The group epoch.
    pub(crate) group_epoch: i32,
    /// The target assignment's epoch.
    pub(crate) assignment_epoch: i32,
    /// The server assignor the group uses.
    pub(crate) assignor_name: String,
    /// The members, by member id.
    pub(crate) members: Vec<DescribedMember>,
}

impl ConsumerGroup {
    /// A group with no records yet (it does not exist until one is replayed or generated).
    pub(crate) fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_owned(),
            data: GroupData::new(),
            timers: BTreeMap::new(),
            regexes_resolved_at: None,
        }
    }

    /// The group id.
    pub(crate) fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Whether the group does not exist in the log (never written, or deleted): the coordinator
    /// drops such a group.
    pub(crate) fn is_deleted(&self) -> bool {
        !self.data.exists
    }

    /// The group epoch.
    pub(crate) fn group_epoch(&self) -> i32 {
        self.data.group_epoch
    }

    /// The target assignment's epoch.
    pub(crate) fn assignment_epoch(&self) -> i32 {
        self.data.assignment_epoch
    }

    /// The hash of the subscribed topics' metadata at the last epoch bump.
    pub(crate) fn metadata_hash(&self) -> i64 {
        self.data.metadata_hash
    }

    /// The members, by id.
    pub(crate) fn members(&self) -> &BTreeMap<String, ConsumerGroupMember> {
        &self.data.members
    }

    /// One member.
    pub(crate) fn member(&self, member_id: &str) -> Option<&ConsumerGroupMember> {
        self.data.members.get(member_id)
    }

    /// The member with this `group.instance.id`.
    pub(crate) fn static_member(&self, instance_id: &str) -> Option<&ConsumerGroupMember> {
        self.data.static_members.get(instance_id).and_then(|member_id| self.data.members.get(member_id))
    }

    /// A member's target assignment.
    pub(crate) fn target(&self, member_id: &str) -> Option<&Assignment> {
        self.data.targets.get(member_id)
    }

    /// The topics a regular expression resolved to, if it is resolved.
    pub(crate) fn resolved_regex(&self, regex: &str) -> Option<&BTreeSet<String>> {
        self.data.resolved_regexes.get(regex).map(|resolved| &resolved.topics)
    }

    /// The epoch at which a partition is held (assigned or being revoked), if it is.
    pub(crate) fn partition_epoch(&self, topic_id: TopicId, partition: i32) -> Option<i32> {
        self.data.partition_epochs.get(&(topic_id, partition)).copied()
    }

    /// The group's state.
    pub(crate) fn state(&self) -> ConsumerGroupState {
        let data = &self.data;
        if !data.exists {
            ConsumerGroupState::Dead
        } else if data.members.is_empty() {
            ConsumerGroupState::Empty
        } else if data.group_epoch > data.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if data.members.values().any(|member| !member.assignment.is_reconciled_to(data.assignment_epoch)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The hard state, for comparing a live group with one rebuilt from its records.
    pub(crate) fn data(&self) -> &GroupData {
        &self.data
    }

    /// The assignor the members prefer: the one most of them name (ties to the smaller name),
    /// or the configured default. A name not configured any more falls back to the default.
    pub(crate) fn preferred_assignor(&self, config: &ConsumerGroupConfig) -> ServerAssignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.data.members.values() {
            if let Some(name) = member.server_assignor.as_deref() {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        votes
            .iter()
            .find(|(_, count)| **count == best)
            .and_then(|(name, _)| config.assignor(name))
            .unwrap_or_else(|| config.default_assignor())
    }

    /// Whether a member subscribes to `topic`, by name or through a resolved regular expression
    /// (Kafka's `isSubscribedToTopic`: its offsets neither expire nor may be deleted).
    pub(crate) fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.data.subscribed_topic_counts.contains_key(topic)
    }

    /// The existing topics a member subscribes to, by name or through its regular expression.
    pub(crate) fn subscribed_topic_ids(&self, member: &ConsumerGroupMember, topics: &TopicsImage) -> BTreeSet<TopicId> {
        let through_regex = member
            .regex()
            .and_then(|regex| self.data.resolved_regexes.get(regex))
            .into_iter()
            .flat_map(|resolved| resolved.topics.iter());
        member
            .subscribed_topic_names
            .iter()
            .chain(through_regex)
            .filter_map(|name| topics.by_name(name))
            .map(|topic| topic.id)
            .collect()
    }

    /// The data of ConsumerGroupDescribe. Topics missing from `topics` are left out, as Kafka
    /// does.
    pub(crate) fn describe(&self, topics: &TopicsImage, config: &ConsumerGroupConfig) -> DescribedGroup {
        let described = |assignment: &Assignment| -> Vec<DescribedAssignment> {
            assignment
                .topics()
                .filter_map(|(topic_id, partitions)| {
                    topics.by_id(topic_id).map(|topic| DescribedAssignment {
                        topic_id,
                        topic_name: topic.name.clone(),
                        partitions: partitions.iter().copied().collect(),
                    })
                })
                .collect()
        };
        let empty = Assignment::new();
        let members = self
            .data
            .members
            .values()
            .map(|member| DescribedMember {
                member_id: member.member_id.clone(),
                instance_id: member.instance_id.clone(),
                rack_id: member.rack_id.clone(),
                member_epoch: member.member_epoch(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                subscribed_topic_names: member.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: Some(member.subscribed_topic_regex.clone()),
                assignment: described(&member.assignment.assigned),
                target_assignment: described(self.data.targets.get(&member.member_id).unwrap_or(&empty)),
                member_type: if member.uses_classic_protocol() { CLASSIC_MEMBER_TYPE } else { CONSUMER_MEMBER_TYPE },
            })
            .collect();
        DescribedGroup {
            group_id: self.group_id.clone(),
            group_state: self.state().name(),
            group_epoch: self.data.group_epoch,
            assignment_epoch: self.data.assignment_epoch,
            assignor_name: self.preferred_assignor(config).name().to_owned(),
            members,
        }
    }

    /// Checks an OffsetCommit (or TxnOffsetCommit) against the group, as Kafka does: a commit
    /// with a negative epoch (admin tools, consumers without group management) is accepted only
    /// while the group has no members; otherwise the member must exist and send its current
    /// epoch.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH, or UNSUPPORTED_VERSION for a non-transactional
    /// commit below OffsetCommit v9 (members of this protocol must use v9+).
    pub(crate) fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        transactional: bool,
        api_version: i16,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.data.members.is_empty() {
            return Ok(());
        }
        let member = self.data.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if !transactional && !member.uses_classic_protocol() && api_version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        check_epoch(member, member_epoch)
    }

    /// Checks an OffsetFetch that names a member (OffsetFetch v9+), as Kafka does: a request
    /// without a member id and with a negative epoch is always accepted.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID or STALE_MEMBER_EPOCH.
    pub(crate) fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            return if member_epoch < 0 { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        };
        let member = self.data.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        check_epoch(member, member_epoch)
    }

    /// Checks a DeleteGroups: only an empty group may be deleted.
    ///
    /// # Errors
    /// NON_EMPTY_GROUP.
    pub(crate) fn validate_delete(&self) -> Result<(), ResponseError> {
        match self.state() {
            ConsumerGroupState::Empty | ConsumerGroupState::Dead => Ok(()),
            ConsumerGroupState::Assigning | ConsumerGroupState::Reconciling | ConsumerGroupState::Stable => {
                Err(ResponseError::NonEmptyGroup)
            }
        }
    }

    /// The tombstones deleting the group (Kafka's order), to write after
    /// [`ConsumerGroup::validate_delete`]. Replaying them leaves the group deleted.
    pub(crate) fn delete_records(&self) -> Vec<ConsumerGroupRecord> {
        let group_id = self.group_id.as_str();
        let mut records = Vec::new();
        for member_id in self.data.members.keys() {
            records.push(ConsumerGroupRecord::current_assignment(group_id, member_id, None));
        }
        for member_id in self.data.members.keys().chain(self.data.targets.keys()).collect::<BTreeSet<_>>() {
            records.push(ConsumerGroupRecord::target_assignment(group_id, member_id, None));
        }
        records.push(ConsumerGroupRecord::target_assignment_epoch(group_id, None));
        for member_id in self.data.members.keys() {
            records.push(ConsumerGroupRecord::member_metadata(group_id, member_id, None));
        }
        for regex in self.data.resolved_regexes.keys() {
            records.push(ConsumerGroupRecord::regular_expression(group_id, regex, None));
        }
        records.push(ConsumerGroupRecord::partition_metadata_tombstone(group_id));
        records.push(ConsumerGroupRecord::epoch_tombstone(group_id));
        records
    }

    /// Applies one record of the group's log: at load in log order, and by the operations to
    /// the records they generate. Tombstones for state the group does not have are ignored, as
    /// Kafka does.
    ///
    /// # Errors
    /// The log is inconsistent (see [`ReplayError`]); the group is unchanged.
    pub(crate) fn replay(&mut self, record: &ConsumerGroupRecord) -> Result<(), ReplayError> {
        if record.group_id() != self.group_id {
            return Err(ReplayError::WrongGroup {
                group: self.group_id.clone(),
                record_group: record.group_id().to_owned(),
            });
        }
        if !self.data.exists {
            if record.is_tombstone() {
                return Ok(());
            }
            self.data = GroupData::new();
            self.data.exists = true;
        }
        match record {
            ConsumerGroupRecord::Metadata(_, Some(value)) => {
                self.data.group_epoch = value.epoch;
                self.data.metadata_hash = value.metadata_hash;
            }
            ConsumerGroupRecord::Metadata(_, None) => self.delete()?,
            ConsumerGroupRecord::PartitionMetadata(_, value) => {
                self.data.has_partition_metadata_record = value.is_some();
            }
            ConsumerGroupRecord::MemberMetadata(key, Some(value)) => {
                let mut member = self
                    .data
                    .members
                    .get(&key.member_id)
                    .cloned()
                    .unwrap_or_else(|| ConsumerGroupMember::new(&key.member_id));
                self.unsubscribe(&member);
                member.apply_metadata(value);
                self.subscribe(&member);
                if let Some(instance_id) = &member.instance_id {
                    self.data.static_members.insert(instance_id.clone(), member.member_id.clone());
                }
                self.data.members.insert(key.member_id.clone(), member);
            }
            ConsumerGroupRecord::MemberMetadata(key, None) => self.remove_member(&key.member_id)?,
            ConsumerGroupRecord::TargetAssignmentMetadata(_, Some(value)) => {
                self.data.assignment_epoch = value.assignment_epoch;
            }
            ConsumerGroupRecord::TargetAssignmentMetadata(_, None) => {
                if !self.data.targets.is_empty() {
                    return Err(ReplayError::TargetsNotEmpty { group: self.group_id.clone() });
                }
                self.data.assignment_epoch = -1;
            }
            ConsumerGroupRecord::TargetAssignmentMember(key, value) => match value {
                Some(value) => {
                    let target = Assignment::from_topic_partitions(&value.topic_partitions);
                    self.data.targets.insert(key.member_id.clone(), target);
                }
                None => {
                    self.data.targets.remove(&key.member_id);
                }
            },
            ConsumerGroupRecord::CurrentMemberAssignment(key, value) => {
                if value.is_none() && !self.data.members.contains_key(&key.member_id) {
                    return Ok(());
                }
                let assignment = ConsumerGroupMember::assignment_from_value(value.as_ref());
                self.set_assignment(&key.member_id, assignment)?;
            }
            ConsumerGroupRecord::RegularExpression(key, value) => {
                self.set_regex(&key.regular_expression, value.as_ref());
            }
        }
        Ok(())
    }

    /// The group epoch tombstone: the group must be empty by now.
    fn delete(&mut self) -> Result<(), ReplayError> {
        let data = &self.data;
        if !data.members.is_empty() || !data.targets.is_empty() || data.assignment_epoch != -1 {
            return Err(ReplayError::GroupNotEmpty { group: self.group_id.clone() });
        }
        self.data = GroupData::new();
        self.timers.clear();
        self.regexes_resolved_at = None;
        Ok(())
    }

    /// The member metadata tombstone: the member's assignment and target are gone by now.
    fn remove_member(&mut self, member_id: &str) -> Result<(), ReplayError> {
        let Some(member) = self.data.members.get(member_id) else { return Ok(()) };
        if member.member_epoch() != super::LEAVE_GROUP_MEMBER_EPOCH || self.data.targets.contains_key(member_id) {
            return Err(ReplayError::MemberStillAssigned {
                group: self.group_id.clone(),
                member_id: member_id.to_owned(),
            });
        }
        let member = self.data.members.remove(member_id).expect("found above");
        self.unsubscribe(&member);
        if let Some(instance_id) = &member.instance_id
            && self.data.static_members.get(instance_id).is_some_and(|owner| owner == member_id)
        {
            self.data.static_members.remove(instance_id);
        }
        self.timers.remove(member_id);
        Ok(())
    }

    /// Replaces a member's assignment state (creating the member if needed) and moves its
    /// partition epochs, refusing a partition held by another member.
    fn set_assignment(&mut self, member_id: &str, assignment: MemberAssignment) -> Result<(), ReplayError> {
        let previous = self.data.members.get(member_id).map(|member| member.assignment.clone());
        let released: BTreeSet<(TopicId, i32)> = previous
            .iter()
            .flat_map(|previous| previous.assigned.iter().chain(previous.pending_revocation.iter()))
            .collect();
        let conflict = |topic_id, partition, held, expected| ReplayError::PartitionEpochConflict {
            group: self.group_id.clone(),
            topic_id,
            partition,
            held,
            expected,
        };
        // Check everything first, so that a refused record leaves the group unchanged.
        if let Some(previous) = &previous {
            for (topic_id, partition) in &released {
                let held = self.data.partition_epochs.get(&(*topic_id, *partition)).copied();
                if held != Some(previous.member_epoch) {
                    return Err(conflict(*topic_id, *partition, held, Some(previous.member_epoch)));
                }
            }
        }
        for (topic_id, partition) in assignment.assigned.iter().chain(assignment.pending_revocation.iter()) {
            let held = self.data.partition_epochs.get(&(topic_id, partition)).copied();
            if held.is_some() && !released.contains(&(topic_id, partition)) {
                return Err(conflict(topic_id, partition, held, None));
            }
        }
        if assignment.assigned.intersects(&assignment.pending_revocation) {
            let (topic_id, partition) = assignment
                .assigned
                .iter()
                .find(|(topic_id, partition)| assignment.pending_revocation.contains(*topic_id, *partition))
                .expect("they intersect");
            return Err(conflict(topic_id, partition, Some(assignment.member_epoch), None));
        }
        for partition in &released {
            self.data.partition_epochs.remove(partition);
        }
        for partition in assignment.assigned.iter().chain(assignment.pending_revocation.iter()) {
            self.data.partition_epochs.insert(partition, assignment.member_epoch);
        }
        let member =
            self.data.members.entry(member_id.to_owned()).or_insert_with(|| ConsumerGroupMember::new(member_id));
        member.assignment = assignment;
        Ok(())
    }

    /// Records (or forgets) the topics a regular expression matched.
    fn set_regex(&mut self, regex: &str, value: Option<&ConsumerGroupRegularExpressionValue>) {
        if let Some(previous) = self.data.resolved_regexes.remove(regex) {
            for topic in &previous.topics {
                decrement(&mut self.data.subscribed_topic_counts, topic);
            }
        }
        if let Some(value) = value {
            let resolved = ResolvedRegex {
                topics: value.topics.iter().cloned().collect(),
                version: value.version,
                timestamp_ms: value.timestamp,
            };
            for topic in &resolved.topics {
                *self.data.subscribed_topic_counts.entry(topic.clone()).or_default() += 1;
            }
            self.data.resolved_regexes.insert(regex.to_owned(), resolved);
        }
    }

    /// Counts a member's subscriptions.
    fn subscribe(&mut self, member: &ConsumerGroupMember) {
        for topic in &member.subscribed_topic_names {
            *self.data.subscribed_topic_counts.entry(topic.clone()).or_default() += 1;
        }
        if let Some(regex) = member.regex() {
            *self.data.regex_subscribers.entry(regex.to_owned()).or_default() += 1;
        }
    }

    /// Uncounts a member's subscriptions.
    fn unsubscribe(&mut self, member: &ConsumerGroupMember) {
        for topic in &member.subscribed_topic_names {
            decrement(&mut self.data.subscribed_topic_counts, topic);
        }
        if let Some(regex) = member.regex() {
            decrement(&mut self.data.regex_subscribers, regex);
        }
    }
}

/// Lowers a count, forgetting it at zero.
/// An offset request's epoch against the member's: STALE_MEMBER_EPOCH for a consumer-protocol
/// member, ILLEGAL_GENERATION for a classic one (whose generation is its epoch), as Kafka answers.
fn check_epoch(member: &ConsumerGroupMember, member_epoch: i32) -> Result<(), ResponseError> {
    if member_epoch == member.member_epoch() {
        Ok(())
    } else if member.uses_classic_protocol() {
        Err(ResponseError::IllegalGeneration)
    } else {
        Err(ResponseError::StaleMemberEpoch)
    }
}

fn decrement(counts: &mut BTreeMap<String, usize>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}
