//! Per-shard background work: time-based flushes (`flush.ms`), segment rolls (`segment.ms`),
//! retention, and periodic recovery checkpoints; and closing every partition at shutdown.
//!
//! Runs as one task on each shard thread and touches only that shard's partitions.

use std::rc::Rc;
use std::time::Duration;

use super::ShardState;

/// How often time-based flushes are checked: `flush.ms` is honoured to within this.
const FLUSH_CHECK_INTERVAL_MS: u64 = 100;

/// Loops forever: every 100 ms check `flush.ms`; every `retention_interval_ms` roll, apply
/// retention and checkpoint.
pub(crate) async fn run(state: Rc<ShardState>, retention_interval_ms: u64) {
    let ticks_per_retention = (retention_interval_ms / FLUSH_CHECK_INTERVAL_MS).max(1);
    let mut tick: u64 = 0;
    loop {
        compio::time::sleep(Duration::from_millis(FLUSH_CHECK_INTERVAL_MS)).await;
        tick += 1;
        let now_ms = crate::clock::now_ms();
        for partition in state.partition_list() {
            partition.flush_if_due(now_ms).await;
            if tick.is_multiple_of(ticks_per_retention) {
                partition.maintain(now_ms).await;
            }
        }
    }
}

/// Flushes and checkpoints every partition of the shard, then drops them.
pub(crate) async fn close_all(state: &Rc<ShardState>) {
    for partition in state.partition_list() {
        partition.close(true).await;
    }
    state.partitions.borrow_mut().clear();
}
