//! The consumer group coordinator: group membership and rebalances (Kafka's classic protocol),
//! and committed offsets, stored in the engine's compacted `__consumer_offsets` topic.
//!
//! How it plugs in:
//! 1. a group lives on one shard: the owner of its `__consumer_offsets` partition, which is
//!    `abs(javaHash(group)) % partition count` as in Kafka. [`on_coordinator`] runs a closure on
//!    that shard (directly, or through the engine's `spawn_on` mailbox) and brings its answer
//!    back, so a request arriving on any shard is forwarded there, as partition requests are;
//! 2. each shard's [`Coordinator`] (in `coordinator.rs`) holds its groups, loads them at start,
//!    writes their records, and runs their timers; [`GroupShard`] is its handle in the shard's
//!    `ShardContext`;
//! 3. one handler per API under `handlers/` translates requests and responses per version; the
//!    group logic itself is in `group.rs`, `membership.rs` and `offsets.rs`, and the record
//!    layout in `records.rs`.
//!
//! Touched only by its own shard thread; forwarded closures carry `Send` request data only.

mod config;
pub(crate) mod coordinator;
pub(crate) mod group;
pub(crate) mod membership;
mod offsets;
mod records;
mod storage;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use sluice_engine::ShardId;

pub(crate) use coordinator::Coordinator;

use crate::context::{ShardContext, Shared};
use crate::dispatch::ApiRange;

/// Group APIs and the versions served; advertised in ApiVersions.
pub(crate) const APIS: &[ApiRange] = &[
    ApiRange { key: ApiKey::OffsetCommit, min: 2, max: 9 },
    ApiRange { key: ApiKey::OffsetFetch, min: 1, max: 9 },
    ApiRange { key: ApiKey::FindCoordinator, min: 0, max: 4 },
    ApiRange { key: ApiKey::JoinGroup, min: 0, max: 9 },
    ApiRange { key: ApiKey::Heartbeat, min: 0, max: 4 },
    ApiRange { key: ApiKey::LeaveGroup, min: 0, max: 5 },
    ApiRange { key: ApiKey::SyncGroup, min: 0, max: 5 },
    ApiRange { key: ApiKey::DescribeGroups, min: 0, max: 5 },
    ApiRange { key: ApiKey::ListGroups, min: 0, max: 5 },
    ApiRange { key: ApiKey::DeleteGroups, min: 0, max: 2 },
    ApiRange { key: ApiKey::OffsetDelete, min: 0, max: 0 },
];

/// One shard's part of the group coordinator.
#[derive(Debug)]
pub(crate) struct GroupShard {
    /// This shard's coordinator.
    pub(crate) coordinator: Rc<Coordinator>,
}

impl GroupShard {
    /// Creates (or finds) the calling shard's coordinator. Runs on the shard's thread.
    pub(crate) fn new(shared: &Arc<Shared>, shard: ShardId) -> Self {
        Self { coordinator: Coordinator::for_this_shard(shared, shard) }
    }
}

/// Runs `task` with the coordinator of `group_id`'s shard and returns its answer.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE while the offsets topic does not exist yet, or when the target
/// shard stopped (shutdown).
pub(crate) async fn on_coordinator<T, F, Fut>(shard: &ShardContext, group_id: &str, task: F) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    // The local coordinator creates the offsets topic while loading; until then no group has
    // a home.
    shard.groups.coordinator.ready().await?;
    let target =
        Coordinator::coordinator_shard(&shard.shared, group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
    on_shard(shard, target, task).await
}

/// Runs `task` with the coordinator of `target` and returns its answer.
///
/// # Errors
/// COORDINATOR_NOT_AVAILABLE when the target shard stopped (shutdown).
pub(crate) async fn on_shard<T, F, Fut>(shard: &ShardContext, target: ShardId, task: F) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if target == shard.shard {
        return Ok(task(shard.groups.coordinator.clone()).await);
    }
    let (sender, receiver) = async_channel::bounded(1);
    let shared = shard.shared.clone();
    let spawned = shard.engine().spawn_on(target, move || async move {
        let coordinator = Coordinator::for_this_shard(&shared, target);
        let answer = task(coordinator).await;
        if sender.send(answer).await.is_err() {
            tracing::debug!("forwarded group answer dropped: the requester is gone");
        }
    });
    if !spawned {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    receiver.recv().await.map_err(|_closed| ResponseError::CoordinatorNotAvailable)
}
