//! Recovery scan of one segment's log file: re-validate every batch and find the valid prefix.
//!
//! Runs on the shard thread while the partition opens, with plain positional reads (recovery
//! happens before the partition serves anything). Reads the file in windows so memory stays
//! bounded by the window plus the largest batch, whatever the file's size.
//!
//! A batch ends the valid prefix when its length is impossible, it runs past the end of the file,
//! its magic or CRC is wrong, or its offsets do not grow. Everything after it is a torn or corrupt
//! tail that the caller truncates.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{IndexPoint, SegmentSummary, note_batch};
use crate::batch::{self, BatchHeader, HEADER_SIZE_BYTES, LOG_OVERHEAD_BYTES};

/// Bytes read per window.
const WINDOW_SIZE_BYTES: usize = 1 << 20;
/// Largest batch a segment may hold: positions are u32 and Kafka caps batches below 2 GiB.
const BATCH_SIZE_BYTES_MAX: u64 = i32::MAX as u64;

/// The result of scanning one log file.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Offsets, size and indexes of the valid prefix.
    pub(crate) summary: SegmentSummary,
    /// Size of the file on disk; larger than `summary.size_bytes` when a tail must be truncated.
    pub(crate) file_size_bytes: u64,
    /// Every byte past the valid prefix is zero: space zero-filled ahead of appends (or never
    /// written), not a torn or corrupt batch.
    pub(crate) zero_tail: bool,
}

/// Scans `path` (the log of the segment based at `base_offset`), calling `on_batch` with every
/// valid batch's header and bytes, in order, looking at no more than `limit_bytes` of the file.
pub(crate) fn scan(
    path: &Path,
    base_offset: i64,
    index_interval_bytes: u32,
    limit_bytes: u64,
    on_batch: impl FnMut(&BatchHeader, &[u8]),
) -> io::Result<ScanOutcome> {
    scan_before(path, base_offset, index_interval_bytes, limit_bytes, i64::MAX, on_batch)
}

/// As [`scan`], but the valid prefix also ends before the first batch reaching `end_offset`
/// (its last offset at or past it): what a log truncated to end there keeps of this segment.
pub(crate) fn scan_before(
    path: &Path,
    base_offset: i64,
    index_interval_bytes: u32,
    limit_bytes: u64,
    end_offset: i64,
    mut on_batch: impl FnMut(&BatchHeader, &[u8]),
) -> io::Result<ScanOutcome> {
    let file = File::open(path)?;
    let file_size_bytes = file.metadata()?.len().min(limit_bytes);
    let mut builder = SummaryBuilder::new(base_offset, index_interval_bytes);
    let mut window = Vec::with_capacity(WINDOW_SIZE_BYTES);
    let mut window_start: u64 = 0;
    let mut position: u64 = 0;
    loop {
        let remaining = file_size_bytes - position;
        if remaining < LOG_OVERHEAD_BYTES as u64 {
            break;
        }
        if position + LOG_OVERHEAD_BYTES as u64 > window_start + window.len() as u64 {
            window_start = position;
            fill(&file, &mut window, window_start, remaining.min(WINDOW_SIZE_BYTES as u64) as usize)?;
        }
        let within = (position - window_start) as usize;
        let Some((_, length)) = batch::peek_size(&window[within..]) else { break };
        let size = LOG_OVERHEAD_BYTES as u64 + u64::from(length.max(0).unsigned_abs());
        if length < (HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 || size > remaining || size > BATCH_SIZE_BYTES_MAX {
            break;
        }
        if position + size > window_start + window.len() as u64 {
            window_start = position;
            fill(&file, &mut window, window_start, size.max(remaining.min(WINDOW_SIZE_BYTES as u64)) as usize)?;
        }
        let within = (position - window_start) as usize;
        let bytes = &window[within..within + size as usize];
        let Ok(header) = batch::validate(bytes, false) else { break };
        if header.base_offset < builder.summary.next_offset
            || header.last_offset() < header.base_offset
            || header.last_offset() >= end_offset
        {
            break;
        }
        builder.push(position, &header);
        on_batch(&header, bytes);
        position += size;
    }
    let zero_tail = builder.summary.size_bytes < file_size_bytes
        && is_zero(&file, builder.summary.size_bytes, file_size_bytes, &mut window)?;
    Ok(ScanOutcome { summary: builder.summary, file_size_bytes, zero_tail })
}

/// Whether bytes `start..end` of `file` are all zero.
fn is_zero(file: &File, start: u64, end: u64, window: &mut Vec<u8>) -> io::Result<bool> {
    let mut position = start;
    while position < end {
        let size = (end - position).min(WINDOW_SIZE_BYTES as u64) as usize;
        fill(file, window, position, size)?;
        if window.iter().any(|byte| *byte != 0) {
            return Ok(false);
        }
        position += size as u64;
    }
    Ok(true)
}

fn fill(file: &File, window: &mut Vec<u8>, position: u64, size: usize) -> io::Result<()> {
    window.clear();
    window.resize(size, 0);
    file.read_exact_at(window, position)
}

/// Accumulates a segment summary batch by batch, with the same index rules as appends.
struct SummaryBuilder {
    summary: SegmentSummary,
    base_offset: i64,
    index_interval_bytes: u32,
    bytes_since_index: u64,
}

impl SummaryBuilder {
    fn new(base_offset: i64, index_interval_bytes: u32) -> Self {
        Self { summary: SegmentSummary::empty(base_offset), base_offset, index_interval_bytes, bytes_since_index: 0 }
    }

    fn push(&mut self, position: u64, header: &BatchHeader) {
        note_batch(
            &mut self.summary,
            &mut self.bytes_since_index,
            IndexPoint { base_offset: self.base_offset, position, index_interval_bytes: self.index_interval_bytes },
            header,
        );
    }
}
