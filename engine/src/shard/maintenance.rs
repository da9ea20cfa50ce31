//! Per-shard background work: time-based flushes (`flush.ms`), segment rolls (`segment.ms`),
//! retention, periodic recovery checkpoints and compaction; and closing every partition at
//! shutdown.
//!
//! Runs as one task on each shard thread and touches only that shard's partitions. A compaction
//! pass may take minutes on a large log, so it runs as a task of its own beside the loop, which
//! goes on flushing and applying retention; one pass at a time per shard (so one key map), for
//! the partition whose log is dirtiest, as Kafka's cleaner chooses.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::ShardState;
use crate::clock::SharedClock;
use crate::partition::Partition;

/// How often time-based flushes are checked: `flush.ms` is honoured to within this.
const FLUSH_CHECK_INTERVAL_MS: u64 = 100;

/// How often a high watermark that moved is checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: u64 = 5_000;

/// Loops forever: every 100 ms check `flush.ms`; every 5 s checkpoint high watermarks that
/// moved; every `retention_interval_ms` roll, apply retention and checkpoint.
pub(crate) async fn run(state: Rc<ShardState>, retention_interval_ms: u64, clock: SharedClock) {
    let ticks_per_retention = (retention_interval_ms / FLUSH_CHECK_INTERVAL_MS).max(1);
    let ticks_per_hw_checkpoint = HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS / FLUSH_CHECK_INTERVAL_MS;
    let mut tick: u64 = 0;
    let compacting = Rc::new(Cell::new(false));
    let checkpointing = Rc::new(Cell::new(false));
    loop {
        clock.sleep(Duration::from_millis(FLUSH_CHECK_INTERVAL_MS)).await;
        tick += 1;
        let now_ms = clock.unix_ms();
        let retention_due = tick.is_multiple_of(ticks_per_retention);
        let hw_checkpoint_due = tick.is_multiple_of(ticks_per_hw_checkpoint);
        let partitions = state.partition_list();
        for partition in &partitions {
            crate::panic::contain(partition, partition.flush_if_due(now_ms)).await;
            if retention_due {
                crate::panic::contain(partition, partition.maintain(now_ms)).await;
            }
        }
        if hw_checkpoint_due && !retention_due && !checkpointing.get() {
            start_high_watermark_checkpoints(partitions.clone(), &checkpointing);
        }
        if retention_due && !compacting.get() {
            start_compaction(&partitions, &compacting, &clock);
        }
    }
}

/// Checkpoints the high watermarks that moved, one partition after another, as a task of its
/// own: each write is two fsyncs, and with many partitions the pass must not hold up the
/// `flush.ms` checks of the loop. One pass at a time per shard.
fn start_high_watermark_checkpoints(partitions: Vec<Rc<Partition>>, checkpointing: &Rc<Cell<bool>>) {
    checkpointing.set(true);
    let checkpointing = checkpointing.clone();
    compio::runtime::spawn(async move {
        for partition in &partitions {
            crate::panic::contain(partition, partition.checkpoint_high_watermark()).await;
        }
        checkpointing.set(false);
    })
    .detach();
}

/// Starts the compaction pass of the partition with the highest priority among those that have
/// one due (the dirtiest, or one overdue by `max.compaction.lag.ms`), as its own task.
fn start_compaction(partitions: &[Rc<Partition>], compacting: &Rc<Cell<bool>>, clock: &SharedClock) {
    let now_ms = clock.unix_ms();
    let Some((_, partition)) = partitions
        .iter()
        .filter_map(|partition| partition.compaction_due(now_ms).map(|priority| (priority, partition.clone())))
        .max_by(|left, right| left.0.total_cmp(&right.0))
    else {
        return;
    };
    compacting.set(true);
    let compacting = compacting.clone();
    let clock = clock.clone();
    compio::runtime::spawn(async move {
        let compacted = crate::panic::contain(&partition, partition.compact(clock.unix_ms())).await;
        if let Some(Err(error)) = compacted {
            tracing::warn!(partition = %partition.id(), %error, "compaction failed; the log is unchanged");
        }
        compacting.set(false);
    })
    .detach();
}

/// Flushes and checkpoints every partition of the shard, then drops them.
pub(crate) async fn close_all(state: &Rc<ShardState>) {
    for partition in state.partition_list() {
        partition.close(true).await;
    }
    state.partitions.borrow_mut().clear();
}
