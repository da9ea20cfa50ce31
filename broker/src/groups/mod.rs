//! The consumer group coordinator: group membership and rebalances (Kafka's classic protocol),
//! and committed offsets, stored in the engine's compacted `__consumer_offsets` topic.
//!
//! How it plugs in:
//! 1. a group lives on one shard: the owner of its `__consumer_offsets` partition, which is
//!    `abs(javaHash(group)) % partition count` as in Kafka. [`on_coordinator`] runs a closure on
//!    that shard (directly, or through the engine's `spawn_on` mailbox) and brings its answer
//!    back, so a request arriving on any shard is forwarded there, as partition requests are;
//! 2. each shard's [`Coordinator`] (in `coordinator.rs`) holds the groups of the offsets
//!    partitions this broker leads on that shard, writes their records, and runs their timers;
//!    [`GroupShard`] is its handle in the shard's `ShardContext`; [`leadership`] loads and
//!    unloads partitions as the metadata says this broker starts or stops leading them;
//! 3. one handler per API under `handlers/` translates requests and responses per version; the
//!    classic group logic itself is in `group.rs`, `membership.rs` and `offsets.rs`, and the
//!    record layout in `records.rs`; the KIP-848 consumer protocol is the state machine in
//!    `consumer/`, run by `consumer_groups.rs` beside the classic groups; `replay.rs` rebuilds
//!    both kinds from a partition's log.
//!
//! Touched only by its own shard thread; forwarded closures carry `Send` request data only.

mod config;
// The KIP-848 consumer group protocol: a pure state machine, wired in by `consumer_groups`.
// Parts of its API serve only its own tests (replay checks, accessors).
#[allow(dead_code)]
pub(crate) mod consumer;
mod consumer_config;
pub(crate) mod consumer_groups;
pub(crate) mod coordinator;
pub(crate) mod group;
pub(crate) mod group_config;
pub(crate) mod membership;
mod offsets;
mod records;
mod replay;
pub(crate) mod storage;
mod txn_commit;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use sluice_engine::{ShardId, TopicPartition};

pub(crate) use coordinator::Coordinator;
pub(crate) use storage::{OFFSETS_TOPIC, offsets_topic_config};
pub(crate) use txn_commit::TxnCommitArgs;

/// The broker's `group.consumer.*` settings, the defaults and bounds of every group's configs.
pub(crate) fn consumer_config_global() -> consumer::ConsumerGroupConfig {
    consumer_config::global()
}

use crate::context::{ShardContext, Shared};

/// One shard's part of the group coordinator.
#[derive(Debug)]
pub(crate) struct GroupShard {
    /// This shard's coordinator.
    pub(crate) coordinator: Rc<Coordinator>,
}

impl GroupShard {
    /// Starts the calling shard's coordinator. Runs on the shard's thread.
    pub(crate) fn new(shared: &Arc<Shared>, shard: ShardId) -> Self {
        Self { coordinator: Coordinator::start(shared, shard) }
    }
}

/// Runs `task` with the coordinator of `group_id` (on the shard holding its offsets partition)
/// and returns its answer.
///
/// # Errors
/// NOT_COORDINATOR when this broker does not hold the group's offsets partition (or the offsets
/// topic does not exist), COORDINATOR_NOT_AVAILABLE when the shard stopped (shutdown). The
/// coordinator itself answers COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR for a partition
/// loading or not led here.
pub(crate) async fn on_coordinator<T, F, Fut>(shard: &ShardContext, group_id: &str, task: F) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if group_id.len() > crate::record_codec::STRING_SIZE_BYTES_MAX {
        // Its records could not hold it (Kafka's record strings have an i16 length).
        return Err(ResponseError::InvalidGroupId);
    }
    let image = shard.image();
    let topic = image.topic(OFFSETS_TOPIC).ok_or(ResponseError::NotCoordinator)?;
    let partition = TopicPartition::new(OFFSETS_TOPIC, Coordinator::partition_of(group_id, topic.partition_count()));
    let target = shard.engine().shard_of(&partition).ok_or(ResponseError::NotCoordinator)?;
    on_shard(shard, target, task).await
}

/// Runs `task` with the coordinator of shard `target` and returns its answer.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE when the target shard stopped (shutdown).
pub(crate) async fn on_shard<T, F, Fut>(shard: &ShardContext, target: ShardId, task: F) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    crate::context::on_shard(shard.engine(), target, move |context| task(context.groups.coordinator.clone()))
        .await
        .map_err(|_gone| ResponseError::CoordinatorNotAvailable)
}

/// Follows leadership of `__consumer_offsets`: a partition this broker starts leading is loaded
/// by the coordinator of the shard holding it; one it stops leading is unloaded everywhere.
pub(crate) fn leadership(engine: sluice_engine::Engine) -> crate::leadership::CoordinatorLeadership {
    crate::leadership::CoordinatorLeadership::new(
        engine,
        OFFSETS_TOPIC,
        |context, index, leader_epoch| {
            Box::pin(async move { context.groups.coordinator.load(index, leader_epoch).await })
        },
        |context, index| context.groups.coordinator.unload(index),
    )
}

/// Creates `__consumer_offsets` when the cluster has none yet, with
/// `offsets.topic.num.partitions` partitions and `offsets.topic.replication.factor` replicas,
/// compacted. A single node gives it as many replicas as it has brokers (one); a cluster, as
/// Kafka does, waits until that many brokers are live.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE while a cluster has too few live brokers, or the controller's
/// refusal (a storage failure, no active controller).
pub(crate) async fn ensure_offsets_topic(shared: &Shared) -> Result<(), crate::metadata::Refusal> {
    let metadata = &shared.metadata;
    let image = metadata.image();
    if image.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let config = config::GroupConfig::global();
    let brokers = image.live_brokers().count().max(1);
    if shared.config.clustered() && brokers < usize::try_from(config.offsets_topic_replication_factor).unwrap_or(0) {
        return Err(crate::metadata::Refusal::new(
            ResponseError::CoordinatorNotAvailable,
            format!(
                "{brokers} live brokers, fewer than offsets.topic.replication.factor ({})",
                config.offsets_topic_replication_factor
            ),
        ));
    }
    let replication_factor = i16::try_from(brokers).unwrap_or(i16::MAX).min(config.offsets_topic_replication_factor);
    let topic = crate::metadata::NewTopic {
        name: OFFSETS_TOPIC.to_owned(),
        partition_count: Some(config.offsets_topic_partition_count),
        replication_factor: Some(replication_factor),
        assignments: Vec::new(),
        config: offsets_topic_config(&shared.config.default_topic_config, &config),
    };
    let created = metadata.create_topics(vec![topic], false).await.into_iter().next();
    match created {
        Some(Ok(_)) => {
            tracing::info!(
                topic = OFFSETS_TOPIC,
                partitions = config.offsets_topic_partition_count,
                replication_factor,
                "created the offsets topic"
            );
            Ok(())
        }
        // Another broker created it meanwhile.
        Some(Err(refusal)) if refusal.error == ResponseError::TopicAlreadyExists => Ok(()),
        Some(Err(refusal)) => Err(refusal),
        None => Ok(()),
    }
}
