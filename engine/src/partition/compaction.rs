//! Log compaction (`cleanup.policy=compact`): keep only the last record of each key.
//!
//! 1. Map every key to the offset of its last record, over the whole readable log.
//! 2. For each closed segment holding a superseded record (or a tombstone older than
//!    `delete.retention.ms`), write a cleaned copy: each uncompressed batch is rebuilt with the
//!    surviving records (offsets, timestamps and producer fields kept, count and CRC redone);
//!    batches left empty are dropped; compressed batches are kept whole (the engine never
//!    decompresses, so their keys neither supersede nor are superseded).
//! 3. Fsync the copy and scan it for its summary and indexes.
//! 4. On the shard, unless the partition closed meanwhile (a deleted topic's directory may
//!    belong to a new topic of the same name by then): remove the segment's index files and
//!    fsync the directory (so that a crash before the new indexes are written rebuilds them
//!    from the log), rename the copy over the segment unless the segment was removed
//!    meanwhile, fsync the directory, and swap the in-memory segment (its indexes are written
//!    by the same maintenance pass). Readers holding the old file keep reading the old,
//!    unlinked inode, whose space is freed once they let go.
//!
//! Steps 1-3 read and write whole segments, so they run on the blocking pool: the shard keeps
//! serving while a large compacted topic is cleaned. Only segments whose every write is done
//! are cleaned (a segment just rolled may still have writes in flight).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::Partition;
use crate::batch::{self, BatchHeader};
use crate::segment::{self, Segment, SegmentSummary, scan};

/// Kafka's default `delete.retention.ms`: how long tombstones survive compaction.
const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 3600 * 1000;

/// Write buffer of a cleaned copy.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// A segment to consider, detached from the log borrow.
struct Candidate {
    base_offset: i64,
    readable_size_bytes: u64,
    /// Not the active segment, and every write to it is done: it never changes again.
    closed: bool,
}

/// A cleaned copy of a segment, written, fsynced and scanned, not yet renamed in.
struct CleanedCopy {
    base_offset: i64,
    path: PathBuf,
    cleaned_path: PathBuf,
    file: std::fs::File,
    summary: SegmentSummary,
}

impl Partition {
    /// Compacts the closed segments when the log grew since the last pass.
    pub(super) async fn compact(&self, now_ms: i64) -> std::io::Result<()> {
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
                    closed: segment.base_offset != active_base
                        && segment.readable_size_bytes == segment.summary.size_bytes,
                })
                .collect();
            (candidates, log.high_watermark)
        };
        let dir = self.dir.clone();
        let tombstone_horizon_ms = now_ms.saturating_sub(delete_retention_ms);
        let index_interval_bytes = config.index_interval_bytes;
        let copies =
            crate::io::unblocked(move || clean(&dir, &candidates, tombstone_horizon_ms, index_interval_bytes)).await?;
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
        if renamed.is_empty() {
            self.compacted_up_to.set(high_watermark);
            return Ok(());
        }
        crate::io::sync_dir_async(&self.dir).await?;
        for copy in renamed {
            self.swap_segment(copy)?;
        }
        self.compacted_up_to.set(high_watermark);
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
        if let Some(replaced) = log.segments.insert(copy.base_offset, replacement) {
            // The rename unlinked the old file; free its space off the shard.
            crate::io::free_in_background(replaced.reader);
        }
        Ok(())
    }
}

/// Steps 1-3, on the blocking pool: the cleaned copies of the closed segments that change.
fn clean(
    dir: &Path,
    candidates: &[Candidate],
    tombstone_horizon_ms: i64,
    index_interval_bytes: u32,
) -> std::io::Result<Vec<CleanedCopy>> {
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    for candidate in candidates {
        let path = segment::log_path(dir, candidate.base_offset);
        scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
            for record in batch::records(bytes) {
                if let Some(key) = record.key {
                    latest.insert(key.to_vec(), header.base_offset + i64::from(record.offset_delta));
                }
            }
        })?;
    }
    let mut copies = Vec::new();
    for candidate in candidates.iter().filter(|candidate| candidate.closed) {
        if let Some(copy) = clean_segment(dir, candidate, &latest, tombstone_horizon_ms, index_interval_bytes)? {
            copies.push(copy);
        }
    }
    Ok(copies)
}

/// Writes, fsyncs and scans a cleaned copy of one closed segment, when it holds anything to drop.
/// The copy is streamed to its file: up to the first batch that changes, the segment is copied
/// as it is; from there on, batch by batch.
fn clean_segment(
    dir: &Path,
    candidate: &Candidate,
    latest: &HashMap<Vec<u8>, i64>,
    tombstone_horizon_ms: i64,
    index_interval_bytes: u32,
) -> std::io::Result<Option<CleanedCopy>> {
    let path = segment::log_path(dir, candidate.base_offset);
    let cleaned_path = path.with_extension("log.cleaned");
    let mut copy: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut position = 0u64;
    let mut failure: Option<std::io::Error> = None;
    scan::scan(&path, candidate.base_offset, u32::MAX, candidate.readable_size_bytes, |header, bytes| {
        if failure.is_some() {
            return;
        }
        let survivor = surviving_batch(header, bytes, latest, tombstone_horizon_ms);
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
    let outcome = scan::scan(&cleaned_path, candidate.base_offset, index_interval_bytes, u64::MAX, |_, _| {})?;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&cleaned_path)?;
    Ok(Some(CleanedCopy { base_offset: candidate.base_offset, path, cleaned_path, file, summary: outcome.summary }))
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
