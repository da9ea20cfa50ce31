//! Log compaction (`cleanup.policy=compact`): keep only the last record of each key.
//!
//! The closed segments (not the active one, every write done) are the cleanable part of the
//! log. Below `cleaned_up_to` it is clean: an earlier pass mapped its keys. Above, it is dirty.
//! A pass runs when the dirty bytes are at least `min.cleanable.dirty.ratio` (Kafka's topic
//! config, default 0.5) of the cleanable bytes, as Kafka's cleaner chooses, so a large compacted
//! log is not re-read for every few new records.
//!
//! 1. Map each key of the dirty part to the offset of its last record, from `cleaned_up_to`
//!    on, until the map (`EngineConfig::compaction_map_bytes`) is full: the map then covers the
//!    offsets below `mapped_up_to`. Keys are kept as 128-bit hashes (xxh3, seeded per pass), as
//!    Kafka keeps MD5 digests.
//! 2. For each closed segment holding offsets below `mapped_up_to`, oldest first from the start
//!    of the log (so every batch of a transaction is read before its marker), write a cleaned
//!    copy when it holds a record superseded by the map, a tombstone below `mapped_up_to` older
//!    than `delete.retention.ms`, a batch of an aborted transaction, or a marker to stamp or drop
//!    (below): each uncompressed batch is rebuilt with the surviving records (offsets,
//!    timestamps and producer fields kept, count and CRC redone); batches left empty are
//!    dropped; compressed batches are kept whole (the engine never decompresses, so their keys
//!    neither supersede nor are superseded). A tombstone is only dropped once every older record
//!    of its key is: it is below `mapped_up_to`, so this pass or an earlier one mapped it and
//!    dropped them.
//! 3. Fsync the copy and scan it for its summary and indexes.
//! 4. On the shard, unless the partition closed meanwhile (a deleted topic's directory may
//!    belong to a new topic of the same name by then): remove the segment's index files and
//!    fsync the directory (so that a crash before the new indexes are written rebuilds them
//!    from the log), rename the copy over the segment unless the segment was removed
//!    meanwhile, fsync the directory, swap the in-memory segment (its indexes are written by
//!    the same maintenance pass), forget the `.txnindex` entries of the aborted transactions
//!    step 2 found empty (the maintenance pass rewrites those files), and move `cleaned_up_to`
//!    to `mapped_up_to`; the checkpoint written next records it. Readers holding the old file
//!    keep reading the old, unlinked inode, whose space is freed once they let go.
//!
//! Transactions: the cleanable part ends before the first unstable offset (no open transaction
//! is cleaned). Batches of aborted transactions (a producer's batches from an aborted
//! transaction's first offset to its abort marker, per the `.txnindex` entries) are neither
//! mapped nor kept, as Kafka's cleaner removes aborted data. Markers (control batches) go as
//! Kafka's cleaner removes them (KIP-534's delete horizon), judged per producer as step 2 walks
//! the log:
//! - (a) A marker whose transaction had a batch read by this pass stays as it is, whether or not
//!   this pass keeps that batch: a crash may leave some copies renamed in and others not, so
//!   only a pass that reads no batch of the transaction knows it is empty. An aborted
//!   transaction's `.txnindex` entry stays too.
//! - (b) A marker of an empty transaction gets a delete horizon, once: attribute bit 6 (0x40) set
//!   and the base timestamp set to the pass's time + `delete.retention.ms` (the record's
//!   timestamp delta rewritten so that its timestamp stays; the CRC redone). An aborted
//!   transaction's entry leaves the `.txnindex`: there is no batch left for it to hide.
//! - (c) A pass at or after the horizon drops the marker of a transaction still empty, unless:
//!   - its abort was still indexed when the pass began, or its segment's `.txnindex` file lags
//!     memory: an entry naming a dropped marker would make read_committed consumers skip the
//!     producer's later transactions;
//!   - it is not below both the recovery point and the `cleaned_up_to` of the checkpoint on
//!     disk: producer state recovered from before the marker would hold its transaction open
//!     with no marker left to end it; below the durable `cleaned_up_to`, recovery can tell such
//!     a transaction (complete when a pass cleaned it: passes clean only below the last stable
//!     offset) from one still open;
//!   - it is in the current epoch of a producer still known with no data batch remembered: it
//!     holds the epoch that fences the producer's zombies (Kafka's cleaner keeps it too).
//!
//! A marker is never emptied in place (Kafka can leave an empty control batch): recovery
//! replays control batches, and one without its marker record would open a transaction.
//!
//! Steps 1-3 read and write whole segments, so they run on the blocking pool: the shard keeps
//! serving while a large compacted topic is cleaned. A pass stopped by a full map leaves the
//! rest dirty for the next maintenance pass.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use super::Partition;
use crate::batch::{self, BatchHeader, ControlType};
use crate::config::TopicConfig;
use crate::segment::{self, Segment, SegmentSummary, scan};

/// Kafka's default `delete.retention.ms`: how long tombstones, and the markers of empty
/// transactions, survive compaction.
const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 3600 * 1000;

/// Kafka's default `min.cleanable.dirty.ratio`.
const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;

/// Write buffer of a cleaned copy.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Attribute bit 6 of a batch (Kafka's "delete horizon flag", KIP-534): its base timestamp is
/// the time from which the cleaner may remove it.
const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Where a batch's attributes (2 bytes) and base timestamp (8 bytes) are (engine/FORMAT.md).
const ATTRIBUTES_POSITION: usize = 21;
const BASE_TIMESTAMP_POSITION: usize = 27;

/// A closed segment, detached from the log borrow.
struct Candidate {
    base_offset: i64,
    readable_size_bytes: u64,
    next_offset: i64,
    /// Its earliest batch's largest timestamp, as far as the time index tells.
    first_timestamp_ms: i64,
}

/// A cleaned copy of a segment, written, fsynced and scanned, not yet renamed in.
struct CleanedCopy {
    base_offset: i64,
    path: PathBuf,
    cleaned_path: PathBuf,
    file: std::fs::File,
    summary: SegmentSummary,
}

/// What one pass asks of the blocking pool.
struct Pass {
    dir: PathBuf,
    /// The closed segments, in offset order.
    closed: Vec<Candidate>,
    cleaned_up_to: i64,
    /// The pass's time.
    now_ms: i64,
    tombstone_horizon_ms: i64,
    /// The delete horizon a marker of an empty transaction gets: `now_ms` + `delete.retention.ms`.
    marker_horizon_ms: i64,
    index_interval_bytes: u32,
    map_bytes: u64,
    /// The aborted transactions' offset ranges, by producer id.
    aborted: AbortedRanges,
    /// Markers at or past this offset stay: the smaller of the recovery point and the
    /// `cleaned_up_to` of the checkpoint on disk.
    durable_below: i64,
    /// Segments (base offsets) whose `.txnindex` file lags their entries: their markers stay.
    stale_txn_indexes: BTreeSet<i64>,
    /// The epoch of each producer still known with no data batch remembered: its markers of
    /// that epoch carry the epoch that fences its zombies, and stay.
    fencing_epochs: HashMap<i64, i16>,
}

/// Offset ranges (first offset to abort marker) of aborted transactions, by producer id.
#[derive(Debug, Default)]
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn insert(&mut self, producer_id: i64, first_offset: i64, marker_offset: i64) {
        self.0.entry(producer_id).or_default().push((first_offset, marker_offset));
    }

    /// The offset of the abort marker of the aborted transaction `header` is a batch of, if it
    /// is one.
    fn marker_of(&self, header: &BatchHeader) -> Option<i64> {
        if !header.is_transactional() || header.is_control() {
            return None;
        }
        let ranges = self.0.get(&header.producer_id)?;
        ranges
            .iter()
            .find(|(first, marker)| (*first..=*marker).contains(&header.base_offset))
            .map(|(_, marker)| *marker)
    }

    /// Whether `header` is a batch of an aborted transaction.
    fn holds(&self, header: &BatchHeader) -> bool {
        self.marker_of(header).is_some()
    }

    /// Whether the `.txnindex` holds the abort of `producer_id` whose marker is at `marker_offset`.
    fn indexes(&self, producer_id: i64, marker_offset: i64) -> bool {
        self.0.get(&producer_id).is_some_and(|ranges| ranges.iter().any(|(_, marker)| *marker == marker_offset))
    }
}

/// The transactions one pass meets as it walks the log from its start, in offset order (Kafka's
/// `CleanedTransactionMetadata`): which had a batch read, and which aborts turned out empty.
#[derive(Debug, Default)]
struct Transactions {
    /// Producers with a batch of their current transaction read by this pass, not indexed as
    /// aborted.
    read_open: BTreeSet<i64>,
    /// Aborted transactions (producer id, marker offset) with a batch read by this pass.
    read_aborted: BTreeSet<(i64, i64)>,
    /// Aborted transactions (producer id, marker offset) whose marker this pass met with no
    /// batch of theirs read: their `.txnindex` entries go.
    emptied_aborts: Vec<(i64, i64)>,
}

/// How a transaction stands when a pass meets its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The pass read a batch of it: the marker stays as it is.
    Read,
    /// The pass read no batch of it. `indexed`: its abort was in the `.txnindex` when the pass
    /// began.
    Empty { indexed: bool },
}

impl Transactions {
    /// Notes a data batch; true when it belongs to an aborted transaction (and so goes).
    fn on_data(&mut self, aborted: &AbortedRanges, header: &BatchHeader) -> bool {
        if !header.is_transactional() {
            return false;
        }
        if let Some(marker_offset) = aborted.marker_of(header) {
            self.read_aborted.insert((header.producer_id, marker_offset));
            return true;
        }
        self.read_open.insert(header.producer_id);
        false
    }

    /// Notes the marker `header` of type `control_type`, which ends its producer's transaction.
    fn on_marker(&mut self, aborted: &AbortedRanges, header: &BatchHeader, control_type: ControlType) -> Ended {
        assert!(header.is_control(), "a marker is a control batch");
        let (producer_id, marker_offset) = (header.producer_id, header.base_offset);
        // A batch of the producer's transaction that the index does not call aborted counts as
        // read whatever the marker says: an abort whose entry went missing keeps its marker.
        let read_open = self.read_open.remove(&producer_id);
        if control_type == ControlType::Commit {
            return if read_open { Ended::Read } else { Ended::Empty { indexed: false } };
        }
        let read_aborted = self.read_aborted.remove(&(producer_id, marker_offset));
        if read_open || read_aborted {
            return Ended::Read;
        }
        let indexed = aborted.indexes(producer_id, marker_offset);
        if indexed {
            self.emptied_aborts.push((producer_id, marker_offset));
        }
        Ended::Empty { indexed }
    }
}

/// What one pass produced: the copies to rename in, how far its key map reached, and the
/// aborted transactions (producer id, marker offset) it found empty.
struct PassOutcome {
    copies: Vec<CleanedCopy>,
    mapped_up_to: i64,
    emptied_aborts: Vec<(i64, i64)>,
}

impl Partition {
    /// When a compaction pass is due, its priority: the dirty part's share of the cleanable
    /// bytes, plus 1 when `max.compaction.lag.ms` forces the pass. A pass is due when the topic
    /// is compacted, the partition open and healthy, and the share is at least
    /// `min.cleanable.dirty.ratio`, or a dirty record is older than `max.compaction.lag.ms`.
    /// The shard runs the pass of the partition with the highest priority first, as Kafka's
    /// cleaner does.
    pub(crate) fn compaction_due(&self, now_ms: i64) -> Option<f64> {
        let config = self.config.borrow();
        if !config.cleanup_policy.compact || self.closing.get() || self.failed.get() {
            return None;
        }
        let min_dirty_ratio = setting(&config, "min.cleanable.dirty.ratio", MIN_CLEANABLE_DIRTY_RATIO_DEFAULT);
        let max_lag_ms = setting(&config, "max.compaction.lag.ms", i64::MAX);
        let cleaned_up_to = self.cleaned_up_to.get();
        let closed = self.closed_segments(&config, now_ms);
        let ratio = dirty_ratio(&closed, cleaned_up_to)?;
        let overdue = closed
            .iter()
            .find(|candidate| candidate.next_offset > cleaned_up_to)
            .is_some_and(|first_dirty| first_dirty.first_timestamp_ms < now_ms.saturating_sub(max_lag_ms));
        if overdue { Some(1.0 + ratio) } else { (ratio >= min_dirty_ratio).then_some(ratio) }
    }

    /// The cleanable segments, oldest first. They end at the active segment, at the first
    /// segment with writes still in flight (a segment just rolled), or at the first holding a
    /// record newer than `min.compaction.lag.ms` (Kafka's first uncleanable offset).
    fn closed_segments(&self, config: &TopicConfig, now_ms: i64) -> Vec<Candidate> {
        let min_lag_ms = setting(config, "min.compaction.lag.ms", 0i64);
        let log = self.log.borrow();
        let active_base = log.active().base_offset;
        let last_stable_offset = log.last_stable_offset();
        log.segments
            .values()
            .take_while(|segment| {
                segment.base_offset != active_base
                    && segment.readable_size_bytes == segment.summary.size_bytes
                    && segment.summary.next_offset <= last_stable_offset
                    && (min_lag_ms <= 0 || segment.summary.max_timestamp_ms <= now_ms.saturating_sub(min_lag_ms))
            })
            .map(|segment| Candidate {
                base_offset: segment.base_offset,
                readable_size_bytes: segment.readable_size_bytes,
                next_offset: segment.summary.next_offset,
                first_timestamp_ms: segment
                    .summary
                    .time_index
                    .first()
                    .map_or(segment.summary.max_timestamp_ms, |entry| entry.timestamp_ms),
            })
            .collect()
    }

    /// Runs one compaction pass, when one is due.
    pub(crate) async fn compact(&self, now_ms: i64) -> std::io::Result<()> {
        if self.compaction_due(now_ms).is_none() {
            return Ok(());
        }
        let config = self.config.borrow().clone();
        let delete_retention_ms = setting(&config, "delete.retention.ms", DELETE_RETENTION_MS_DEFAULT);
        let closed = self.closed_segments(&config, now_ms);
        let cleaned_up_to = self.cleaned_up_to.get();
        // As Kafka's cleaner keeps the last marker of an active producer that has no data
        // offset: a producer with no data batch remembered.
        let fencing_epochs = self
            .producers()
            .into_iter()
            .filter(|producer| producer.last_sequence < 0)
            .map(|producer| (producer.producer_id, producer.epoch))
            .collect();
        let (aborted, durable_below, stale_txn_indexes) = {
            let log = self.log.borrow();
            let mut aborted = AbortedRanges::default();
            for entry in log.segments.values().flat_map(|segment| &segment.aborted) {
                aborted.insert(entry.producer_id, entry.first_offset, entry.last_offset);
            }
            let stale = log.segments.values().filter(|segment| segment.txn_index_stale());
            let durable_below = log.checkpointed.recovery_point.min(log.checkpointed.cleaned_up_to);
            (aborted, durable_below, stale.map(|segment| segment.base_offset).collect())
        };
        let pass = Pass {
            aborted,
            dir: self.dir.clone(),
            closed,
            cleaned_up_to,
            now_ms,
            tombstone_horizon_ms: now_ms.saturating_sub(delete_retention_ms),
            marker_horizon_ms: now_ms.saturating_add(delete_retention_ms),
            index_interval_bytes: config.index_interval_bytes,
            map_bytes: self.tuning.compaction_map_bytes,
            durable_below,
            stale_txn_indexes,
            fencing_epochs,
        };
        let PassOutcome { copies, mapped_up_to, emptied_aborts } = crate::io::unblocked(move || clean(&pass)).await?;
        if self.closing.get() {
            // Closed (or deleted) meanwhile; recovery removes the copies at the next open.
            return Ok(());
        }
        // The old index files would not match the cleaned logs: remove them first, durably, so
        // that a crash before the new ones are written makes recovery rebuild them from the log.
        for copy in &copies {
            for path in [
                segment::index_path(&self.dir, copy.base_offset),
                segment::time_index_path(&self.dir, copy.base_offset),
            ] {
                match std::fs::remove_file(&path) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
            }
        }
        if !copies.is_empty() {
            crate::io::sync_dir_async(&self.dir).await?;
        }
        let mut renamed = Vec::with_capacity(copies.len());
        for copy in copies {
            // No await between the check and the rename: a segment removed meanwhile (retention,
            // DeleteRecords) must not come back.
            if self.closing.get() {
                return Ok(());
            }
            if !self.log.borrow().segments.contains_key(&copy.base_offset) {
                let _gone_anyway = std::fs::remove_file(&copy.cleaned_path);
                continue;
            }
            std::fs::rename(&copy.cleaned_path, &copy.path)?;
            renamed.push(copy);
        }
        if !renamed.is_empty() {
            crate::io::sync_dir_async(&self.dir).await?;
        }
        for copy in renamed {
            self.swap_segment(copy)?;
        }
        self.forget_aborts(&emptied_aborts);
        self.cleaned_up_to.set(self.cleaned_up_to.get().max(mapped_up_to));
        Ok(())
    }

    /// Removes the `.txnindex` entries of the aborted transactions a pass found empty (no batch
    /// of theirs left in the log, so nothing for the entry to hide). The maintenance pass
    /// rewrites the files; until then their segments' markers stay (see the module docs).
    fn forget_aborts(&self, emptied: &[(i64, i64)]) {
        let mut log = self.log.borrow_mut();
        for (producer_id, marker_offset) in emptied {
            // Removed meanwhile (retention, DeleteRecords): its entries went with it.
            let Some((_, segment)) = log.segments.range_mut(..=*marker_offset).next_back() else { continue };
            let count = segment.aborted.len();
            segment.aborted.retain(|entry| (entry.producer_id, entry.last_offset) != (*producer_id, *marker_offset));
            assert!(count - segment.aborted.len() <= 1, "one abort per marker");
            if segment.aborted.len() != count {
                segment.txn_index_changes += 1;
            }
        }
    }

    /// Replaces the in-memory segment with its cleaned copy (already renamed in).
    fn swap_segment(&self, copy: CleanedCopy) -> std::io::Result<()> {
        let mut log = self.log.borrow_mut();
        let Some(previous) = log.segments.get(&copy.base_offset) else {
            // Removed while the directory was fsynced: the removal unlinked the copy.
            drop(log);
            crate::io::free_in_background(std::sync::Arc::new(copy.file));
            return Ok(());
        };
        let file = crate::io::into_runtime_file(copy.file);
        let created_ms = previous.created_ms;
        let next_offset = previous.summary.next_offset;
        let mut summary = copy.summary;
        // Offsets dropped at the end of the segment still belong to it.
        summary.next_offset = summary.next_offset.max(next_offset);
        let mut replacement = Segment::new(copy.base_offset, &self.dir, file, summary, created_ms)?;
        replacement.index_dirty = true;
        // The segment's aborted transactions stay as they were; those the pass found empty are
        // forgotten once every copy is in (`forget_aborts`).
        replacement.aborted.clone_from(&previous.aborted);
        replacement.txn_index_changes = previous.txn_index_changes;
        replacement.txn_index_written = previous.txn_index_written;
        if let Some(replaced) = log.segments.insert(copy.base_offset, replacement) {
            // The rename unlinked the old file; free its space off the shard.
            crate::io::free_in_background(replaced.reader);
        }
        Ok(())
    }
}

/// A topic config compaction reads from the verbatim ones (validated when set).
fn setting<T: std::str::FromStr>(config: &TopicConfig, name: &str, default: T) -> T {
    config.other.get(name).and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// The share of the closed segments' bytes in the dirty part (segments with offsets at or
/// above `cleaned_up_to`); `None` when there is no dirty part.
fn dirty_ratio(closed: &[Candidate], cleaned_up_to: i64) -> Option<f64> {
    let (mut clean, mut dirty) = (0u64, 0u64);
    for candidate in closed {
        if candidate.next_offset > cleaned_up_to {
            dirty += candidate.readable_size_bytes;
        } else {
            clean += candidate.readable_size_bytes;
        }
    }
    (dirty > 0).then(|| dirty as f64 / (clean + dirty) as f64)
}

/// Steps 1-3, on the blocking pool: map the dirty part's keys, then write the cleaned copies of
/// the closed segments that change.
fn clean(pass: &Pass) -> std::io::Result<PassOutcome> {
    let mut map = KeyMap::with_budget(pass.map_bytes);
    let mut mapped_up_to = pass.cleaned_up_to;
    for candidate in pass.closed.iter().filter(|candidate| candidate.next_offset > pass.cleaned_up_to) {
        let path = segment::log_path(&pass.dir, candidate.base_offset);
        let mut full = false;
        scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
            if full {
                return;
            }
            if !header.is_control() && !pass.aborted.holds(header) {
                for record in batch::records(bytes) {
                    let offset = header.base_offset + i64::from(record.offset_delta);
                    if offset < pass.cleaned_up_to {
                        continue;
                    }
                    if let Some(key) = record.key
                        && !map.insert(key, offset)
                    {
                        full = true;
                        mapped_up_to = mapped_up_to.max(offset);
                        return;
                    }
                }
            }
            mapped_up_to = mapped_up_to.max(header.last_offset() + 1);
        })?;
        if full {
            break;
        }
        // Offsets dropped at the segment's end by earlier passes belong to it too.
        mapped_up_to = mapped_up_to.max(candidate.next_offset);
    }
    let mut cleaner = Cleaner { pass, map: &map, mapped_up_to, transactions: Transactions::default() };
    let mut copies = Vec::new();
    // Oldest first from the start of the log, so that a transaction's batches are read before
    // its marker (they precede it).
    for candidate in pass.closed.iter().filter(|candidate| candidate.base_offset < mapped_up_to) {
        if let Some(copy) = cleaner.clean_segment(candidate)? {
            copies.push(copy);
        }
    }
    Ok(PassOutcome { copies, mapped_up_to, emptied_aborts: cleaner.transactions.emptied_aborts })
}

/// The offset of the last record of each key in the part of the log a pass mapped, in a
/// bounded amount of memory.
struct KeyMap {
    latest: HashMap<KeyHash, i64, BuildHasherDefault<FirstWord>>,
    capacity: usize,
    seed: u64,
}

/// A key's 128-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyHash([u64; 2]);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a seeded hash: its first word is the table hash.
        state.write_u64(self.0[0]);
    }
}

/// A hasher for [`KeyHash`] that passes its first word through.
#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

impl KeyMap {
    /// Bytes of one table slot: a [`KeyHash`], an offset, and the table's control byte.
    const SLOT_BYTES: u64 = 16 + 8 + 1;

    /// A map that never holds more than `budget_bytes` of table: the largest power-of-two
    /// number of slots that fits, filled to the table's 7/8 load limit (so it never grows
    /// past them). Always room for one key, so every pass makes progress.
    fn with_budget(budget_bytes: u64) -> Self {
        let slots = budget_bytes / Self::SLOT_BYTES;
        let slots = if slots < 8 { 8 } else { 1u64 << slots.ilog2() };
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        Self { latest: HashMap::default(), capacity: (slots / 8 * 7) as usize, seed }
    }

    fn hash(&self, key: &[u8]) -> KeyHash {
        let hash = xxhash_rust::xxh3::xxh3_128_with_seed(key, self.seed);
        KeyHash([hash as u64, (hash >> 64) as u64])
    }

    /// Records `offset` as the last record of `key`; false (and nothing recorded) when the map
    /// is full and `key` is new to it.
    fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = self.hash(key);
        if let Some(latest) = self.latest.get_mut(&hash) {
            *latest = offset;
            return true;
        }
        if self.latest.len() >= self.capacity {
            return false;
        }
        self.latest.insert(hash, offset);
        true
    }

    /// Whether a later record of `key` than `offset` was mapped.
    fn supersedes(&self, key: &[u8], offset: i64) -> bool {
        self.latest.get(&self.hash(key)).is_some_and(|latest| *latest > offset)
    }
}

/// Step 2: the key map, how far it reaches, and the transactions met so far.
struct Cleaner<'a> {
    pass: &'a Pass,
    map: &'a KeyMap,
    mapped_up_to: i64,
    transactions: Transactions,
}

impl Cleaner<'_> {
    /// Writes, fsyncs and scans a cleaned copy of one closed segment, when it holds anything to
    /// drop or rewrite. The copy is streamed to its file: up to the first batch that changes,
    /// the segment is copied as it is; from there on, batch by batch.
    fn clean_segment(&mut self, candidate: &Candidate) -> std::io::Result<Option<CleanedCopy>> {
        let path = segment::log_path(&self.pass.dir, candidate.base_offset);
        let cleaned_path = path.with_extension("log.cleaned");
        let mut copy: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut position = 0u64;
        let mut failure: Option<std::io::Error> = None;
        scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
            if failure.is_some() {
                return;
            }
            let survivor = self.survivor(candidate.base_offset, header, bytes);
            let written = (|| -> std::io::Result<()> {
                if copy.is_none() && !matches!(survivor, Survivor::Whole) {
                    // Every batch before this one is kept whole: the copy starts as that prefix.
                    let mut out =
                        std::io::BufWriter::with_capacity(COPY_BUFFER_BYTES, std::fs::File::create(&cleaned_path)?);
                    std::io::copy(&mut std::fs::File::open(&path)?.take(position), &mut out)?;
                    copy = Some(out);
                }
                if let Some(out) = copy.as_mut() {
                    match &survivor {
                        Survivor::Whole => out.write_all(bytes)?,
                        Survivor::Rebuilt(rebuilt) => out.write_all(rebuilt)?,
                        Survivor::Dropped => {}
                    }
                }
                Ok(())
            })();
            if let Err(error) = written {
                failure = Some(error);
            }
            position += bytes.len() as u64;
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        let Some(copy) = copy else { return Ok(None) };
        copy.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
        let interval = self.pass.index_interval_bytes;
        let outcome = scan::scan(&cleaned_path, candidate.base_offset, interval, u64::MAX, |_, _| {})?;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&cleaned_path)?;
        Ok(Some(CleanedCopy { base_offset: candidate.base_offset, path, cleaned_path, file, summary: outcome.summary }))
    }

    /// What remains of one batch of the segment at `segment_base`; batches come in offset order.
    fn survivor(&mut self, segment_base: i64, header: &BatchHeader, bytes: &[u8]) -> Survivor {
        if header.is_control() {
            // Any control batch other than a commit or abort marker stays as it is.
            let Ok(marker) = batch::parse_control_batch(bytes) else { return Survivor::Whole };
            let ended = self.transactions.on_marker(&self.pass.aborted, header, marker.control_type);
            return surviving_marker(self.pass, segment_base, header, bytes, ended);
        }
        if self.transactions.on_data(&self.pass.aborted, header) {
            return Survivor::Dropped;
        }
        surviving_batch(header, bytes, self.map, self.pass.tombstone_horizon_ms, self.mapped_up_to)
    }
}

enum Survivor {
    Whole,
    Rebuilt(Vec<u8>),
    Dropped,
}

/// What remains of one batch after compaction: records superseded in `map` go, and so do
/// tombstones below `mapped_up_to` older than the horizon.
fn surviving_batch(
    header: &BatchHeader,
    bytes: &[u8],
    map: &KeyMap,
    tombstone_horizon_ms: i64,
    mapped_up_to: i64,
) -> Survivor {
    assert!(!header.is_control(), "markers are judged by surviving_marker");
    if header.compression() != 0 {
        return Survivor::Whole;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    for record in batch::records(bytes) {
        total += 1;
        let offset = header.base_offset + i64::from(record.offset_delta);
        let superseded = record.key.is_some_and(|key| map.supersedes(key, offset));
        let expired_tombstone =
            record.value.is_none() && offset < mapped_up_to && header.max_timestamp < tombstone_horizon_ms;
        if !superseded && !expired_tombstone {
            kept.push(record.raw);
        }
    }
    if total != header.record_count.max(0) as usize {
        // Records did not parse completely: keep the batch untouched rather than guess.
        return Survivor::Whole;
    }
    if kept.len() == total {
        Survivor::Whole
    } else if kept.is_empty() {
        Survivor::Dropped
    } else {
        Survivor::Rebuilt(batch::rebuild_with_records(bytes, &kept))
    }
}

/// What becomes of a marker whose transaction ended as `ended`, in the segment at
/// `segment_base`: rules (a)-(c) of the module docs.
fn surviving_marker(pass: &Pass, segment_base: i64, header: &BatchHeader, bytes: &[u8], ended: Ended) -> Survivor {
    let Ended::Empty { indexed } = ended else { return Survivor::Whole };
    let Some(horizon_ms) = delete_horizon(header) else {
        // Set once, as Kafka's cleaner does: a later pass never moves it.
        return with_delete_horizon(bytes, pass.marker_horizon_ms).map_or(Survivor::Whole, Survivor::Rebuilt);
    };
    if horizon_ms > pass.now_ms {
        return Survivor::Whole;
    }
    let index_settled = !indexed && !pass.stale_txn_indexes.contains(&segment_base);
    let recoverable = header.last_offset() < pass.durable_below;
    let fencing = pass.fencing_epochs.get(&header.producer_id) == Some(&header.producer_epoch);
    if index_settled && recoverable && !fencing { Survivor::Dropped } else { Survivor::Whole }
}

/// The delete horizon a batch carries, if it has one.
fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp)
}

/// A whole uncompressed batch stamped with the delete horizon `horizon_ms`, as Kafka's cleaner
/// writes it: attribute bit 6 set and the base timestamp set to the horizon, each record's
/// timestamp delta rewritten so that its timestamp stays (record timestamps are base + delta);
/// length and CRC redone, everything else as it was. `None` when the batch is compressed or its
/// records do not all parse (it is then kept as it is).
fn with_delete_horizon(bytes: &[u8], horizon_ms: i64) -> Option<Vec<u8>> {
    let header = batch::parse_header(bytes).ok()?;
    if header.compression() != 0 {
        return None;
    }
    let shift_ms = header.base_timestamp.wrapping_sub(horizon_ms);
    let records: Vec<Vec<u8>> =
        batch::records(bytes).map(|record| shift_timestamp_delta(record.raw, shift_ms)).collect::<Option<_>>()?;
    if records.len() != header.record_count.max(0) as usize {
        return None;
    }
    let mut stamped_header = bytes[..batch::HEADER_SIZE_BYTES].to_vec();
    let attributes = header.attributes | DELETE_HORIZON_FLAG;
    stamped_header[ATTRIBUTES_POSITION..ATTRIBUTES_POSITION + 2].copy_from_slice(&attributes.to_be_bytes());
    stamped_header[BASE_TIMESTAMP_POSITION..BASE_TIMESTAMP_POSITION + 8].copy_from_slice(&horizon_ms.to_be_bytes());
    // The rebuild takes the header as given and redoes the length, the count and the CRC.
    let kept: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let stamped = batch::rebuild_with_records(&stamped_header, &kept);
    let timestamps =
        |batch_bytes: &[u8]| batch::records(batch_bytes).map(|record| record.timestamp_ms).collect::<Vec<_>>();
    assert_eq!(timestamps(&stamped), timestamps(bytes), "a delete horizon keeps every record's timestamp");
    Some(stamped)
}

/// A record's bytes (`length varint | attributes i8 | timestamp delta varlong | rest`) with
/// `shift_ms` added to its timestamp delta and the length redone; `None` when they do not parse.
fn shift_timestamp_delta(raw: &[u8], shift_ms: i64) -> Option<Vec<u8>> {
    let mut position = 0;
    let length = read_varlong(raw, &mut position)?;
    let body = raw.get(position..)?;
    if usize::try_from(length).ok()? != body.len() {
        return None;
    }
    let mut after_delta = 1; // record attributes: one byte
    let delta_ms = read_varlong(body, &mut after_delta)?;
    // One byte of attributes, at most 10 of delta, the rest as it was.
    let mut shifted = Vec::with_capacity(1 + 10 + body.len());
    shifted.push(*body.first()?);
    put_varlong(&mut shifted, delta_ms.wrapping_add(shift_ms));
    shifted.extend_from_slice(&body[after_delta..]);
    let mut record = Vec::with_capacity(10 + shifted.len());
    put_varlong(&mut record, shifted.len() as i64);
    record.extend_from_slice(&shifted);
    Some(record)
}

/// Reads a zigzag varlong (a record field of RecordBatch v2) at `*position`, advancing it;
/// `None` when truncated or longer than 10 bytes. (sluice-batch has its own, private; making it
/// public for two small functions was rejected, as it would widen that crate's API.)
fn read_varlong(bytes: &[u8], position: &mut usize) -> Option<i64> {
    let mut zigzag: u64 = 0;
    for index in 0..10 {
        let byte = *bytes.get(*position + index)?;
        zigzag |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *position += index + 1;
            return Some((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
        }
    }
    None
}

/// Appends `value` as a zigzag varlong.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::EndTxnMarker;
    use crate::batch::builder::{BatchBuilder, BatchOptions, NewRecord};

    fn closed(base_offset: i64, next_offset: i64, readable_size_bytes: u64) -> Candidate {
        Candidate { base_offset, readable_size_bytes, next_offset, first_timestamp_ms: 0 }
    }

    #[test]
    fn key_map_stays_within_its_budget_and_keeps_the_last_offset() {
        let mut map = KeyMap::with_budget(1024);
        // 1024 / 25 bytes: 32 slots, 28 keys at the 7/8 load limit.
        assert_eq!(map.capacity, 28);
        for key in 0..28u32 {
            assert!(map.insert(&key.to_be_bytes(), i64::from(key)));
        }
        assert!(!map.insert(b"one too many", 100), "a new key does not fit");
        assert!(map.insert(&3u32.to_be_bytes(), 50), "a known key still moves");
        assert!(map.supersedes(&3u32.to_be_bytes(), 49));
        assert!(!map.supersedes(&3u32.to_be_bytes(), 50), "the last record is not superseded");
        assert!(!map.supersedes(b"one too many", 0), "an unmapped key supersedes nothing");
        assert_eq!(KeyMap::with_budget(0).capacity, 7, "room for a key whatever the budget");
        assert_eq!(KeyMap::with_budget(128 << 20).capacity, (1 << 22) / 8 * 7);
    }

    #[test]
    fn the_dirty_ratio_counts_segments_above_the_cleaned_offset() {
        let segments = [closed(0, 10, 600), closed(10, 20, 200), closed(20, 30, 200)];
        assert_eq!(dirty_ratio(&segments, -1), Some(1.0), "all dirty");
        assert_eq!(dirty_ratio(&segments, 10), Some(0.4), "400 of 1000 bytes dirty");
        assert_eq!(dirty_ratio(&segments, 15), Some(0.4), "a segment partly mapped is dirty");
        assert_eq!(dirty_ratio(&segments, 30), None, "nothing dirty: nothing to do");
        assert_eq!(dirty_ratio(&[], -1), None);
    }

    #[test]
    fn tombstones_go_only_below_the_mapped_offset() {
        let map = KeyMap::with_budget(1024);
        let batch = batch::build_keyed_batch(&[(b"gone", None), (b"kept", Some(b"value"))], 5);
        let header = batch::parse_header(&batch).expect("header");
        let horizon_ms = 10;
        assert!(matches!(surviving_batch(&header, &batch, &map, horizon_ms, 0), Survivor::Whole));
        match surviving_batch(&header, &batch, &map, horizon_ms, 1) {
            Survivor::Rebuilt(rebuilt) => {
                let keys: Vec<&[u8]> = batch::records(&rebuilt).filter_map(|record| record.key).collect();
                assert_eq!(keys, [b"kept".as_slice()]);
            }
            _ => panic!("the expired tombstone below the mapped offset is dropped"),
        }
        assert!(matches!(surviving_batch(&header, &batch, &map, 5, 2), Survivor::Whole), "not expired yet");
    }

    fn at(mut bytes: Vec<u8>, offset: i64) -> (BatchHeader, Vec<u8>) {
        batch::patch_base_offset(&mut bytes, offset);
        (batch::parse_header(&bytes).expect("a built batch"), bytes)
    }

    /// A one-record transactional batch of `producer_id` at `offset`.
    fn data(producer_id: i64, offset: i64) -> (BatchHeader, Vec<u8>) {
        let options = BatchOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..BatchOptions::default()
        };
        let mut builder = BatchBuilder::new(options);
        builder
            .push(&NewRecord { timestamp_ms: 1, key: Some(b"k"), value: Some(b"v"), ..NewRecord::default() })
            .expect("fits");
        at(builder.finish().expect("encodes").to_vec(), offset)
    }

    fn marker(producer_id: i64, epoch: i16, control_type: ControlType, offset: i64) -> (BatchHeader, Vec<u8>) {
        let marker = EndTxnMarker { control_type, coordinator_epoch: 0 };
        at(batch::build_control_batch(producer_id, epoch, marker, 1_000), offset)
    }

    fn pass_at(now_ms: i64) -> Pass {
        Pass {
            dir: PathBuf::new(),
            closed: Vec::new(),
            cleaned_up_to: 0,
            now_ms,
            tombstone_horizon_ms: now_ms - 10,
            marker_horizon_ms: now_ms + 100,
            index_interval_bytes: 4096,
            map_bytes: 1024,
            aborted: AbortedRanges::default(),
            durable_below: i64::MAX,
            stale_txn_indexes: BTreeSet::new(),
            fencing_epochs: HashMap::new(),
        }
    }

    #[test]
    fn a_delete_horizon_keeps_every_record_field_and_a_valid_crc() {
        let options = BatchOptions {
            producer_id: 3,
            producer_epoch: 1,
            base_sequence: 4,
            transactional: true,
            ..BatchOptions::default()
        };
        let mut builder = BatchBuilder::new(options);
        for (timestamp_ms, key, value) in
            [(5_000, b"k1", Some(&b"v1"[..])), (4_000, b"k2", None), (7_000, b"k3", Some(b"v3"))]
        {
            builder.push(&NewRecord { timestamp_ms, key: Some(key), value, ..NewRecord::default() }).expect("fits");
        }
        let (original_header, original) = at(builder.finish().expect("encodes").to_vec(), 40);
        let horizon_ms = 5_000 + DELETE_RETENTION_MS_DEFAULT;
        let stamped = with_delete_horizon(&original, horizon_ms).expect("an uncompressed batch");
        let header = batch::validate(&stamped, true).expect("valid, CRC included");
        assert_eq!(header.attributes, original_header.attributes | DELETE_HORIZON_FLAG);
        assert_eq!((header.base_timestamp, delete_horizon(&header)), (horizon_ms, Some(horizon_ms)));
        assert_eq!(delete_horizon(&original_header), None);
        let unchanged = |header: &BatchHeader| {
            (
                header.base_offset,
                header.last_offset_delta,
                header.max_timestamp,
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.record_count,
            )
        };
        assert_eq!(unchanged(&header), unchanged(&original_header));
        let fields = |bytes: &[u8]| {
            batch::records(bytes)
                .map(|record| {
                    (
                        record.offset_delta,
                        record.timestamp_ms,
                        record.key.map(<[u8]>::to_vec),
                        record.value.map(<[u8]>::to_vec),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&stamped), fields(&original), "records keep offsets, timestamps, keys and values");
        assert_eq!(fields(&stamped).len(), 3);

        let (_, abort) = marker(9, 2, ControlType::Abort, 7);
        let stamped = with_delete_horizon(&abort, horizon_ms).expect("a marker");
        let parsed = |bytes: &[u8]| batch::parse_control_batch(bytes).expect("a valid marker");
        assert_eq!(parsed(&stamped), parsed(&abort), "a marker stays the same marker");
        let mut zstd =
            BatchBuilder::new(BatchOptions { compression: batch::Compression::Zstd, ..BatchOptions::default() });
        zstd.push(&NewRecord { timestamp_ms: 1, key: Some(b"k"), ..NewRecord::default() }).expect("fits");
        assert_eq!(
            with_delete_horizon(&zstd.finish().expect("encodes"), horizon_ms),
            None,
            "compressed batches stay whole"
        );
    }

    #[test]
    fn a_pass_judges_each_marker_by_the_batches_of_its_transaction_it_read() {
        let mut aborted = AbortedRanges::default();
        aborted.insert(7, 0, 3);
        aborted.insert(9, 5, 5);
        let mut transactions = Transactions::default();
        let on_data = |transactions: &mut Transactions, (header, _): (BatchHeader, Vec<u8>)| {
            transactions.on_data(&aborted, &header)
        };
        assert!(on_data(&mut transactions, data(7, 0)), "a batch of an indexed abort goes");
        assert!(!on_data(&mut transactions, data(8, 1)));
        let on_marker = |transactions: &mut Transactions, (header, bytes): (BatchHeader, Vec<u8>)| {
            let control_type = batch::parse_control_batch(&bytes).expect("a marker").control_type;
            transactions.on_marker(&aborted, &header, control_type)
        };
        assert_eq!(on_marker(&mut transactions, marker(8, 0, ControlType::Commit, 2)), Ended::Read);
        assert_eq!(
            on_marker(&mut transactions, marker(7, 0, ControlType::Abort, 3)),
            Ended::Read,
            "its data was read, though dropped"
        );
        assert_eq!(on_marker(&mut transactions, marker(8, 0, ControlType::Commit, 4)), Ended::Empty { indexed: false });
        assert_eq!(on_marker(&mut transactions, marker(9, 0, ControlType::Abort, 5)), Ended::Empty { indexed: true });
        assert_eq!(on_marker(&mut transactions, marker(10, 0, ControlType::Abort, 6)), Ended::Empty { indexed: false });
        // An abort whose entry is missing: its batch was kept as committed data, so it is read.
        assert!(!on_data(&mut transactions, data(11, 7)));
        assert_eq!(on_marker(&mut transactions, marker(11, 0, ControlType::Abort, 8)), Ended::Read);
        assert_eq!(transactions.emptied_aborts, [(9, 5)], "only an indexed abort found empty leaves the index");
    }

    #[test]
    fn the_marker_of_an_empty_transaction_goes_only_past_its_horizon_when_nothing_holds_it() {
        let (header, commit) = marker(7, 0, ControlType::Commit, 10);
        let empty = Ended::Empty { indexed: false };
        let pass = pass_at(1_000);
        assert!(matches!(surviving_marker(&pass, 0, &header, &commit, Ended::Read), Survivor::Whole));
        let Survivor::Rebuilt(stamped) = surviving_marker(&pass, 0, &header, &commit, empty) else {
            panic!("an empty transaction's marker gets a delete horizon");
        };
        let stamped_header = batch::validate(&stamped, true).expect("valid");
        assert_eq!(delete_horizon(&stamped_header), Some(1_100));
        let judge = |pass: &Pass, ended: Ended| surviving_marker(pass, 0, &stamped_header, &stamped, ended);
        assert!(matches!(judge(&pass_at(1_099), empty), Survivor::Whole), "before its horizon");
        assert!(matches!(judge(&pass_at(1_100), Ended::Read), Survivor::Whole), "its transaction has a batch again");
        assert!(matches!(judge(&pass_at(1_100), empty), Survivor::Dropped), "at its horizon");
        assert!(matches!(judge(&pass_at(5_000), Ended::Empty { indexed: true }), Survivor::Whole), "still indexed");
        let mut held = pass_at(5_000);
        held.stale_txn_indexes.insert(0);
        assert!(matches!(judge(&held, empty), Survivor::Whole), "its segment's .txnindex lags");
        let mut held = pass_at(5_000);
        held.durable_below = 10;
        assert!(matches!(judge(&held, empty), Survivor::Whole), "not below what the checkpoint on disk covers");
        held.durable_below = 11;
        assert!(matches!(judge(&held, empty), Survivor::Dropped));
        held.fencing_epochs.insert(7, 0);
        assert!(matches!(judge(&held, empty), Survivor::Whole), "the last epoch of an active producer");
        held.fencing_epochs.insert(7, 1);
        assert!(matches!(judge(&held, empty), Survivor::Dropped), "an older epoch fences nothing");
    }
}
