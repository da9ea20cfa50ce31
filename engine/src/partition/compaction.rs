//! Log compaction (`cleanup.policy=compact`): keep only the last record of each key.
//!
//! 1. Map every key to the offset of its last record, over the whole readable log.
//! 2. For each closed segment holding a superseded record (or a tombstone older than
//!    `delete.retention.ms`), write a cleaned copy: each uncompressed batch is rebuilt with the
//!    surviving records (offsets, timestamps and producer fields kept, count and CRC redone);
//!    batches left empty are dropped; compressed batches are kept whole (the engine never
//!    decompresses, so their keys neither supersede nor are superseded).
//! 3. Fsync the copy, rename it over the segment, fsync the directory, and swap the in-memory
//!    segment. Readers holding the old file keep reading the old, unlinked inode.
//!
//! Runs on the partition's shard inside the maintenance task, with blocking reads and writes:
//! the shard pauses for the duration. Fine for the internal offsets topic and modest topics;
//! a large compacted topic wants this moved to chunked async I/O.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use super::Partition;
use crate::batch::{self, BatchHeader};
use crate::segment::{self, Segment, scan};

/// Kafka's default `delete.retention.ms`: how long tombstones survive compaction.
const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 3600 * 1000;

/// A segment to consider, detached from the log borrow.
struct Candidate {
    base_offset: i64,
    readable_size_bytes: u64,
    closed: bool,
}

impl Partition {
    /// Compacts the closed segments when the log grew since the last pass.
    pub(super) fn compact(&self, now_ms: i64) -> std::io::Result<()> {
        let config = self.config.borrow().clone();
        let delete_retention_ms = config
            .other
            .get("delete.retention.ms")
            .and_then(|value| value.parse().ok())
            .unwrap_or(DELETE_RETENTION_MS_DEFAULT);
        let (candidates, high_watermark) = {
            let log = self.log.borrow();
            if log.high_watermark == self.compacted_up_to.get() || log.segments.len() < 2 {
                return Ok(());
            }
            let active_base = log.active().base_offset;
            let candidates: Vec<Candidate> = log
                .segments
                .values()
                .map(|segment| Candidate {
                    base_offset: segment.base_offset,
                    readable_size_bytes: segment.readable_size_bytes,
                    closed: segment.base_offset != active_base,
                })
                .collect();
            (candidates, log.high_watermark)
        };
        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for candidate in &candidates {
            let path = segment::log_path(&self.dir, candidate.base_offset);
            scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
                for record in batch::records(bytes) {
                    if let Some(key) = record.key {
                        latest.insert(key.to_vec(), header.base_offset + i64::from(record.offset_delta));
                    }
                }
            })?;
        }
        let tombstone_horizon_ms = now_ms.saturating_sub(delete_retention_ms);
        for candidate in candidates.iter().filter(|candidate| candidate.closed) {
            self.clean_segment(candidate, &latest, tombstone_horizon_ms)?;
        }
        self.compacted_up_to.set(high_watermark);
        Ok(())
    }

    /// Rewrites one closed segment when it holds anything to drop.
    fn clean_segment(
        &self,
        candidate: &Candidate,
        latest: &HashMap<Vec<u8>, i64>,
        tombstone_horizon_ms: i64,
    ) -> std::io::Result<()> {
        let path = segment::log_path(&self.dir, candidate.base_offset);
        let mut cleaned: Vec<u8> = Vec::new();
        let mut changed = false;
        scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
            match surviving_batch(header, bytes, latest, tombstone_horizon_ms) {
                Survivor::Whole => cleaned.extend_from_slice(bytes),
                Survivor::Rebuilt(rebuilt) => {
                    changed = true;
                    cleaned.extend_from_slice(&rebuilt);
                }
                Survivor::Dropped => changed = true,
            }
        })?;
        if !changed {
            return Ok(());
        }
        let cleaned_path = path.with_extension("log.cleaned");
        write_synced(&cleaned_path, &cleaned)?;
        std::fs::rename(&cleaned_path, &path)?;
        crate::io::sync_dir(&self.dir)?;
        self.swap_segment(candidate.base_offset, &path)
    }

    /// Replaces the in-memory segment at `base_offset` with a re-scan of its (cleaned) file.
    fn swap_segment(&self, base_offset: i64, path: &Path) -> std::io::Result<()> {
        let index_interval_bytes = self.config.borrow().index_interval_bytes;
        let outcome = scan::scan(path, base_offset, index_interval_bytes, u64::MAX, |_, _| {})?;
        let file = crate::io::open_rw(path, false)?;
        let mut log = self.log.borrow_mut();
        let Some(previous) = log.segments.get(&base_offset) else { return Ok(()) };
        let created_ms = previous.created_ms;
        let next_offset = previous.summary.next_offset;
        let mut summary = outcome.summary;
        // Offsets dropped at the end of the segment still belong to it.
        summary.next_offset = summary.next_offset.max(next_offset);
        let mut replacement = Segment::new(base_offset, &self.dir, file, summary, created_ms)?;
        replacement.index_dirty = true;
        if let Some(replaced) = log.segments.insert(base_offset, replacement) {
            // The rename unlinked the old file; free its space off the shard.
            crate::io::free_in_background(replaced.reader);
        }
        Ok(())
    }
}

enum Survivor {
    Whole,
    Rebuilt(Vec<u8>),
    Dropped,
}

/// What remains of one batch after compaction.
fn surviving_batch(
    header: &BatchHeader,
    bytes: &[u8],
    latest: &HashMap<Vec<u8>, i64>,
    tombstone_horizon_ms: i64,
) -> Survivor {
    if header.compression() != 0 || header.is_control() {
        return Survivor::Whole;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    for record in batch::records(bytes) {
        total += 1;
        let offset = header.base_offset + i64::from(record.offset_delta);
        let superseded = record.key.is_some_and(|key| latest.get(key).is_some_and(|last| *last > offset));
        let expired_tombstone = record.value_is_null && header.max_timestamp < tombstone_horizon_ms;
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

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
