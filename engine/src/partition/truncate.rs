//! Truncation: cutting a log back so that it ends before an offset, as a follower does when its
//! log diverged from a new leader's (Kafka's `truncateTo`).
//!
//! 1. Wait until no write or zero fill is in flight (the caller stopped appending).
//! 2. An offset at or below the log start empties the log and restarts it there; an offset at or
//!    past the log end changes nothing but the epoch cache (an epoch started at the log end, as
//!    a leader that wrote nothing in it leaves it, goes).
//! 3. Otherwise remove every segment starting at or past the offset, then cut the segment
//!    holding it before its first batch that reaches the offset (batches are never split, so
//!    the log may end below the offset) and fsync it, rebuilding its indexes from what is left;
//!    a segment left empty goes too, so the log ends right after its last batch.
//! 4. Bring the offsets, the epoch cache and producer state back to the new end, remove the
//!    producer snapshots past it (fsyncing the directory), and write the checkpoint, so that a
//!    restart sees neither the cut batches nor state derived from them.
//!
//! Runs on the partition's shard; the file work runs on the blocking pool.

use std::rc::Rc;

use super::{Partition, prealloc};
use crate::error::ReadError;
use crate::segment::{self, Segment, SegmentSummary};
use crate::types::Offset;

impl Partition {
    /// Truncates the log to end at or before `offset`; returns the new log end.
    ///
    /// # Errors
    /// [`ReadError::StorageFailed`] on a failed partition, [`ReadError::Io`] when a file cannot
    /// be cut or removed (the partition is then failed).
    pub(crate) async fn truncate_to(self: &Rc<Self>, offset: Offset) -> Result<Offset, ReadError> {
        self.settle().await?;
        let (next_offset, log_start) = {
            let log = self.log.borrow();
            (log.next_offset, log.log_start_offset)
        };
        if offset.0 >= next_offset {
            // Nothing to cut, but a leader epoch this replica started as leader without writing
            // a batch in it starts at the log end and conflicts with the new leader's epochs:
            // drop it, as Kafka does, or the follower would name it as its last fetched epoch
            // and be sent back here at every fetch.
            let mut log = self.log.borrow_mut();
            if log.epochs.truncate_from_end(next_offset) {
                log.epochs_version += 1;
            }
            return Ok(Offset(next_offset));
        }
        let cut = if offset.0 <= log_start { self.restart_at(offset.0) } else { self.cut_at(offset.0).await };
        if let Err(source) = cut {
            self.fail(&source);
            return Err(ReadError::Io { partition: self.id.clone(), source });
        }
        let end = self.after_truncation();
        // Snapshots past the new end describe cut batches: removed, durably, before anything
        // is appended past the end again.
        let stale: Vec<i64> = self.log.borrow_mut().snapshots.split_off(&(end + 1)).into_iter().collect();
        let dir = self.dir.clone();
        let removed = crate::io::unblocked(move || {
            super::snapshot::remove(&dir, stale)?;
            crate::io::sync_dir(&dir)
        })
        .await;
        if let Err(source) = removed {
            self.fail(&source);
            return Err(ReadError::Io { partition: self.id.clone(), source });
        }
        let recovery_point = end.min(self.log.borrow().checkpointed.recovery_point);
        self.write_txn_indexes().await.map_err(|source| ReadError::Io { partition: self.id.clone(), source })?;
        self.write_checkpoint(recovery_point)
            .await
            .map_err(|source| ReadError::Io { partition: self.id.clone(), source })?;
        self.event.notify(usize::MAX);
        tracing::info!(partition = %self.id, to = offset.0, end, "truncated the log");
        Ok(Offset(end))
    }

    /// Step 1: waits until no write and no fill is in flight.
    async fn settle(&self) -> Result<(), ReadError> {
        loop {
            if self.failed.get() {
                return Err(ReadError::StorageFailed { partition: self.id.clone() });
            }
            crate::notify::wait_until(&self.event, || self.log.borrow().in_flight.is_empty() || self.failed.get())
                .await;
            let active = self.log.borrow().active().base_offset;
            self.wait_for_fill(active, 0, u64::MAX).await;
            if self.log.borrow().in_flight.is_empty() && !self.failed.get() {
                return Ok(());
            }
        }
    }

    /// Step 2: removes every segment and starts an empty one at `offset`, the new log start.
    ///
    /// Synchronous, on the shard thread (one directory fsync, and rare: a follower whose log
    /// ends before its leader's log start): with an await between removing the segments and
    /// creating the new one, other work on the shard would find a log without a segment.
    fn restart_at(&self, offset: i64) -> std::io::Result<()> {
        let removed: Vec<Segment> = std::mem::take(&mut self.log.borrow_mut().segments).into_values().collect();
        for segment in removed {
            segment.remove()?;
        }
        let path = segment::log_path(&self.dir, offset);
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        crate::io::sync_dir(&self.dir)?;
        let file = crate::io::open_rw(&path, false)?;
        let active = Segment::new(offset, &self.dir, file, SegmentSummary::empty(offset), self.clock.unix_ms())?;
        let mut log = self.log.borrow_mut();
        log.segments.insert(offset, active);
        log.log_start_offset = offset;
        Ok(())
    }

    /// Step 3: removes the segments at or past `offset` and cuts the one holding it.
    async fn cut_at(&self, offset: i64) -> std::io::Result<()> {
        let doomed: Vec<Segment> = {
            let mut log = self.log.borrow_mut();
            let keep_below = log.segments.range(..=offset).next_back().map(|(base, _)| *base);
            let first_doomed = match keep_below {
                Some(base) if base < offset => offset,
                // The first segment starts at the offset: it stays (emptied below).
                Some(base) => base + 1,
                None => offset,
            };
            let tail = log.segments.split_off(&first_doomed);
            tail.into_values().collect()
        };
        for segment in doomed {
            segment.remove()?;
        }
        let (base, path, interval) = {
            let log = self.log.borrow();
            let active = log.active();
            (active.base_offset, active.log_path(), self.config.borrow().index_interval_bytes)
        };
        let outcome = crate::io::unblocked(move || {
            let outcome = segment::scan::scan_before(&path, base, interval, u64::MAX, offset, |_, _| {})?;
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(outcome.summary.size_bytes)?;
            file.sync_all()?;
            Ok(outcome)
        })
        .await?;
        let mut log = self.log.borrow_mut();
        if outcome.summary.size_bytes == 0 && log.segments.len() > 1 {
            // Nothing of it is left: drop it, so the log ends where the segment before it does
            // (with no gap between that end and the next offset).
            let (_, emptied) = log.segments.pop_last().expect("checked above");
            drop(log);
            return emptied.remove();
        }
        let active = log.active_mut();
        let size_bytes = outcome.summary.size_bytes;
        active.bytes_since_index =
            outcome.summary.index.last().map_or(size_bytes, |entry| size_bytes - u64::from(entry.position));
        active.summary = outcome.summary;
        active.readable_size_bytes = size_bytes;
        active.index_dirty = true;
        Ok(())
    }

    /// Step 4: the log's offsets and derived state after a cut; returns the new log end.
    fn after_truncation(&self) -> i64 {
        let mut log = self.log.borrow_mut();
        let end = log.active().summary.next_offset;
        let bases: Vec<i64> = log.segments.keys().copied().collect();
        log.next_offset = end;
        log.local_end = log.local_end.min(end);
        log.replicated_high_watermark = log.replicated_high_watermark.map(|high_watermark| high_watermark.min(end));
        log.tail_batches.clear();
        log.hw_position = None;
        log.refresh_hw_position();
        if log.epochs.truncate_from_end(end) {
            log.epochs_version += 1;
        }
        log.producers = log.producers.below(end);
        log.truncations += 1;
        log.pending_snapshots.retain(|(offset, _)| *offset <= end);
        for segment in log.segments.values_mut() {
            let before = segment.aborted.len();
            segment.aborted.retain(|aborted| aborted.last_offset < end);
            if segment.aborted.len() != before {
                segment.txn_index_changes += 1;
            }
        }
        log.zero_tails.retain(|base| bases.contains(base) && *base != bases[bases.len() - 1]);
        log.unsynced_files.retain(|(base, _)| bases.contains(base));
        log.fill = prealloc::Fill::default();
        self.cleaned_up_to.set(self.cleaned_up_to.get().min(end));
        assert!(log.log_start_offset <= log.local_end && log.local_end <= log.next_offset, "offsets stay ordered");
        end
    }
}
