//! The append path: validate, assign offsets, write through io_uring, group-commit fsync.
//!
//! 1. Validate every batch in the buffer (header, CRC, count, size) and the producer sequence.
//! 2. Synchronously (no await in between): roll the segment if needed, assign offsets by patching
//!    each batch's base offset, reserve the byte range, update indexes and producer state, and
//!    queue the write in offset order. Offsets are therefore dense and assigned in call order.
//! 3. Write the buffer at its reserved position, once no zero fill runs over it (`prealloc`);
//!    several writes may be in flight at once. Non-durable writes start early writeback.
//! 4. Mark the write done. The high watermark advances over the prefix of the queue whose writes
//!    are done and, for durable appends, fsynced: nothing is visible before it is durable.
//! 5. For durable appends (or when `flush.messages` is reached), fsync once every earlier write
//!    is done. One fsync at a time per partition; appends arriving while it runs share the next
//!    one (group commit). The fsync's completion makes the durable appends it covered visible.

use std::rc::Rc;

use compio::io::AsyncWriteAtExt;

use super::producer::{Marker, SequenceCheck, SequenceError};
use super::{InFlight, Log, Partition};
use crate::batch::{self, BatchHeader};
use crate::config::TimestampType;
use crate::error::AppendError;
use crate::io::FaultKind;
use crate::segment::Segment;
use crate::types::Offset;
use crate::{AppendOptions, AppendResult};

/// The most bytes a compacted topic's batch may inflate to when its keys are checked: Kafka's
/// largest fetch response (`fetch.max.bytes`, 50 MiB) could not carry more.
const DECOMPRESSED_SIZE_BYTES_MAX: usize = 50 << 20;

/// The kind of a transaction control batch (`None` for any other batch, or a control batch
/// whose marker does not parse: Kafka refuses those at the produce, and replicas take the
/// leader's bytes as they are).
pub(super) fn control_marker(header: &BatchHeader, bytes: &[u8]) -> Option<Marker> {
    if !header.is_control() || !header.is_transactional() {
        return None;
    }
    let parsed = batch::parse_control_batch(bytes).ok()?;
    let commit = parsed.control_type == batch::ControlType::Commit;
    Some(Marker { commit, coordinator_epoch: parsed.coordinator_epoch })
}

/// Marks a partition's fsync as running for as long as it lives.
struct SyncingGuard<'a> {
    partition: &'a Partition,
}

impl<'a> SyncingGuard<'a> {
    fn start(partition: &'a Partition) -> Self {
        assert!(!partition.syncing.replace(true), "one fsync at a time per partition");
        Self { partition }
    }
}

impl Drop for SyncingGuard<'_> {
    fn drop(&mut self) {
        self.partition.syncing.set(false);
        self.partition.sync_event.notify(usize::MAX);
    }
}

/// Where an assigned write goes.
struct Reservation {
    sequence: u64,
    segment_base: i64,
    file: compio::fs::File,
    position: u64,
    result: AppendResult,
    record_count: i64,
}

/// What the checks before an append decided.
enum Admission {
    /// Append these batches (their headers).
    Append(Vec<BatchHeader>),
    /// They repeat appended ones: this is the answer.
    Duplicate(AppendResult),
}

/// How a reservation places its batches.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// As the leader: assign offsets from the log end and stamp this leader epoch.
    Leader { leader_epoch: i32 },
    /// As a follower: keep the offsets and epochs the leader gave the batches.
    Replica,
}

impl Partition {
    /// Appends batches as the leader: assigns offsets, stamps the leader epoch, checks idempotent
    /// producers' sequences. A duplicate batch is answered with its original offsets.
    /// With `require_open_transaction`, a transactional batch whose producer has no open
    /// transaction here is refused ([`AppendError::TransactionNotOpen`]).
    /// A refusal before anything was written hands the batches back, so that a caller may
    /// retry without having copied them.
    pub(crate) async fn append(
        self: &Rc<Self>,
        mut bytes: Vec<u8>,
        options: AppendOptions,
        require_open_transaction: bool,
    ) -> Result<AppendResult, crate::RefusedAppend> {
        if self.failed.get() {
            return Err(AppendError::StorageFailed { partition: self.id.clone() }.into());
        }
        assert!(self.check_fault(FaultKind::Panic).is_ok(), "injected panic in an append to {}", self.id);
        let headers = match self.admit(&bytes, require_open_transaction) {
            Ok(Admission::Append(headers)) => headers,
            Ok(Admission::Duplicate(duplicate)) => return Ok(duplicate),
            Err(error) => return Err(crate::RefusedAppend { error, batches: Some(bytes) }),
        };
        let placement = Placement::Leader { leader_epoch: options.leader_epoch };
        let reservation = self.reserve(&mut bytes, &headers, options.durable, placement)?;
        Ok(self.write_reserved(reservation, bytes, options.durable).await?)
    }

    /// The checks before a leader's append: valid batches, the producer's sequence (a duplicate
    /// is answered), a marker's coordinator epoch, and with `require_open_transaction` an open
    /// transaction for a transactional batch.
    fn admit(&self, bytes: &[u8], require_open_transaction: bool) -> Result<Admission, AppendError> {
        let headers = self.validate(bytes)?;
        if let Some(duplicate) = self.check_sequence(&headers[0])? {
            return Ok(Admission::Duplicate(duplicate));
        }
        let first = &headers[0];
        if let Some(marker) = control_marker(first, &bytes[..first.size_bytes()]) {
            self.log.borrow().producers.check_marker(first.producer_id, marker).map_err(|_| {
                AppendError::CoordinatorFenced {
                    partition: self.id.clone(),
                    producer_id: first.producer_id,
                    coordinator_epoch: marker.coordinator_epoch,
                }
            })?;
        }
        if require_open_transaction
            && first.is_transactional()
            && !first.is_control()
            && !self.log.borrow().producers.has_open_transaction(first.producer_id, first.producer_epoch)
        {
            return Err(AppendError::TransactionNotOpen { partition: self.id.clone(), producer_id: first.producer_id });
        }
        Ok(Admission::Append(headers))
    }

    /// Appends batches as a follower: they keep the offsets and leader epochs the leader gave
    /// them, must start at or past the log end and grow; producer state and the epoch cache
    /// follow them. Answers once they are written (and fsynced when `durable`).
    pub(crate) async fn append_replica(
        self: &Rc<Self>,
        mut bytes: Vec<u8>,
        durable: bool,
    ) -> Result<AppendResult, AppendError> {
        if self.failed.get() {
            return Err(AppendError::StorageFailed { partition: self.id.clone() });
        }
        let headers = self.validate_replica(&bytes)?;
        let reservation = self.reserve(&mut bytes, &headers, durable, Placement::Replica)?;
        self.write_reserved(reservation, bytes, durable).await
    }

    /// Steps 3-5 for a reserved range: write, mark done, group-commit fsync when `durable`,
    /// and wait until the range is visible locally.
    async fn write_reserved(
        self: &Rc<Self>,
        reservation: Reservation,
        bytes: Vec<u8>,
        durable: bool,
    ) -> Result<AppendResult, AppendError> {
        let end_position = reservation.position + bytes.len() as u64;
        if durable {
            self.preallocate(reservation.segment_base);
        }
        self.wait_for_fill(reservation.segment_base, reservation.position, end_position).await;
        let written = self.write(reservation.file, bytes, reservation.position).await;
        if let Err(source) = written {
            self.fail(&source);
            return Err(AppendError::Io { partition: self.id.clone(), source });
        }
        if !durable {
            self.start_writeback(reservation.segment_base, end_position);
        }
        let flush_messages = self.config.borrow().flush_messages;
        let unflushed = {
            let mut log = self.log.borrow_mut();
            log.unflushed_messages += reservation.record_count;
            log.unflushed_messages
        };
        self.complete(reservation.sequence);
        if durable || unflushed >= flush_messages {
            self.sync_up_to(reservation.sequence)
                .await
                .map_err(|source| AppendError::Io { partition: self.id.clone(), source })?;
        }
        self.wait_visible(reservation.result.last_offset.0).await?;
        Ok(reservation.result)
    }

    /// A follower's batches: valid (CRC, layout; counts may have gaps after the leader's
    /// compaction), at or past the log end, and increasing.
    fn validate_replica(&self, bytes: &[u8]) -> Result<Vec<BatchHeader>, AppendError> {
        let mut headers: Vec<BatchHeader> = Vec::with_capacity(1);
        let mut position = 0;
        let mut expected_at_least = self.log.borrow().next_offset;
        while position < bytes.len() || headers.is_empty() {
            let header = batch::validate(&bytes[position..], false)
                .map_err(|source| AppendError::InvalidBatch { partition: self.id.clone(), source })?;
            if header.base_offset < expected_at_least {
                return Err(AppendError::UnexpectedOffset {
                    partition: self.id.clone(),
                    base_offset: Offset(header.base_offset),
                    expected_at_least: Offset(expected_at_least),
                });
            }
            expected_at_least = header.last_offset() + 1;
            position += header.size_bytes();
            headers.push(header);
        }
        Ok(headers)
    }

    /// Validates every batch in `bytes`; returns their headers in order.
    fn validate(&self, bytes: &[u8]) -> Result<Vec<BatchHeader>, AppendError> {
        let (size_bytes_max, compacted) = {
            let config = self.config.borrow();
            (config.max_message_bytes, config.cleanup_policy.compact)
        };
        let mut headers = Vec::with_capacity(1);
        let mut position = 0;
        while position < bytes.len() || headers.is_empty() {
            let header = batch::validate(&bytes[position..], true)
                .map_err(|source| AppendError::InvalidBatch { partition: self.id.clone(), source })?;
            let size = header.size_bytes();
            if size > size_bytes_max as usize {
                return Err(AppendError::TooLarge { partition: self.id.clone(), size_bytes: size, size_bytes_max });
            }
            if compacted && !header.is_control() {
                self.check_keys(&header, &bytes[position..position + size])?;
            }
            headers.push(header);
            position += size;
        }
        Ok(headers)
    }

    /// Refuses a batch holding a record without a key, as Kafka does on compacted topics. This
    /// is the one place the append path looks inside records (inflating a compressed batch, up
    /// to the size a fetch of it may reach), and only for compacted topics.
    fn check_keys(&self, header: &BatchHeader, bytes: &[u8]) -> Result<(), AppendError> {
        let section = batch::records_section(bytes, DECOMPRESSED_SIZE_BYTES_MAX)
            .map_err(|source| AppendError::Undecodable { partition: self.id.clone(), source })?;
        let mut keyless = Vec::new();
        for (index, record) in batch::decode::RecordIter::new(header, &section).enumerate() {
            let record = record.map_err(|source| AppendError::Undecodable { partition: self.id.clone(), source })?;
            if record.key.is_none() {
                keyless.push(index as i32);
            }
        }
        if !keyless.is_empty() {
            return Err(AppendError::RecordsRejected {
                partition: self.id.clone(),
                record_indexes: keyless,
                reason: crate::error::RecordRejection::MissingKeyOnCompactedTopic,
            });
        }
        Ok(())
    }

    /// Checks an idempotent producer's batch: `Some` answer for a duplicate of an appended batch.
    fn check_sequence(&self, first: &BatchHeader) -> Result<Option<AppendResult>, AppendError> {
        let log = self.log.borrow();
        match log.producers.check(first) {
            Ok(SequenceCheck::Append) => Ok(None),
            Ok(SequenceCheck::Duplicate(original)) => Ok(Some(AppendResult {
                base_offset: Offset(original.base_offset),
                last_offset: Offset(original.last_offset),
                log_append_time_ms: -1,
                log_start_offset: Offset(log.log_start_offset),
                duplicate: true,
            })),
            Err(SequenceError::OutOfOrder { expected }) => Err(AppendError::OutOfOrderSequence {
                partition: self.id.clone(),
                producer_id: first.producer_id,
                sequence: first.base_sequence,
                expected,
            }),
            Err(SequenceError::Fenced { current_epoch }) => Err(AppendError::ProducerFenced {
                partition: self.id.clone(),
                producer_id: first.producer_id,
                epoch: first.producer_epoch,
                current_epoch,
            }),
            Err(SequenceError::CoordinatorFenced { .. }) => {
                unreachable!("check() never answers for markers' coordinators")
            }
        }
    }

    /// Step 2: places the batches (assigning offsets as leader, keeping them as follower) and
    /// reserves their byte range, synchronously.
    fn reserve(
        &self,
        bytes: &mut [u8],
        headers: &[BatchHeader],
        durable: bool,
        placement: Placement,
    ) -> Result<Reservation, AppendError> {
        let config = self.config.borrow();
        let mut log = self.log.borrow_mut();
        let now_ms = self.clock.unix_ms();
        let total_bytes = bytes.len() as u64;
        let active = log.active();
        let last_offset = headers.last().map_or(0, BatchHeader::last_offset).max(log.next_offset);
        // Index entries hold offsets relative to the segment base in 32 bits.
        let too_far = last_offset.saturating_sub(active.base_offset) > i64::from(i32::MAX);
        let too_big = active.summary.size_bytes + total_bytes > config.segment_bytes || too_far;
        let too_old = now_ms.saturating_sub(active.created_ms) >= config.segment_ms;
        if !active.is_empty() && (too_big || too_old) {
            self.roll(&mut log, now_ms).map_err(|source| {
                self.fail(&source);
                AppendError::Io { partition: self.id.clone(), source }
            })?;
        }
        let leader = match placement {
            Placement::Leader { leader_epoch } => Some(leader_epoch),
            Placement::Replica => None,
        };
        let log_append_time_ms =
            if leader.is_some() && config.timestamp_type == TimestampType::LogAppendTime { now_ms } else { -1 };
        let base_offset = match leader {
            Some(_) => log.next_offset,
            None => headers[0].base_offset,
        };
        let position = log.active().summary.size_bytes;
        let mut batch_position = 0usize;
        let mut record_count = 0i64;
        for header in headers {
            let size = header.size_bytes();
            let batch_bytes = &mut bytes[batch_position..batch_position + size];
            let mut stored = *header;
            if let Some(leader_epoch) = leader {
                stored.base_offset = log.next_offset;
                stored.leader_epoch = leader_epoch;
                batch::patch_base_offset(batch_bytes, stored.base_offset);
                batch::patch_leader_epoch(batch_bytes, leader_epoch);
                if log_append_time_ms >= 0 {
                    batch::patch_log_append_time(batch_bytes, log_append_time_ms);
                    stored.max_timestamp = log_append_time_ms;
                }
            }
            assert!(stored.base_offset >= log.next_offset, "offsets grow: assigned, or checked for a replica");
            let index_interval_bytes = config.index_interval_bytes;
            log.active_mut().note_batch(position + batch_position as u64, &stored, index_interval_bytes);
            let marker = control_marker(&stored, batch_bytes);
            if let Some(aborted) = log.producers.record(&stored, stored.base_offset, marker) {
                let active = log.active_mut();
                active.aborted.push(aborted);
                active.txn_index_changes += 1;
            }
            log.assign_epoch(stored.leader_epoch, stored.base_offset);
            log.next_offset = stored.last_offset() + 1;
            if log.replicated_high_watermark.is_some() {
                let end = super::BatchEnd {
                    next_offset: log.next_offset,
                    segment_base: log.active().base_offset,
                    end_position: position + (batch_position + size) as u64,
                };
                log.tail_batches.push_back(end);
            }
            record_count += i64::from(header.record_count);
            batch_position += size;
        }
        let last_offset = log.next_offset - 1;
        assert!(last_offset >= base_offset, "a reservation holds at least one record");
        let sequence = log.next_write_sequence;
        log.next_write_sequence += 1;
        let segment_base = log.active().base_offset;
        log.in_flight.push_back(InFlight {
            sequence,
            last_offset,
            segment_base,
            end_position: position + total_bytes,
            done: false,
            durable,
        });
        let file = log.active().file.clone();
        self.stats.record_append(total_bytes, headers.len() as u64);
        let result = AppendResult {
            base_offset: Offset(base_offset),
            last_offset: Offset(last_offset),
            log_append_time_ms,
            log_start_offset: Offset(log.log_start_offset),
            duplicate: false,
        };
        Ok(Reservation { sequence, segment_base, file, position, result, record_count })
    }

    /// Step 3: writes the whole buffer at `position`.
    async fn write(&self, mut file: compio::fs::File, bytes: Vec<u8>, position: u64) -> std::io::Result<()> {
        self.check_fault(FaultKind::Write)?;
        let compio::BufResult(result, _buffer) = file.write_all_at(bytes, position).await;
        result
    }

    /// Starts writeback of the segment based at `segment_base` up to `end` once `writeback_bytes`
    /// have been written past the last start, on the blocking pool (it may wait for the device
    /// queue). Pages of writes still in flight below `end` are left to the kernel's own writeback.
    fn start_writeback(&self, segment_base: i64, end: u64) {
        let step = self.tuning.writeback_bytes;
        if step == 0 {
            return;
        }
        let mut log = self.log.borrow_mut();
        if log.writeback.0 != segment_base {
            log.writeback = (segment_base, 0);
        }
        let start = log.writeback.1;
        if end < start + step {
            return;
        }
        let Some(file) = log.segments.get(&segment_base).map(|segment| segment.reader.clone()) else { return };
        log.writeback.1 = end;
        drop(log);
        let partition = self.id.clone();
        crate::io::spawn_unpinned(move || {
            if let Err(error) = crate::io::start_writeback(&file, start, end - start) {
                tracing::debug!(%partition, %error, "could not start writeback");
            }
        })
        .detach();
    }

    /// Step 4: marks write `sequence` done, then advances.
    fn complete(&self, sequence: u64) {
        if let Some(entry) = self.log.borrow_mut().in_flight.iter_mut().find(|entry| entry.sequence == sequence) {
            entry.done = true;
        }
        self.advance();
    }

    /// Moves the written sequence over the done prefix of the queue, and the high watermark over
    /// the prefix that is done and, where durable, fsynced. Wakes readers and sync waiters.
    fn advance(&self) {
        let mut log = self.log.borrow_mut();
        let mut written = log.written_sequence;
        for entry in &log.in_flight {
            if !entry.done {
                break;
            }
            written = entry.sequence;
        }
        let wrote_more = written > log.written_sequence;
        log.written_sequence = written;
        let synced = log.synced_sequence;
        let mut advanced = false;
        while log.in_flight.front().is_some_and(|entry| entry.done && (!entry.durable || entry.sequence <= synced)) {
            let entry = log.in_flight.pop_front().expect("checked above");
            if self.failed.get() {
                continue;
            }
            log.local_end = entry.last_offset + 1;
            if let Some(segment) = log.segments.get_mut(&entry.segment_base) {
                segment.readable_size_bytes = segment.readable_size_bytes.max(entry.end_position);
            }
            advanced = true;
        }
        assert!(log.local_end <= log.next_offset, "the local end never passes the log end");
        if advanced {
            log.refresh_hw_position();
            log.prune_stable();
        }
        drop(log);
        if advanced {
            self.event.notify(usize::MAX);
        }
        if wrote_more {
            self.sync_event.notify(usize::MAX);
        }
    }

    /// Waits until the high watermark covers `last_offset` (earlier writes may still run).
    async fn wait_visible(&self, last_offset: i64) -> Result<(), AppendError> {
        loop {
            if self.failed.get() {
                return Err(AppendError::StorageFailed { partition: self.id.clone() });
            }
            if self.log.borrow().local_end > last_offset {
                return Ok(());
            }
            let listener = self.event.listen();
            if self.log.borrow().local_end > last_offset || self.failed.get() {
                continue;
            }
            listener.await;
        }
    }

    /// Step 5: returns once every write up to `sequence` is fsynced, running the fsync if none is
    /// in progress, else joining the next one.
    pub(super) async fn sync_up_to(&self, sequence: u64) -> std::io::Result<()> {
        loop {
            if self.failed.get() {
                return Err(std::io::Error::other("partition failed on an earlier storage error"));
            }
            let (synced, written) = {
                let log = self.log.borrow();
                (log.synced_sequence, log.written_sequence)
            };
            if synced >= sequence {
                return Ok(());
            }
            // An fsync covers only completed writes: wait for the earlier ones, or one is running.
            if self.syncing.get() || written < sequence {
                let listener = self.sync_event.listen();
                let written_now = self.log.borrow().written_sequence;
                if self.syncing.get() || written_now < sequence {
                    listener.await;
                }
                continue;
            }
            self.run_sync().await?;
        }
    }

    async fn run_sync(&self) -> std::io::Result<()> {
        // The guard clears `syncing` even when this future is dropped mid-fsync (a cancelled
        // task), so later syncs never wait for one that will not finish.
        let syncing_guard = SyncingGuard::start(self);
        let (target, rolled, active, rolls) = {
            let mut log = self.log.borrow_mut();
            let rolled = std::mem::take(&mut log.unsynced_files);
            let rolls = (log.rolls > log.rolls_synced).then_some(log.rolls);
            (log.written_sequence, rolled, log.active().file.clone(), rolls)
        };
        let started = self.clock.now();
        let mut outcome = Ok(());
        if let Some(rolls) = rolls {
            // The entries of segments created since the last sync.
            outcome = crate::io::sync_dir_async(&self.dir).await;
            if outcome.is_ok() {
                let mut log = self.log.borrow_mut();
                log.rolls_synced = log.rolls_synced.max(rolls);
            }
        }
        for (base, file) in &rolled {
            if outcome.is_err() {
                break;
            }
            outcome = self.sync_rolled(*base, file).await;
        }
        if outcome.is_ok() {
            outcome = match self.check_fault(FaultKind::Sync) {
                Ok(()) => active.sync_data().await,
                Err(error) => Err(error),
            };
        }
        drop(syncing_guard);
        match outcome {
            Ok(()) => {
                let mut log = self.log.borrow_mut();
                log.synced_sequence = log.synced_sequence.max(target);
                log.unflushed_messages = 0;
                log.last_flush_ms = self.clock.unix_ms();
                drop(log);
                let elapsed_us = self.clock.now().saturating_duration_since(started).as_micros() as u64;
                self.stats.record_fsync(elapsed_us);
                tracing::trace!(partition = %self.id, elapsed_us, "fsync");
                self.sync_event.notify(usize::MAX);
                self.advance();
                Ok(())
            }
            Err(error) => {
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Fsyncs a rolled segment, first truncating the zeros a fill left past its batches.
    async fn sync_rolled(&self, base: i64, file: &compio::fs::File) -> std::io::Result<()> {
        self.check_fault(FaultKind::Sync)?;
        if self.log.borrow().zero_tails.contains(&base) {
            self.truncate_zero_tail(base).await
        } else {
            file.sync_data().await
        }
    }

    /// Starts a new active segment at the log end. The old one, and the directory entry of the
    /// new one, are fsynced by the next sync (the shard thread never waits for an fsync here).
    pub(super) fn roll(&self, log: &mut Log, now_ms: i64) -> std::io::Result<()> {
        let base = log.next_offset;
        let path = crate::segment::log_path(&self.dir, base);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        log.rolls += 1;
        let file = crate::io::into_runtime_file(file);
        let previous = (log.active().base_offset, log.active().file.clone());
        log.unsynced_files.push(previous);
        let summary = crate::segment::SegmentSummary::empty(base);
        log.segments.insert(base, Segment::new(base, &self.dir, file, summary, now_ms)?);
        // Every batch below the new segment is recorded: its producer state is the snapshot
        // at its base, written by the next maintenance pass.
        let producers = log.producers.clone();
        log.pending_snapshots.push((base, producers));
        Ok(())
    }
}
