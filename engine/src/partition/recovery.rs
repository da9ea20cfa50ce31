//! Opening a partition: find its segments, trust those fully below the recovery point (when
//! their indexes are consistent), re-validate the rest, and truncate a torn or corrupt tail.
//!
//! 1. Read `partition.checkpoint` (recovery point, log start, replicated high watermark) and
//!    `leader-epoch-checkpoint`; none means recover everything from offset 0, and so does a
//!    missing or unreadable epoch file (the epochs come from the batches).
//! 2. List `*.log` files by base offset and `*.snapshot` files by offset; remove leftover
//!    `*.tmp` files.
//! 3. Load the latest readable producer snapshot at or below the recovery point (see
//!    `snapshot`); recovery then trusts nothing past it: the recovery point becomes its offset
//!    (offset 0 and an empty state when there is none).
//! 4. For each segment: if it ends at or below the recovery point and its `.index` and
//!    `.timeindex` decode consistently, load them; otherwise scan the log, re-validating every
//!    batch and replaying producer state for batches at or past the snapshot.
//! 5. At the first invalid batch, truncate the file there (fsynced) and delete later segments;
//!    drop epoch entries and producer batches past the recovered log end, and the snapshots
//!    past it or below the first segment; end the transactions open below the offset
//!    compaction reached (their markers may be gone).
//! 6. Open every segment for io_uring; the last one is the active segment.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;

use super::epochs::LeaderEpochCache;
use super::{CHECKPOINT_FILE_NAME, Checkpoint, Log, Partition, snapshot};
use crate::config::TopicConfig;
use crate::io::FaultInjector;
use crate::segment::txn_index::{self, AbortedTxn};
use crate::segment::{self, Segment, SegmentSummary, scan};
use crate::types::TopicPartition;

/// What a partition shares with the rest of the engine.
pub(crate) struct Shared {
    pub(crate) event: Arc<Event>,
    pub(crate) faults: Option<Arc<FaultInjector>>,
    pub(crate) stats: Arc<crate::stats::ShardStats>,
    pub(crate) tuning: super::Tuning,
    pub(crate) clock: crate::clock::SharedClock,
}

fn read_checkpoint(dir: &Path) -> Checkpoint {
    let path = dir.join(CHECKPOINT_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "unreadable checkpoint; recovering the whole log");
            Checkpoint::default()
        }),
        Err(_) => Checkpoint::default(),
    }
}

/// Base offsets of the `.log` files in `dir`, sorted, and the offsets of its producer
/// snapshots.
fn list_segments(dir: &Path) -> std::io::Result<(Vec<i64>, BTreeSet<i64>)> {
    let mut bases = Vec::new();
    let mut snapshots = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") || name.ends_with(".cleaned") {
            std::fs::remove_file(entry.path())?;
            continue;
        }
        if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == 20
            && let Ok(base) = stem.parse::<i64>()
            && base >= 0
        {
            bases.push(base);
        } else if let Some(offset) = snapshot::parse_name(&name) {
            snapshots.insert(offset);
        }
    }
    bases.sort_unstable();
    Ok((bases, snapshots))
}

/// Loads a trusted segment's summary from its index files, or `None` when they are unusable.
fn load_trusted(dir: &Path, base: i64, next_base: i64) -> Option<SegmentSummary> {
    let size_bytes = std::fs::metadata(segment::log_path(dir, base)).ok()?.len();
    let index = segment::decode_index(&std::fs::read(segment::index_path(dir, base)).ok()?, size_bytes)?;
    let time_index = segment::decode_time_index(&std::fs::read(segment::time_index_path(dir, base)).ok()?)?;
    if size_bytes > 0 && index.is_empty() {
        return None;
    }
    let (max_timestamp_ms, offset_of_max_timestamp) =
        time_index.last().map_or((-1, base), |entry| (entry.timestamp_ms, base + i64::from(entry.relative_offset)));
    Some(SegmentSummary {
        next_offset: next_base,
        size_bytes,
        index,
        time_index,
        max_timestamp_ms,
        offset_of_max_timestamp,
    })
}

/// Truncates `path` to `size_bytes` and fsyncs it.
fn truncate(path: &Path, size_bytes: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(size_bytes)?;
    file.sync_all()
}

/// What recovery found on disk, ready to become a partition on its shard.
struct Recovered {
    summaries: BTreeMap<i64, SegmentSummary>,
    checkpoint: Checkpoint,
    producers: super::producer::ProducerStates,
    epochs: LeaderEpochCache,
    /// Each segment's aborted transactions (`.txnindex`), and whether they were re-scanned
    /// (so that its file may lack some).
    aborted: BTreeMap<i64, (Vec<AbortedTxn>, bool)>,
    /// The producer snapshots left on disk.
    snapshots: BTreeSet<i64>,
}

/// The epoch cache file, `None` when missing or unreadable.
fn read_epochs(dir: &Path) -> Option<LeaderEpochCache> {
    let bytes = std::fs::read(dir.join(super::epochs::FILE_NAME)).ok()?;
    let decoded = LeaderEpochCache::decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(dir = %dir.display(), "unreadable leader-epoch checkpoint; rebuilding it from the log");
    }
    decoded
}

impl Partition {
    /// Opens (creating when absent) and recovers the partition in `dir`. The file-system work
    /// (directory and segment creation with their fsyncs, scans, truncation) runs on the
    /// blocking pool: creating a topic of 1,000 partitions fsyncs 2,000 directories, which
    /// stalled every connection of the shard for 2 s when done on its thread.
    pub(crate) async fn open(
        id: TopicPartition,
        dir: PathBuf,
        config: TopicConfig,
        shared: Shared,
    ) -> std::io::Result<Rc<Partition>> {
        let recovered = {
            let (id, dir) = (id.clone(), dir.clone());
            let index_interval_bytes = config.index_interval_bytes;
            crate::io::unblocked(move || recover_files(&id, &dir, index_interval_bytes)).await?
        };
        Self::assemble(id, dir, config, shared, recovered)
    }
}

/// The file-system half of opening, blocking: steps 1-4 of the module docs, plus an empty
/// first segment for a new partition.
fn recover_files(id: &TopicPartition, dir: &Path, index_interval_bytes: u32) -> std::io::Result<Recovered> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            crate::io::sync_dir(parent)?;
        }
    }
    let mut checkpoint = read_checkpoint(dir);
    let stored_epochs = read_epochs(dir);
    if stored_epochs.is_none() {
        // Without the epochs of trusted segments, trust none: the scan assigns them all.
        checkpoint.recovery_point = 0;
    }
    let mut epochs = stored_epochs.unwrap_or_default();
    let (bases, mut snapshots) = list_segments(dir)?;
    let mut producers = load_snapshot(id, dir, &mut checkpoint, &mut snapshots)?;
    let mut summaries: BTreeMap<i64, SegmentSummary> = BTreeMap::new();
    let mut truncated_at: Option<usize> = None;
    let mut aborted: BTreeMap<i64, (Vec<AbortedTxn>, bool)> = BTreeMap::new();
    for (position, base) in bases.iter().enumerate() {
        let next_base = bases.get(position + 1).copied();
        let trusted =
            next_base.filter(|next| *next <= checkpoint.recovery_point).and_then(|next| load_trusted(dir, *base, next));
        if let Some(summary) = trusted {
            // A trusted segment's index was written before the checkpoint that trusts it; a
            // missing file is a segment older than transactions (no abort in it).
            let entries = txn_index::read(dir, *base).unwrap_or_else(|| {
                tracing::warn!(partition = %id, base_offset = base, "unreadable aborted-transaction index; ignoring it");
                Vec::new()
            });
            aborted.insert(*base, (entries, false));
            summaries.insert(*base, summary);
            continue;
        }
        let path = segment::log_path(dir, *base);
        // The scan re-assigns the epochs of this segment and those after it, in order, over a
        // cache cut back to where it starts.
        epochs.truncate_from_end(*base);
        // Aborts below the recovery point are in the index file; those past it are re-scanned.
        let mut entries: Vec<AbortedTxn> = txn_index::read(dir, *base)
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry.last_offset < checkpoint.recovery_point)
            .collect();
        let outcome = scan::scan(&path, *base, index_interval_bytes, u64::MAX, |header, bytes| {
            if header.base_offset >= checkpoint.recovery_point {
                let marker = super::append::control_marker(header, bytes);
                entries.extend(producers.record(header, header.base_offset, marker));
            }
            epochs.assign(header.leader_epoch, header.base_offset);
        })?;
        let valid = outcome.summary.size_bytes;
        let ends_early = next_base.is_some_and(|next| outcome.summary.next_offset > next);
        let cut = valid < outcome.file_size_bytes || ends_early;
        let mut summary = outcome.summary;
        if let Some(next) = next_base.filter(|_| !cut) {
            // The offsets up to the next segment belong to this one, as for a trusted segment,
            // even where compaction dropped the last of them (or every batch: an empty file).
            summary.next_offset = summary.next_offset.max(next);
        }
        summaries.insert(*base, summary);
        aborted.insert(*base, (entries, true));
        if cut {
            if outcome.zero_tail && !ends_early {
                let zero_bytes = outcome.file_size_bytes - valid;
                tracing::debug!(partition = %id, segment = %path.display(), zero_bytes, "dropping zero-filled space");
            } else {
                tracing::warn!(
                    partition = %id,
                    segment = %path.display(),
                    valid_bytes = valid,
                    file_bytes = outcome.file_size_bytes,
                    "truncating a torn or corrupt log tail"
                );
            }
            truncate(&path, valid)?;
            truncated_at = Some(position);
            break;
        }
    }
    if let Some(position) = truncated_at {
        for base in &bases[position + 1..] {
            tracing::warn!(partition = %id, base_offset = base, "removing a segment after a corrupt one");
            for path in [
                segment::log_path(dir, *base),
                segment::index_path(dir, *base),
                segment::time_index_path(dir, *base),
                txn_index::path(dir, *base),
            ] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
        crate::io::sync_dir(dir)?;
    }
    if summaries.is_empty() {
        let base = checkpoint.log_start_offset.max(0);
        let path = segment::log_path(dir, base);
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        crate::io::sync_dir(dir)?;
        summaries.insert(base, SegmentSummary::empty(base));
    }
    let next_offset = summaries.values().next_back().map_or(0, |summary| summary.next_offset);
    epochs.truncate_from_end(next_offset);
    // A snapshot older than a compaction may hold open a transaction whose marker compaction
    // removed (see `compaction`).
    let ended = producers.end_transactions_below(checkpoint.cleaned_up_to);
    if ended > 0 {
        tracing::debug!(partition = %id, ended, "transactions whose markers compaction removed");
    }
    let producers = producers.below(next_offset);
    for (entries, _) in aborted.values_mut() {
        entries.retain(|entry| entry.last_offset < next_offset);
    }
    // A snapshot past the log end describes batches that did not survive; one below the first
    // segment, batches retention removed.
    let first_base = summaries.keys().next().copied().unwrap_or(0);
    let stale: Vec<i64> =
        snapshots.iter().copied().filter(|offset| *offset > next_offset || *offset < first_base).collect();
    if !stale.is_empty() {
        for offset in &stale {
            snapshots.remove(offset);
        }
        tracing::debug!(partition = %id, ?stale, "removing producer snapshots outside the log");
        snapshot::remove(dir, stale)?;
        crate::io::sync_dir(dir)?;
    }
    Ok(Recovered { summaries, checkpoint, producers, epochs, aborted, snapshots })
}

/// Step 3: the producer state recovery starts from, and where: the latest readable snapshot at
/// or below the recovery point, which becomes the recovery point. A checkpoint written before
/// snapshots existed holds the state below its recovery point: that becomes a snapshot file
/// (unless the recovery point was reset: a missing epoch file makes recovery replay everything).
fn load_snapshot(
    id: &TopicPartition,
    dir: &Path,
    checkpoint: &mut Checkpoint,
    snapshots: &mut BTreeSet<i64>,
) -> std::io::Result<super::producer::ProducerStates> {
    if let Some(legacy) = checkpoint.producers.take().filter(|_| checkpoint.recovery_point > 0) {
        let offset = checkpoint.recovery_point;
        crate::io::write_atomic(&snapshot::path(dir, offset), &snapshot::encode(legacy.clone()))?;
        snapshots.insert(offset);
        return Ok(legacy);
    }
    if let Some((offset, producers)) = snapshot::latest_at_or_below(dir, snapshots, checkpoint.recovery_point) {
        checkpoint.recovery_point = offset;
        return Ok(producers);
    }
    if checkpoint.recovery_point > 0 {
        tracing::debug!(partition = %id, "no producer snapshot; replaying producer state from the whole log");
    }
    checkpoint.recovery_point = 0;
    Ok(super::producer::ProducerStates::default())
}

impl Partition {
    fn assemble(
        id: TopicPartition,
        dir: PathBuf,
        config: TopicConfig,
        shared: Shared,
        recovered: Recovered,
    ) -> std::io::Result<Rc<Partition>> {
        let Recovered { summaries, checkpoint, producers, epochs, mut aborted, snapshots } = recovered;
        let now_ms = shared.clock.unix_ms();
        let mut segments = BTreeMap::new();
        for (base, summary) in summaries {
            let file = crate::io::open_rw(&segment::log_path(&dir, base), false)?;
            let mut opened = Segment::new(base, &dir, file, summary, now_ms)?;
            opened.index_dirty = false;
            let (entries, rescanned) = aborted.remove(&base).unwrap_or_default();
            opened.aborted = entries;
            // Rewritten before the next checkpoint: a re-scanned segment's file may lack some.
            opened.txn_index_changes = u64::from(rescanned);
            segments.insert(base, opened);
        }
        let first_base = *segments.keys().next().expect("at least one segment");
        let writeback = segments
            .values()
            .next_back()
            .map(|active: &Segment| (active.base_offset, active.summary.size_bytes))
            .expect("at least one segment");
        let next_offset = segments.values().next_back().expect("at least one segment").summary.next_offset;
        let log_start_offset = checkpoint.log_start_offset.max(first_base).min(next_offset);
        let log = Log {
            segments,
            next_offset,
            local_end: next_offset,
            replicated_high_watermark: checkpoint
                .high_watermark
                .map(|high_watermark| high_watermark.clamp(log_start_offset, next_offset)),
            hw_position: None,
            tail_batches: VecDeque::new(),
            log_start_offset,
            in_flight: VecDeque::new(),
            next_write_sequence: 1,
            written_sequence: 0,
            synced_sequence: 0,
            unsynced_files: Vec::new(),
            rolls: 0,
            rolls_synced: 0,
            writeback,
            fill: super::prealloc::Fill::default(),
            zero_tails: std::collections::BTreeSet::new(),
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            producers,
            snapshots,
            pending_snapshots: Vec::new(),
            truncations: 0,
            epochs,
            // Written at the first checkpoint, so that a rebuilt cache reaches the disk.
            epochs_version: 1,
            checkpointed: super::CheckpointKey {
                recovery_point: checkpoint.recovery_point,
                log_start_offset: checkpoint.log_start_offset,
                cleaned_up_to: checkpoint.cleaned_up_to,
                high_watermark: checkpoint.high_watermark,
                epochs_version: 0,
            },
        };
        Ok(Rc::new(Partition {
            id,
            dir,
            config: RefCell::new(config),
            log: RefCell::new(log),
            event: shared.event,
            sync_event: Event::new(),
            syncing: Cell::new(false),
            failed: Cell::new(false),
            tuning: shared.tuning,
            fill_event: Event::new(),
            closing: Cell::new(false),
            checkpointing: Cell::new(false),
            checkpoint_event: Event::new(),
            // A log truncated at recovery may take new records below the old mark.
            cleaned_up_to: Cell::new(checkpoint.cleaned_up_to.min(next_offset)),
            faults: shared.faults,
            stats: shared.stats,
            clock: shared.clock,
        }))
    }
}
