//! One shard's group coordinator: the groups whose `__consumer_offsets` partition this broker
//! leads and this shard holds, their committed offsets, and the tasks that write and expire them.
//! Classic groups live here; consumer groups (KIP-848) live beside them, in `consumer_groups`,
//! which also says how the classic paths answer for a consumer group's id.
//!
//! Lifecycle, per shard:
//! 1. started with the shard's context, before any client is accepted: its writer task appends
//!    records (see `storage`), and its timer task applies group deadlines (sessions, join and
//!    sync phases) when they pass and expires old offsets every
//!    `offsets.retention.check.interval.ms`; it coordinates nothing yet;
//! 2. when this broker starts leading an offsets partition held on this shard, the metadata's
//!    leadership signal [`load`](Coordinator::load)s it: its records are read into groups of
//!    both kinds (`replay`), and its groups' requests get COORDINATOR_LOAD_IN_PROGRESS until
//!    that is done;
//! 3. when it stops leading one, [`unload`](Coordinator::unload) drops its groups, and their
//!    requests get NOT_COORDINATOR, so clients find the new coordinator.
//!
//! Operations borrow the group map only between awaits; a group can change while a write is in
//! flight, which is why commits are applied to whatever the group is when the write completes.
//!
//! Touched only by its shard thread (`Rc`, `RefCell`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_util::future::{Either, select};
use kafka_protocol::ResponseError;
use sluice_engine::ShardId;

use super::config::GroupConfig;
use super::consumer_groups::{ConsumerGroups, FetchMember};
use super::group::{CommittedOffset, Group, GroupState, JoinOutcome, Now, SyncOutcome};
use super::membership::{JoinArgs, JoinPolicy, MemberRef, SyncArgs};
use super::records::{self, RecordKey};
use super::replay::Replay;
use super::storage::{self, KeyedRecord, OFFSETS_TOPIC, WriteQueue};
use crate::clock;
use crate::context::Shared;

/// How long the timer task sleeps at most between looks at the groups.
const TICK_MS_MAX: i64 = 1000;

/// A `__consumer_offsets` partition this shard coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetsPartition {
    /// Its records are being read; its groups are not served yet.
    Loading { leader_epoch: i32 },
    /// Its groups are in memory and served.
    Loaded { leader_epoch: i32 },
}

/// One shard's coordinator.
#[derive(Debug)]
pub(crate) struct Coordinator {
    /// This coordinator, for the tasks it starts.
    this: Weak<Self>,
    pub(super) shared: Arc<Shared>,
    shard: ShardId,
    config: GroupConfig,
    /// Classic groups, and the offsets holders of consumer groups (see `consumer_groups`).
    pub(super) groups: RefCell<BTreeMap<String, Group>>,
    /// Consumer groups (KIP-848).
    pub(super) consumer: ConsumerGroups,
    /// The offsets partitions this shard leads, by index.
    partitions: RefCell<BTreeMap<i32, OffsetsPartition>>,
    pub(super) writes: WriteQueue,
    /// Woken when a group changed, so the timer task recomputes its next deadline.
    pub(super) wake: Event,
    epoch: Instant,
    member_id_seed: u64,
    member_id_counter: Cell<u64>,
}

/// A committed offset to store, as the OffsetCommit handler collected it.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}

/// Who commits, and how long the offsets live.
#[derive(Debug, Clone)]
pub(crate) struct CommitArgs {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    /// The classic generation, or a consumer group member's epoch.
    pub(crate) generation_id: i32,
    /// OffsetCommit v2-v4 retention time, or -1 for the broker's.
    pub(crate) retention_time_ms: i64,
    /// The request's version (consumer group members must commit with v9+).
    pub(crate) api_version: i16,
}

/// The kinds of groups (ListGroups v5's group type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupType {
    /// Kafka's classic protocol (JoinGroup, SyncGroup).
    Classic,
    /// KIP-848's consumer protocol (ConsumerGroupHeartbeat).
    Consumer,
}

impl GroupType {
    /// The name Kafka reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct ListedGroup {
    pub(crate) group_id: String,
    pub(crate) protocol_type: String,
    /// The state's name, as Kafka reports it for the group's type.
    pub(crate) state: &'static str,
    pub(crate) group_type: GroupType,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct DescribedMember {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) metadata: bytes::Bytes,
    pub(crate) assignment: bytes::Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct DescribedGroup {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    pub(crate) protocol_name: String,
    pub(crate) members: Vec<DescribedMember>,
}

/// Requested partitions per topic; `None` asks for every committed offset.
pub(crate) type TopicPartitions = Option<Vec<(String, Vec<i32>)>>;
/// Fetched offsets per topic, `None` where nothing is committed.
pub(crate) type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

impl Coordinator {
    /// The calling shard's coordinator, with its writer and timer tasks started. It coordinates
    /// nothing until [`Coordinator::load`] gives it a partition.
    pub(crate) fn start(shared: &Arc<Shared>, shard: ShardId) -> Rc<Self> {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u16(shard.0);
        hasher.write_u64(clock::entropy());
        let coordinator = Rc::new_cyclic(|this| Self {
            this: this.clone(),
            consumer: ConsumerGroups::new(super::consumer_config::global()),
            epoch: shared.clock.now(),
            shared: shared.clone(),
            shard,
            config: GroupConfig::global(),
            groups: RefCell::new(BTreeMap::new()),
            partitions: RefCell::new(BTreeMap::new()),
            writes: WriteQueue::new(OFFSETS_TOPIC),
            wake: Event::new(),
            member_id_seed: hasher.finish(),
            member_id_counter: Cell::new(0),
        });
        let writer = coordinator.clone();
        compio::runtime::spawn(crate::crash::abort_on_panic("group offsets writer", async move {
            writer.writes.run(&writer.shared).await;
        }))
        .detach();
        let timers = coordinator.clone();
        compio::runtime::spawn(crate::crash::abort_on_panic("group timers", async move { timers.run_timers().await }))
            .detach();
        coordinator
    }

    /// This coordinator, for a task to hold.
    pub(super) fn rc(&self) -> Rc<Self> {
        self.this
            .upgrade()
            .expect("`start`, the only constructor, puts the coordinator in an `Rc`, which `&self` proves alive")
    }

    pub(super) fn now(&self) -> Now {
        let elapsed = self.shared.clock.now().saturating_duration_since(self.epoch);
        Now { monotonic_ms: elapsed.as_millis() as i64, unix_ms: self.shared.clock.unix_ms() }
    }

    fn policy(&self) -> JoinPolicy {
        JoinPolicy { initial_rebalance_delay_ms: self.config.initial_rebalance_delay_ms }
    }

    /// Starts coordinating offsets partition `index`, which this broker now leads at
    /// `leader_epoch`: reads its records into groups, then serves them. Requests for its groups
    /// get COORDINATOR_LOAD_IN_PROGRESS meanwhile. Answers once loaded (or once unloaded again).
    pub(crate) async fn load(&self, index: i32, leader_epoch: i32) {
        let loading = OffsetsPartition::Loading { leader_epoch };
        let previous = self.partitions.borrow_mut().insert(index, loading);
        if matches!(previous, Some(OffsetsPartition::Loaded { .. })) {
            // A new epoch of a partition already loaded: its groups stay as they are.
            self.partitions.borrow_mut().insert(index, OffsetsPartition::Loaded { leader_epoch });
            return;
        }
        let now = self.now();
        let mut replay = Replay::new(now, None);
        let target = sluice_engine::TopicPartition::new(OFFSETS_TOPIC, index);
        let loaded = storage::load_partition(&self.shared.engine, &target, |loaded| replay.apply(loaded)).await;
        if self.partitions.borrow().get(&index) != Some(&loading) {
            return; // Unloaded (or reloaded) while reading: what was read is stale.
        }
        match loaded {
            Ok(record_count) => {
                let (groups, consumer_groups) =
                    replay.finish(now.monotonic_ms, |group_id| self.consumer_config(group_id));
                let (group_count, consumer_group_count) = (groups.len(), consumer_groups.len());
                self.groups.borrow_mut().extend(groups);
                self.consumer.groups.borrow_mut().extend(consumer_groups);
                self.partitions.borrow_mut().insert(index, OffsetsPartition::Loaded { leader_epoch });
                tracing::info!(
                    shard = self.shard.0,
                    partition = index,
                    groups = group_count,
                    consumer_groups = consumer_group_count,
                    records = record_count,
                    "group coordinator loaded a partition"
                );
            }
            Err(error) => {
                self.partitions.borrow_mut().remove(&index);
                tracing::error!(shard = self.shard.0, partition = index, %error, "group coordinator failed to load a partition");
            }
        }
        self.wake.notify(1);
    }

    /// Stops coordinating offsets partition `index`: its groups leave memory, and their members
    /// waiting in a join or sync are told to find the coordinator again.
    pub(crate) fn unload(&self, index: i32) {
        if self.partitions.borrow_mut().remove(&index).is_none() {
            return;
        }
        let count = self.offsets_partition_count();
        let mut groups = self.groups.borrow_mut();
        let before = groups.len();
        // Dropping a group drops its waiting members' answer channels: they answer
        // NOT_COORDINATOR (see `until_shutdown`).
        groups.retain(|id, _| Self::partition_of(id, count) != index);
        let consumer_groups = self.consumer.unload(|id| Self::partition_of(id, count) == index);
        tracing::info!(
            shard = self.shard.0,
            partition = index,
            groups = before - groups.len(),
            consumer_groups,
            "group coordinator unloaded a partition"
        );
    }

    /// Whether `group_id`'s partition is served here: NOT_COORDINATOR when this broker does not
    /// lead it, COORDINATOR_LOAD_IN_PROGRESS while it loads, including the moment between the
    /// image naming this broker its leader and the load starting (a client sent here by
    /// FindCoordinator then retries the same broker instead of looking for another).
    pub(super) fn check_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let index = self.group_partition(group_id);
        match self.partitions.borrow().get(&index) {
            Some(OffsetsPartition::Loaded { .. }) => Ok(()),
            Some(OffsetsPartition::Loading { .. }) => Err(ResponseError::CoordinatorLoadInProgress),
            None => {
                let image = self.shared.metadata.image();
                let led = image
                    .topic(OFFSETS_TOPIC)
                    .and_then(|topic| topic.partition(index))
                    .is_some_and(|state| state.leader == self.shared.identity.node_id);
                Err(if led { ResponseError::CoordinatorLoadInProgress } else { ResponseError::NotCoordinator })
            }
        }
    }

    /// The offsets partition of a group: Java's `abs(groupId.hashCode()) % partitionCount`, as
    /// Kafka computes it.
    pub(crate) fn partition_of(group_id: &str, partition_count: i32) -> i32 {
        let hash = group_id.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
        let positive = if hash == i32::MIN { 0 } else { hash.abs() };
        positive % partition_count.max(1)
    }

    pub(super) fn offsets_partition_count(&self) -> i32 {
        self.shared.metadata.image().topic(OFFSETS_TOPIC).map_or(1, |topic| topic.partition_count())
    }

    pub(super) fn group_partition(&self, group_id: &str) -> i32 {
        Self::partition_of(group_id, self.offsets_partition_count())
    }

    fn new_member_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.new_uuid())
    }

    /// A fresh random id in the UUID text form (what Kafka's `Uuid.randomUuid().toString()`
    /// gives a member id).
    pub(super) fn new_uuid(&self) -> String {
        let counter = self.member_id_counter.get() + 1;
        self.member_id_counter.set(counter);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.member_id_seed);
        hasher.write_u64(counter);
        let low = hasher.finish();
        let high = self.member_id_seed ^ counter.rotate_left(17);
        let text = format!("{high:016x}{low:016x}");
        format!("{}-{}-{}-{}-{}", &text[0..8], &text[8..12], &text[12..16], &text[16..20], &text[20..32])
    }

    /// After a change: store the group's metadata if it is stale, and let the timer task look.
    fn after_change(&self, group_id: &str) {
        let record = {
            let mut groups = self.groups.borrow_mut();
            groups.get_mut(group_id).filter(|group| group.metadata_dirty).map(|group| {
                group.metadata_dirty = false;
                group_record(group)
            })
        };
        if let Some(record) = record {
            self.writes.write_detached(self.group_partition(group_id), vec![record]);
        }
        self.wake.notify(1);
    }

    /// JoinGroup: answers when the join phase ends (or at once for errors and rejoins).
    pub(crate) async fn join(&self, group_id: &str, mut args: JoinArgs) -> JoinOutcome {
        if group_id.is_empty() {
            return JoinOutcome::failed(ResponseError::InvalidGroupId, &args.member_id);
        }
        if let Err(error) = self.check_group(group_id) {
            return JoinOutcome::failed(error, &args.member_id);
        }
        if let Err(error) = self.classic_join_check(group_id) {
            return JoinOutcome::failed(error, &args.member_id);
        }
        let session_range = self.config.session_timeout_ms_min..=self.config.session_timeout_ms_max;
        if !session_range.contains(&args.session_timeout_ms) {
            return JoinOutcome::failed(ResponseError::InvalidSessionTimeout, &args.member_id);
        }
        if self.is_consumer_group(group_id) {
            return self.consumer_join(group_id, &args).await;
        }
        let args_member_id = args.member_id.clone();
        let prefix = args.group_instance_id.clone().unwrap_or_else(|| args.client_id.clone());
        args.new_member_id = self.new_member_id(&prefix);
        let (sender, receiver) = async_channel::bounded(1);
        {
            let now = self.now();
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(group_id) {
                if !args.member_id.is_empty() {
                    return JoinOutcome::failed(ResponseError::UnknownMemberId, &args.member_id);
                }
                groups.insert(group_id.to_owned(), Group::new(group_id, now));
            }
            let group = groups.get_mut(group_id).expect("inserted above");
            group.join(now, self.policy(), args, sender);
        }
        self.after_change(group_id);
        let member_id = args_member_id;
        self.until_shutdown(receiver).await.unwrap_or_else(|error| JoinOutcome::failed(error, &member_id))
    }

    /// Waits for a delayed answer, but not past the start of shutdown (which waits for every
    /// connection's in-flight requests): then the client is told to find its coordinator again.
    async fn until_shutdown<T>(&self, receiver: async_channel::Receiver<T>) -> Result<T, ResponseError> {
        let answer = std::pin::pin!(receiver.recv());
        let shutdown = std::pin::pin!(self.shared.shutdown.wait(&self.shared.engine));
        match select(answer, shutdown).await {
            Either::Left((Ok(outcome), _)) => Ok(outcome),
            // The group went: its partition was unloaded, so another broker coordinates it now.
            Either::Left((Err(_closed), _)) => Err(ResponseError::NotCoordinator),
            Either::Right(((), _)) => Err(ResponseError::NotCoordinator),
        }
    }

    /// SyncGroup: answers once the leader's assignment is in (or at once).
    pub(crate) async fn sync(&self, group_id: &str, args: SyncArgs) -> SyncOutcome {
        if let Err(error) = self.check_group(group_id) {
            return SyncOutcome::failed(error);
        }
        if self.is_consumer_group(group_id) {
            return self.consumer_sync(group_id, &args).await;
        }
        let (sender, receiver) = async_channel::bounded(1);
        {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return SyncOutcome::failed(ResponseError::UnknownMemberId);
            };
            group.sync(self.now(), args, sender);
        }
        self.after_change(group_id);
        self.until_shutdown(receiver).await.unwrap_or_else(SyncOutcome::failed)
    }

    /// Heartbeat.
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.check_group(group_id)?;
        if self.is_consumer_group(group_id) {
            return self.consumer_classic_heartbeat(group_id, member, generation_id);
        }
        let result = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
            group.heartbeat(self.now(), member, generation_id)
        };
        self.after_change(group_id);
        result
    }

    /// LeaveGroup: one result per member, or a group-level error.
    pub(crate) fn leave(
        &self,
        group_id: &str,
        members: &[MemberRef<'_>],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.check_group(group_id)?;
        if self.is_consumer_group(group_id) {
            return self.consumer_classic_leave(group_id, members);
        }
        let results = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return Ok(members.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect());
            };
            let now = self.now();
            members.iter().map(|member| group.leave(now, self.policy(), *member)).collect()
        };
        self.after_change(group_id);
        Ok(results)
    }

    /// OffsetCommit: checks the member, stores the offsets durably, then applies them. One result
    /// per entry, in order.
    pub(crate) async fn commit(
        &self,
        group_id: &str,
        args: &CommitArgs,
        entries: &[CommitEntry],
    ) -> Vec<Result<(), ResponseError>> {
        let all = |error: ResponseError| entries.iter().map(|_| Err(error)).collect();
        if group_id.is_empty() {
            return all(ResponseError::InvalidGroupId);
        }
        if let Err(error) = self.check_group(group_id) {
            return all(error);
        }
        let now = self.now();
        let mut results: Vec<Result<(), ResponseError>> = entries.iter().map(|entry| self.check_entry(entry)).collect();
        if results.iter().all(Result::is_err) {
            // Nothing to store: no group is created for it, as Kafka answers such a request
            // without reaching its coordinator.
            return results;
        }
        let checked = self.check_commit(group_id, args, now);
        if let Err(error) = checked {
            return all(error);
        }
        let mut stored = Vec::new();
        let mut records = Vec::new();
        for (entry, _) in entries.iter().zip(&results).filter(|(_, result)| result.is_ok()) {
            let expire_timestamp_ms =
                (args.retention_time_ms >= 0).then(|| now.unix_ms.saturating_add(args.retention_time_ms));
            let (record, offset) = offset_record(group_id, entry, now.unix_ms, expire_timestamp_ms);
            records.push(record);
            stored.push(offset);
        }
        let written = self.writes.write(self.group_partition(group_id), records).await;
        match written {
            Ok(()) => {
                if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
                    group.apply_commits(stored);
                }
            }
            Err(error) => results.iter_mut().filter(|result| result.is_ok()).for_each(|result| *result = Err(error)),
        }
        self.wake.notify(1);
        results
    }

    /// Whether `args`' member may commit to `group_id`; creates the group (or a consumer group's
    /// offsets holder) an accepted commit needs.
    fn check_commit(&self, group_id: &str, args: &CommitArgs, now: Now) -> Result<(), ResponseError> {
        let consumer =
            self.check_consumer_commit(group_id, &args.member_id, args.generation_id, false, args.api_version);
        let mut groups = self.groups.borrow_mut();
        if let Some(checked) = consumer {
            checked?;
            groups.entry(group_id.to_owned()).or_insert_with(|| Group::new(group_id, now));
            return Ok(());
        }
        if !groups.contains_key(group_id) {
            if args.generation_id >= 0 {
                // From v9 Kafka names the problem for either protocol; before, it keeps the
                // classic answer.
                return Err(if args.api_version >= 9 {
                    ResponseError::GroupIdNotFound
                } else {
                    ResponseError::IllegalGeneration
                });
            }
            groups.insert(group_id.to_owned(), Group::new(group_id, now));
        }
        let group = groups.get_mut(group_id).expect("present or inserted above");
        let member = MemberRef { member_id: &args.member_id, group_instance_id: args.group_instance_id.as_deref() };
        group.check_commit(now, member, args.generation_id)
    }

    pub(super) fn check_entry(&self, entry: &CommitEntry) -> Result<(), ResponseError> {
        if entry.metadata.as_ref().is_some_and(|metadata| metadata.len() > self.config.offset_metadata_bytes_max) {
            return Err(ResponseError::OffsetMetadataTooLarge);
        }
        let exists = self
            .shared
            .metadata
            .image()
            .topic(&entry.topic)
            .is_some_and(|topic| (0..topic.partition_count()).contains(&entry.partition));
        if exists { Ok(()) } else { Err(ResponseError::UnknownTopicOrPartition) }
    }

    /// OffsetFetch: committed offsets of the partitions asked for, or of every partition.
    pub(crate) fn fetch(
        &self,
        group_id: &str,
        member: &FetchMember,
        topics: TopicPartitions,
    ) -> Result<FetchedOffsets, ResponseError> {
        self.check_group(group_id)?;
        self.check_consumer_fetch(group_id, member)?;
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|group| &group.offsets);
        let Some(topics) = topics else {
            let mut all: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> = BTreeMap::new();
            for ((topic, partition), offset) in offsets.into_iter().flatten() {
                all.entry(topic.clone()).or_default().push((*partition, Some(offset.clone())));
            }
            return Ok(all.into_iter().collect());
        };
        let lookup = |topic: &str, partition: i32| {
            offsets.and_then(|offsets| offsets.get(&(topic.to_owned(), partition))).cloned()
        };
        Ok(topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions.into_iter().map(|partition| (partition, lookup(&topic, partition))).collect();
                (topic, found)
            })
            .collect())
    }

    /// OffsetDelete: removes committed offsets of topics the group does not subscribe to.
    pub(crate) async fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<(String, Vec<(i32, Result<(), ResponseError>)>)>, ResponseError> {
        self.check_group(group_id)?;
        if self.is_consumer_group(group_id) {
            self.check_consumer_group(group_id)?;
            // A consumer group exists even before its first commit gives it an offsets holder.
            let now = self.now();
            self.groups.borrow_mut().entry(group_id.to_owned()).or_insert_with(|| Group::new(group_id, now));
        }
        let mut records = Vec::new();
        let mut removed = Vec::new();
        let results = {
            let groups = self.groups.borrow();
            let group = groups
                .get(group_id)
                .filter(|group| group.state != GroupState::Dead)
                .ok_or(ResponseError::GroupIdNotFound)?;
            let consumer = group
                .protocol_type
                .as_deref()
                .is_none_or(|name| name.is_empty() || name == super::offsets::CONSUMER_PROTOCOL_TYPE);
            if group.has_members() && !consumer {
                return Err(ResponseError::NonEmptyGroup);
            }
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let allowed = match self.consumer_subscribes_to(group_id, &topic) {
                        Some(subscribed) => !subscribed,
                        None => group.may_delete_offsets_of(&topic),
                    };
                    let exists = self.shared.metadata.image().topic(&topic).is_some();
                    let results = partitions
                        .into_iter()
                        .map(|partition| {
                            if !exists {
                                return (partition, Err(ResponseError::UnknownTopicOrPartition));
                            }
                            if !allowed {
                                return (partition, Err(ResponseError::GroupSubscribedToTopic));
                            }
                            if group.offsets.contains_key(&(topic.clone(), partition)) {
                                let key =
                                    RecordKey::Offset { group: group_id.to_owned(), topic: topic.clone(), partition };
                                records.push((records::encode_key(&key), None));
                                removed.push((topic.clone(), partition));
                            }
                            (partition, Ok(()))
                        })
                        .collect();
                    (topic, results)
                })
                .collect::<Vec<_>>()
        };
        self.writes.write(self.group_partition(group_id), records).await?;
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            for key in removed {
                group.offsets.remove(&key);
            }
        }
        Ok(results)
    }

    /// ListGroups: every live group of this shard, classic and consumer.
    pub(crate) fn list(&self) -> Vec<ListedGroup> {
        let mut listed: Vec<ListedGroup> = self
            .groups
            .borrow()
            .values()
            .filter(|group| group.state != GroupState::Dead && !self.is_consumer_group(&group.id))
            .map(|group| ListedGroup {
                group_id: group.id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                state: group.state.name(),
                group_type: GroupType::Classic,
            })
            .collect();
        listed.extend(self.listed_consumer_groups().into_iter().map(|(group_id, state)| ListedGroup {
            group_id,
            protocol_type: super::offsets::CONSUMER_PROTOCOL_TYPE.to_owned(),
            state,
            group_type: GroupType::Consumer,
        }));
        listed
    }

    /// DescribeGroups for one group; an unknown group, or a consumer group (DescribeGroups
    /// describes classic groups only), is described as Dead, as Kafka does before v6.
    pub(crate) fn describe(&self, group_id: &str) -> Result<DescribedGroup, ResponseError> {
        self.check_group(group_id)?;
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id).filter(|_| !self.is_consumer_group(group_id)) else {
            return Ok(DescribedGroup {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            });
        };
        let stable = group.state == GroupState::Stable;
        let protocol = if stable { group.protocol_name.clone().unwrap_or_default() } else { String::new() };
        let members = group
            .members
            .values()
            .map(|member| DescribedMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: if stable { member.metadata(&protocol) } else { bytes::Bytes::new() },
                assignment: if stable { member.assignment.clone() } else { bytes::Bytes::new() },
            })
            .collect();
        Ok(DescribedGroup {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol,
            members,
        })
    }

    /// DeleteGroups for one group: only an empty group, with its offsets.
    pub(crate) async fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check_group(group_id)?;
        if let Some(deleted) = self.delete_consumer_group(group_id).await {
            return deleted;
        }
        let records = {
            let groups = self.groups.borrow();
            let group = groups
                .get(group_id)
                .filter(|group| group.state != GroupState::Dead)
                .ok_or(ResponseError::GroupIdNotFound)?;
            if group.state != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            tombstones(group, group.offsets.keys())
        };
        self.writes.write(self.group_partition(group_id), records).await?;
        let mut groups = self.groups.borrow_mut();
        if groups.get(group_id).is_some_and(|group| group.state == GroupState::Empty) {
            groups.remove(group_id);
        }
        Ok(())
    }

    /// The timer task: applies deadlines as they pass and expires offsets periodically.
    async fn run_timers(&self) {
        let mut next_retention_ms = self.now().monotonic_ms + self.config.offsets_retention_check_interval_ms;
        loop {
            if self.shared.shutdown.is_started() {
                return;
            }
            let listener = self.wake.listen();
            let now = self.now();
            let mut next_ms = now.monotonic_ms + TICK_MS_MAX;
            let changed: Vec<String> = {
                let mut groups = self.groups.borrow_mut();
                let mut changed = Vec::new();
                for group in groups.values_mut() {
                    if group.next_deadline_ms().is_some_and(|deadline| deadline <= now.monotonic_ms) {
                        group.expire(now, self.policy());
                        changed.push(group.id.clone());
                    }
                    if let Some(deadline) = group.next_deadline_ms() {
                        next_ms = next_ms.min(deadline);
                    }
                }
                changed
            };
            for group_id in &changed {
                self.persist_if_dirty(group_id);
            }
            if let Some(deadline) = self.run_consumer_timers(now) {
                next_ms = next_ms.min(deadline);
            }
            if now.monotonic_ms >= next_retention_ms {
                self.expire_offsets(now);
                next_retention_ms = now.monotonic_ms + self.config.offsets_retention_check_interval_ms;
            }
            let wait_ms = (next_ms.min(next_retention_ms) - now.monotonic_ms).clamp(1, TICK_MS_MAX);
            let sleep = self.shared.clock.sleep(Duration::from_millis(wait_ms as u64));
            match select(sleep, listener).await {
                Either::Left(((), _)) | Either::Right(((), _)) => {}
            }
        }
    }

    fn persist_if_dirty(&self, group_id: &str) {
        let record = {
            let mut groups = self.groups.borrow_mut();
            groups.get_mut(group_id).filter(|group| group.metadata_dirty).map(|group| {
                group.metadata_dirty = false;
                group_record(group)
            })
        };
        if let Some(record) = record {
            self.writes.write_detached(self.group_partition(group_id), vec![record]);
        }
    }

    /// Applies `offsets.retention.minutes`: drops expired offsets, and empty groups left with none.
    fn expire_offsets(&self, now: Now) {
        let consumer_writes = self.expire_consumer_offsets(now, self.config.offsets_retention_ms);
        self.write_expired_consumer_offsets(consumer_writes);
        let count = self.offsets_partition_count();
        let mut groups = self.groups.borrow_mut();
        let mut dead = Vec::new();
        for group in groups.values_mut().filter(|group| !self.is_consumer_group(&group.id)) {
            let expired = group.expired_offsets(now, self.config.offsets_retention_ms);
            let mut records = Vec::new();
            for key in &expired {
                group.offsets.remove(key);
                let record_key = RecordKey::Offset { group: group.id.clone(), topic: key.0.clone(), partition: key.1 };
                records.push((records::encode_key(&record_key), None));
            }
            let abandoned =
                group.state == GroupState::Empty && group.offsets.is_empty() && group.pending_members.is_empty();
            if abandoned {
                group.transition(GroupState::Dead, now);
                records.push((records::encode_key(&RecordKey::Group { group: group.id.clone() }), None));
                dead.push(group.id.clone());
            }
            if !records.is_empty() {
                tracing::info!(group = %group.id, offsets = expired.len(), removed = abandoned, "offsets expired");
                self.writes.write_detached(Self::partition_of(&group.id, count), records);
            }
        }
        for group_id in dead {
            groups.remove(&group_id);
        }
    }
}

/// The group metadata record of a group.
fn group_record(group: &Group) -> KeyedRecord {
    let key = records::encode_key(&RecordKey::Group { group: group.id.clone() });
    (key, Some(records::encode_group_value(&group.to_value())))
}

/// Tombstones for a group's offsets and its metadata.
fn tombstones<'a>(group: &Group, offsets: impl Iterator<Item = &'a (String, i32)>) -> Vec<KeyedRecord> {
    let mut records: Vec<KeyedRecord> = offsets
        .map(|(topic, partition)| {
            let key = RecordKey::Offset { group: group.id.clone(), topic: topic.clone(), partition: *partition };
            (records::encode_key(&key), None)
        })
        .collect();
    records.push((records::encode_key(&RecordKey::Group { group: group.id.clone() }), None));
    records
}

/// The record storing a committed offset, and the offset as the group keeps it.
pub(super) fn offset_record(
    group_id: &str,
    entry: &CommitEntry,
    commit_timestamp_ms: i64,
    expire_timestamp_ms: Option<i64>,
) -> (KeyedRecord, ((String, i32), CommittedOffset)) {
    let value = CommittedOffset {
        offset: entry.offset,
        leader_epoch: entry.leader_epoch,
        metadata: entry.metadata.clone().unwrap_or_default(),
        commit_timestamp_ms,
        expire_timestamp_ms,
    };
    let key = RecordKey::Offset { group: group_id.to_owned(), topic: entry.topic.clone(), partition: entry.partition };
    let record = (records::encode_key(&key), Some(records::encode_offset_value(&value)));
    (record, ((entry.topic.clone(), entry.partition), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_java_string_hash() {
        // "hello".hashCode() == 99162322; Kafka puts group "hello" in partition 22 of 50.
        assert_eq!(Coordinator::partition_of("hello", 50), 99_162_322 % 50);
        // A negative hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE maps to 0.
        assert_eq!(Coordinator::partition_of("polygenelubricants", 50), 0);
        assert!((0..50).contains(&Coordinator::partition_of("some-group-name", 50)));
    }
}
