//! The consumer groups of KIP-848 (`group.protocol=consumer`) on a shard's [`Coordinator`],
//! beside its classic groups: ConsumerGroupHeartbeat, ConsumerGroupDescribe, their deletion,
//! their member timers, and the checks the offset APIs make for their members. The protocol
//! itself is the pure state machine in `consumer/`; this file gives it time, the topics of the
//! metadata image, the log, and timers.
//!
//! One group id is one kind of group. A consumer group lives in [`ConsumerGroups::groups`];
//! its committed offsets live, as every group's do, in the classic group map, in an entry with
//! no members and no protocol (an *offsets holder*), so that OffsetCommit, OffsetFetch,
//! TxnOffsetCommit, transaction markers and retention treat offsets one way for both kinds.
//! DescribeGroups describes a consumer group as Kafka does (Dead before v6).
//!
//! Migration (KIP-848's online upgrade and downgrade, `group.consumer.migration.policy`; the
//! protocol side is `consumer/classic.rs`):
//! - a consumer member joining an empty classic group turns it into a consumer group (its
//!   metadata tombstoned, its offsets kept); joining a classic group with members *upgrades* it
//!   when the policy allows it and every member uses the `consumer` protocol type: the classic
//!   group's tombstone, then the consumer group's records (each classic member at epoch = the
//!   generation, with its assignment), then the heartbeat's; pending JoinGroup and SyncGroup
//!   answers of the classic members get REBALANCE_IN_PROGRESS. Otherwise GROUP_ID_NOT_FOUND;
//! - the classic paths ask [`Coordinator::is_consumer_group`] first: JoinGroup on an empty
//!   consumer group deletes it (the id becomes classic), on a non-empty one joins it as a classic
//!   member; SyncGroup, Heartbeat and LeaveGroup serve the consumer group's classic members (the
//!   answers to JoinGroup and SyncGroup wait for the group's writes, as heartbeats do);
//!   OffsetCommit checks a classic member's generation against its epoch (ILLEGAL_GENERATION);
//! - when the last consumer-protocol member leaves (ConsumerGroupHeartbeat with epoch -1) or
//!   expires and classic members remain, the group is *downgraded* when the policy allows it:
//!   the consumer group's tombstones, then the classic group's metadata (generation = the group
//!   epoch, each member with its assigned partitions), which starts a rebalance
//!   (PreparingRebalance) that the classic members join through their heartbeats.
//!
//! Writes, per group (steps of a heartbeat):
//! 1. the state machine applies the operation to the group in memory and hands out records;
//! 2. the records are queued on the coordinator's write queue at once, chained after the
//!    group's previous write ([`GroupWrite`]), so that the log order is the order of the
//!    operations, and the answer waits until they and every earlier write of the group are
//!    durable. An operation that changed nothing still waits for the group's previous write,
//!    since what it answers may depend on it (Kafka defers such answers the same way);
//! 3. when a write fails, memory is ahead of the log: the group is rebuilt from its records
//!    (step 1 of `consumer/`'s integration guide); meanwhile its requests get
//!    COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Timers: the coordinator's timer task calls [`ConsumerGroup::expire`] on every group whose
//! [`ConsumerGroup::next_deadline_ms`] passed and sleeps until the earliest deadline of any
//! group (the classic groups' loop, extended).
//!
//! Touched only by the coordinator's shard thread (`Rc`, `RefCell`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, Shared, join};
use kafka_protocol::ResponseError;

use super::consumer::{
    CONSUMER_PROTOCOL_TYPE, ClassicGroupMember, ClassicGroupSnapshot, ClassicJoin, ClassicJoinRequest, ClassicProtocol,
    ClientInfo, ConsumerGroup, ConsumerGroupConfig, ConsumerGroupRecord, ConsumerGroupState, Context, DescribedGroup,
    HeartbeatRequest, HeartbeatResponse, LEAVE_GROUP_MEMBER_EPOCH, Refusal, TopicMetadata, TopicsImage, codec,
};
use super::coordinator::Coordinator;
use super::group::{Group, GroupState, JoinOutcome, Member, Now, Protocol, SyncOutcome, answer};
use super::membership::{JoinArgs, JoinPolicy, MemberRef, SyncArgs};
use super::records::{self, RecordKey};
use super::storage::{self, KeyedRecord, OFFSETS_TOPIC};
use crate::metadata::MetadataImage;

/// A write of one consumer group's records: its own append, after the group's previous write.
/// Its outcome is `Err` when it or an earlier write of the group failed. Every operation on the
/// group that must not answer before its state is durable awaits the group's last one.
pub(super) type GroupWrite = Shared<LocalBoxFuture<'static, Result<(), ResponseError>>>;

/// The topics image groups see, rebuilt when the metadata image changes; its version grows only
/// when a topic is created, deleted or grows (what resolving regular expressions depends on).
#[derive(Debug, Default)]
struct TopicsCache {
    image: Option<Arc<MetadataImage>>,
    topics: Rc<TopicsImage>,
}

/// The consumer-group side of one shard's coordinator.
pub(crate) struct ConsumerGroups {
    /// The consumer groups of the offsets partitions this shard coordinates, by group id.
    pub(super) groups: RefCell<BTreeMap<String, ConsumerGroup>>,
    /// Each group's last write (see [`GroupWrite`]).
    writes: RefCell<BTreeMap<String, GroupWrite>>,
    /// Groups being rebuilt from the log after a failed write, or that could not be.
    rebuilding: RefCell<BTreeMap<String, Rebuild>>,
    topics: RefCell<TopicsCache>,
    config: ConsumerGroupConfig,
}

impl std::fmt::Debug for ConsumerGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroups")
            .field("groups", &self.groups.borrow().len())
            .field("writes", &self.writes.borrow().len())
            .field("rebuilding", &self.rebuilding.borrow())
            .finish_non_exhaustive()
    }
}

impl ConsumerGroups {
    /// No groups yet, with the protocol's settings.
    pub(super) fn new(config: ConsumerGroupConfig) -> Self {
        Self {
            groups: RefCell::new(BTreeMap::new()),
            writes: RefCell::new(BTreeMap::new()),
            rebuilding: RefCell::new(BTreeMap::new()),
            topics: RefCell::new(TopicsCache::default()),
            config,
        }
    }

    /// Forgets the groups `unloaded` says go (their partition is no longer coordinated here).
    pub(super) fn unload(&self, unloaded: impl Fn(&str) -> bool) -> usize {
        let mut groups = self.groups.borrow_mut();
        let before = groups.len();
        groups.retain(|id, _| !unloaded(id));
        self.writes.borrow_mut().retain(|id, _| !unloaded(id));
        self.rebuilding.borrow_mut().retain(|id, _| !unloaded(id));
        before - groups.len()
    }
}

/// Where a group's rebuild from the log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    /// Its records are being read: requests get COORDINATOR_LOAD_IN_PROGRESS.
    Running,
    /// Its log could not be read (the partition failed): requests get COORDINATOR_NOT_AVAILABLE
    /// until the partition is loaded again (a new leader, a restart). Serving what memory holds
    /// could acknowledge what the log lost; answering that the group does not exist would make
    /// its members start over.
    Failed,
}

/// The answer for a group the coordinator cannot serve now.
fn coordinator_refusal(error: ResponseError) -> Refusal {
    Refusal::new(error, String::new())
}

/// Kafka's answer when a group id names a classic group.
fn not_a_consumer_group(group_id: &str) -> Refusal {
    Refusal::new(ResponseError::GroupIdNotFound, format!("Group {group_id} is not a consumer group."))
}

/// The keyed records of consumer group records, in order.
fn encode_records(records: &[ConsumerGroupRecord]) -> Vec<KeyedRecord> {
    records.iter().map(codec::encode).collect()
}

/// A write error as a group operation other than an offset commit answers it: a record that does
/// not fit is the coordinator's fault, not the client's (Kafka: UNKNOWN_SERVER_ERROR).
fn operation_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::InvalidCommitOffsetSize => ResponseError::UnknownServerError,
        other => other,
    }
}

impl Coordinator {
    /// The settings of `group_id`'s consumer group.
    pub(super) fn consumer_config(&self, group_id: &str) -> ConsumerGroupConfig {
        let image = self.shared.metadata.image();
        super::group_config::effective(&self.consumer.config, image.group_configs.get(group_id))
    }

    /// Whether `group_id` is a consumer group (of the partitions this shard coordinates),
    /// including one being rebuilt.
    pub(crate) fn is_consumer_group(&self, group_id: &str) -> bool {
        self.consumer.groups.borrow().contains_key(group_id) || self.is_rebuilding(group_id)
    }

    /// Whether `group_id`'s consumer group is being rebuilt after a failed write (or could not
    /// be).
    fn is_rebuilding(&self, group_id: &str) -> bool {
        self.consumer.rebuilding.borrow().contains_key(group_id)
    }

    /// `check_group`, and the group's own availability (see [`Rebuild`]).
    pub(super) fn check_consumer_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check_group(group_id)?;
        match self.consumer.rebuilding.borrow().get(group_id) {
            None => Ok(()),
            Some(Rebuild::Running) => Err(ResponseError::CoordinatorLoadInProgress),
            Some(Rebuild::Failed) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// The topics image of the current metadata image (see [`TopicsCache`]).
    pub(super) fn topics_image(&self) -> Rc<TopicsImage> {
        let image = self.shared.metadata.image();
        let mut cache = self.consumer.topics.borrow_mut();
        if cache.image.as_ref().is_some_and(|cached| Arc::ptr_eq(cached, &image)) {
            return cache.topics.clone();
        }
        let topics: Vec<TopicMetadata> = image
            .topics()
            .map(|topic| TopicMetadata {
                id: uuid::Uuid::from_bytes(topic.id.0),
                name: topic.name.to_string(),
                partition_count: topic.partition_count(),
            })
            .collect();
        let version = cache.topics.version();
        let unchanged = TopicsImage::new(version, topics.iter().cloned());
        if unchanged != *cache.topics {
            cache.topics = Rc::new(TopicsImage::new(version + 1, topics));
        }
        cache.image = Some(image);
        cache.topics.clone()
    }

    /// ConsumerGroupHeartbeat: applies the heartbeat to the group, writes its records, and
    /// answers once they (and the group's earlier writes) are durable.
    ///
    /// # Errors
    /// Kafka's error and message for the request; NOT_COORDINATOR and the like (without a
    /// message) when the group is not served here or its records could not be written.
    pub(crate) async fn consumer_heartbeat(
        &self,
        request: HeartbeatRequest,
        client: ClientInfo,
    ) -> Result<HeartbeatResponse, Refusal> {
        let group_id = request.group_id.clone();
        self.check_consumer_group(&group_id).map_err(coordinator_refusal)?;
        let config = self.consumer_config(&group_id);
        let topics = self.topics_image();
        let now = self.now();
        let context = Context { now_ms: now.monotonic_ms, unix_ms: now.unix_ms, topics: &topics, config: &config };
        let applied = self.apply_heartbeat(&request, &client, &context, now);
        tracing::debug!(
            group = %group_id,
            member = %request.member_id,
            epoch = request.member_epoch,
            owned = ?request.topic_partitions,
            answer = ?applied.as_ref().map(|(response, records)| (response, records.len())),
            "consumer group heartbeat"
        );
        let (response, records) = applied?;
        self.wake.notify(1);
        let written =
            if records.is_empty() { self.last_write(&group_id) } else { self.write_group(&group_id, records) };
        written.await.map_err(|error| coordinator_refusal(operation_error(error)))?;
        Ok(response)
    }

    /// Step 1 of a heartbeat: the group's change in memory, and the records that store it.
    fn apply_heartbeat(
        &self,
        request: &HeartbeatRequest,
        client: &ClientInfo,
        context: &Context<'_>,
        now: Now,
    ) -> Result<(HeartbeatResponse, Vec<KeyedRecord>), Refusal> {
        let group_id = &request.group_id;
        let mut groups = self.consumer.groups.borrow_mut();
        if let Some(group) = groups.get_mut(group_id) {
            let downgrade = request.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
                && context.config.migration_policy.downgrade_enabled()
                && group.only_classic_members_after(&request.member_id);
            if downgrade {
                // The leave is checked (and answered) as usual on a copy; the group then becomes
                // classic instead of losing the member.
                let outcome = group.clone().heartbeat(request, client, context, || self.new_uuid())?;
                let (snapshot, tombstones) = group.downgrade(&request.member_id, context.topics);
                groups.remove(group_id);
                let mut records = encode_records(&tombstones);
                records.push(self.restore_classic_group(group_id, &snapshot, now));
                return Ok((outcome.response, records));
            }
            let outcome = group.heartbeat(request, client, context, || self.new_uuid())?;
            return Ok((outcome.response, encode_records(&outcome.records)));
        }
        // A new consumer group, unless a classic group with members holds the id: that one is
        // upgraded when it may be.
        let classic = self.groups.borrow().get(group_id).map(|group| group.state);
        let mut group = ConsumerGroup::for_heartbeat(request, context.config).map_err(|refusal| {
            if classic.is_some() && refusal.error == ResponseError::GroupIdNotFound {
                not_a_consumer_group(group_id)
            } else {
                refusal
            }
        })?;
        let mut conversion = Vec::new();
        if classic.is_some_and(|state| state != GroupState::Empty) {
            let snapshot = self.upgradable_classic_group(group_id, context.config)?;
            let (converted, records) = ConsumerGroup::from_classic(group_id, &snapshot, context)?;
            group = converted;
            conversion = records;
        }
        let outcome = group.heartbeat(request, client, context, || self.new_uuid())?;
        let upgraded = !conversion.is_empty();
        let mut records = self.retire_classic_group(group_id, now);
        records.extend(encode_records(&conversion));
        records.extend(encode_records(&outcome.records));
        groups.insert(group_id.clone(), group);
        if upgraded {
            tracing::info!(group = %group_id, "classic group upgraded to a consumer group");
        } else {
            tracing::info!(group = %group_id, "consumer group created");
        }
        Ok((outcome.response, records))
    }

    /// The classic group `group_id` as the upgrade takes it, when it may be upgraded (Kafka's
    /// `validateOnlineUpgrade`): the policy allows it, every member uses the consumer protocol
    /// type, and the group fits the consumer group size.
    fn upgradable_classic_group(
        &self,
        group_id: &str,
        config: &ConsumerGroupConfig,
    ) -> Result<ClassicGroupSnapshot, Refusal> {
        let groups = self.groups.borrow();
        let classic = groups.get(group_id).ok_or_else(|| not_a_consumer_group(group_id))?;
        let size_max = usize::try_from(config.group_size_max).unwrap_or(usize::MAX);
        let refused = if !config.migration_policy.upgrade_enabled() {
            Some("the online upgrade is disabled")
        } else if classic.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) || classic.state == GroupState::Dead
        {
            Some("the group does not use the consumer embedded protocol")
        } else if classic.members.len() > size_max {
            Some("the group size exceeds the consumer group maximum size")
        } else {
            None
        };
        if let Some(reason) = refused {
            tracing::info!(group = %group_id, reason, "a classic group cannot be upgraded to a consumer group");
            return Err(not_a_consumer_group(group_id));
        }
        let members = classic
            .members
            .values()
            .map(|member| ClassicGroupMember {
                member_id: member.member_id.clone(),
                instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                session_timeout_ms: member.session_timeout_ms,
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                protocols: member
                    .protocols
                    .iter()
                    .map(|protocol| ClassicProtocol {
                        name: protocol.name.clone(),
                        metadata: protocol.metadata.clone(),
                    })
                    .collect(),
                assignment: member.assignment.clone(),
            })
            .collect();
        Ok(ClassicGroupSnapshot {
            generation_id: classic.generation_id,
            protocol_name: classic.protocol_name.clone(),
            members,
        })
    }

    /// Turns an empty classic group into the offsets holder of a consumer group of the same id:
    /// its metadata is tombstoned (when it has any), its offsets stay, as in Kafka.
    /// A classic group with members (an upgrade) has its pending JoinGroup and SyncGroup answered
    /// REBALANCE_IN_PROGRESS, as Kafka does: the members rejoin the consumer group.
    fn retire_classic_group(&self, group_id: &str, now: Now) -> Vec<KeyedRecord> {
        let mut groups = self.groups.borrow_mut();
        let Some(classic) = groups.get_mut(group_id) else { return Vec::new() };
        for member in classic.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                answer(&waiter, JoinOutcome::failed(ResponseError::RebalanceInProgress, &member.member_id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                answer(&waiter, SyncOutcome::failed(ResponseError::RebalanceInProgress));
            }
        }
        let had_metadata = classic.protocol_type.is_some() || classic.generation_id > 0;
        let mut holder = Group::new(group_id, now);
        holder.offsets = std::mem::take(&mut classic.offsets);
        holder.pending_txn_offsets = std::mem::take(&mut classic.pending_txn_offsets);
        *classic = holder;
        if had_metadata {
            vec![(records::encode_key(&RecordKey::Group { group: group_id.to_owned() }), None)]
        } else {
            Vec::new()
        }
    }

    /// The group's last write, or a completed one.
    fn last_write(&self, group_id: &str) -> GroupWrite {
        self.consumer
            .writes
            .borrow()
            .get(group_id)
            .cloned()
            .unwrap_or_else(|| std::future::ready(Ok(())).boxed_local().shared())
    }

    /// Queues `records` of `group_id` after its previous write (see [`GroupWrite`]). The write
    /// is queued when the returned future is first polled (by its caller, or by the group's
    /// next write), so the group's records reach the log in the order they were made.
    fn write_group(&self, group_id: &str, records: Vec<KeyedRecord>) -> GroupWrite {
        let previous = self.last_write(group_id);
        let this = self.rc();
        let partition = self.group_partition(group_id);
        let id = group_id.to_owned();
        let write = async move {
            let (before, own) = join(previous, this.writes.write(partition, records)).await;
            let result = before.and(own);
            if let Err(error) = result {
                tracing::warn!(group = %id, ?error, "writing a consumer group's records failed; rebuilding it from the log");
                this.start_rebuild(&id);
            }
            result
        }
        .boxed_local()
        .shared();
        self.consumer.writes.borrow_mut().insert(group_id.to_owned(), write.clone());
        write
    }

    /// Writes records no request waits for (a timer's, a deletion's on the way to classic).
    fn write_group_detached(&self, group_id: &str, records: Vec<KeyedRecord>) {
        let write = self.write_group(group_id, records);
        let id = group_id.to_owned();
        compio::runtime::spawn(async move {
            if let Err(error) = write.await {
                tracing::info!(group = %id, ?error, "a consumer group's timer records were not written");
            }
        })
        .detach();
    }

    /// Step 3 of the module docs: rebuilds `group_id` from its partition's log, once at a time.
    fn start_rebuild(&self, group_id: &str) {
        if self.shared.shutdown.is_started() {
            return; // Writes fail as the writer stops; the next start loads the log anyway.
        }
        if self.is_rebuilding(group_id) {
            return;
        }
        self.consumer.rebuilding.borrow_mut().insert(group_id.to_owned(), Rebuild::Running);
        let this = self.rc();
        let id = group_id.to_owned();
        compio::runtime::spawn(crate::crash::abort_on_panic("consumer group rebuild", async move {
            this.rebuild(&id).await;
        }))
        .detach();
    }

    async fn rebuild(&self, group_id: &str) {
        let index = self.group_partition(group_id);
        let now = self.now();
        let mut replay = super::replay::Replay::new(now, Some(group_id.to_owned()));
        let target = sluice_engine::TopicPartition::new(OFFSETS_TOPIC, index);
        let loaded = storage::load_partition(&self.shared.engine, &target, |loaded| replay.apply(loaded)).await;
        if !self.is_rebuilding(group_id) {
            return; // Unloaded meanwhile.
        }
        self.consumer.writes.borrow_mut().remove(group_id);
        let mut consumer = self.consumer.groups.borrow_mut();
        consumer.remove(group_id);
        if let Err(error) = loaded {
            tracing::error!(group = %group_id, %error, "rebuilding a consumer group failed; it is unavailable until its partition loads again");
            self.consumer.rebuilding.borrow_mut().insert(group_id.to_owned(), Rebuild::Failed);
            return;
        }
        self.consumer.rebuilding.borrow_mut().remove(group_id);
        let (classic, rebuilt) = replay.finish(now.monotonic_ms, |id| self.consumer_config(id));
        consumer.extend(rebuilt);
        let mut groups = self.groups.borrow_mut();
        // A classic group with members is live state the log does not hold; anything else (an
        // offsets holder) is exactly what the log says.
        if groups.get(group_id).is_none_or(|group| !group.has_members()) {
            groups.remove(group_id);
            groups.extend(classic);
        }
        tracing::info!(group = %group_id, exists = consumer.contains_key(group_id), "consumer group rebuilt from the log");
        self.wake.notify(1);
    }

    /// ConsumerGroupDescribe for one group.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND with Kafka's message for an unknown or classic group; the coordinator's
    /// errors (without a message).
    pub(crate) fn consumer_describe(&self, group_id: &str) -> Result<DescribedGroup, Refusal> {
        self.check_consumer_group(group_id).map_err(coordinator_refusal)?;
        if let Some(group) = self.consumer.groups.borrow().get(group_id) {
            return Ok(group.describe(&self.topics_image(), &self.consumer_config(group_id)));
        }
        if self.groups.borrow().contains_key(group_id) {
            return Err(not_a_consumer_group(group_id));
        }
        Err(Refusal::new(ResponseError::GroupIdNotFound, format!("Group {group_id} not found.")))
    }

    /// The consumer group's state name, for ListGroups.
    pub(super) fn listed_consumer_groups(&self) -> Vec<(String, &'static str)> {
        self.consumer.groups.borrow().iter().map(|(id, group)| (id.clone(), group.state().name())).collect()
    }

    /// DeleteGroups for a consumer group, `None` when `group_id` is not one: an Empty group is
    /// deleted with its offsets (their tombstones, then the group's, as Kafka writes them).
    pub(super) async fn delete_consumer_group(&self, group_id: &str) -> Option<Result<(), ResponseError>> {
        if !self.is_consumer_group(group_id) {
            return None;
        }
        if let Err(error) = self.check_consumer_group(group_id) {
            return Some(Err(error));
        }
        let records = {
            let mut consumer = self.consumer.groups.borrow_mut();
            let group = consumer.get(group_id).expect("checked above");
            if let Err(error) = group.validate_delete() {
                return Some(Err(error));
            }
            let mut records =
                self.groups.borrow_mut().remove(group_id).map(|holder| offset_tombstones(&holder)).unwrap_or_default();
            records.extend(encode_records(&group.delete_records()));
            consumer.remove(group_id);
            records
        };
        tracing::info!(group = %group_id, "consumer group deleted");
        let written = self.write_group(group_id, records).await;
        Some(written.map_err(operation_error))
    }

    /// JoinGroup's check of a consumer group (Kafka's `classicGroupJoin` without the migration
    /// of classic members into a consumer group): a non-empty one refuses classic members; an
    /// empty one is deleted so that the id becomes a classic group, its offsets kept.
    pub(super) fn classic_join_check(&self, group_id: &str) -> Result<(), ResponseError> {
        if !self.is_consumer_group(group_id) {
            return Ok(());
        }
        self.check_consumer_group(group_id)?;
        let records = {
            let mut consumer = self.consumer.groups.borrow_mut();
            let group = consumer.get(group_id).expect("checked above");
            if group.state() != ConsumerGroupState::Empty {
                return Ok(()); // The member joins the consumer group (`consumer_join`).
            }
            let records = encode_records(&group.delete_records());
            consumer.remove(group_id);
            records
        };
        tracing::info!(group = %group_id, "empty consumer group deleted: a classic member joins the id");
        self.write_group_detached(group_id, records);
        Ok(())
    }

    /// Turns the offsets holder of `group_id` back into a classic group of the consumer group's
    /// classic members (Kafka's `convertToClassicGroup` on a leave), in PreparingRebalance so that
    /// they rejoin; returns its metadata record, which follows the consumer group's tombstones.
    fn restore_classic_group(&self, group_id: &str, snapshot: &ClassicGroupSnapshot, now: Now) -> KeyedRecord {
        let mut groups = self.groups.borrow_mut();
        let mut group = Group::new(group_id, now);
        if let Some(holder) = groups.remove(group_id) {
            group.offsets = holder.offsets;
            group.pending_txn_offsets = holder.pending_txn_offsets;
        }
        group.state = GroupState::Stable;
        group.generation_id = snapshot.generation_id;
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_owned());
        group.protocol_name.clone_from(&snapshot.protocol_name);
        group.leader_id = snapshot.members.first().map(|member| member.member_id.clone());
        for classic in &snapshot.members {
            if let Some(instance_id) = &classic.instance_id {
                group.static_members.insert(instance_id.clone(), classic.member_id.clone());
            }
            let member = Member {
                member_id: classic.member_id.clone(),
                group_instance_id: classic.instance_id.clone(),
                client_id: classic.client_id.clone(),
                client_host: classic.client_host.clone(),
                session_timeout_ms: classic.session_timeout_ms,
                rebalance_timeout_ms: classic.rebalance_timeout_ms,
                protocols: classic
                    .protocols
                    .iter()
                    .map(|protocol| Protocol { name: protocol.name.clone(), metadata: protocol.metadata.clone() })
                    .collect(),
                assignment: classic.assignment.clone(),
                join_waiter: None,
                sync_waiter: None,
                heartbeat_deadline_ms: now.monotonic_ms + i64::from(classic.session_timeout_ms),
            };
            group.members.insert(classic.member_id.clone(), member);
        }
        let key = records::encode_key(&RecordKey::Group { group: group_id.to_owned() });
        let record = (key, Some(records::encode_group_value(&group.to_value())));
        group.prepare_rebalance(now, JoinPolicy { initial_rebalance_delay_ms: 0 });
        group.metadata_dirty = false;
        tracing::info!(group = %group_id, members = group.members.len(), "consumer group downgraded to a classic group");
        groups.insert(group_id.to_owned(), group);
        record
    }

    /// JoinGroup from a classic member of a consumer group (see `consumer/classic.rs`): answers
    /// once its records, and the group's earlier writes, are durable.
    pub(super) async fn consumer_join(&self, group_id: &str, args: &JoinArgs) -> JoinOutcome {
        if let Err(error) = self.check_consumer_group(group_id) {
            return JoinOutcome::failed(error, &args.member_id);
        }
        let config = self.consumer_config(group_id);
        let topics = self.topics_image();
        let now = self.now();
        let context = Context { now_ms: now.monotonic_ms, unix_ms: now.unix_ms, topics: &topics, config: &config };
        let request = ClassicJoinRequest {
            member_id: args.member_id.clone(),
            instance_id: args.group_instance_id.clone(),
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            protocol_type: args.protocol_type.clone(),
            protocols: args
                .protocols
                .iter()
                .map(|protocol| ClassicProtocol { name: protocol.name.clone(), metadata: protocol.metadata.clone() })
                .collect(),
            require_known_member_id: args.require_known_member_id,
        };
        let client = ClientInfo { client_id: args.client_id.clone(), client_host: args.client_host.clone() };
        let joined = {
            let mut groups = self.consumer.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return JoinOutcome::failed(ResponseError::UnknownMemberId, &args.member_id);
            };
            group.classic_join(&request, &client, &context, || self.new_uuid())
        };
        tracing::debug!(group = %group_id, member = %args.member_id, answer = ?joined, "classic member joins a consumer group");
        let (member_id, generation_id, protocol_name, records) = match joined {
            Err(error) => return JoinOutcome::failed(error, &args.member_id),
            Ok(ClassicJoin::MemberIdRequired(member_id)) => {
                return JoinOutcome::failed(ResponseError::MemberIdRequired, &member_id);
            }
            Ok(ClassicJoin::Joined { member_id, generation_id, protocol_name, records }) => {
                (member_id, generation_id, protocol_name, records)
            }
        };
        self.wake.notify(1);
        let written = if records.is_empty() {
            self.last_write(group_id)
        } else {
            self.write_group(group_id, encode_records(&records))
        };
        if let Err(error) = written.await {
            return JoinOutcome::failed(operation_error(error), &member_id);
        }
        JoinOutcome {
            error: None,
            generation_id,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_owned()),
            protocol_name: Some(protocol_name),
            leader_id: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    /// SyncGroup from a classic member of a consumer group: its current assignment, once the
    /// group's earlier writes are durable.
    pub(super) async fn consumer_sync(&self, group_id: &str, args: &SyncArgs) -> SyncOutcome {
        if let Err(error) = self.check_consumer_group(group_id) {
            return SyncOutcome::failed(error);
        }
        let config = self.consumer_config(group_id);
        let topics = self.topics_image();
        let now = self.now();
        let context = Context { now_ms: now.monotonic_ms, unix_ms: now.unix_ms, topics: &topics, config: &config };
        let synced = {
            let mut groups = self.consumer.groups.borrow_mut();
            groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId).and_then(|group| {
                let protocol = (args.protocol_type.as_deref(), args.protocol_name.as_deref());
                group.classic_sync(
                    &args.member_id,
                    args.group_instance_id.as_deref(),
                    args.generation_id,
                    protocol,
                    &context,
                )
            })
        };
        self.wake.notify(1);
        let synced = match synced {
            Ok(synced) => synced,
            Err(error) => return SyncOutcome::failed(error),
        };
        if let Err(error) = self.last_write(group_id).await {
            return SyncOutcome::failed(operation_error(error));
        }
        SyncOutcome {
            error: None,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_owned()),
            protocol_name: Some(synced.protocol_name),
            assignment: synced.assignment,
        }
    }

    /// Heartbeat from a classic member of a consumer group.
    pub(super) fn consumer_classic_heartbeat(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.check_consumer_group(group_id)?;
        let now = self.now();
        let result = {
            let mut groups = self.consumer.groups.borrow_mut();
            let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
            group.classic_heartbeat(member.member_id, member.group_instance_id, generation_id, now.monotonic_ms)
        };
        self.wake.notify(1);
        result
    }

    /// LeaveGroup for classic members of a consumer group: one result per member.
    pub(super) fn consumer_classic_leave(
        &self,
        group_id: &str,
        members: &[MemberRef<'_>],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.check_consumer_group(group_id)?;
        let topics = self.topics_image();
        let named: Vec<(String, Option<String>)> = members
            .iter()
            .map(|member| (member.member_id.to_owned(), member.group_instance_id.map(str::to_owned)))
            .collect();
        let (results, records) = {
            let mut groups = self.consumer.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return Ok(members.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect());
            };
            group.classic_leave(&named, &topics)
        };
        if !records.is_empty() {
            self.write_group_detached(group_id, encode_records(&records));
        }
        self.wake.notify(1);
        Ok(results.into_iter().map(|result| result.map(drop)).collect())
    }

    /// OffsetCommit and TxnOffsetCommit checks for a member of a consumer group; `None` when
    /// `group_id` is not one (the classic checks apply).
    pub(super) fn check_consumer_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        transactional: bool,
        api_version: i16,
    ) -> Option<Result<(), ResponseError>> {
        if self.is_rebuilding(group_id) {
            return Some(self.check_consumer_group(group_id));
        }
        let groups = self.consumer.groups.borrow();
        let group = groups.get(group_id)?;
        Some(group.validate_offset_commit(member_id, member_epoch, transactional, api_version))
    }

    /// OffsetFetch v9+'s member check for a consumer group; `Ok` when `group_id` is not one.
    pub(super) fn check_consumer_fetch(&self, group_id: &str, member: &FetchMember) -> Result<(), ResponseError> {
        if self.is_rebuilding(group_id) {
            return self.check_consumer_group(group_id);
        }
        match self.consumer.groups.borrow().get(group_id) {
            Some(group) => group.validate_offset_fetch(member.member_id.as_deref(), member.member_epoch),
            None => Ok(()),
        }
    }

    /// Whether OffsetDelete may not remove `topic`'s offsets because the consumer group `group_id`
    /// subscribes to it; `None` when `group_id` is not a consumer group.
    pub(super) fn consumer_subscribes_to(&self, group_id: &str, topic: &str) -> Option<bool> {
        self.consumer.groups.borrow().get(group_id).map(|group| group.is_subscribed_to_topic(topic))
    }

    /// The timer step for consumer groups: expires what is due, and returns the earliest
    /// deadline left (monotonic ms).
    pub(super) fn run_consumer_timers(&self, now: Now) -> Option<i64> {
        let topics = self.topics_image();
        let mut due = Vec::new();
        let mut next = None::<i64>;
        let mut downgrades = Vec::new();
        {
            let mut groups = self.consumer.groups.borrow_mut();
            for (group_id, group) in groups.iter_mut() {
                if self.is_rebuilding(group_id) {
                    continue;
                }
                if group.next_deadline_ms().is_some_and(|deadline| deadline <= now.monotonic_ms) {
                    let config = self.consumer_config(group_id);
                    if config.migration_policy.downgrade_enabled()
                        && let Some(member_id) = group.expiring_last_consumer_member(now.monotonic_ms)
                    {
                        tracing::info!(group = %group_id, member = %member_id, "the last consumer-protocol member expired");
                        downgrades.push((group_id.clone(), member_id));
                        continue;
                    }
                    let context =
                        Context { now_ms: now.monotonic_ms, unix_ms: now.unix_ms, topics: &topics, config: &config };
                    let records = group.expire(&context);
                    if !records.is_empty() {
                        due.push((group_id.clone(), encode_records(&records)));
                    }
                }
                if let Some(deadline) = group.next_deadline_ms() {
                    next = Some(next.map_or(deadline, |next| next.min(deadline)));
                }
            }
        }
        for (group_id, records) in due {
            self.write_group_detached(&group_id, records);
        }
        for (group_id, member_id) in downgrades {
            let Some(group) = self.consumer.groups.borrow_mut().remove(&group_id) else { continue };
            let (snapshot, tombstones) = group.downgrade(&member_id, &topics);
            let mut records = encode_records(&tombstones);
            records.push(self.restore_classic_group(&group_id, &snapshot, now));
            self.write_group_detached(&group_id, records);
            self.wake.notify(1);
        }
        next
    }

    /// Offsets retention for consumer groups (Kafka's `cleanupExpiredOffsets` with a consumer
    /// group's rule): offsets of topics the group does not subscribe to expire a retention
    /// period after their commit (or at their explicit expiry); an Empty group left without
    /// offsets is deleted. Returns the records to write, by group.
    pub(super) fn expire_consumer_offsets(&self, now: Now, retention_ms: i64) -> Vec<(String, Vec<KeyedRecord>)> {
        let mut writes = Vec::new();
        let mut consumer = self.consumer.groups.borrow_mut();
        let mut holders = self.groups.borrow_mut();
        let mut deleted = Vec::new();
        for (group_id, group) in consumer.iter() {
            if self.is_rebuilding(group_id) {
                continue;
            }
            let mut records = Vec::new();
            let mut holder_left = false;
            if let Some(holder) = holders.get_mut(group_id) {
                let expired: Vec<(String, i32)> = holder
                    .offsets
                    .iter()
                    .filter(|((topic, _), _)| !group.is_subscribed_to_topic(topic))
                    .filter(|(_, offset)| match offset.expire_timestamp_ms {
                        Some(expire_ms) => now.unix_ms >= expire_ms,
                        None => now.unix_ms - offset.commit_timestamp_ms >= retention_ms,
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                for (topic, partition) in expired {
                    holder.offsets.remove(&(topic.clone(), partition));
                    let key = RecordKey::Offset { group: group_id.clone(), topic, partition };
                    records.push((records::encode_key(&key), None));
                }
                holder_left = !holder.offsets.is_empty() || !holder.pending_txn_offsets.is_empty();
            }
            if group.state() == ConsumerGroupState::Empty && !holder_left {
                records.extend(encode_records(&group.delete_records()));
                deleted.push(group_id.clone());
            }
            if !records.is_empty() {
                writes.push((group_id.clone(), records));
            }
        }
        for group_id in deleted {
            tracing::info!(group = %group_id, "empty consumer group without offsets deleted");
            consumer.remove(&group_id);
            holders.remove(&group_id);
        }
        writes
    }

    /// Writes what [`Coordinator::expire_consumer_offsets`] decided.
    pub(super) fn write_expired_consumer_offsets(&self, writes: Vec<(String, Vec<KeyedRecord>)>) {
        for (group_id, records) in writes {
            self.write_group_detached(&group_id, records);
        }
    }
}

/// Who fetches offsets (OffsetFetch v9+ names the member of a consumer group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FetchMember {
    /// The member id, if the request names one.
    pub(crate) member_id: Option<String>,
    /// The member epoch, or -1.
    pub(crate) member_epoch: i32,
}

/// Tombstones for every offset of a group, committed or pending in a transaction.
fn offset_tombstones(holder: &Group) -> Vec<KeyedRecord> {
    let pending = holder.pending_txn_offsets.values().flat_map(BTreeMap::keys);
    let keys: BTreeSet<&(String, i32)> = holder.offsets.keys().chain(pending).collect();
    keys.into_iter()
        .map(|(topic, partition)| {
            let key = RecordKey::Offset { group: holder.id.clone(), topic: topic.clone(), partition: *partition };
            (records::encode_key(&key), None)
        })
        .collect()
}
