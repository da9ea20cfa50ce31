//! Reads: whole batches from the one holding an offset, and ListOffsets lookups.
//!
//! A read looks up the segment and the nearest index entry while borrowing the log, then reads
//! the file with no borrow held (appends continue meanwhile). Only bytes below the segment's
//! readable size (completed writes) are read.

use compio::io::AsyncReadAtExt;

use super::Partition;
use crate::batch::{self, BatchHeader, LOG_OVERHEAD_BYTES};
use crate::error::ReadError;
use crate::types::Offset;
use crate::{OffsetAnswer, OffsetQuery, ReadBound, ReadResult};

/// Slack read beyond `size_bytes_max`, to cover batches between the index entry and the offset.
const READ_SLACK_BYTES: u64 = 16 * 1024;
/// The most bytes one batch may inflate to when a lookup looks inside it.
const INFLATED_SIZE_BYTES_MAX: usize = 64 << 20;
/// Smallest window read while scanning headers for a timestamp.
const SCAN_WINDOW_BYTES: u64 = 64 * 1024;

/// A segment located for a read, detached from the log borrow.
struct Located {
    file: compio::fs::File,
    reader: std::sync::Arc<std::fs::File>,
    path: std::path::PathBuf,
    start_position: u64,
    /// Bytes of the segment the read may look at.
    end_position: u64,
    /// One past the segment's last offset.
    next_offset: i64,
    /// Batches starting at or past this offset are not served (the high watermark or the
    /// local end).
    end_offset: i64,
    /// `end_position` already stops before `end_offset`; otherwise the read checks each
    /// batch's offset (a replicated partition whose high watermark position is not known).
    end_exact: bool,
}

async fn read_range(file: &compio::fs::File, position: u64, size: u64) -> std::io::Result<Vec<u8>> {
    let buffer = Vec::with_capacity(size as usize);
    let compio::BufResult(result, buffer) = file.read_exact_at(buffer, position).await;
    result.map(|()| buffer)
}

impl Partition {
    fn corrupt(&self, located: &Located, position: u64) -> ReadError {
        ReadError::Corrupt { partition: self.id.clone(), path: located.path.clone(), position }
    }

    fn io_error(&self, source: std::io::Error) -> ReadError {
        ReadError::Io { partition: self.id.clone(), source }
    }

    /// The segment holding `offset`, or `None` when `offset` is at the read's end.
    fn locate(&self, offset: i64, bound: ReadBound) -> Result<Option<Located>, ReadError> {
        let log = self.log.borrow();
        let (end, hw_position) = match bound {
            // Between the high watermark and the log end there is nothing to read yet, but it is
            // not out of range (a consumer just moved there by a new leader), as in Kafka.
            ReadBound::HighWatermark if offset > log.high_watermark() && offset <= log.local_end => return Ok(None),
            ReadBound::HighWatermark => (log.high_watermark(), log.hw_position),
            ReadBound::LogEnd => (log.local_end, None),
            ReadBound::LastStable => {
                let stable = log.last_stable_offset();
                let high_watermark = log.high_watermark();
                if offset >= stable && offset <= high_watermark.max(log.local_end) && offset >= log.log_start_offset {
                    return Ok(None);
                }
                (stable, if stable == high_watermark { log.hw_position } else { None })
            }
        };
        if offset < log.log_start_offset || offset > end {
            return Err(ReadError::OffsetOutOfRange {
                partition: self.id.clone(),
                offset: Offset(offset),
                log_start_offset: Offset(log.log_start_offset),
                high_watermark: Offset(end),
            });
        }
        if offset == end {
            return Ok(None);
        }
        // The segment whose base is at or below the offset, skipping segments that end below
        // it (compaction can leave gaps between segments).
        let segment = log
            .segments
            .range(..=offset)
            .next_back()
            .map(|(_, segment)| segment)
            .filter(|segment| segment.summary.next_offset > offset)
            .or_else(|| log.segments.range(offset..).map(|(_, segment)| segment).next())
            .ok_or_else(|| ReadError::OffsetOutOfRange {
                partition: self.id.clone(),
                offset: Offset(offset),
                log_start_offset: Offset(log.log_start_offset),
                high_watermark: Offset(end),
            })?;
        // Everything readable is below the end unless a replicated partition's high watermark
        // falls inside this segment; then its known position, or a check of each batch.
        let whole = end == log.local_end || segment.summary.next_offset <= end;
        let (end_position, end_exact) = match hw_position {
            _ if whole => (segment.readable_size_bytes, true),
            Some((base, position)) if base == segment.base_offset => (position, true),
            _ => (segment.readable_size_bytes, false),
        };
        Ok(Some(Located {
            file: segment.file.clone(),
            reader: segment.reader.clone(),
            path: segment.log_path(),
            start_position: segment.lookup(offset),
            end_position,
            next_offset: segment.summary.next_offset,
            end_offset: end,
            end_exact,
        }))
    }

    pub(crate) async fn read(
        &self,
        offset: Offset,
        size_bytes_max: u32,
        bound: ReadBound,
    ) -> Result<ReadResult, ReadError> {
        if self.failed.get() {
            return Err(ReadError::StorageFailed { partition: self.id.clone() });
        }
        let mut target = offset.0;
        loop {
            let Some(located) = self.locate(target, bound)? else {
                return Ok(ReadResult { records: Vec::new(), offsets: self.offsets(), aborted: Vec::new() });
            };
            if let Some(mut result) = self.read_in_segment(&located, target, size_bytes_max).await? {
                result.aborted = self.aborted_for(bound, target, &located);
                return Ok(result);
            }
            // Nothing at or past the target in this segment (compaction removed it): go on
            // with the next segment, as Kafka does.
            assert!(located.next_offset > target, "segments are visited in increasing order");
            target = located.next_offset;
        }
    }

    pub(crate) async fn read_range(
        &self,
        offset: Offset,
        size_bytes_max: u32,
        bound: ReadBound,
    ) -> Result<crate::RangeRead, ReadError> {
        if self.failed.get() {
            return Err(ReadError::StorageFailed { partition: self.id.clone() });
        }
        let mut target = offset.0;
        loop {
            let Some(located) = self.locate(target, bound)? else {
                return Ok(crate::RangeRead { range: None, offsets: self.offsets(), aborted: Vec::new() });
            };
            if let Some(range) = self.range_in_segment(&located, target, size_bytes_max).await? {
                let aborted = self.aborted_for(bound, target, &located);
                return Ok(crate::RangeRead { range: Some(range), offsets: self.offsets(), aborted });
            }
            assert!(located.next_offset > target, "segments are visited in increasing order");
            target = located.next_offset;
        }
    }

    /// The aborted transactions a read_committed read from `target` in `located`'s segment must
    /// report (none for other bounds).
    fn aborted_for(&self, bound: ReadBound, target: i64, located: &Located) -> Vec<crate::AbortedTransaction> {
        if bound != ReadBound::LastStable {
            return Vec::new();
        }
        self.log.borrow().aborted_between(target, located.end_offset.min(located.next_offset))
    }

    /// Finds the batch holding `target` by reading headers only, and sizes the range after it.
    async fn range_in_segment(
        &self,
        located: &Located,
        target: i64,
        size_bytes_max: u32,
    ) -> Result<Option<crate::FileRange>, ReadError> {
        let mut position = located.start_position;
        while position + LOG_OVERHEAD_BYTES as u64 <= located.end_position {
            let header_size = (batch::HEADER_SIZE_BYTES as u64).min(located.end_position - position);
            let bytes = read_range(&located.file, position, header_size).await.map_err(|error| self.io_error(error))?;
            let header = batch::parse_header(&bytes).map_err(|_| self.corrupt(located, position))?;
            let size = header.size_bytes() as u64;
            if position + size > located.end_position {
                return Err(self.corrupt(located, position));
            }
            if header.last_offset() >= target {
                let limit = u64::from(size_bytes_max).max(size);
                let available = self.bounded_end(located, position, limit).await? - position;
                let size_bytes = available.min(limit).min(u64::from(u32::MAX));
                return Ok(Some(crate::FileRange {
                    file: located.reader.clone(),
                    position,
                    size_bytes: size_bytes as u32,
                }));
            }
            position += size;
        }
        Ok(None)
    }

    /// Where a range starting at `position` (a batch boundary) must end to serve no batch at or
    /// past the read's end offset, looking no further than `limit` bytes.
    async fn bounded_end(&self, located: &Located, position: u64, limit: u64) -> Result<u64, ReadError> {
        if located.end_exact {
            return Ok(located.end_position);
        }
        let mut end = position;
        let stop = located.end_position.min(position.saturating_add(limit));
        while end + LOG_OVERHEAD_BYTES as u64 <= stop {
            let header_size = (batch::HEADER_SIZE_BYTES as u64).min(located.end_position - end);
            let bytes = read_range(&located.file, end, header_size).await.map_err(|error| self.io_error(error))?;
            let header = batch::parse_header(&bytes).map_err(|_| self.corrupt(located, end))?;
            if header.base_offset >= located.end_offset {
                break;
            }
            end += header.size_bytes() as u64;
        }
        Ok(end.min(located.end_position).max(position))
    }

    /// Reads from the segment holding `target`; `None` when it has no batch reaching `target`.
    async fn read_in_segment(
        &self,
        located: &Located,
        target: i64,
        size_bytes_max: u32,
    ) -> Result<Option<ReadResult>, ReadError> {
        let mut position = located.start_position;
        while position + LOG_OVERHEAD_BYTES as u64 <= located.end_position {
            let wanted = (u64::from(size_bytes_max) + READ_SLACK_BYTES).min(located.end_position - position);
            let mut bytes = read_range(&located.file, position, wanted).await.map_err(|error| self.io_error(error))?;
            let mut skip = 0usize;
            while skip + LOG_OVERHEAD_BYTES <= bytes.len() {
                let header =
                    batch::parse_header(&bytes[skip..]).map_err(|_| self.corrupt(located, position + skip as u64))?;
                if header.last_offset() >= target {
                    bytes.drain(..skip);
                    return self.finish_read(bytes, located, position + skip as u64, size_bytes_max).await.map(Some);
                }
                skip += header.size_bytes();
            }
            if skip == 0 {
                return Err(self.corrupt(located, position));
            }
            position += skip as u64;
        }
        Ok(None)
    }

    /// Trims `bytes` (starting at the first wanted batch, at `position`) to whole batches within
    /// `size_bytes_max`, always keeping the first batch whole (reading the rest of it if needed).
    async fn finish_read(
        &self,
        mut bytes: Vec<u8>,
        located: &Located,
        position: u64,
        size_bytes_max: u32,
    ) -> Result<ReadResult, ReadError> {
        let mut kept = 0usize;
        while let Some((base_offset, length)) = batch::peek_size(&bytes[kept..]) {
            if length < 0 {
                return Err(self.corrupt(located, position + kept as u64));
            }
            if kept > 0 && base_offset >= located.end_offset {
                break;
            }
            let size = LOG_OVERHEAD_BYTES + length as usize;
            let end = kept + size;
            if kept > 0 && end > size_bytes_max as usize {
                break;
            }
            if end > bytes.len() {
                if kept == 0 && position + size as u64 <= located.end_position {
                    // The first batch is larger than what was read: read it whole.
                    bytes =
                        read_range(&located.file, position, size as u64).await.map_err(|error| self.io_error(error))?;
                    kept = size;
                }
                break;
            }
            kept = end;
        }
        if kept == 0 && !bytes.is_empty() {
            return Err(self.corrupt(located, position));
        }
        bytes.truncate(kept);
        // Verify every batch before serving it: a byte flipped on disk after recovery (or in a
        // segment recovery trusted) is reported, never sent. CRC32C runs at tens of GB/s, so
        // this costs a few percent of a core at full consume speed.
        let mut checked = 0usize;
        while checked < bytes.len() {
            match batch::validate(&bytes[checked..], false) {
                Ok(header) => checked += header.size_bytes(),
                Err(_) => return Err(self.corrupt(located, position + checked as u64)),
            }
        }
        Ok(ReadResult { records: bytes, offsets: self.offsets(), aborted: Vec::new() })
    }

    pub(crate) async fn list_offsets(&self, query: OffsetQuery) -> Result<Option<OffsetAnswer>, ReadError> {
        let (log_start, high_watermark) = {
            let log = self.log.borrow();
            (log.log_start_offset, log.high_watermark())
        };
        match query {
            OffsetQuery::Earliest => Ok(Some(OffsetAnswer { offset: Offset(log_start), timestamp_ms: -1 })),
            OffsetQuery::Latest => Ok(Some(OffsetAnswer { offset: Offset(high_watermark), timestamp_ms: -1 })),
            OffsetQuery::MaxTimestamp => {
                let best = {
                    let log = self.log.borrow();
                    log.segments
                        .values()
                        .filter(|segment| segment.summary.max_timestamp_ms >= 0)
                        .max_by_key(|segment| {
                            (segment.summary.max_timestamp_ms, std::cmp::Reverse(segment.base_offset))
                        })
                        .map(|segment| {
                            let target = segment.summary.offset_of_max_timestamp;
                            let located = Located {
                                file: segment.file.clone(),
                                reader: segment.reader.clone(),
                                path: segment.log_path(),
                                start_position: segment.lookup(target),
                                end_position: segment.readable_size_bytes,
                                next_offset: segment.summary.next_offset,
                                end_offset: i64::MAX,
                                end_exact: true,
                            };
                            (located, target, segment.summary.max_timestamp_ms)
                        })
                };
                let Some((located, target, max_timestamp_ms)) = best else { return Ok(None) };
                // The summary knows the batch; the record inside it holding the largest timestamp
                // is what Kafka (3.8+) answers.
                let offset = match self.find_batch(&located, |header| header.last_offset() >= target).await? {
                    Some((header, bytes)) => record_with_timestamp(&header, &bytes, max_timestamp_ms).unwrap_or(target),
                    None => target,
                };
                Ok(Some(OffsetAnswer { offset: Offset(offset.max(log_start)), timestamp_ms: max_timestamp_ms }))
            }
            OffsetQuery::Timestamp(timestamp_ms) => self.offset_for_time(timestamp_ms).await,
        }
    }

    /// The first whole batch of `located`'s segment, from its start position, for which `wanted`
    /// holds, with its header; `None` when no batch does.
    async fn find_batch(
        &self,
        located: &Located,
        wanted: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(BatchHeader, Vec<u8>)>, ReadError> {
        let mut position = located.start_position;
        while position + LOG_OVERHEAD_BYTES as u64 <= located.end_position {
            let window = SCAN_WINDOW_BYTES.min(located.end_position - position);
            let bytes = read_range(&located.file, position, window).await.map_err(|error| self.io_error(error))?;
            let mut within = 0usize;
            while let Ok(header) = batch::parse_header(&bytes[within..]) {
                let size = header.size_bytes();
                if wanted(&header) {
                    let batch_bytes = if within + size <= bytes.len() {
                        bytes[within..within + size].to_vec()
                    } else {
                        read_range(&located.file, position + within as u64, size as u64)
                            .await
                            .map_err(|error| self.io_error(error))?
                    };
                    return Ok(Some((header, batch_bytes)));
                }
                within += size;
            }
            if within == 0 {
                return Err(self.corrupt(located, position));
            }
            position += within as u64;
        }
        Ok(None)
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`.
    async fn offset_for_time(&self, timestamp_ms: i64) -> Result<Option<OffsetAnswer>, ReadError> {
        let candidates: Vec<Located> = {
            let log = self.log.borrow();
            log.segments
                .values()
                .filter(|segment| segment.summary.max_timestamp_ms >= timestamp_ms)
                .map(|segment| Located {
                    file: segment.file.clone(),
                    reader: segment.reader.clone(),
                    path: segment.log_path(),
                    start_position: segment.lookup_time(timestamp_ms),
                    end_position: segment.readable_size_bytes,
                    next_offset: segment.summary.next_offset,
                    end_offset: i64::MAX,
                    end_exact: true,
                })
                .collect()
        };
        let log_start = self.log.borrow().log_start_offset;
        for located in candidates {
            if let Some(answer) = self.scan_for_time(&located, timestamp_ms, log_start).await? {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }

    async fn scan_for_time(
        &self,
        located: &Located,
        timestamp_ms: i64,
        log_start: i64,
    ) -> Result<Option<OffsetAnswer>, ReadError> {
        let reaching = |header: &BatchHeader| header.max_timestamp >= timestamp_ms && header.last_offset() >= log_start;
        let found = self.find_batch(located, reaching).await?;
        Ok(found.map(|(header, bytes)| exact_offset_for_time(&header, &bytes, timestamp_ms, log_start)))
    }
}

/// Within a batch whose max timestamp reaches `timestamp_ms`, the first record at or after it
/// (inflating a compressed batch, as Kafka does).
fn exact_offset_for_time(header: &BatchHeader, bytes: &[u8], timestamp_ms: i64, log_start: i64) -> OffsetAnswer {
    let found = batch_records(header, bytes, |offset, timestamp| timestamp >= timestamp_ms && offset >= log_start);
    found.map_or(
        OffsetAnswer { offset: Offset(header.base_offset.max(log_start)), timestamp_ms: header.max_timestamp },
        |(offset, timestamp)| OffsetAnswer { offset: Offset(offset), timestamp_ms: timestamp },
    )
}

/// The offset of the first record of a batch whose timestamp is `timestamp_ms`.
fn record_with_timestamp(header: &BatchHeader, bytes: &[u8], timestamp_ms: i64) -> Option<i64> {
    batch_records(header, bytes, |_, timestamp| timestamp == timestamp_ms).map(|(offset, _)| offset)
}

/// The (offset, timestamp) of the first record of a batch for which `wanted` holds, or `None`
/// when none does or the batch cannot be read (then callers answer with the batch's bounds).
fn batch_records(header: &BatchHeader, bytes: &[u8], wanted: impl Fn(i64, i64) -> bool) -> Option<(i64, i64)> {
    let section = batch::records_section(bytes, INFLATED_SIZE_BYTES_MAX).ok()?;
    batch::decode::RecordIter::new(header, &section)
        .map_while(Result::ok)
        .map(|record| (record.offset, record.timestamp_ms))
        .find(|(offset, timestamp)| wanted(*offset, *timestamp))
}
