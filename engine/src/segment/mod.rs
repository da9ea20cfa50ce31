//! One segment: a `.log` file of whole batches, with its sparse offset and time indexes.
//!
//! The indexes live in memory while the segment is open and are written to `.index` and
//! `.timeindex` (Kafka's layout, big-endian entries) when the segment is rolled or the partition
//! closes. A segment is owned by one partition and so touched only by its shard's thread.

pub(crate) mod scan;
pub(crate) mod txn_index;

use std::path::{Path, PathBuf};

use compio::io::AsyncWriteAtExt;

/// One sparse offset index entry: `relative_offset` starts at byte `position` of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// One time index entry: records up to `relative_offset` have timestamps up to `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp_ms: i64,
    pub(crate) relative_offset: u32,
}

/// Bytes per `.index` entry: relative offset (4) + position (4).
pub(crate) const INDEX_ENTRY_SIZE_BYTES: usize = 8;
/// Bytes per `.timeindex` entry: timestamp (8) + relative offset (4).
pub(crate) const TIME_ENTRY_SIZE_BYTES: usize = 12;

/// The file name stem of the segment starting at `base_offset`: 20 zero-padded digits.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", file_stem(base_offset)))
}

pub(crate) fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.index", file_stem(base_offset)))
}

pub(crate) fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.timeindex", file_stem(base_offset)))
}

/// What a segment knows about the batches it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    /// One past the last offset in the segment (the base offset when empty).
    pub(crate) next_offset: i64,
    /// Bytes of valid batches.
    pub(crate) size_bytes: u64,
    /// Sparse offset index.
    pub(crate) index: Vec<IndexEntry>,
    /// Sparse time index.
    pub(crate) time_index: Vec<TimeEntry>,
    /// Largest batch max-timestamp, or -1.
    pub(crate) max_timestamp_ms: i64,
    /// Last offset of the batch holding the largest timestamp.
    pub(crate) offset_of_max_timestamp: i64,
}

impl SegmentSummary {
    pub(crate) fn empty(base_offset: i64) -> Self {
        Self {
            next_offset: base_offset,
            size_bytes: 0,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
        }
    }
}

/// Where a batch lands: its segment's base offset, its byte position, and the index interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPoint {
    pub(crate) base_offset: i64,
    pub(crate) position: u64,
    pub(crate) index_interval_bytes: u32,
}

/// Adds a batch appended at `point.position` to a summary: size, next offset, max timestamp, and
/// an index entry (plus a time entry when the max timestamp grew) once `index_interval_bytes` of
/// log have passed since the last entry. Appends and recovery scans share this rule.
pub(crate) fn note_batch(
    summary: &mut SegmentSummary,
    bytes_since_index: &mut u64,
    point: IndexPoint,
    batch: &crate::batch::BatchHeader,
) {
    let size = batch.size_bytes() as u64;
    assert_eq!(point.position, summary.size_bytes, "batches are appended at the end of the segment");
    assert!(batch.base_offset >= summary.next_offset, "offsets grow within a segment");
    if summary.index.is_empty() || *bytes_since_index >= u64::from(point.index_interval_bytes) {
        // As Kafka: an entry names the batch's last offset with its start position, so a lookup
        // (the last entry at or below the target) starts at or before the target's batch.
        let relative_offset = (batch.last_offset() - point.base_offset) as u32;
        summary.index.push(IndexEntry { relative_offset, position: point.position as u32 });
        let last_time = summary.time_index.last().map_or(-1, |entry| entry.timestamp_ms);
        if summary.max_timestamp_ms > last_time {
            let relative_offset = (summary.offset_of_max_timestamp - point.base_offset) as u32;
            summary.time_index.push(TimeEntry { timestamp_ms: summary.max_timestamp_ms, relative_offset });
        }
        *bytes_since_index = 0;
    }
    *bytes_since_index += size;
    if batch.max_timestamp > summary.max_timestamp_ms {
        summary.max_timestamp_ms = batch.max_timestamp;
        summary.offset_of_max_timestamp = batch.last_offset();
    }
    summary.size_bytes = point.position + size;
    summary.next_offset = batch.last_offset() + 1;
}

/// An open segment.
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) dir: PathBuf,
    pub(crate) file: compio::fs::File,
    /// A second descriptor of the same file for readers on any thread (zero-copy sends).
    pub(crate) reader: std::sync::Arc<std::fs::File>,
    pub(crate) summary: SegmentSummary,
    /// End of the last batch whose write completed and that readers may see.
    pub(crate) readable_size_bytes: u64,
    /// Log bytes appended since the last index entry.
    pub(crate) bytes_since_index: u64,
    /// Wall-clock time of the first append, for `segment.ms`.
    pub(crate) created_ms: i64,
    /// The indexes changed since they were last written to disk.
    pub(crate) index_dirty: bool,
    /// Transactions aborted by a marker in this segment, in marker order (`.txnindex`).
    pub(crate) aborted: Vec<txn_index::AbortedTxn>,
    /// Changes made to `aborted`, counted, and how many of them its file holds: the file is
    /// stale while they differ (a change made while the file is written counts as unwritten).
    pub(crate) txn_index_changes: u64,
    pub(crate) txn_index_written: u64,
}

impl Segment {
    pub(crate) fn new(
        base_offset: i64,
        dir: &Path,
        file: compio::fs::File,
        summary: SegmentSummary,
        created_ms: i64,
    ) -> std::io::Result<Self> {
        use std::os::fd::AsFd as _;
        let reader = std::sync::Arc::new(std::fs::File::from(file.as_fd().try_clone_to_owned()?));
        let readable_size_bytes = summary.size_bytes;
        Ok(Self {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            reader,
            summary,
            readable_size_bytes,
            bytes_since_index: 0,
            created_ms,
            index_dirty: true,
            aborted: Vec::new(),
            txn_index_changes: 0,
            txn_index_written: 0,
        })
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        log_path(&self.dir, self.base_offset)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.summary.size_bytes == 0
    }

    /// Whether the `.txnindex` file lags `aborted`.
    pub(crate) fn txn_index_stale(&self) -> bool {
        self.txn_index_changes != self.txn_index_written
    }

    /// Records a batch appended at `position`: grows the size and adds index entries.
    pub(crate) fn note_batch(&mut self, position: u64, batch: &crate::batch::BatchHeader, index_interval_bytes: u32) {
        let point = IndexPoint { base_offset: self.base_offset, position, index_interval_bytes };
        note_batch(&mut self.summary, &mut self.bytes_since_index, point, batch);
        self.index_dirty = true;
    }

    /// The position to start scanning for `offset`: the largest index entry at or below it.
    pub(crate) fn lookup(&self, offset: i64) -> u64 {
        let relative = offset.saturating_sub(self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let count = self.summary.index.partition_point(|entry| entry.relative_offset <= relative);
        if count == 0 { 0 } else { u64::from(self.summary.index[count - 1].position) }
    }

    /// The position to start scanning for the first record at or after `timestamp_ms`.
    pub(crate) fn lookup_time(&self, timestamp_ms: i64) -> u64 {
        let count = self.summary.time_index.partition_point(|entry| entry.timestamp_ms < timestamp_ms);
        if count == 0 {
            return 0;
        }
        let offset = self.base_offset + i64::from(self.summary.time_index[count - 1].relative_offset);
        // Start at the batch holding that offset; records past it may still be older.
        self.lookup(offset)
    }

    /// Both index files' paths and contents, encoded as Kafka lays them out.
    pub(crate) fn encoded_indexes(&self) -> EncodedIndexes {
        let mut index = Vec::with_capacity(self.summary.index.len() * INDEX_ENTRY_SIZE_BYTES);
        for entry in &self.summary.index {
            index.extend_from_slice(&entry.relative_offset.to_be_bytes());
            index.extend_from_slice(&entry.position.to_be_bytes());
        }
        let mut time_index = Vec::with_capacity(self.summary.time_index.len() * TIME_ENTRY_SIZE_BYTES);
        for entry in &self.summary.time_index {
            time_index.extend_from_slice(&entry.timestamp_ms.to_be_bytes());
            time_index.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        EncodedIndexes {
            index_path: index_path(&self.dir, self.base_offset),
            index,
            time_index_path: time_index_path(&self.dir, self.base_offset),
            time_index,
        }
    }

    /// Unlinks the segment's files, then frees the log file's space in the background
    /// ([`crate::io::free_in_background`]).
    pub(crate) fn remove(self) -> std::io::Result<()> {
        let removed = self.remove_files();
        if removed.is_ok() {
            crate::io::free_in_background(self.reader);
        }
        removed
    }

    /// Removes the segment's files.
    fn remove_files(&self) -> std::io::Result<()> {
        for path in [
            self.log_path(),
            index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
            txn_index::path(&self.dir, self.base_offset),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A segment's index files, encoded and ready to write.
pub(crate) struct EncodedIndexes {
    index_path: PathBuf,
    index: Vec<u8>,
    time_index_path: PathBuf,
    time_index: Vec<u8>,
}

impl EncodedIndexes {
    /// Writes both files (not fsynced: recovery rebuilds indexes it finds inconsistent).
    pub(crate) async fn write(self) -> std::io::Result<()> {
        write_whole(&self.index_path, self.index).await?;
        write_whole(&self.time_index_path, self.time_index).await
    }
}

async fn write_whole(path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let mut file = crate::io::into_runtime_file(file);
    if !bytes.is_empty() {
        let compio::BufResult(result, _) = file.write_all_at(bytes, 0).await;
        result?;
    }
    Ok(())
}

/// Decodes a `.index` file; `None` when its size or entries are inconsistent with a log of
/// `log_size_bytes`.
pub(crate) fn decode_index(bytes: &[u8], log_size_bytes: u64) -> Option<Vec<IndexEntry>> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY_SIZE_BYTES) {
        return None;
    }
    let mut entries = Vec::with_capacity(bytes.len() / INDEX_ENTRY_SIZE_BYTES);
    for chunk in bytes.chunks_exact(INDEX_ENTRY_SIZE_BYTES) {
        let relative_offset = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        if u64::from(position) >= log_size_bytes.max(1) {
            return None;
        }
        if let Some(previous) = entries.last() {
            let previous: &IndexEntry = previous;
            if relative_offset <= previous.relative_offset || position <= previous.position {
                return None;
            }
        }
        entries.push(IndexEntry { relative_offset, position });
    }
    Some(entries)
}

/// Decodes a `.timeindex` file; `None` when its size or ordering is inconsistent.
pub(crate) fn decode_time_index(bytes: &[u8]) -> Option<Vec<TimeEntry>> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_SIZE_BYTES) {
        return None;
    }
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE_BYTES);
    for chunk in bytes.chunks_exact(TIME_ENTRY_SIZE_BYTES) {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&chunk[..8]);
        let timestamp_ms = i64::from_be_bytes(timestamp);
        let relative_offset = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
        if entries
            .last()
            .is_some_and(|last| timestamp_ms <= last.timestamp_ms || relative_offset < last.relative_offset)
        {
            return None;
        }
        entries.push(TimeEntry { timestamp_ms, relative_offset });
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_decode_rejects_bad_sizes_and_order() {
        assert!(decode_index(&[0; 7], 100).is_none());
        let mut bytes = Vec::new();
        for (offset, position) in [(0u32, 0u32), (5, 40), (3, 80)] {
            bytes.extend_from_slice(&offset.to_be_bytes());
            bytes.extend_from_slice(&position.to_be_bytes());
        }
        assert!(decode_index(&bytes, 100).is_none());
        assert_eq!(decode_index(&bytes[..16], 100).expect("valid").len(), 2);
        assert!(decode_index(&bytes[..16], 30).is_none());
    }

    #[test]
    fn time_index_decode_rejects_unordered() {
        let mut bytes = Vec::new();
        for (timestamp, offset) in [(10i64, 0u32), (5, 1)] {
            bytes.extend_from_slice(&timestamp.to_be_bytes());
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        assert!(decode_time_index(&bytes).is_none());
        assert_eq!(decode_time_index(&bytes[..12]).expect("valid").len(), 1);
    }
}
