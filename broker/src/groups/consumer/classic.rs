//! Classic-protocol members inside a consumer group (KIP-848's online migration), as Kafka 4.x's
//! `GroupMetadataManager` serves them:
//! - **Upgrade.** [`ConsumerGroup::from_classic`] turns a classic group whose members all use the
//!   `consumer` protocol type into a consumer group: each classic member becomes a member at
//!   epoch = the classic generation, Stable, with its last assignment as both its current and
//!   its target assignment, and its classic metadata (protocols, session timeout) kept. The
//!   records are Kafka's `createConsumerGroupRecords`: every member's metadata, the group epoch,
//!   every target assignment, the assignment epoch, every current assignment.
//! - **JoinGroup** ([`ConsumerGroup::classic_join`]): the member's subscription (from the
//!   embedded ConsumerProtocolSubscription) updates its metadata like a heartbeat's; the target
//!   assignment is computed when the group epoch moved; the member is reconciled with the owned
//!   partitions its subscription lists. It answers at once with generation = member epoch and
//!   the member's first protocol; it is never the leader (the server assigns).
//! - **SyncGroup** ([`ConsumerGroup::classic_sync`]) hands out the member's current assigned
//!   partitions as a ConsumerProtocolAssignment, or REBALANCE_IN_PROGRESS when the group epoch
//!   moved past the member's (unless it is revoking).
//! - **Heartbeat** ([`ConsumerGroup::classic_heartbeat`]) keeps the session and answers
//!   REBALANCE_IN_PROGRESS when the member must rejoin: the group epoch moved, it must revoke
//!   partitions, or partitions it waited for were released.
//! - **LeaveGroup** ([`ConsumerGroup::classic_leave`]) removes members and bumps the epoch once.
//! - **Downgrade.** [`ConsumerGroup::only_classic_members_after`] (for a leave) and
//!   [`ConsumerGroup::expiring_last_consumer_member`] (for an expiry) say whether the departure
//!   of the last consumer-protocol member turns the group back into a classic one;
//!   [`ConsumerGroup::downgrade`] gives the classic members with their assignments serialized,
//!   and the consumer group's tombstones.
//!
//! Touched only by the group's coordinator shard thread.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::group::{ConsumerGroup, MemberTimers};
use super::heartbeat::{ClientInfo, Context};
use super::member::ConsumerGroupMember;
use super::reconcile::MemberState;
use super::records::{ClassicMemberMetadata, ClassicProtocol, ConsumerGroupRecord, TopicPartitions};
use super::topics::TopicsImage;
use super::{Assignment, Refusal};

/// The protocol type of consumers (the only one a consumer group takes classic members of).
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The highest ConsumerProtocol version this crate writes and reads.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// One member of a classic group, as the upgrade needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicGroupMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// Its protocols (name and ConsumerProtocolSubscription), in its order of preference.
    pub(crate) protocols: Vec<ClassicProtocol>,
    /// Its last assignment (a ConsumerProtocolAssignment), empty before its first SyncGroup.
    pub(crate) assignment: Bytes,
}

/// A classic group, as the upgrade or the downgrade sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicGroupSnapshot {
    /// The generation (the consumer group's epoch on the way back).
    pub(crate) generation_id: i32,
    /// The selected protocol.
    pub(crate) protocol_name: Option<String>,
    pub(crate) members: Vec<ClassicGroupMember>,
}

/// A JoinGroup from a classic member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicJoinRequest {
    /// Empty for a member without an id yet.
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<ClassicProtocol>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED with its id.
    pub(crate) require_known_member_id: bool,
}

/// The JoinGroup answer to a classic member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClassicJoin {
    /// MEMBER_ID_REQUIRED, with the id to rejoin with (nothing changed).
    MemberIdRequired(String),
    /// Joined: the member's id, generation (its epoch) and protocol, and the records to write.
    Joined { member_id: String, generation_id: i32, protocol_name: String, records: Vec<ConsumerGroupRecord> },
}

/// The SyncGroup answer to a classic member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicSync {
    pub(crate) protocol_name: String,
    /// The member's assigned partitions, as a ConsumerProtocolAssignment.
    pub(crate) assignment: Bytes,
}

/// The ConsumerProtocol version a protocol's metadata starts with (0 when unreadable).
fn protocol_version(metadata: &[u8]) -> i16 {
    if metadata.len() < 2 { 0 } else { i16::from_be_bytes([metadata[0], metadata[1]]) }
}

/// Decodes a ConsumerProtocolSubscription (version prefix, then the body).
fn decode_subscription(metadata: &Bytes) -> Option<ConsumerProtocolSubscription> {
    let mut body = metadata.clone();
    if body.len() < 2 {
        return None;
    }
    let version = body.get_i16().clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    ConsumerProtocolSubscription::decode(&mut body, version).ok()
}

/// Decodes a ConsumerProtocolAssignment into partitions of the topics the image knows; an
/// empty one (a member that has not synced) assigns nothing.
fn decode_assignment(bytes: &Bytes, topics: &TopicsImage) -> Option<Assignment> {
    if bytes.is_empty() {
        return Some(Assignment::new());
    }
    let mut body = bytes.clone();
    if body.len() < 2 {
        return None;
    }
    let version = body.get_i16().clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    let decoded = ConsumerProtocolAssignment::decode(&mut body, version).ok()?;
    Some(by_topic_id(decoded.assigned_partitions.iter().map(|topic| (topic.topic.as_str(), &topic.partitions)), topics))
}

/// Partitions by topic name as an assignment of the topics the image knows.
fn by_topic_id<'a>(named: impl Iterator<Item = (&'a str, &'a Vec<i32>)>, topics: &TopicsImage) -> Assignment {
    let mut assignment = Assignment::new();
    for (name, partitions) in named {
        if let Some(topic) = topics.by_name(name) {
            for partition in partitions {
                assignment.insert(topic.id, *partition);
            }
        }
    }
    assignment
}

/// Serializes an assignment as a ConsumerProtocolAssignment of `version` (Kafka's
/// `prepareAssignment`): topics the image no longer knows are left out.
pub(crate) fn encode_assignment(assignment: &Assignment, topics: &TopicsImage, version: i16) -> Bytes {
    let version = version.clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    let assigned_partitions = assignment
        .topics()
        .filter_map(|(topic_id, partitions)| {
            let topic = topics.by_id(topic_id)?;
            Some(
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_partitions(partitions.iter().copied().collect()),
            )
        })
        .collect();
    let decoded = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned_partitions);
    let mut out = BytesMut::new();
    out.put_i16(version);
    decoded.encode(&mut out, version).expect("a consumer protocol assignment encodes");
    out.freeze()
}

/// Kafka's refusal of an upgrade whose embedded protocol does not parse.
fn malformed(group_id: &str) -> Refusal {
    Refusal::new(
        ResponseError::GroupIdNotFound,
        format!(
            "Cannot upgrade the classic group {group_id} to consumer group because the embedded consumer protocol \
             is malformed."
        ),
    )
}

impl ConsumerGroup {
    /// The consumer group a classic group becomes (Kafka's `ConsumerGroup.fromClassicGroup` and
    /// `createConsumerGroupRecords`), with the records that store it. The caller checked the
    /// migration policy, the protocol type of every member and the group size.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND when a member's subscription or assignment does not parse, or two
    /// members claim one partition.
    pub(crate) fn from_classic(
        group_id: &str,
        classic: &ClassicGroupSnapshot,
        context: &Context<'_>,
    ) -> Result<(Self, Vec<ConsumerGroupRecord>), Refusal> {
        let epoch = classic.generation_id;
        let mut members = Vec::new();
        for classic_member in &classic.members {
            let protocol = classic.protocol_name.as_deref();
            let metadata = protocol
                .and_then(|name| classic_member.protocols.iter().find(|candidate| candidate.name == name))
                .or_else(|| classic_member.protocols.first())
                .map(|found| found.metadata.clone())
                .unwrap_or_default();
            let subscription = decode_subscription(&metadata).ok_or_else(|| malformed(group_id))?;
            let assigned =
                decode_assignment(&classic_member.assignment, context.topics).ok_or_else(|| malformed(group_id))?;
            let mut member = ConsumerGroupMember::new(&classic_member.member_id);
            member.instance_id.clone_from(&classic_member.instance_id);
            member.rack_id = subscription.rack_id.as_ref().map(ToString::to_string);
            member.client_id.clone_from(&classic_member.client_id);
            member.client_host.clone_from(&classic_member.client_host);
            member.subscribed_topic_names = subscription.topics.iter().map(ToString::to_string).collect();
            member.rebalance_timeout_ms = classic_member.rebalance_timeout_ms;
            member.classic = Some(ClassicMemberMetadata {
                session_timeout_ms: classic_member.session_timeout_ms,
                supported_protocols: classic_member.protocols.clone(),
            });
            member.assignment.member_epoch = epoch;
            member.assignment.previous_member_epoch = epoch;
            member.assignment.state = MemberState::Stable;
            member.assignment.assigned = assigned;
            members.push(member);
        }
        let mut group = Self::new(group_id);
        let mut records = Vec::new();
        let mut emit = |group: &mut Self, record: ConsumerGroupRecord| -> Result<(), Refusal> {
            group.replay(&record).map_err(|error| {
                tracing::warn!(group = group_id, %error, "a classic group cannot become a consumer group");
                malformed(group_id)
            })?;
            records.push(record);
            Ok(())
        };
        for member in &members {
            emit(
                &mut group,
                ConsumerGroupRecord::member_metadata(group_id, &member.member_id, Some(member.to_metadata_value())),
            )?;
        }
        let hash = context.topics.metadata_hash(group.data.subscribed_topic_counts.keys().map(String::as_str));
        emit(&mut group, ConsumerGroupRecord::epoch(group_id, epoch, hash))?;
        for member in &members {
            let target = Some(member.assignment.assigned.to_topic_partitions());
            emit(&mut group, ConsumerGroupRecord::target_assignment(group_id, &member.member_id, target))?;
        }
        emit(&mut group, ConsumerGroupRecord::target_assignment_epoch(group_id, Some(epoch)))?;
        for member in &members {
            let value = Some(member.to_assignment_value());
            emit(&mut group, ConsumerGroupRecord::current_assignment(group_id, &member.member_id, value))?;
        }
        for (member, classic_member) in members.iter().zip(&classic.members) {
            let session_deadline_ms = context.now_ms + i64::from(classic_member.session_timeout_ms);
            group.timers.insert(member.member_id.clone(), MemberTimers { session_deadline_ms, rebalance: None });
        }
        Ok((group, records))
    }

    /// Whether a classic member offering `protocols` of `protocol_type` may join (Kafka's
    /// `supportsClassicProtocols`): consumer protocol type, and one protocol every other classic
    /// member supports too.
    fn supports_classic_protocols(&self, member_id: &str, protocol_type: &str, protocols: &[ClassicProtocol]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        let others: Vec<&ClassicMemberMetadata> = self
            .data
            .members
            .values()
            .filter(|member| member.member_id != member_id)
            .filter_map(|member| member.classic.as_ref())
            .collect();
        protocols.iter().any(|protocol| {
            others.iter().all(|other| other.supported_protocols.iter().any(|theirs| theirs.name == protocol.name))
        })
    }

    /// Handles a JoinGroup from a classic member (Kafka's `classicGroupJoinToConsumerGroup`).
    /// `new_member_id` names a member joining without an id; it is called at most once.
    ///
    /// # Errors
    /// GROUP_MAX_SIZE_REACHED, INCONSISTENT_GROUP_PROTOCOL, FENCED_INSTANCE_ID; the group is
    /// then unchanged.
    pub(crate) fn classic_join(
        &mut self,
        request: &ClassicJoinRequest,
        client: &ClientInfo,
        context: &Context<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<ClassicJoin, ResponseError> {
        let unknown = request.member_id.is_empty();
        let member_id = if unknown { new_member_id() } else { request.member_id.clone() };
        let size_max = usize::try_from(context.config.group_size_max).unwrap_or(usize::MAX);
        if !self.data.members.contains_key(&member_id) && self.data.members.len() >= size_max {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        if !self.supports_classic_protocols(&member_id, &request.protocol_type, &request.protocols) {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if unknown && request.instance_id.is_none() && request.require_known_member_id {
            tracing::info!(group = %self.group_id, member = %member_id, "classic member needs a member id to join the consumer group");
            return Ok(ClassicJoin::MemberIdRequired(member_id));
        }
        let subscription =
            decode_subscription(&request.protocols[0].metadata).ok_or(ResponseError::InconsistentGroupProtocol)?;

        // The member: a known one, a static member's new incarnation, or a new one.
        let mut replaces = None;
        let member = match &request.instance_id {
            Some(instance_id) => match self.static_member(instance_id) {
                Some(existing) if existing.member_id == member_id => existing.clone(),
                Some(existing) if unknown => {
                    replaces = Some(existing.member_id.clone());
                    ConsumerGroupMember::new(&member_id)
                }
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => {
                    self.data.members.get(&member_id).cloned().unwrap_or_else(|| ConsumerGroupMember::new(&member_id))
                }
            },
            None => self.data.members.get(&member_id).cloned().unwrap_or_else(|| ConsumerGroupMember::new(&member_id)),
        };
        let mut updated = member.clone();
        updated.instance_id.clone_from(&request.instance_id);
        if let Some(rack_id) = &subscription.rack_id {
            updated.rack_id = Some(rack_id.to_string());
        }
        if request.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        updated.subscribed_topic_names = subscription.topics.iter().map(ToString::to_string).collect();
        updated.client_id.clone_from(&client.client_id);
        updated.client_host.clone_from(&client.client_host);
        updated.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: request.session_timeout_ms,
            supported_protocols: request.protocols.clone(),
        });

        // The member and the group epoch.
        let mut records = Vec::new();
        let group_id = self.group_id.clone();
        if let Some(previous) = &replaces {
            tracing::info!(group = %group_id, member = %member_id, previous = %previous, "static classic member replaces its previous incarnation");
            self.remove_member_records(&mut records, previous);
        }
        let is_new = replaces.is_some() || !self.data.members.contains_key(&member_id);
        if is_new {
            tracing::info!(group = %group_id, member = %member_id, "classic member joins the consumer group");
        }
        let names_changed = is_new || updated.subscribed_topic_names != member.subscribed_topic_names;
        if is_new || !updated.same_metadata(&member) {
            let metadata = Some(updated.to_metadata_value());
            self.emit(&mut records, ConsumerGroupRecord::member_metadata(&group_id, &member_id, metadata));
        }
        let bump = self.data.group_epoch == 0 || names_changed || replaces.is_some();
        self.update_subscription_metadata(&mut records, bump, context.topics);

        // The target assignment, and the member's reconciliation with what it says it owns.
        if self.data.group_epoch > self.data.assignment_epoch {
            self.update_target_assignment(&mut records, context);
        }
        let owned: Vec<TopicPartitions> = by_topic_id(
            subscription.owned_partitions.iter().map(|topic| (topic.topic.as_str(), &topic.partitions)),
            context.topics,
        )
        .to_topic_partitions();
        self.maybe_reconcile(&mut records, &member_id, names_changed, Some(&owned), context);
        let session_deadline_ms = context.now_ms + i64::from(request.session_timeout_ms);
        self.timers
            .entry(member_id.clone())
            .or_insert(MemberTimers { session_deadline_ms, rebalance: None })
            .session_deadline_ms = session_deadline_ms;
        let joined = &self.data.members[&member_id];
        Ok(ClassicJoin::Joined {
            member_id: member_id.clone(),
            generation_id: joined.member_epoch(),
            protocol_name: request.protocols[0].name.clone(),
            records,
        })
    }

    /// The classic member a SyncGroup, Heartbeat or LeaveGroup names (Kafka's
    /// `validateConsumerGroupMember` and `throwIfMemberDoesNotUseClassicProtocol`).
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerGroupMember, ResponseError> {
        let member = match instance_id {
            None => self.data.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?,
            Some(instance_id) => {
                let member = self.static_member(instance_id).ok_or(ResponseError::UnknownMemberId)?;
                if member.member_id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                member
            }
        };
        if !member.uses_classic_protocol() {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(member)
    }

    /// Restarts a classic member's session.
    fn touch_classic(&mut self, member_id: &str, now_ms: i64) {
        let Some(member) = self.data.members.get(member_id) else { return };
        let session_deadline_ms = now_ms + i64::from(member.session_timeout_ms(0));
        self.timers
            .entry(member_id.to_owned())
            .or_insert(MemberTimers { session_deadline_ms, rebalance: None })
            .session_deadline_ms = session_deadline_ms;
    }

    /// Handles a SyncGroup from a classic member (Kafka's `classicGroupSyncToConsumerGroup`):
    /// nothing is written; the answer waits for the group's earlier writes.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL,
    /// REBALANCE_IN_PROGRESS.
    pub(crate) fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        protocol: (Option<&str>, Option<&str>),
        context: &Context<'_>,
    ) -> Result<ClassicSync, ResponseError> {
        let member = self.classic_member(member_id, instance_id)?;
        if member.member_epoch() != generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let first = member.classic.as_ref().and_then(|classic| classic.supported_protocols.first());
        let protocol_name = first.map(|first| first.name.clone()).unwrap_or_default();
        let (protocol_type, requested_name) = protocol;
        if protocol_type.is_some_and(|protocol_type| protocol_type != CONSUMER_PROTOCOL_TYPE)
            || requested_name.is_some_and(|name| name != protocol_name)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if self.data.group_epoch > member.member_epoch() && member.assignment.state != MemberState::UnrevokedPartitions
        {
            return Err(ResponseError::RebalanceInProgress);
        }
        let version = first.map_or(0, |first| protocol_version(&first.metadata));
        let assignment = encode_assignment(&member.assignment.assigned, context.topics, version);
        self.touch_classic(member_id, context.now_ms);
        Ok(ClassicSync { protocol_name, assignment })
    }

    /// Handles a Heartbeat from a classic member (Kafka's
    /// `classicGroupHeartbeatToConsumerGroup`): nothing is written.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION; REBALANCE_IN_PROGRESS (with
    /// the session kept) when the member must rejoin.
    pub(crate) fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let member = self.classic_member(member_id, instance_id)?;
        if member.member_epoch() != generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let rejoin = member.member_epoch() < self.data.group_epoch
            || member.assignment.state == MemberState::UnrevokedPartitions
            || (member.assignment.state == MemberState::UnreleasedPartitions && !self.waits_on_unreleased(member));
        let member_id = member.member_id.clone();
        self.touch_classic(&member_id, now_ms);
        if rejoin { Err(ResponseError::RebalanceInProgress) } else { Ok(()) }
    }

    /// Whether some partition of the member's target is still held by another member.
    fn waits_on_unreleased(&self, member: &ConsumerGroupMember) -> bool {
        let Some(target) = self.data.targets.get(&member.member_id) else { return false };
        target.iter().any(|(topic_id, partition)| {
            !member.assignment.assigned.contains(topic_id, partition)
                && self.data.partition_epochs.contains_key(&(topic_id, partition))
        })
    }

    /// Handles a LeaveGroup naming classic members of this group (Kafka's
    /// `classicGroupLeaveToConsumerGroup`): one result per member (with the member id of a static
    /// member named by instance id), and the records: each member's tombstones, then one epoch
    /// bump.
    pub(crate) fn classic_leave(
        &mut self,
        members: &[(String, Option<String>)],
        topics: &TopicsImage,
    ) -> (Vec<Result<String, ResponseError>>, Vec<ConsumerGroupRecord>) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (member_id, instance_id) in members {
            let found = match instance_id {
                None => self.classic_member(member_id, None).map(|member| member.member_id.clone()),
                Some(instance_id) => match self.static_member(instance_id) {
                    None => Err(ResponseError::UnknownMemberId),
                    Some(member) if !member_id.is_empty() && member.member_id != *member_id => {
                        Err(ResponseError::FencedInstanceId)
                    }
                    Some(member) if !member.uses_classic_protocol() => Err(ResponseError::UnknownMemberId),
                    Some(member) => Ok(member.member_id.clone()),
                },
            };
            if let Ok(found) = &found {
                tracing::info!(group = %self.group_id, member = %found, "classic member left the consumer group");
                self.remove_member_records(&mut records, found);
                self.timers.remove(found);
            }
            results.push(found);
        }
        if !records.is_empty() {
            let hash = topics.metadata_hash(self.data.subscribed_topic_counts.keys().map(String::as_str));
            let epoch = self.data.group_epoch + 1;
            self.emit(&mut records, ConsumerGroupRecord::epoch(&self.group_id.clone(), epoch, hash));
        }
        (results, records)
    }

    /// Whether removing `leaving_member_id` leaves only classic members (and at least one), so
    /// that the group turns back into a classic group (Kafka's `validateOnlineDowngrade`, less
    /// the policy and size checks the caller makes).
    pub(crate) fn only_classic_members_after(&self, leaving_member_id: &str) -> bool {
        let Some(leaving) = self.data.members.get(leaving_member_id) else { return false };
        !leaving.uses_classic_protocol()
            && self.data.members.len() > 1
            && self
                .data
                .members
                .values()
                .all(|member| member.member_id == leaving_member_id || member.uses_classic_protocol())
    }

    /// The consumer-protocol member whose session or rebalance timeout passed by `now_ms` and
    /// whose fencing leaves only classic members (then the group turns classic instead, as
    /// Kafka's `consumerGroupFenceMember` does).
    pub(crate) fn expiring_last_consumer_member(&self, now_ms: i64) -> Option<String> {
        self.timers
            .iter()
            .filter(|(member_id, timers)| {
                let epoch = self.data.members.get(*member_id).map(ConsumerGroupMember::member_epoch);
                timers.session_deadline_ms <= now_ms
                    || timers.rebalance.is_some_and(|(at, deadline_ms)| deadline_ms <= now_ms && Some(at) == epoch)
            })
            .map(|(member_id, _)| member_id)
            .find(|member_id| self.only_classic_members_after(member_id))
            .cloned()
    }

    /// The classic group this group becomes when `leaving_member_id` leaves (Kafka's
    /// `ClassicGroup.fromConsumerGroup`): generation = the group epoch, each remaining member with
    /// its classic metadata and its assigned partitions serialized; and the tombstones of the
    /// whole consumer group (Kafka's `createGroupTombstoneRecords`). The group is left as it is:
    /// the caller drops it.
    pub(crate) fn downgrade(
        &self,
        leaving_member_id: &str,
        topics: &TopicsImage,
    ) -> (ClassicGroupSnapshot, Vec<ConsumerGroupRecord>) {
        let members = self
            .data
            .members
            .values()
            .filter(|member| member.member_id != leaving_member_id)
            .filter_map(|member| {
                let classic = member.classic.as_ref()?;
                let version = classic.supported_protocols.first().map_or(0, |first| protocol_version(&first.metadata));
                Some(ClassicGroupMember {
                    member_id: member.member_id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocols: classic.supported_protocols.clone(),
                    assignment: encode_assignment(&member.assignment.assigned, topics, version),
                })
            })
            .collect::<Vec<_>>();
        let protocol_name = members.first().and_then(|member| member.protocols.first()).map(|first| first.name.clone());
        let snapshot = ClassicGroupSnapshot { generation_id: self.data.group_epoch, protocol_name, members };
        (snapshot, self.delete_records())
    }
}

#[cfg(test)]
mod tests;
