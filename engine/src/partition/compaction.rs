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
//! 2. For each closed segment holding offsets below `mapped_up_to`, write a cleaned copy when it
//!    holds a record superseded by the map, or a tombstone below `mapped_up_to` older than
//!    `delete.retention.ms`: each uncompressed batch is rebuilt with the surviving records
//!    (offsets, timestamps and producer fields kept, count and CRC redone); batches left empty
//!    are dropped; compressed and control batches are kept whole (the engine never
//!    decompresses, so their keys neither supersede nor are superseded). A tombstone is only
//!    dropped once every older record of its key is: it is below `mapped_up_to`, so this pass
//!    or an earlier one mapped it and dropped them.
//! 3. Fsync the copy and scan it for its summary and indexes.
//! 4. On the shard, unless the partition closed meanwhile (a deleted topic's directory may
//!    belong to a new topic of the same name by then): remove the segment's index files and
//!    fsync the directory (so that a crash before the new indexes are written rebuilds them
//!    from the log), rename the copy over the segment unless the segment was removed
//!    meanwhile, fsync the directory, swap the in-memory segment (its indexes are written by
//!    the same maintenance pass), and move `cleaned_up_to` to `mapped_up_to`; the checkpoint
//!    written next records it. Readers holding the old file keep reading the old, unlinked
//!    inode, whose space is freed once they let go.
//!
//! Transactions: the cleanable part ends before the first unstable offset (no open transaction
//! is cleaned); batches of aborted transactions (a producer's batches from an aborted
//! transaction's first offset to its abort marker, per the `.txnindex` entries) are neither
//! mapped nor kept, as Kafka's cleaner removes aborted data; control batches are kept.
//!
//! Steps 1-3 read and write whole segments, so they run on the blocking pool: the shard keeps
//! serving while a large compacted topic is cleaned. A pass stopped by a full map leaves the
//! rest dirty for the next maintenance pass.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use super::Partition;
use crate::batch::{self, BatchHeader};
use crate::config::TopicConfig;
use crate::segment::{self, Segment, SegmentSummary, scan};

/// Kafka's default `delete.retention.ms`: how long tombstones survive compaction.
const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 3600 * 1000;

/// Kafka's default `min.cleanable.dirty.ratio`.
const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;

/// Write buffer of a cleaned copy.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

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
    tombstone_horizon_ms: i64,
    index_interval_bytes: u32,
    map_bytes: u64,
    /// The aborted transactions' offset ranges, by producer id.
    aborted: AbortedRanges,
}

/// Offset ranges (first offset to abort marker) of aborted transactions, by producer id.
#[derive(Debug, Default)]
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    /// Whether `header` is a batch of an aborted transaction.
    fn holds(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.0.get(&header.producer_id).is_some_and(|ranges| {
                ranges.iter().any(|(first, marker)| (*first..=*marker).contains(&header.base_offset))
            })
    }
}

/// What one pass produced: the copies to rename in, and how far its key map reached.
struct PassOutcome {
    copies: Vec<CleanedCopy>,
    mapped_up_to: i64,
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
        let mut aborted = AbortedRanges::default();
        for entry in self.log.borrow().segments.values().flat_map(|segment| &segment.aborted) {
            aborted.0.entry(entry.producer_id).or_default().push((entry.first_offset, entry.last_offset));
        }
        let pass = Pass {
            aborted,
            dir: self.dir.clone(),
            closed,
            cleaned_up_to,
            tombstone_horizon_ms: now_ms.saturating_sub(delete_retention_ms),
            index_interval_bytes: config.index_interval_bytes,
            map_bytes: self.tuning.compaction_map_bytes,
        };
        let PassOutcome { copies, mapped_up_to } = crate::io::unblocked(move || clean(&pass)).await?;
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
        self.cleaned_up_to.set(self.cleaned_up_to.get().max(mapped_up_to));
        Ok(())
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
        // Markers are kept, so the segment's aborted transactions stay as they were.
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
    let mut copies = Vec::new();
    for candidate in pass.closed.iter().filter(|candidate| candidate.base_offset < mapped_up_to) {
        if let Some(copy) = clean_segment(pass, candidate, &map, mapped_up_to)? {
            copies.push(copy);
        }
    }
    Ok(PassOutcome { copies, mapped_up_to })
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

/// Writes, fsyncs and scans a cleaned copy of one closed segment, when it holds anything to drop.
/// The copy is streamed to its file: up to the first batch that changes, the segment is copied
/// as it is; from there on, batch by batch.
fn clean_segment(
    pass: &Pass,
    candidate: &Candidate,
    map: &KeyMap,
    mapped_up_to: i64,
) -> std::io::Result<Option<CleanedCopy>> {
    let path = segment::log_path(&pass.dir, candidate.base_offset);
    let cleaned_path = path.with_extension("log.cleaned");
    let mut copy: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut position = 0u64;
    let mut failure: Option<std::io::Error> = None;
    scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
        if failure.is_some() {
            return;
        }
        let survivor = if pass.aborted.holds(header) {
            Survivor::Dropped
        } else {
            surviving_batch(header, bytes, map, pass.tombstone_horizon_ms, mapped_up_to)
        };
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
    let outcome = scan::scan(&cleaned_path, candidate.base_offset, pass.index_interval_bytes, u64::MAX, |_, _| {})?;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&cleaned_path)?;
    Ok(Some(CleanedCopy { base_offset: candidate.base_offset, path, cleaned_path, file, summary: outcome.summary }))
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
    if header.compression() != 0 || header.is_control() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
