//! Cluster metadata, above the engine: what topics and partitions exist, which brokers hold and
//! lead them, and the changes admin requests make.
//!
//! - `image`: the [`MetadataImage`] every handler reads (an immutable snapshot, swapped whole);
//! - `records`: the changes it is built from, in log order;
//! - `controller`: admin requests turned into records, or refused;
//! - `store`: where a single broker keeps its image;
//! - this module: [`Metadata`], the one writer, and what a change does to this broker.
//!
//! A change, step by step (one at a time, under the writer lock):
//! 1. decide the records against the current image (`controller`);
//! 2. persist them (the store) and build the next image;
//! 3. bring this broker's logs in line: remove the logs of partitions it no longer holds (or
//!    that a topic of the same name now holds under a new id), open the logs of partitions it now
//!    holds, hand changed configs to the engine;
//! 4. publish the image to readers: a handler that sees a partition finds its log open;
//! 5. tell leadership listeners (the group coordinator, later the transaction coordinator) which
//!    partitions this broker started or stopped leading, and wait until they have acted.
//!
//! Any thread may read the image; writes come from shard threads (admin handlers) and from the
//! startup thread.

pub(crate) mod controller;
pub(crate) mod image;
pub(crate) mod records;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use sluice_engine::{Engine, PartitionSpec, TopicConfig, TopicId, TopicPartition};

pub(crate) use controller::{Defaults, NewTopic, Refusal};
pub(crate) use image::{MetadataImage, NO_LEADER, TopicImage};
use records::MetadataRecord;
use store::{LocalStore, StoreError};

/// This broker's role for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It leads the partition at this epoch.
    Leader { leader_epoch: i32 },
    /// It holds a replica that follows `leader` (or nobody, [`NO_LEADER`]).
    Follower { leader: i32, leader_epoch: i32 },
}

/// A partition whose role on this broker changed; `role` is `None` once it holds no replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeadershipChange {
    pub(crate) partition: TopicPartition,
    pub(crate) role: Option<Role>,
}

/// Something that follows partition leadership: it loads what it serves for a partition when
/// this broker starts leading it, and unloads it when it stops.
pub(crate) trait LeadershipListener: Send + Sync + std::fmt::Debug {
    /// The topic whose partitions it follows.
    fn topic(&self) -> &str;
    /// Acts on changes of that topic's partitions; the future, awaited on the writer's thread,
    /// completes once it has.
    fn changed(&self, changes: Vec<LeadershipChange>) -> LocalBoxFuture<'static, ()>;
}

/// Why a metadata change did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("metadata could not be stored: {0}")]
    Store(#[from] StoreError),
}

impl WriteError {
    /// The error clients get: the change may be retried.
    pub(crate) fn refusal(&self) -> Refusal {
        Refusal::new(ResponseError::KafkaStorageError, self.to_string())
    }
}

/// The writer's state: the store and this broker's last roles.
#[derive(Debug)]
struct Writer {
    store: LocalStore,
    roles: BTreeMap<TopicPartition, Role>,
}

/// The metadata of this broker: the published image and its single writer.
#[derive(Debug)]
pub(crate) struct Metadata {
    node_id: i32,
    image: ArcSwap<MetadataImage>,
    writer: futures_util::lock::Mutex<Writer>,
    engine: Engine,
    /// Broker defaults that resolve new topics' configs.
    pub(crate) defaults: Defaults,
    listeners: OnceLock<Vec<Arc<dyn LeadershipListener>>>,
}

impl Metadata {
    /// Loads (or first builds) this broker's metadata from `data_dir`.
    pub(crate) fn open(
        data_dir: &Path,
        cluster_id: &str,
        node_id: i32,
        engine: Engine,
        defaults: Defaults,
    ) -> Result<Self, StoreError> {
        let (store, image) = LocalStore::open(data_dir, cluster_id, node_id, &engine)?;
        Ok(Self {
            node_id,
            image: ArcSwap::from_pointee(image),
            writer: futures_util::lock::Mutex::new(Writer { store, roles: BTreeMap::new() }),
            engine,
            defaults,
            listeners: OnceLock::new(),
        })
    }

    /// The current image.
    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.load_full()
    }

    /// Registers the leadership listeners; once, at startup, before [`Metadata::start`].
    pub(crate) fn set_listeners(&self, listeners: Vec<Arc<dyn LeadershipListener>>) {
        assert!(self.listeners.set(listeners).is_ok(), "leadership listeners are set once");
    }

    /// Brings this broker in line with the image it loaded (its logs, its roles), and registers
    /// it under `host:port` when the image does not already have it so.
    pub(crate) async fn start(&self, registration: image::BrokerRegistration) -> Result<(), WriteError> {
        let registered = self.image().brokers.get(&self.node_id).cloned();
        let records = match registered {
            Some(known) if known.host == registration.host && known.port == registration.port && !known.fenced => {
                Vec::new()
            }
            _ => vec![MetadataRecord::RegisterBroker(registration)],
        };
        self.write(records).await
    }

    /// Runs `decide` against the current image and commits the records it returns, then applies
    /// them to this broker (steps 1-5 of the module docs). Its answer is returned either way.
    pub(crate) async fn update<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> (Vec<MetadataRecord>, T),
    ) -> Result<T, WriteError> {
        let mut writer = self.writer.lock().await;
        let current = self.image();
        let (records, answer) = decide(&current);
        if !records.is_empty() {
            self.commit(&mut writer, &current, &records).await?;
        }
        Ok(answer)
    }

    /// Creates topics (or, with `validate_only`, only checks them): one answer per topic, in
    /// order, with the topic as created (or as it would be).
    pub(crate) async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<Arc<TopicImage>, Refusal>> {
        let defaults = self.defaults;
        let decided = self.update(|image| {
            let mut scratch = image.clone();
            let mut records = Vec::new();
            let mut answers = Vec::new();
            for topic in &topics {
                let decision =
                    controller::create_topic(&scratch, topic, new_topic_id(), defaults, crate::clock::entropy());
                answers.push(decision.map(|record| {
                    scratch.apply(&record);
                    records.push(record);
                    scratch.topic(&topic.name).cloned().expect("the record just created it")
                }));
            }
            if validate_only {
                records.clear();
            }
            (records, answers)
        });
        match decided.await {
            Ok(answers) => answers,
            Err(error) => topics.iter().map(|_| Err(error.refusal())).collect(),
        }
    }

    /// Deletes topics by id: one answer per id, in order.
    pub(crate) async fn delete_topics(&self, ids: Vec<TopicId>) -> Vec<Result<(), Refusal>> {
        let decided = self.update(|image| {
            let mut records = Vec::new();
            let answers = ids
                .iter()
                .map(|id| match image.topic_by_id(*id) {
                    Some(_) => {
                        records.push(MetadataRecord::DeleteTopic { id: *id });
                        Ok(())
                    }
                    None => {
                        Err(Refusal::new(ResponseError::UnknownTopicId, "This server does not host this topic ID."))
                    }
                })
                .collect::<Vec<_>>();
            (records, answers)
        });
        match decided.await {
            Ok(answers) => answers,
            Err(error) => ids.iter().map(|_| Err(error.refusal())).collect(),
        }
    }

    /// Grows a topic to `count` partitions (placed by the controller when `assignments` is
    /// empty); with `validate_only`, only checks.
    pub(crate) async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Vec<Vec<i32>>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let decided = self.update(|image| {
            let decision = match image.topic(name) {
                Some(topic) => {
                    controller::create_partitions(image, topic, count, &assignments, crate::clock::entropy())
                }
                None => Err(Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name}"))),
            };
            match decision {
                Ok(record) if !validate_only => (vec![record], Ok(())),
                Ok(_) => (Vec::new(), Ok(())),
                Err(refusal) => (Vec::new(), Err(refusal)),
            }
        });
        decided.await.unwrap_or_else(|error| Err(error.refusal()))
    }

    /// Replaces a topic's config with what `change` makes of it (refusing with its answer).
    pub(crate) async fn alter_topic_config(
        &self,
        name: &str,
        change: impl FnOnce(&TopicConfig) -> Result<TopicConfig, Refusal>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let decided = self.update(|image| {
            let Some(topic) = image.topic(name) else {
                return (
                    Vec::new(),
                    Err(Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name}"))),
                );
            };
            match change(&topic.config) {
                Ok(config) if !validate_only && config != topic.config => {
                    (vec![MetadataRecord::AlterTopicConfig { id: topic.id, config }], Ok(()))
                }
                Ok(_) => (Vec::new(), Ok(())),
                Err(refusal) => (Vec::new(), Err(refusal)),
            }
        });
        decided.await.unwrap_or_else(|error| Err(error.refusal()))
    }

    async fn write(&self, records: Vec<MetadataRecord>) -> Result<(), WriteError> {
        let mut writer = self.writer.lock().await;
        let current = self.image();
        self.commit(&mut writer, &current, &records).await
    }

    /// Steps 2-5 for `records` (none: only bring the broker in line with the image).
    async fn commit(
        &self,
        writer: &mut Writer,
        current: &MetadataImage,
        records: &[MetadataRecord],
    ) -> Result<(), WriteError> {
        let next = if records.is_empty() { current.clone() } else { writer.store.commit(current, records).await? };
        let desired = self.local_partitions(&next);
        self.align_logs(&desired).await;
        self.image.store(Arc::new(next));
        let changes = role_changes(&writer.roles, &desired);
        writer.roles = desired.into_iter().map(|(partition, wanted)| (partition, wanted.role)).collect();
        self.tell_listeners(changes).await;
        Ok(())
    }

    /// The partitions `image` places on this broker, with what their logs need.
    fn local_partitions(&self, image: &MetadataImage) -> BTreeMap<TopicPartition, LocalPartition> {
        let mut local = BTreeMap::new();
        for topic in image.topics() {
            for (index, state) in topic.partitions.iter().enumerate() {
                if !state.replicas.contains(&self.node_id) {
                    continue;
                }
                let role = if state.leader == self.node_id {
                    Role::Leader { leader_epoch: state.leader_epoch }
                } else {
                    Role::Follower { leader: state.leader, leader_epoch: state.leader_epoch }
                };
                let wanted = LocalPartition { topic_id: topic.id, config: topic.config.clone(), role };
                local.insert(TopicPartition::new(topic.name.clone(), index as i32), wanted);
            }
        }
        local
    }

    /// Step 3: removes and opens logs so the engine holds exactly `desired`. A failure is
    /// logged, and the partition's requests fail until a later change or a restart fixes it.
    async fn align_logs(&self, desired: &BTreeMap<TopicPartition, LocalPartition>) {
        let mut doomed = Vec::new();
        let mut held: BTreeMap<TopicPartition, (TopicId, TopicConfig)> = BTreeMap::new();
        for topic in self.engine.topics() {
            for index in topic.partitions.keys() {
                let partition = TopicPartition::new(topic.name.clone(), *index);
                match desired.get(&partition) {
                    Some(wanted) if wanted.topic_id == topic.id => {
                        held.insert(partition, (topic.id, topic.config.clone()));
                    }
                    _ => doomed.push(partition),
                }
            }
        }
        if !doomed.is_empty() {
            tracing::info!(partitions = doomed.len(), "metadata: removing logs this broker no longer holds");
            if let Err(error) = self.engine.remove_partitions(doomed).await {
                tracing::error!(%error, "metadata: removing partition logs failed");
            }
        }
        let specs: Vec<PartitionSpec> = desired
            .iter()
            .filter(|(partition, wanted)| held.get(*partition).is_none_or(|(_, config)| *config != wanted.config))
            .map(|(partition, wanted)| PartitionSpec {
                partition: partition.clone(),
                topic_id: wanted.topic_id,
                config: wanted.config.clone(),
            })
            .collect();
        if !specs.is_empty()
            && let Err(error) = self.engine.open_partitions(specs).await
        {
            tracing::error!(%error, "metadata: opening partition logs failed");
        }
    }

    /// Step 5: hands each listener the changes of its topic and waits for all of them.
    async fn tell_listeners(&self, changes: Vec<LeadershipChange>) {
        let Some(listeners) = self.listeners.get() else { return };
        let mut waits = Vec::new();
        for listener in listeners {
            let mine: Vec<LeadershipChange> =
                changes.iter().filter(|change| &*change.partition.topic == listener.topic()).cloned().collect();
            if !mine.is_empty() {
                waits.push(listener.changed(mine));
            }
        }
        futures_util::future::join_all(waits).await;
    }
}

/// A new random topic id (Kafka's are random UUIDs too).
fn new_topic_id() -> TopicId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&crate::clock::entropy().to_be_bytes());
    id[8..].copy_from_slice(&crate::clock::entropy().to_be_bytes());
    TopicId(id)
}

/// What a partition held here needs: its topic id and config, and this broker's role.
#[derive(Debug, Clone)]
struct LocalPartition {
    topic_id: TopicId,
    config: TopicConfig,
    role: Role,
}

/// The roles that changed between the last alignment and `desired`.
fn role_changes(
    before: &BTreeMap<TopicPartition, Role>,
    desired: &BTreeMap<TopicPartition, LocalPartition>,
) -> Vec<LeadershipChange> {
    let mut changes = Vec::new();
    for partition in before.keys() {
        if !desired.contains_key(partition) {
            changes.push(LeadershipChange { partition: partition.clone(), role: None });
        }
    }
    for (partition, wanted) in desired {
        if before.get(partition) != Some(&wanted.role) {
            changes.push(LeadershipChange { partition: partition.clone(), role: Some(wanted.role) });
        }
    }
    changes
}

/// A data request's partition, checked against the image: this broker must lead it, and a
/// leader epoch the client names must be the current one.
#[derive(Debug, Clone)]
pub(crate) struct Led {
    pub(crate) partition: TopicPartition,
    pub(crate) leader_epoch: i32,
}

/// Checks that this broker leads partition `index` of `topic`, for a request that names
/// `current_leader_epoch` (-1: none). Kafka's answers: UNKNOWN_TOPIC_OR_PARTITION for a topic or
/// partition that does not exist, NOT_LEADER_OR_FOLLOWER when another broker (or none) leads
/// it, FENCED_LEADER_EPOCH for an older epoch, UNKNOWN_LEADER_EPOCH for a newer one.
pub(crate) fn lead(
    node_id: i32,
    topic: &TopicImage,
    index: i32,
    current_leader_epoch: i32,
) -> Result<Led, ResponseError> {
    let state = topic.partition(index).ok_or(ResponseError::UnknownTopicOrPartition)?;
    if current_leader_epoch >= 0 && current_leader_epoch < state.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if current_leader_epoch > state.leader_epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    if state.leader != node_id {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok(Led { partition: TopicPartition::new(topic.name.clone(), index), leader_epoch: state.leader_epoch })
}
