//! Offline inspection of a data directory's files, for tools such as `sluicectl segments`.
//!
//! Pure functions over files that no engine has open (or that one has open read-only): they
//! read, validate and report, and never modify anything. Any thread may call them.

use std::io;
use std::path::Path;

use crate::batch::BatchHeader;
use crate::segment::{self, IndexEntry, TimeEntry};

/// What a scan of one `.log` file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Base offset from the file name, when the name is a segment name.
    pub base_offset: Option<i64>,
    /// Valid batches, in order, with their byte positions.
    pub batches: Vec<(u64, BatchHeader)>,
    /// Bytes of valid batches (a prefix of the file).
    pub valid_size_bytes: u64,
    /// The file's size; larger than `valid_size_bytes` when the tail is torn or corrupt, or
    /// zero-filled.
    pub file_size_bytes: u64,
    /// Every byte past the valid prefix is zero: space a broker zero-filled ahead of its
    /// appends (left in place when it stopped without closing the segment), which its recovery
    /// truncates. Such a tail is not corruption.
    pub zero_tail: bool,
}

impl LogReport {
    /// Whether every byte of the file belongs to a valid batch, or to a zero-filled tail.
    pub fn is_clean(&self) -> bool {
        self.valid_size_bytes == self.file_size_bytes || self.zero_tail
    }
}

/// One index file's entries as absolute offsets, or why it is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexReport {
    /// Offset index entries: (offset, byte position).
    Offsets(Vec<(i64, u32)>),
    /// Time index entries: (timestamp ms, offset).
    Times(Vec<(i64, i64)>),
    /// The file's size or entry order is inconsistent.
    Inconsistent,
}

fn base_from_name(path: &Path) -> Option<i64> {
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// Scans a `.log` file, validating every batch (length, magic, CRC, growing offsets).
///
/// # Errors
/// An I/O error opening or reading the file; invalid content is reported, not an error.
pub fn scan_log(path: &Path) -> io::Result<LogReport> {
    let base_offset = base_from_name(path);
    let mut batches = Vec::new();
    let mut position = 0u64;
    let outcome = segment::scan::scan(path, base_offset.unwrap_or(0), u32::MAX, u64::MAX, |header, _| {
        batches.push((position, *header));
        position += header.size_bytes() as u64;
    })?;
    Ok(LogReport {
        base_offset,
        batches,
        valid_size_bytes: outcome.summary.size_bytes,
        file_size_bytes: outcome.file_size_bytes,
        zero_tail: outcome.zero_tail,
    })
}

/// Decodes an `.index` or `.timeindex` file (by extension) against the size of its log.
///
/// # Errors
/// An I/O error reading the file, or an extension that is neither.
pub fn read_index(path: &Path, log_size_bytes: u64) -> io::Result<IndexReport> {
    let base = base_from_name(path).unwrap_or(0);
    let bytes = std::fs::read(path)?;
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("index") => {
            Ok(segment::decode_index(&bytes, log_size_bytes).map_or(IndexReport::Inconsistent, |entries| {
                IndexReport::Offsets(
                    entries
                        .iter()
                        .map(|entry: &IndexEntry| (base + i64::from(entry.relative_offset), entry.position))
                        .collect(),
                )
            }))
        }
        Some("timeindex") => Ok(segment::decode_time_index(&bytes).map_or(IndexReport::Inconsistent, |entries| {
            IndexReport::Times(
                entries
                    .iter()
                    .map(|entry: &TimeEntry| (entry.timestamp_ms, base + i64::from(entry.relative_offset)))
                    .collect(),
            )
        })),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not an .index or .timeindex file")),
    }
}
