//! Coordinators that follow leadership of an internal topic (`__consumer_offsets` for groups,
//! `__transaction_state` for transactions): a partition this broker starts leading is loaded by
//! the coordinator of the shard holding it; one it stops leading is unloaded on every shard.
//!
//! Runs on the metadata's listener task; the load and unload run on the shards, through their
//! mailboxes.

use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use sluice_engine::ShardId;

use crate::context::{ShardContext, ShardGone};
use crate::metadata::{LeadershipChange, LeadershipListener, Role};

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
        let (load, unload) = (self.load, self.unload);
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
                        waits.push(Box::pin(crate::context::on_shard(&engine, target, move |context| {
                            load(context, index, leader_epoch)
                        })));
                    }
                    Some(Role::Follower { .. }) | None => {
                        for shard in 0..engine.shard_count() {
                            let unloaded = crate::context::on_shard(
                                &engine,
                                ShardId(shard),
                                move |context: Rc<ShardContext>| async move { unload(&context, index) },
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
