//! One partition's log: an ordered set of segments plus the offsets that bound it.
//!
//! A `Partition` lives on its owning shard's thread (`Rc`, interior mutability through
//! `RefCell`/`Cell`); every method runs there. Invariants:
//! - `log_start_offset <= high_watermark <= local_end <= next_offset`;
//! - offsets below `local_end` are written completely and may be read by replicas, and those of
//!   durable (acks=all) appends are fsynced too: nothing is visible before it is durable;
//! - the high watermark consumers read up to is `local_end` for an unreplicated partition, and
//!   the smaller of `local_end` and the value its owner sets for a replicated one (the broker
//!   computes it from the in-sync replicas);
//! - writes in flight are tracked in assignment order and `local_end` only moves over a prefix
//!   of completed writes;
//! - once a write or fsync fails the partition is latched failed and accepts nothing more.
//!
//! Submodules: `append` (assign offsets or keep a leader's, write, group commit), `read` (reads
//! and offset lookups), `truncate` (cut the log back to an offset), `recovery` (open and
//! re-validate), `producer` (idempotence and transaction state), `snapshot` (its per-segment
//! snapshots), `epochs` (the leader-epoch cache), `prealloc` (zero-filling ahead of durable
//! appends), `compaction`.

mod append;
mod compaction;
mod epochs;
mod prealloc;
mod producer;
mod read;
mod recovery;
mod snapshot;
mod truncate;

pub use producer::ProducerSummary;
pub(crate) use recovery::Shared;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use event_listener::Event;
use serde::{Deserialize, Serialize};

use crate::PartitionOffsets;
use crate::config::TopicConfig;
use crate::io::FaultInjector;
use crate::segment::Segment;
use crate::types::{Offset, TopicPartition};
use producer::ProducerStates;

/// How long closing waits for writes in flight before it gives up on them (they are then not
/// fsynced by the close, and recovery re-validates them at the next open).
const CLOSE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Name of the per-partition checkpoint file.
pub(crate) const CHECKPOINT_FILE_NAME: &str = "partition.checkpoint";

/// What a partition records durably besides its segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// Every offset below this was fsynced; recovery re-validates from the segment holding it.
    recovery_point: i64,
    /// First offset still present (moved by retention and DeleteRecords).
    log_start_offset: i64,
    /// Producer state as it stood below `recovery_point`, in checkpoints written before
    /// producer state moved to per-segment snapshots (see `snapshot`); read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    producers: Option<ProducerStates>,
    /// Compaction has mapped the keys of every offset below this (written by compaction only;
    /// absent in older checkpoints, which makes the whole log dirty).
    #[serde(default)]
    cleaned_up_to: i64,
    /// The high watermark as last set for a replicated partition, where a restart starts it
    /// (Kafka's replication-offset checkpoint); absent for unreplicated partitions.
    #[serde(default)]
    high_watermark: Option<i64>,
}

/// What the last checkpoint written holds, to skip writing an unchanged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckpointKey {
    recovery_point: i64,
    log_start_offset: i64,
    cleaned_up_to: i64,
    high_watermark: Option<i64>,
    epochs_version: u64,
}

/// A write whose completion is awaited, in offset order.
#[derive(Debug)]
struct InFlight {
    sequence: u64,
    last_offset: i64,
    segment_base: i64,
    end_position: u64,
    /// The write completed.
    done: bool,
    /// Visible only once fsynced (an acks=all append).
    durable: bool,
}

/// Where one batch ends: the offset after it, its segment, and the byte position after it.
#[derive(Debug, Clone, Copy)]
struct BatchEnd {
    next_offset: i64,
    segment_base: i64,
    end_position: u64,
}

/// Mutable log state, borrowed only between awaits.
#[allow(clippy::struct_field_names)]
struct Log {
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    /// One past the last offset written here (and fsynced where its append asked for it).
    local_end: i64,
    /// The high watermark set from outside while the partition is replicated; `None` while it
    /// is not, when the high watermark is `local_end`.
    replicated_high_watermark: Option<i64>,
    /// Where the high watermark falls in the log (segment base, byte position), when known:
    /// reads for consumers stop there.
    hw_position: Option<(i64, u64)>,
    /// The end of every batch past the high watermark of a replicated partition, oldest first,
    /// so that the high watermark's position is known when it moves.
    tail_batches: VecDeque<BatchEnd>,
    log_start_offset: i64,
    in_flight: VecDeque<InFlight>,
    next_write_sequence: u64,
    /// Every write with a sequence up to this one has completed (visible or not).
    written_sequence: u64,
    /// Every write with a sequence up to this one is fsynced.
    synced_sequence: u64,
    /// Rolled segments not yet fsynced: base offset and file.
    unsynced_files: Vec<(i64, compio::fs::File)>,
    /// Segments created so far, and how many of their directory entries are known fsynced: a
    /// roll creates the file and the next sync fsyncs the directory.
    rolls: u64,
    rolls_synced: u64,
    /// The segment (base offset) whose writeback was last started, and up to which position.
    writeback: (i64, u64),
    /// The zero-filled space of the active segment.
    fill: prealloc::Fill,
    /// Segments whose files may hold zeros past their last batch (see `prealloc`).
    zero_tails: BTreeSet<i64>,
    /// Records appended since the last fsync, for `flush.messages`.
    unflushed_messages: i64,
    last_flush_ms: i64,
    producers: ProducerStates,
    /// Offsets of the producer snapshot files on disk.
    snapshots: BTreeSet<i64>,
    /// Snapshots taken (at rolls) and not yet written: offset and state below it.
    pending_snapshots: Vec<(i64, ProducerStates)>,
    /// Truncations so far: a snapshot taken before one may describe batches it cut.
    truncations: u64,
    /// The first offset of each leader epoch.
    epochs: epochs::LeaderEpochCache,
    /// Bumped at every change of `epochs`, so the checkpoint knows to write its file.
    epochs_version: u64,
    /// The checkpoint as last written, to skip rewriting an unchanged one.
    checkpointed: CheckpointKey,
}

impl Log {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a partition always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a partition always has an active segment")
    }

    /// Drops the oldest segment from the log (never the active one): its pending fsync and
    /// zero tail go with it. Its files are the caller's to remove.
    fn remove_oldest(&mut self) -> Segment {
        assert!(self.segments.len() > 1, "the active segment is never removed");
        let (base, segment) = self.segments.pop_first().expect("checked above");
        self.zero_tails.remove(&base);
        self.unsynced_files.retain(|(unsynced, _)| *unsynced != base);
        segment
    }

    /// Moves the log start forward to `offset` (never back), with the epoch cache.
    fn move_log_start(&mut self, offset: i64) {
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            if self.epochs.truncate_from_start(offset) {
                self.epochs_version += 1;
            }
        }
    }

    /// The offset consumers read up to.
    fn high_watermark(&self) -> i64 {
        self.replicated_high_watermark.map_or(self.local_end, |set| set.min(self.local_end))
    }

    /// Recomputes where the high watermark falls after it or the local end moved, dropping the
    /// batch ends it has passed.
    fn refresh_hw_position(&mut self) {
        if self.replicated_high_watermark.is_none() {
            self.hw_position = None;
            self.tail_batches.clear();
            return;
        }
        let high_watermark = self.high_watermark();
        let mut found = None;
        while let Some(front) = self.tail_batches.front().copied() {
            if front.next_offset > high_watermark {
                break;
            }
            found = Some(front);
            self.tail_batches.pop_front();
        }
        if let Some(at) = found.filter(|at| at.next_offset == high_watermark) {
            self.hw_position = Some((at.segment_base, at.end_position));
        } else if found.is_some() || self.hw_position.is_none() {
            // The high watermark moved inside a batch range this log did not record (it was
            // set before the batches were appended here): reads check offsets instead.
            self.hw_position = None;
        }
    }

    /// Notes that batches of `epoch` start at `start_offset`.
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        if self.epochs.assign(epoch, start_offset) {
            self.epochs_version += 1;
        }
    }

    /// The offset read_committed consumers read up to: the first offset of the oldest
    /// transaction not yet stable, or the high watermark.
    fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.producers.first_unstable_offset(high_watermark).map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Forgets the transactions whose markers the high watermark passed.
    fn prune_stable(&mut self) {
        let high_watermark = self.high_watermark();
        self.producers.prune_stable(high_watermark);
    }

    /// The aborted transactions a read from `offset` up to `end_offset` must report: those
    /// ending at or after `offset` and starting before `end_offset` (markers are in segments at
    /// or after the one holding `offset`).
    fn aborted_between(&self, offset: i64, end_offset: i64) -> Vec<crate::AbortedTransaction> {
        let first_base = self.segments.range(..=offset).next_back().map_or(i64::MIN, |(base, _)| *base);
        self.segments
            .range(first_base..)
            .flat_map(|(_, segment)| &segment.aborted)
            .filter(|aborted| aborted.last_offset >= offset && aborted.first_offset < end_offset)
            .map(|aborted| crate::AbortedTransaction {
                producer_id: aborted.producer_id,
                first_offset: Offset(aborted.first_offset),
            })
            .collect()
    }

    fn offsets(&self) -> PartitionOffsets {
        let high_watermark = self.high_watermark();
        PartitionOffsets {
            log_start_offset: Offset(self.log_start_offset),
            high_watermark: Offset(high_watermark),
            last_stable_offset: Offset(self.last_stable_offset()),
            local_end_offset: Offset(self.local_end),
            log_end_offset: Offset(self.next_offset),
        }
    }
}

/// Engine-wide I/O settings a partition applies.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::struct_field_names)] // each is a size in bytes, and says so
pub(crate) struct Tuning {
    /// How far ahead of durable appends the active segment is kept zero-filled; 0: never.
    pub(crate) preallocate_bytes: u64,
    /// Writeback of non-durable appends starts every this many bytes; 0: left to the kernel.
    pub(crate) writeback_bytes: u64,
    /// Memory for one compaction pass's key map.
    pub(crate) compaction_map_bytes: u64,
    /// Producers idle this long with no open transaction are forgotten.
    pub(crate) producer_id_expiration_ms: i64,
}

/// Marks a write of a partition's state files (checkpoint, `.txnindex`, producer snapshots)
/// as running for as long as it lives: two writers of one file would share its temp file.
struct CheckpointGuard<'a> {
    partition: &'a Partition,
}

impl Drop for CheckpointGuard<'_> {
    fn drop(&mut self) {
        self.partition.checkpointing.set(false);
        self.partition.checkpoint_event.notify(usize::MAX);
    }
}

/// One partition, owned by its shard.
pub(crate) struct Partition {
    id: TopicPartition,
    dir: PathBuf,
    config: RefCell<TopicConfig>,
    log: RefCell<Log>,
    /// Fired when the high watermark moves or the partition fails: readers long-poll on it.
    event: Arc<Event>,
    /// Fired when an fsync finishes: appends waiting for durability.
    sync_event: Event,
    syncing: Cell<bool>,
    failed: Cell<bool>,
    tuning: Tuning,
    /// Fired when a zero fill finishes.
    fill_event: Event,
    /// The partition is closing or closed: no more fills start, and a compaction finishing on
    /// the blocking pool leaves the directory alone (it may belong to a new topic of the same
    /// name by then).
    closing: Cell<bool>,
    /// A write of the state files is running (see [`CheckpointGuard`]).
    checkpointing: Cell<bool>,
    /// Fired when it finishes.
    checkpoint_event: Event,
    /// Compaction has mapped the keys of every offset below this: closed segments above it are
    /// the dirty part of the log (persisted in the checkpoint).
    cleaned_up_to: Cell<i64>,
    faults: Option<Arc<FaultInjector>>,
    /// The owning shard's storage counters.
    stats: Arc<crate::stats::ShardStats>,
    /// Where time comes from.
    clock: crate::clock::SharedClock,
}

impl Partition {
    pub(crate) fn id(&self) -> &TopicPartition {
        &self.id
    }

    pub(crate) fn offsets(&self) -> PartitionOffsets {
        self.log.borrow().offsets()
    }

    /// Bytes of log held in all segments.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.log.borrow().segments.values().map(|segment| segment.summary.size_bytes).sum()
    }

    pub(crate) fn set_config(&self, config: TopicConfig) {
        *self.config.borrow_mut() = config;
    }

    /// Sets the high watermark of a replicated partition (it never passes the local end), or
    /// with `None` makes the partition unreplicated again (the high watermark is the local end).
    /// Readers waiting for new data wake when it moves.
    pub(crate) fn set_high_watermark(&self, high_watermark: Option<Offset>) {
        let moved = {
            let mut log = self.log.borrow_mut();
            let before = log.high_watermark();
            log.replicated_high_watermark = high_watermark.map(|offset| offset.0.max(log.log_start_offset));
            log.refresh_hw_position();
            log.prune_stable();
            log.high_watermark() != before
        };
        if moved {
            self.event.notify(usize::MAX);
        }
    }

    /// Where leader epoch `epoch` ends on this replica (Kafka's OffsetForLeaderEpoch answer).
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> crate::EpochEnd {
        let log = self.log.borrow();
        let (leader_epoch, end_offset) = log.epochs.end_offset_for(epoch, log.next_offset);
        crate::EpochEnd { leader_epoch, end_offset: Offset(end_offset) }
    }

    /// Starts leader epoch `epoch` at the log end (a newer epoch than the cache's latest; an
    /// older or equal one changes nothing). Returns the log end.
    pub(crate) fn assign_leader_epoch(&self, epoch: i32) -> Offset {
        let mut log = self.log.borrow_mut();
        let end = log.next_offset;
        if log.epochs.latest_epoch().is_none_or(|latest| latest < epoch) {
            log.assign_epoch(epoch, end);
        }
        Offset(end)
    }

    /// The latest leader epoch of the log's batches, if any carried one.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.log.borrow().epochs.latest_epoch()
    }

    /// Latches the partition failed after a panic in its work (see `crate::panic`).
    pub(crate) fn fail_after_panic(&self, message: &str) {
        tracing::error!(partition = %self.id, panic = message, "a panic in partition work; the partition is offline until restart");
        self.fail(&std::io::Error::other(format!("panic in partition work: {message}")));
    }

    /// Latches the partition failed after a storage error, and wakes every waiter.
    fn fail(&self, error: &std::io::Error) {
        if !self.failed.replace(true) {
            tracing::error!(partition = %self.id, %error, "storage error; partition is now failed");
        }
        self.event.notify(usize::MAX);
        self.sync_event.notify(usize::MAX);
    }

    fn check_fault(&self, kind: crate::io::FaultKind) -> std::io::Result<()> {
        match &self.faults {
            Some(faults) => faults.check(kind, &self.id.topic),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint when the recovery point or log start changed. The recovery point
    /// stays at or below the first segment that may hold zeros past its batches. One write at a
    /// time per partition, through io_uring, so the shard thread never blocks on its fsyncs.
    async fn write_checkpoint(&self, recovery_point: i64) -> std::io::Result<()> {
        let _writing = self.state_files_guard().await;
        let (bytes, key, epochs) = {
            let log = self.log.borrow();
            let recovery_point = log.zero_tails.first().map_or(recovery_point, |base| recovery_point.min(*base));
            let key = CheckpointKey {
                recovery_point,
                log_start_offset: log.log_start_offset,
                cleaned_up_to: self.cleaned_up_to.get(),
                high_watermark: log.replicated_high_watermark.map(|_| log.high_watermark()),
                epochs_version: log.epochs_version,
            };
            if key == log.checkpointed {
                return Ok(());
            }
            let checkpoint = Checkpoint {
                recovery_point,
                log_start_offset: log.log_start_offset,
                producers: None,
                cleaned_up_to: key.cleaned_up_to,
                high_watermark: key.high_watermark,
            };
            let epochs = (key.epochs_version != log.checkpointed.epochs_version).then(|| log.epochs.encode());
            (serde_json::to_vec(&checkpoint).expect("a checkpoint holds only plain data"), key, epochs)
        };
        if let Some(epochs) = epochs {
            crate::io::write_atomic_async(&self.dir.join(epochs::FILE_NAME), epochs).await?;
        }
        crate::io::write_atomic_async(&self.dir.join(CHECKPOINT_FILE_NAME), bytes).await?;
        self.log.borrow_mut().checkpointed = key;
        Ok(())
    }

    /// Writes the checkpoint when only the high watermark moved since the last one (every
    /// `replica.high.watermark.checkpoint.interval.ms`, as Kafka does), keeping everything else
    /// as last written: a restart then starts a leader's high watermark close to where it was,
    /// instead of where the last full checkpoint (every retention check) left it.
    pub(crate) async fn checkpoint_high_watermark(&self) {
        let unchanged =
            |log: &Log| log.replicated_high_watermark.map(|_| log.high_watermark()) == log.checkpointed.high_watermark;
        if self.failed.get() || unchanged(&self.log.borrow()) {
            return;
        }
        let _writing = self.state_files_guard().await;
        let (bytes, key) = {
            let log = self.log.borrow();
            let high_watermark = log.replicated_high_watermark.map(|_| log.high_watermark());
            if high_watermark == log.checkpointed.high_watermark {
                return;
            }
            let key = CheckpointKey { high_watermark, ..log.checkpointed };
            let checkpoint = Checkpoint {
                recovery_point: key.recovery_point,
                log_start_offset: key.log_start_offset,
                producers: None,
                cleaned_up_to: key.cleaned_up_to,
                high_watermark,
            };
            (serde_json::to_vec(&checkpoint).expect("a checkpoint holds only plain data"), key)
        };
        match crate::io::write_atomic_async(&self.dir.join(CHECKPOINT_FILE_NAME), bytes).await {
            Ok(()) => self.log.borrow_mut().checkpointed = key,
            Err(error) => tracing::warn!(partition = %self.id, %error, "high watermark checkpoint write failed"),
        }
    }

    /// Waits until no other write of the state files runs, and marks one running.
    async fn state_files_guard(&self) -> CheckpointGuard<'_> {
        loop {
            if !self.checkpointing.replace(true) {
                break;
            }
            let listener = self.checkpoint_event.listen();
            if self.checkpointing.get() {
                listener.await;
            }
        }
        CheckpointGuard { partition: self }
    }

    /// Fsyncs when `flush.ms` has passed with unflushed records.
    pub(crate) async fn flush_if_due(&self, now_ms: i64) {
        let flush_ms = self.config.borrow().flush_ms;
        let due = {
            let log = self.log.borrow();
            log.unflushed_messages > 0 && now_ms.saturating_sub(log.last_flush_ms) >= flush_ms
        };
        if due && !self.failed.get() {
            let target = self.log.borrow().written_sequence;
            let _latched_on_failure = self.sync_up_to(target).await;
        }
    }

    /// Periodic work: time-based roll, retention, index files and checkpoint. (Compaction runs
    /// beside it: see `shard::maintenance`.)
    pub(crate) async fn maintain(&self, now_ms: i64) {
        if self.failed.get() {
            return;
        }
        let config = self.config.borrow().clone();
        {
            let mut log = self.log.borrow_mut();
            let active = log.active();
            if !active.is_empty()
                && now_ms.saturating_sub(active.created_ms) >= config.segment_ms
                && let Err(error) = self.roll(&mut log, now_ms)
            {
                drop(log);
                self.fail(&error);
                return;
            }
        }
        if let Err(error) = self.apply_retention(&config, now_ms) {
            tracing::warn!(partition = %self.id, %error, "retention failed to delete a segment");
        }
        let (target, recovery_point) = {
            let log = self.log.borrow();
            (log.written_sequence, log.local_end)
        };
        if self.sync_up_to(target).await.is_err() {
            return;
        }
        let expired =
            self.log.borrow_mut().producers.expire(now_ms.saturating_sub(self.tuning.producer_id_expiration_ms));
        if expired > 0 {
            tracing::debug!(partition = %self.id, expired, "forgot idle producers");
        }
        self.write_indexes(false).await;
        if let Err(error) = self.write_txn_indexes().await {
            tracing::warn!(partition = %self.id, %error, "aborted-transaction index write failed");
            return;
        }
        if let Err(error) = self.write_snapshots().await {
            tracing::warn!(partition = %self.id, %error, "producer snapshot write failed");
            return;
        }
        if let Err(error) = self.write_checkpoint(recovery_point).await {
            tracing::warn!(partition = %self.id, %error, "checkpoint write failed");
        }
    }

    /// Writes the `.txnindex` of every segment whose aborted transactions changed, atomically
    /// and fsynced, so that a checkpoint written after it may trust them.
    async fn write_txn_indexes(&self) -> std::io::Result<()> {
        let _writing = self.state_files_guard().await;
        let pending: Vec<(i64, u64, Vec<u8>)> = self
            .log
            .borrow()
            .segments
            .values()
            .filter(|segment| segment.txn_index_stale())
            .map(|segment| {
                (segment.base_offset, segment.txn_index_changes, crate::segment::txn_index::encode(&segment.aborted))
            })
            .collect();
        for (base, changes, bytes) in pending {
            crate::io::write_atomic_async(&crate::segment::txn_index::path(&self.dir, base), bytes).await?;
            if let Some(segment) = self.log.borrow_mut().segments.get_mut(&base) {
                // Changes made while the file was written stay unwritten.
                segment.txn_index_written = changes;
            }
        }
        Ok(())
    }

    /// Writes the producer snapshots taken since the last pass, atomically and fsynced (encoded
    /// on the blocking pool: a partition may have many producers). One that a truncation has
    /// made invalid meanwhile is dropped.
    async fn write_snapshots(&self) -> std::io::Result<()> {
        let _writing = self.state_files_guard().await;
        let (pending, truncations) = {
            let mut log = self.log.borrow_mut();
            (std::mem::take(&mut log.pending_snapshots), log.truncations)
        };
        for (offset, producers) in pending {
            let bytes = crate::io::unblocked(move || Ok(snapshot::encode(producers))).await?;
            if self.log.borrow().truncations != truncations {
                // A truncation since the snapshot was taken may have changed the log below it.
                return Ok(());
            }
            crate::io::write_atomic_async(&snapshot::path(&self.dir, offset), bytes).await?;
            let mut log = self.log.borrow_mut();
            if log.truncations == truncations {
                log.snapshots.insert(offset);
            } else {
                drop(log);
                snapshot::remove(&self.dir, [offset])?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Removes the producer snapshots below the first segment (retention or DeleteRecords
    /// dropped the segments they start).
    fn remove_snapshots_below_first_segment(&self, log: &mut Log) -> std::io::Result<()> {
        let first = log.segments.keys().next().copied().expect("a partition always has a segment");
        let below: Vec<i64> = log.snapshots.range(..first).copied().collect();
        for offset in &below {
            log.snapshots.remove(offset);
        }
        snapshot::remove(&self.dir, below)
    }

    /// The producers of this partition, as DescribeProducers shows them.
    pub(crate) fn producers(&self) -> Vec<crate::ProducerSummary> {
        self.log.borrow().producers.summaries()
    }

    /// Writes the index files of segments whose indexes changed: only rolled segments, or
    /// the active one too when `include_active`.
    async fn write_indexes(&self, include_active: bool) {
        let pending: Vec<(i64, crate::segment::EncodedIndexes)> = {
            let log = self.log.borrow();
            let active_base = log.active().base_offset;
            log.segments
                .values()
                .filter(|segment| segment.index_dirty && (include_active || segment.base_offset != active_base))
                .map(|segment| (segment.base_offset, segment.encoded_indexes()))
                .collect()
        };
        for (base, encoded) in pending {
            match encoded.write().await {
                Ok(()) => {
                    if let Some(segment) = self.log.borrow_mut().segments.get_mut(&base) {
                        segment.index_dirty = false;
                    }
                }
                Err(error) => tracing::warn!(partition = %self.id, %error, "index write failed; recovery rebuilds it"),
            }
        }
    }

    /// Deletes whole segments past `retention.ms` or `retention.bytes`, oldest first.
    fn apply_retention(&self, config: &TopicConfig, now_ms: i64) -> std::io::Result<()> {
        if !config.cleanup_policy.delete {
            return Ok(());
        }
        let mut log = self.log.borrow_mut();
        let mut total_bytes: u64 = log.segments.values().map(|segment| segment.summary.size_bytes).sum();
        loop {
            if log.segments.len() < 2 {
                return Ok(());
            }
            let oldest = log.segments.values().next().expect("checked above");
            let expired_by_time = config.retention_ms >= 0
                && oldest.summary.max_timestamp_ms >= 0
                && oldest.summary.max_timestamp_ms < now_ms.saturating_sub(config.retention_ms);
            let expired_by_size = config.retention_bytes >= 0
                && total_bytes.saturating_sub(oldest.summary.size_bytes) >= config.retention_bytes as u64;
            if !expired_by_time && !expired_by_size {
                return Ok(());
            }
            total_bytes -= oldest.summary.size_bytes;
            let segment = log.remove_oldest();
            let next_base = log.segments.keys().next().copied().expect("at least one segment remains");
            log.move_log_start(next_base);
            segment.remove()?;
            self.remove_snapshots_below_first_segment(&mut log)?;
        }
    }

    /// Moves the log start offset to `offset` (or the high watermark for -1) and drops the
    /// segments wholly below it.
    pub(crate) async fn delete_records(&self, offset: Offset) -> Result<Offset, crate::ReadError> {
        let new_start = {
            let mut log = self.log.borrow_mut();
            let high_watermark = log.high_watermark();
            let target = if offset.0 == -1 { high_watermark } else { offset.0 };
            if target < 0 || target > high_watermark {
                return Err(crate::ReadError::OffsetOutOfRange {
                    partition: self.id.clone(),
                    offset,
                    log_start_offset: Offset(log.log_start_offset),
                    high_watermark: Offset(high_watermark),
                });
            }
            log.move_log_start(target);
            let start = log.log_start_offset;
            while log.segments.len() > 1 {
                let next_offset = log.segments.values().next().expect("checked above").summary.next_offset;
                if next_offset > start {
                    break;
                }
                let segment = log.remove_oldest();
                if let Err(source) = segment.remove().and_then(|()| self.remove_snapshots_below_first_segment(&mut log))
                {
                    return Err(crate::ReadError::Io { partition: self.id.clone(), source });
                }
            }
            start
        };
        let recovery_point = self.log.borrow().checkpointed.recovery_point;
        self.write_checkpoint(recovery_point)
            .await
            .map_err(|source| crate::ReadError::Io { partition: self.id.clone(), source })?;
        self.event.notify(usize::MAX);
        Ok(Offset(new_start))
    }

    /// Waits for writes in flight, fsyncs, writes indexes and (when `checkpoint`) the
    /// recovery checkpoint. Used at shutdown and before deletion.
    pub(crate) async fn close(&self, checkpoint: bool) {
        self.closing.set(true);
        let settled =
            crate::notify::wait_until(&self.event, || self.log.borrow().in_flight.is_empty() || self.failed.get());
        let timeout = self.clock.sleep(CLOSE_WAIT_MAX);
        futures_util::future::select(std::pin::pin!(settled), timeout).await;
        if self.failed.get() || !checkpoint {
            return;
        }
        let (target, recovery_point) = {
            let log = self.log.borrow();
            (log.written_sequence, log.local_end)
        };
        if self.sync_up_to(target).await.is_err() {
            return;
        }
        let zero_tails: Vec<i64> = self.log.borrow().zero_tails.iter().copied().collect();
        for base in zero_tails {
            if let Err(error) = self.truncate_zero_tail(base).await {
                self.fail(&error);
                return;
            }
        }
        self.write_indexes(true).await;
        if let Err(error) = self.write_txn_indexes().await {
            tracing::warn!(partition = %self.id, %error, "aborted-transaction index write failed at close");
            return;
        }
        if let Err(error) = self.write_snapshots().await {
            tracing::warn!(partition = %self.id, %error, "producer snapshot write failed at close");
            return;
        }
        if let Err(error) = self.write_checkpoint(recovery_point).await {
            tracing::warn!(partition = %self.id, %error, "checkpoint write failed at close");
        }
    }
}
