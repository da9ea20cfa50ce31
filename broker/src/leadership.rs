//! Coordinators that follow leadership of an internal topic (`__consumer_offsets` for groups,
//! `__transaction_state` for transactions): a partition this broker starts leading is loaded by
//! the coordinator of the shard holding it; one it stops leading is unloaded on every shard.
//!
//! Runs on the metadata's listener task; the load and unload run on the shards, through their
//! mailboxes.
//!
//! Each shard also keeps, for its coordinators' writers, the leader epoch at which it was told
//! to load each coordinator partition ([`loaded_epoch`]): set on the shard just before the
//! load, cleared just before the unload, so it always says what the coordinator holds. A write
//! to the partition is appended only while this broker still leads it at that epoch (see
//! `groups::storage::WriteQueue`): state loaded at one epoch is never written under another.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use sluice_engine::ShardId;

use crate::context::{ShardContext, ShardGone};
use crate::metadata::{LeadershipChange, LeadershipListener, Role};

thread_local! {
    /// This shard's coordinator partitions, by topic and index, with the leader epoch each was
    /// loaded at. Touched only by this module's tasks on the shard and read by its writers.
    static LOADED: RefCell<BTreeMap<(&'static str, i32), i32>> = const { RefCell::new(BTreeMap::new()) };
}

/// The leader epoch at which the calling shard's coordinator of `topic` loaded partition
/// `index`; `None` when it does not hold it.
pub(crate) fn loaded_epoch(topic: &'static str, index: i32) -> Option<i32> {
    LOADED.with(|loaded| loaded.borrow().get(&(topic, index)).copied())
}

/// Records on the calling shard that `topic`'s partition `index` is loaded at `leader_epoch`,
/// or (`None`) that it is not.
fn set_loaded_epoch(topic: &'static str, index: i32, leader_epoch: Option<i32>) {
    LOADED.with(|loaded| {
        let mut loaded = loaded.borrow_mut();
        match leader_epoch {
            Some(epoch) => loaded.insert((topic, index), epoch),
            None => loaded.remove(&(topic, index)),
        }
    });
}

/// Loads partition `index` (led at `leader_epoch`) into a shard's coordinator.
pub(crate) type Load = fn(Rc<ShardContext>, i32, i32) -> LocalBoxFuture<'static, ()>;
/// Unloads partition `index` from a shard's coordinator.
pub(crate) type Unload = fn(&ShardContext, i32);

/// Follows one internal topic's leadership for one kind of coordinator.
#[derive(Debug)]
pub(crate) struct CoordinatorLeadership {
    engine: sluice_engine::Engine,
    topic: &'static str,
    load: Load,
    unload: Unload,
}

impl CoordinatorLeadership {
    pub(crate) fn new(engine: sluice_engine::Engine, topic: &'static str, load: Load, unload: Unload) -> Self {
        Self { engine, topic, load, unload }
    }
}

impl LeadershipListener for CoordinatorLeadership {
    fn topic(&self) -> &str {
        self.topic
    }

    fn changed(&self, changes: Vec<LeadershipChange>) -> LocalBoxFuture<'static, ()> {
        let engine = self.engine.clone();
        let (topic, load, unload) = (self.topic, self.load, self.unload);
        Box::pin(async move {
            let mut waits: Vec<LocalBoxFuture<'_, Result<(), ShardGone>>> = Vec::new();
            for change in changes {
                let index = change.partition.partition.0;
                match change.role {
                    Some(Role::Leader { leader_epoch }) => {
                        let Some(target) = engine.shard_of(&change.partition) else {
                            tracing::error!(partition = %change.partition, "a coordinator partition led here has no log");
                            continue;
                        };
                        tracing::info!(topic, partition = index, leader_epoch, "loading a coordinator partition");
                        waits.push(Box::pin(crate::context::on_shard(&engine, target, move |context| {
                            set_loaded_epoch(topic, index, Some(leader_epoch));
                            load(context, index, leader_epoch)
                        })));
                    }
                    Some(Role::Follower { .. }) | None => {
                        for shard in 0..engine.shard_count() {
                            let unloaded = crate::context::on_shard(
                                &engine,
                                ShardId(shard),
                                move |context: Rc<ShardContext>| async move {
                                    set_loaded_epoch(topic, index, None);
                                    unload(&context, index);
                                },
                            );
                            waits.push(Box::pin(unloaded));
                        }
                    }
                }
            }
            for outcome in futures_util::future::join_all(waits).await {
                if outcome.is_err() {
                    tracing::debug!("a shard stopped before acting on a coordinator leadership change");
                }
            }
        })
    }
}
