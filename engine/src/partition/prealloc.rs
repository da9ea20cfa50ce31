//! Zero-filling the active segment ahead of durable appends.
//!
//! An fdatasync after an append that grows its file must also write what the growth changed:
//! the inode (its size) and the block allocation. On ext4 that is two or three more synchronous
//! device writes per fsync, and the inodes of neighbouring partitions share a block, so their
//! fsyncs queue on it. An append into space that already holds synced zeros changes neither, and
//! its fdatasync writes the data and flushes the device cache, nothing else.
//!
//! So a partition taking durable appends keeps its active segment written with zeros, and
//! synced, up to `preallocate_bytes` past the last reserved byte: when less than half of that is
//! left, a background fill writes zeros from the reserved end onward and fsyncs them. The zeros
//! go through the page cache: an append's fdatasync that runs while a fill's pages are being
//! written back waits for them, so fills are kept small (half of `preallocate_bytes`, 1 MiB by
//! default). `O_DIRECT` zeros were measured slower: ext4 holds the inode lock through a direct
//! write past the end of the file, which stalls the partition's buffered appends. Rules:
//! - a fill starts at or after the end of every reserved byte range, so it never overwrites data;
//! - an append whose range overlaps a running fill waits for the fill before writing;
//! - one fill at a time per partition; a failed fill fails the partition (its fsync may have been
//!   the one to see a failed writeback of appended data);
//! - readers never see the zeros: reads stop at the end of the last visible batch, and recovery
//!   ends a segment at its first invalid batch, which a zero length is;
//! - a segment with zeros past its last batch is in `Log::zero_tails` until it has been truncated
//!   to its batches and fsynced (when rolled, at the next sync; the active one at close), and the
//!   checkpoint's recovery point stays below it, so recovery always rescans it instead of trusting
//!   its file size.

use std::rc::Rc;
use std::sync::OnceLock;

use compio::io::AsyncWriteAtExt;

use super::Partition;

/// Bytes written per zero-filling write.
const FILL_WRITE_SIZE_BYTES: usize = 1 << 20;
/// Fills start and end on page boundaries.
const PAGE_SIZE_BYTES: u64 = 4096;

/// A shared buffer of zeros, allocated once.
fn zeros() -> &'static [u8] {
    static ZEROS: OnceLock<&'static [u8]> = OnceLock::new();
    ZEROS.get_or_init(|| vec![0u8; FILL_WRITE_SIZE_BYTES].leak())
}

/// The zero-filled space of the active segment.
#[derive(Debug, Default)]
pub(super) struct Fill {
    /// Base offset of the segment the other fields describe.
    segment_base: i64,
    /// The file holds synced bytes (zeros or data) up to here.
    zeroed_end: u64,
    /// A fill of this byte range is running.
    running: Option<(u64, u64)>,
}

impl Partition {
    /// Starts a fill when the active segment, based at `segment_base`, has less than half of
    /// `preallocate_bytes` of zeroed space left past its reserved bytes.
    pub(super) fn preallocate(self: &Rc<Self>, segment_base: i64) {
        if self.tuning.preallocate_bytes == 0 || self.failed.get() || self.closing.get() {
            return;
        }
        let segment_bytes = self.config.borrow().segment_bytes;
        let mut log = self.log.borrow_mut();
        let active = log.active();
        if active.base_offset != segment_base {
            return;
        }
        let reserved_end = active.summary.size_bytes;
        if log.fill.segment_base != segment_base {
            log.fill = Fill { segment_base, zeroed_end: 0, running: None };
        }
        if log.fill.running.is_some() || log.fill.zeroed_end >= reserved_end + self.tuning.preallocate_bytes / 2 {
            return;
        }
        // Whole pages, and never past the size at which the segment rolls.
        let start = log.fill.zeroed_end.max(reserved_end).next_multiple_of(PAGE_SIZE_BYTES);
        let end = (reserved_end + self.tuning.preallocate_bytes).min(segment_bytes) / PAGE_SIZE_BYTES * PAGE_SIZE_BYTES;
        if end <= start {
            return;
        }
        let file = log.active().file.clone();
        log.fill.running = Some((start, end));
        log.zero_tails.insert(segment_base);
        drop(log);
        let partition = Rc::clone(self);
        compio::runtime::spawn(async move {
            crate::panic::contain(&partition, partition.fill(segment_base, file, start, end)).await;
        })
        .detach();
    }

    async fn fill(&self, segment_base: i64, file: compio::fs::File, start: u64, end: u64) {
        let outcome = self.fill_range(file, start, end).await;
        {
            let mut log = self.log.borrow_mut();
            if log.fill.segment_base == segment_base {
                log.fill.running = None;
                if outcome.is_ok() {
                    log.fill.zeroed_end = end;
                }
            }
        }
        self.fill_event.notify(usize::MAX);
        match outcome {
            Ok(()) => tracing::trace!(partition = %self.id, start, end, "zero-filled ahead of appends"),
            Err(error) => self.fail(&error),
        }
    }

    /// Writes zeros over `start..end` of the segment file, then fsyncs it.
    async fn fill_range(&self, mut file: compio::fs::File, start: u64, end: u64) -> std::io::Result<()> {
        let mut position = start;
        while position < end {
            self.check_fault(crate::io::FaultKind::Write)?;
            let size = (end - position).min(FILL_WRITE_SIZE_BYTES as u64) as usize;
            file.write_all_at(&zeros()[..size], position).await.0?;
            position += size as u64;
        }
        self.check_fault(crate::io::FaultKind::Sync)?;
        file.sync_data().await
    }

    /// Waits until no fill of the segment based at `segment_base` overlaps `start..end`.
    pub(super) async fn wait_for_fill(&self, segment_base: i64, start: u64, end: u64) {
        loop {
            let overlaps = |partition: &Self| {
                let log = partition.log.borrow();
                log.fill.segment_base == segment_base
                    && log.fill.running.is_some_and(|(fill_start, fill_end)| start < fill_end && fill_start < end)
            };
            if !overlaps(self) {
                return;
            }
            let listener = self.fill_event.listen();
            if overlaps(self) {
                listener.await;
            }
        }
    }

    /// Truncates the segment based at `segment_base` to its batches and fsyncs it, when it may
    /// hold zeros past them. Its caller guarantees no append to it is in flight past its batches:
    /// the segment was rolled, or the partition is closing.
    pub(super) async fn truncate_zero_tail(&self, segment_base: i64) -> std::io::Result<()> {
        if !self.log.borrow().zero_tails.contains(&segment_base) {
            return Ok(());
        }
        self.wait_for_fill(segment_base, 0, u64::MAX).await;
        let found = self
            .log
            .borrow()
            .segments
            .get(&segment_base)
            .map(|segment| (segment.file.clone(), segment.summary.size_bytes));
        if let Some((file, size_bytes)) = found {
            file.set_len(size_bytes).await?;
            file.sync_all().await?;
        }
        let mut log = self.log.borrow_mut();
        log.zero_tails.remove(&segment_base);
        if log.fill.segment_base == segment_base {
            log.fill.zeroed_end = 0;
        }
        Ok(())
    }
}
