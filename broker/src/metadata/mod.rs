//! Cluster metadata, above the engine: what topics and partitions exist, which brokers hold and
//! lead them, and the changes admin requests make.
//!
//! - `image`: the [`MetadataImage`] every handler reads (an immutable snapshot, swapped whole);
//! - `records`: the changes it is built from, in log order;
//! - `controller`: admin requests turned into records, or refused (used by the active
//!   controller, `crate::controller`);
//! - `config_change`: topic config changes, decided against the config the controller holds;
//! - `store`: the metadata file of single brokers from before the controller quorum, adopted
//!   into the metadata log once;
//! - this module: [`Metadata`], this broker's view of the metadata log, and what an applied
//!   change does to this broker.
//!
//! Changes are written by the active controller to the replicated metadata log; every node
//! applies the log in order and hands each new image to [`Metadata::publish`], one at a time.
//! A node of a cluster starts publishing only once it has caught up with the quorum (its own
//! registration applied: see `crate::controller`), so the steps below never act on the stale
//! image a restarted broker's log holds:
//! 1. bring this broker's logs in line: remove the logs of partitions it no longer holds (or
//!    that a topic of the same name now holds under a new id), open the logs of partitions it now
//!    holds, hand changed configs to the engine;
//! 2. publish the image to readers: a handler that sees a partition finds its log open;
//! 3. tell leadership listeners (the group coordinator, later the transaction coordinator) which
//!    partitions this broker started or stopped leading, and wait until they have acted;
//! 4. record the image's log index, waking requests that wait for it.
//!
//! Admin handlers ask for changes through [`Metadata`]'s methods, which send them to the active
//! controller and return once this broker has published the result. Any thread may read the
//! image.

pub(crate) mod config_change;
pub(crate) mod controller;
pub(crate) mod image;
pub(crate) mod records;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use sluice_engine::{Engine, PartitionSpec, TopicConfig, TopicId, TopicPartition};

use crate::controller::wire::{ControllerAnswer, ControllerRequest, Outcome, QuorumDescription};
use config_change::ConfigChange;
pub(crate) use controller::{Defaults, NewTopic, Refusal};
pub(crate) use image::{MetadataImage, NO_LEADER, PartitionState, TopicImage};

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
    /// Acts on changes of that topic's partitions; the future, awaited on the publisher's
    /// thread, completes once it has.
    fn changed(&self, changes: Vec<LeadershipChange>) -> LocalBoxFuture<'static, ()>;
}

/// The metadata of this broker: the published image, and the way to the controller.
#[derive(Debug)]
pub(crate) struct Metadata {
    node_id: i32,
    image: ArcSwap<MetadataImage>,
    engine: Engine,
    /// Broker defaults that resolve new topics' partition counts and replication factors.
    pub(crate) defaults: Defaults,
    listeners: OnceLock<Vec<Arc<dyn LeadershipListener>>>,
    /// This broker's roles as last published; only the publisher touches them.
    roles: futures_util::lock::Mutex<BTreeMap<TopicPartition, Role>>,
    /// The metadata log index of the published image.
    published_index: AtomicU64,
    published: event_listener::Event,
    controller: OnceLock<crate::controller::Handle>,
    replication: Arc<crate::replication::Replication>,
}

impl Metadata {
    /// This broker's metadata, empty until the controller thread publishes the first image.
    pub(crate) fn new(
        node_id: i32,
        engine: Engine,
        defaults: Defaults,
        replication: Arc<crate::replication::Replication>,
    ) -> Self {
        Self {
            replication,
            node_id,
            image: ArcSwap::from_pointee(MetadataImage::default()),
            engine,
            defaults,
            listeners: OnceLock::new(),
            roles: futures_util::lock::Mutex::new(BTreeMap::new()),
            published_index: AtomicU64::new(0),
            published: event_listener::Event::new(),
            controller: OnceLock::new(),
        }
    }

    /// The current image.
    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.load_full()
    }

    /// The current image, borrowed for a short look without touching the shared reference
    /// count (per-request checks on hot paths).
    pub(crate) fn peek_image(&self) -> arc_swap::Guard<Arc<MetadataImage>> {
        self.image.load()
    }

    /// Registers the leadership listeners; once, at startup, before the controller starts.
    pub(crate) fn set_listeners(&self, listeners: Vec<Arc<dyn LeadershipListener>>) {
        assert!(self.listeners.set(listeners).is_ok(), "leadership listeners are set once");
    }

    /// Connects the controller; once, at startup.
    pub(crate) fn set_controller(&self, controller: crate::controller::Handle) {
        assert!(self.controller.set(controller).is_ok(), "the controller is set once");
    }

    /// The replication state of the partitions this broker holds.
    pub(crate) fn replication(&self) -> &Arc<crate::replication::Replication> {
        &self.replication
    }

    /// The controller thread's handle, once started.
    pub(crate) fn controller(&self) -> Option<&crate::controller::Handle> {
        self.controller.get()
    }

    /// The controller id clients are told. Clients send admin requests there, and every broker
    /// forwards them to the active controller, so (as Kafka's KRaft brokers name any live broker)
    /// this broker names itself: it is alive, which a remembered active controller may no longer
    /// be, and a client never waits on a dead "controller" while live brokers could serve it.
    /// Before it has registered, the first live broker; -1 when there is none.
    pub(crate) fn controller_id(&self, image: &MetadataImage) -> i32 {
        if image.brokers.contains_key(&self.node_id) {
            return self.node_id;
        }
        image.live_brokers().next().map_or(NO_LEADER, |broker| broker.node_id)
    }

    /// The metadata log index of the published image.
    pub(crate) fn published_index(&self) -> u64 {
        self.published_index.load(Ordering::Acquire)
    }

    /// Completes once the published image includes log index `index`.
    pub(crate) async fn wait_published(&self, index: u64) {
        loop {
            let listener = self.published.listen();
            if self.published_index() >= index {
                return;
            }
            listener.await;
        }
    }

    /// Steps 1-4 of the module docs for the image at log index `index`; the controller thread's
    /// publisher calls it for each new image, in order.
    pub(crate) async fn publish(&self, next: Arc<MetadataImage>, index: u64) {
        let mut roles = self.roles.lock().await;
        let desired = self.local_partitions(&next);
        self.align_logs(&desired).await;
        self.replication.align(&next, &self.engine).await;
        self.image.store(next);
        let changes = role_changes(&roles, &desired);
        *roles = desired.into_iter().map(|(partition, wanted)| (partition, wanted.role)).collect();
        self.tell_listeners(changes).await;
        self.published_index.store(index, Ordering::Release);
        self.published.notify(usize::MAX);
    }

    /// Sends `request` to the active controller; its outcome once this broker has published
    /// what it wrote.
    pub(crate) async fn submit(&self, request: ControllerRequest) -> Result<Outcome, Refusal> {
        let Some(controller) = self.controller.get() else {
            return Err(Refusal::new(ResponseError::NotController, "the controller is not running yet"));
        };
        match controller.call(request).await {
            ControllerAnswer::Done { outcome, .. } => Ok(outcome),
            ControllerAnswer::NotController { .. } => {
                Err(Refusal::new(ResponseError::NotController, "no active controller answered; try again"))
            }
            ControllerAnswer::Unavailable(reason) => {
                Err(Refusal::new(ResponseError::RequestTimedOut, format!("the controller is unavailable: {reason}")))
            }
        }
    }

    /// Creates topics (or, with `validate_only`, only checks them): one answer per topic, in
    /// order, with the topic as created (or as it would be). Partition counts and replication
    /// factors left to the broker are resolved here, with this broker's defaults.
    pub(crate) async fn create_topics(
        &self,
        mut topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<Arc<TopicImage>, Refusal>> {
        let count = topics.len();
        for topic in &mut topics {
            if topic.assignments.is_empty() {
                topic.partition_count.get_or_insert(self.defaults.partition_count);
                topic.replication_factor.get_or_insert(self.defaults.replication_factor);
            }
        }
        match self.submit(ControllerRequest::CreateTopics { topics, validate_only }).await {
            Ok(Outcome::Topics(answers)) if answers.len() == count => answers
                .into_iter()
                .map(|answer| match answer {
                    Ok(topic) => Ok(self.image().topic(&topic.name).cloned().unwrap_or_else(|| Arc::new(topic))),
                    Err(refusal) => Err(refusal.into()),
                })
                .collect(),
            Ok(other) => (0..count).map(|_| Err(unexpected(&other))).collect(),
            Err(refusal) => (0..count).map(|_| Err(refusal.clone())).collect(),
        }
    }

    /// Deletes topics by id: one answer per id, in order.
    pub(crate) async fn delete_topics(&self, ids: Vec<TopicId>) -> Vec<Result<(), Refusal>> {
        let count = ids.len();
        self.submit_each(ControllerRequest::DeleteTopics { ids }, count).await
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
        let request = ControllerRequest::CreatePartitions { name: name.to_owned(), count, assignments, validate_only };
        self.submit_one(request).await
    }

    /// Changes a topic's config as `change` says, against the config the controller holds.
    pub(crate) async fn alter_topic_config(
        &self,
        name: &str,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let request = ControllerRequest::AlterTopicConfig { name: name.to_owned(), change, validate_only };
        self.submit_one(request).await
    }

    /// Changes a consumer group's own configs (the GROUP config resource) as `operations` say;
    /// with `validate_only`, only checks.
    pub(crate) async fn alter_group_config(
        &self,
        group: &str,
        operations: Vec<config_change::ConfigOperation>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        self.submit_one(ControllerRequest::AlterGroupConfig { group: group.to_owned(), operations, validate_only })
            .await
    }

    /// Moves a partition's leadership (tests, and the operations that move it).
    pub(crate) async fn move_leadership(
        &self,
        topic: &str,
        partition: i32,
        leader: Option<i32>,
    ) -> Result<(), Refusal> {
        self.submit_one(ControllerRequest::MoveLeadership { topic: topic.to_owned(), partition, leader }).await
    }

    /// Elects leaders (preferred, or `unclean`): one answer per partition, in order.
    pub(crate) async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Vec<(String, i32)>,
    ) -> Vec<Result<(), Refusal>> {
        let count = partitions.len();
        self.submit_each(ControllerRequest::ElectLeaders { unclean, partitions }, count).await
    }

    /// Starts (or with `None` cancels) reassignments: one answer per partition, in order.
    pub(crate) async fn reassign(&self, partitions: Vec<(String, i32, Option<Vec<i32>>)>) -> Vec<Result<(), Refusal>> {
        let count = partitions.len();
        self.submit_each(ControllerRequest::Reassign { partitions }, count).await
    }

    /// Removes a broker's registration (Kafka's UnregisterBroker).
    pub(crate) async fn unregister_broker(&self, node_id: i32) -> Result<(), Refusal> {
        self.submit_one(ControllerRequest::UnregisterBroker { node_id }).await
    }

    /// Asks the controller to set a partition's ISR, as its leader at the given epochs.
    pub(crate) async fn alter_partition(
        &self,
        topic_id: sluice_engine::TopicId,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<(), Refusal> {
        let leader = self.node_id;
        self.submit_one(ControllerRequest::AlterPartition {
            topic_id,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        })
        .await
    }

    /// A block of producer ids no other broker holds: `(first, count)`.
    pub(crate) async fn allocate_producer_ids(&self, count: i64) -> Result<(i64, i64), Refusal> {
        match self.submit(ControllerRequest::AllocateProducerIds { count }).await? {
            Outcome::ProducerIds { start, count } => Ok((start, count)),
            other => Err(unexpected(&other)),
        }
    }

    /// The controller quorum, as the active controller describes it.
    pub(crate) async fn describe_quorum(&self) -> Result<QuorumDescription, Refusal> {
        match self.submit(ControllerRequest::DescribeQuorum).await? {
            Outcome::Quorum(description) => Ok(description),
            other => Err(unexpected(&other)),
        }
    }

    /// Submits a request answered per item: `count` answers, in order.
    async fn submit_each(&self, request: ControllerRequest, count: usize) -> Vec<Result<(), Refusal>> {
        match self.submit(request).await {
            Ok(Outcome::Each(answers)) if answers.len() == count => {
                answers.into_iter().map(|answer| answer.map_err(Refusal::from)).collect()
            }
            Ok(other) => (0..count).map(|_| Err(unexpected(&other))).collect(),
            Err(refusal) => (0..count).map(|_| Err(refusal.clone())).collect(),
        }
    }

    async fn submit_one(&self, request: ControllerRequest) -> Result<(), Refusal> {
        match self.submit(request).await? {
            Outcome::One(answer) => answer.map_err(Refusal::from),
            other => Err(unexpected(&other)),
        }
    }

    /// The partitions `image` places on this broker, with what their logs need.
    fn local_partitions(&self, image: &MetadataImage) -> BTreeMap<TopicPartition, LocalPartition> {
        let mut local = BTreeMap::new();
        // Dynamic broker configs that are topic defaults apply live to the logs held here.
        let static_defaults = &self.engine.config().default_topic_config;
        let dynamic_defaults =
            crate::dynamic_config::topic::defaults(&image.broker_configs, self.node_id, static_defaults);
        for topic in image.topics() {
            let config = crate::dynamic_config::topic::effective(&topic.config, static_defaults, &dynamic_defaults);
            for (index, state) in topic.partitions.iter().enumerate() {
                if !state.replicas.contains(&self.node_id) {
                    continue;
                }
                let role = if state.leader == self.node_id {
                    Role::Leader { leader_epoch: state.leader_epoch }
                } else {
                    Role::Follower { leader: state.leader, leader_epoch: state.leader_epoch }
                };
                let wanted = LocalPartition { topic_id: topic.id, config: config.clone(), role };
                local.insert(TopicPartition::new(topic.name.clone(), index as i32), wanted);
            }
        }
        local
    }

    /// Step 1: removes and opens logs so the engine holds exactly `desired`. A failure is
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

    /// Step 3: hands each listener the changes of its topic and waits for all of them.
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

/// The refusal for an answer of the wrong kind (a controller of another version).
fn unexpected(outcome: &Outcome) -> Refusal {
    Refusal::new(ResponseError::UnknownServerError, format!("unexpected controller answer {outcome:?}"))
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
    /// How many replicas the partition has: with more than one, acks=all waits for the ISR.
    pub(crate) replica_count: usize,
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
    Ok(Led {
        partition: TopicPartition::new(topic.name.clone(), index),
        leader_epoch: state.leader_epoch,
        replica_count: state.replicas.len(),
    })
}

/// The leader and leader epoch of partition `index` of `topic`, when it has a leader.
pub(crate) fn current_leader(topic: &TopicImage, index: i32) -> Option<(i32, i32)> {
    let state = topic.partition(index)?;
    (state.leader >= 0).then_some((state.leader, state.leader_epoch))
}

/// A broker's client endpoint, as KIP-951's `NodeEndpoints` tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeEndpoint {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

/// The endpoints on `listener` (the one the client's request came in on) of the registered
/// brokers among `ids`, each once, by node id; brokers without that listener are left out.
pub(crate) fn endpoints(
    image: &MetadataImage,
    ids: impl IntoIterator<Item = i32>,
    listener: &str,
) -> Vec<NodeEndpoint> {
    let ids: std::collections::BTreeSet<i32> = ids.into_iter().collect();
    ids.into_iter()
        .filter_map(|id| image.brokers.get(&id))
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(listener)?;
            Some(NodeEndpoint { node_id: broker.node_id, host: host.to_owned(), port, rack: broker.rack.clone() })
        })
        .collect()
}
