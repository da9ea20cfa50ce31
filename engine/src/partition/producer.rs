//! Producer state of one partition: per producer id, its epoch, the sequence ranges of its last
//! five batches (idempotence, as Kafka keeps them) and its open transaction, if any.
//!
//! Transactions: a producer's first transactional batch opens its transaction at that batch's
//! offset; a control batch (commit or abort marker) ends it. A transaction is *unstable* from its
//! first offset until its marker is below the high watermark: the last stable offset (LSO) is the
//! first offset of the oldest unstable transaction, or the high watermark when there is none. An
//! aborted transaction becomes an [`AbortedTxn`] entry of the segment holding its marker (Kafka's
//! `.txnindex`).
//!
//! Owned by the partition, so touched only on its shard. Rebuilt at open from the checkpointed
//! snapshot plus the batches recovery re-scans after it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
pub(crate) use crate::segment::txn_index::AbortedTxn;

/// Batches remembered per producer for duplicate detection: Kafka clients keep at most five
/// requests in flight per connection when idempotent.
const REMEMBERED_BATCHES_MAX: usize = 5;
/// Ended transactions remembered per producer, so that the state below an offset (the
/// checkpoint's, or after a truncation) can reopen a transaction whose marker lies past it.
const REMEMBERED_TRANSACTIONS_MAX: usize = 8;

/// Sequence numbers and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMeta {
    pub(crate) epoch: i16,
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

/// What to do with a batch, per its producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// It repeats an appended batch; answer with that batch's offsets.
    Duplicate(BatchMeta),
}

/// Why a batch's sequence or epoch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceError {
    /// The sequence does not follow the last one.
    OutOfOrder { expected: i32 },
    /// The epoch is older than the producer's current one.
    Fenced { current_epoch: i16 },
    /// A marker from a coordinator older than the one that wrote the producer's last marker.
    CoordinatorFenced { current_coordinator_epoch: i32 },
}

/// How a control batch ends its producer's transaction, and the epoch of the coordinator that
/// wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) commit: bool,
    pub(crate) coordinator_epoch: i32,
}

impl Marker {
    #[cfg(test)]
    fn commit(coordinator_epoch: i32) -> Self {
        Self { commit: true, coordinator_epoch }
    }

    #[cfg(test)]
    fn abort(coordinator_epoch: i32) -> Self {
        Self { commit: false, coordinator_epoch }
    }
}

/// A transaction of one producer that ended: where it started and where its marker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct EndedTxn {
    first_offset: i64,
    marker_offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction.
    #[serde(default)]
    txn_first_offset: Option<i64>,
    /// The producer epoch that opened it (transaction version 2 bumps the epoch per
    /// transaction, so a batch of a newer epoch belongs to a newer transaction).
    #[serde(default)]
    txn_epoch: i16,
    /// The last transactions it ended, oldest first.
    #[serde(default)]
    ended: VecDeque<EndedTxn>,
    /// The largest batch timestamp seen from it, for `producer.id.expiration.ms`.
    #[serde(default = "no_timestamp")]
    last_timestamp_ms: i64,
    /// The coordinator epoch of its last marker, or -1: a marker from an older coordinator is
    /// refused.
    #[serde(default = "no_coordinator_epoch")]
    coordinator_epoch: i32,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

fn no_timestamp() -> i64 {
    -1
}

impl Default for ProducerEntry {
    fn default() -> Self {
        Self {
            epoch: 0,
            batches: VecDeque::new(),
            txn_first_offset: None,
            txn_epoch: 0,
            ended: VecDeque::new(),
            last_timestamp_ms: no_timestamp(),
            coordinator_epoch: no_coordinator_epoch(),
        }
    }
}

/// A transaction not yet stable: open (no marker), or ended by a marker not yet below the high
/// watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unstable {
    producer_id: i64,
    marker_offset: Option<i64>,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The sequence of its last batch, or -1.
    pub last_sequence: i32,
    /// The coordinator epoch of its last transaction marker, or -1.
    pub coordinator_epoch: i32,
    /// The largest timestamp of its batches, or -1.
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction, or -1.
    pub current_txn_start_offset: i64,
}

/// Producer state of a partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Transactions not yet stable, by first offset; derived from `producers` (and rebuilt by
    /// [`ProducerStates::below`]), so not stored.
    #[serde(skip)]
    unstable: BTreeMap<i64, Unstable>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    // Sequences wrap from i32::MAX to 0, as in Kafka.
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

impl ProducerStates {
    /// Checks a batch against its producer's state. Batches without a producer id always append;
    /// a control batch needs an epoch no older than its producer's.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::Fenced { current_epoch: entry.epoch });
        }
        if header.base_sequence < 0 || header.is_control() {
            return Ok(SequenceCheck::Append);
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder { expected: 0 })
            };
        }
        let last = last_sequence(header);
        if let Some(original) =
            entry.batches.iter().find(|meta| meta.first_sequence == header.base_sequence && meta.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*original));
        }
        let expected = entry.batches.back().map_or(header.base_sequence, |meta| next_sequence(meta.last_sequence));
        if header.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { expected })
        }
    }

    /// Checks a marker's coordinator epoch against the last one its producer had.
    pub(crate) fn check_marker(&self, producer_id: i64, marker: Marker) -> Result<(), SequenceError> {
        match self.producers.get(&producer_id) {
            Some(entry) if marker.coordinator_epoch < entry.coordinator_epoch => {
                Err(SequenceError::CoordinatorFenced { current_coordinator_epoch: entry.coordinator_epoch })
            }
            _ => Ok(()),
        }
    }

    /// Records an appended batch (or one replayed by recovery); `marker` is the kind of a
    /// transaction control batch. Returns the aborted transaction an abort marker ended.
    pub(crate) fn record(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        marker: Option<Marker>,
    ) -> Option<AbortedTxn> {
        if !header.has_producer_id() {
            return None;
        }
        if let Some(marker) = marker.filter(|_| header.is_control()) {
            return self.end_transaction(header, base_offset, marker);
        }
        if header.base_sequence < 0 && !header.is_transactional() {
            return None;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        if header.producer_epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = header.producer_epoch;
        }
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(base_offset);
            entry.txn_epoch = header.producer_epoch;
            self.unstable.insert(base_offset, Unstable { producer_id: header.producer_id, marker_offset: None });
        }
        if header.base_sequence < 0 {
            return None;
        }
        let meta = BatchMeta {
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        };
        if entry.batches.iter().any(|known| known.base_offset == meta.base_offset) {
            return None;
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > REMEMBERED_BATCHES_MAX {
            entry.batches.pop_front();
        }
        None
    }

    /// A marker at `marker_offset` ends its producer's transaction (one with no batch on this
    /// partition starts and ends at the marker, as in Kafka).
    fn end_transaction(&mut self, header: &BatchHeader, marker_offset: i64, marker: Marker) -> Option<AbortedTxn> {
        let entry = self.producers.entry(header.producer_id).or_default();
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        if header.producer_epoch > entry.epoch {
            entry.batches.clear();
            entry.epoch = header.producer_epoch;
        }
        let first_offset = match entry.txn_first_offset.take() {
            Some(first) => {
                if let Some(unstable) = self.unstable.get_mut(&first) {
                    unstable.marker_offset = Some(marker_offset);
                }
                first
            }
            None => marker_offset,
        };
        entry.ended.push_back(EndedTxn { first_offset, marker_offset });
        while entry.ended.len() > REMEMBERED_TRANSACTIONS_MAX {
            entry.ended.pop_front();
        }
        if marker.commit {
            return None;
        }
        let last_stable_offset = self
            .unstable
            .iter()
            .find(|(_, unstable)| unstable.marker_offset.is_none())
            .map_or(marker_offset + 1, |(first, _)| *first);
        Some(AbortedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset,
        })
    }

    /// Whether `producer_id` has a transaction open here that a batch of `epoch` belongs to.
    pub(crate) fn has_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|entry| entry.txn_first_offset.is_some() && entry.txn_epoch == epoch)
    }

    /// The first offset of the oldest transaction not stable below `high_watermark`.
    pub(crate) fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        self.unstable
            .iter()
            .find(|(_, unstable)| unstable.marker_offset.is_none_or(|marker| marker >= high_watermark))
            .map(|(first, _)| *first)
    }

    /// Forgets the transactions whose markers are below `high_watermark`.
    pub(crate) fn prune_stable(&mut self, high_watermark: i64) {
        self.unstable.retain(|_, unstable| unstable.marker_offset.is_none_or(|marker| marker >= high_watermark));
    }

    /// The producers, as DescribeProducers lists them.
    pub(crate) fn summaries(&self) -> Vec<ProducerSummary> {
        self.producers
            .iter()
            .map(|(id, entry)| ProducerSummary {
                producer_id: *id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |meta| meta.last_sequence),
                coordinator_epoch: entry.coordinator_epoch,
                last_timestamp_ms: entry.last_timestamp_ms,
                current_txn_start_offset: entry.txn_first_offset.unwrap_or(-1),
            })
            .collect()
    }

    /// Ends every open transaction that started below `offset` without a marker: compaction
    /// cleans only below the last stable offset, and may remove the marker of a transaction
    /// none of whose batches is left, so a transaction a snapshot holds open below the offset
    /// compaction reached had ended. Returns how many were ended.
    pub(crate) fn end_transactions_below(&mut self, offset: i64) -> usize {
        let mut ended = 0;
        for entry in self.producers.values_mut() {
            if entry.txn_first_offset.is_some_and(|first| first < offset) {
                entry.txn_first_offset = None;
                ended += 1;
            }
        }
        self.unstable.retain(|first, _| *first >= offset);
        ended
    }

    /// Forgets producers with no open transaction whose last batch is older than `before_ms`
    /// (Kafka's `producer.id.expiration.ms`). Returns how many were forgotten.
    pub(crate) fn expire(&mut self, before_ms: i64) -> usize {
        let count = self.producers.len();
        self.producers.retain(|_, entry| entry.txn_first_offset.is_some() || entry.last_timestamp_ms >= before_ms);
        count - self.producers.len()
    }

    /// The state as it stood below `offset`: batches and markers at or past it are undone (a
    /// transaction whose marker is at or past it is open again).
    pub(crate) fn below(&self, offset: i64) -> ProducerStates {
        let mut producers = BTreeMap::new();
        let mut unstable = BTreeMap::new();
        for (id, entry) in &self.producers {
            let batches: VecDeque<BatchMeta> =
                entry.batches.iter().filter(|meta| meta.last_offset < offset).copied().collect();
            let ended: VecDeque<EndedTxn> =
                entry.ended.iter().filter(|txn| txn.marker_offset < offset).copied().collect();
            let txn_first_offset = entry.txn_first_offset.filter(|first| *first < offset).or_else(|| {
                entry
                    .ended
                    .iter()
                    .find(|txn| txn.marker_offset >= offset && txn.first_offset < offset)
                    .map(|txn| txn.first_offset)
            });
            let unchanged = batches.len() == entry.batches.len()
                && ended.len() == entry.ended.len()
                && txn_first_offset == entry.txn_first_offset;
            let epoch = if unchanged { entry.epoch } else { batches.back().map_or(entry.epoch, |last| last.epoch) };
            if !unchanged && batches.is_empty() && ended.is_empty() && txn_first_offset.is_none() {
                continue;
            }
            if let Some(first) = txn_first_offset {
                unstable.insert(first, Unstable { producer_id: *id, marker_offset: None });
            }
            let (last_timestamp_ms, coordinator_epoch) = (entry.last_timestamp_ms, entry.coordinator_epoch);
            producers.insert(
                *id,
                ProducerEntry {
                    epoch,
                    batches,
                    txn_first_offset,
                    txn_epoch: entry.txn_epoch,
                    ended,
                    last_timestamp_ms,
                    coordinator_epoch,
                },
            );
        }
        ProducerStates { producers, unstable }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            record_count: count,
        }
    }

    #[test]
    fn duplicate_batch_returns_original_offsets() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 0, 0, 3), 10, None);
        let check = states.check(&header(7, 0, 0, 3)).expect("known");
        assert!(matches!(check, SequenceCheck::Duplicate(meta) if meta.base_offset == 10 && meta.last_offset == 12));
        assert_eq!(states.check(&header(7, 0, 3, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn gap_is_out_of_order_and_old_epoch_is_fenced() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 1, 0, 2), 0, None);
        assert_eq!(states.check(&header(7, 1, 5, 1)), Err(SequenceError::OutOfOrder { expected: 2 }));
        assert_eq!(states.check(&header(7, 0, 2, 1)), Err(SequenceError::Fenced { current_epoch: 1 }));
        assert_eq!(states.check(&header(7, 2, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn below_drops_newer_batches() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 0, 0, 2), 0, None);
        states.record(&header(7, 0, 2, 2), 2, None);
        let older = states.below(2);
        assert_eq!(older.check(&header(7, 0, 2, 2)), Ok(SequenceCheck::Append));
        assert!(matches!(states.check(&header(7, 0, 2, 2)), Ok(SequenceCheck::Duplicate(_))));
    }

    fn transactional(producer_id: i64, epoch: i16, sequence: i32, count: i32) -> BatchHeader {
        BatchHeader { attributes: 0x10, ..header(producer_id, epoch, sequence, count) }
    }

    fn marker(producer_id: i64, epoch: i16) -> BatchHeader {
        BatchHeader { attributes: 0x30, base_sequence: -1, ..header(producer_id, epoch, 0, 1) }
    }

    #[test]
    fn open_transaction_bounds_the_last_stable_offset_until_its_marker_is_below_the_high_watermark() {
        let mut states = ProducerStates::default();
        states.record(&transactional(7, 0, 0, 2), 10, None);
        states.record(&transactional(7, 0, 2, 2), 12, None);
        states.record(&transactional(8, 0, 0, 1), 14, None);
        assert_eq!(states.first_unstable_offset(15), Some(10));
        assert_eq!(states.record(&marker(7, 0), 15, Some(Marker::commit(0))), None);
        // The marker is not below the high watermark yet: still unstable.
        assert_eq!(states.first_unstable_offset(15), Some(10));
        states.prune_stable(16);
        assert_eq!(states.first_unstable_offset(16), Some(14));
        let aborted = states.record(&marker(8, 0), 16, Some(Marker::abort(0))).expect("an abort is indexed");
        assert_eq!((aborted.producer_id, aborted.first_offset, aborted.last_offset), (8, 14, 16));
        states.prune_stable(17);
        assert_eq!(states.first_unstable_offset(17), None);
        // The next transaction of producer 7 continues its sequence (transaction version 1).
        assert_eq!(states.check(&transactional(7, 0, 4, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn below_reopens_a_transaction_whose_marker_is_past_the_offset() {
        let mut states = ProducerStates::default();
        states.record(&transactional(7, 0, 0, 2), 0, None);
        states.record(&marker(7, 0), 2, Some(Marker::abort(0)));
        states.record(&transactional(7, 0, 2, 1), 3, None);
        let at_two = states.below(2);
        assert_eq!(at_two.first_unstable_offset(2), Some(0));
        let at_three = states.below(3);
        assert_eq!(at_three.first_unstable_offset(3), None);
        assert_eq!(at_three.summaries()[0].current_txn_start_offset, -1);
        assert_eq!(states.below(4).summaries()[0].current_txn_start_offset, 3);
    }

    #[test]
    fn a_marker_with_a_newer_epoch_fences_the_older_one_and_restarts_sequences() {
        let mut states = ProducerStates::default();
        states.record(&transactional(7, 3, 5, 1), 0, None);
        states.record(&marker(7, 4), 1, Some(Marker::abort(0)));
        assert_eq!(states.check(&transactional(7, 3, 6, 1)), Err(SequenceError::Fenced { current_epoch: 4 }));
        assert_eq!(states.check(&marker(7, 3)), Err(SequenceError::Fenced { current_epoch: 4 }));
        assert_eq!(states.check(&transactional(7, 4, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn transactions_open_below_the_cleaned_offset_are_ended() {
        let mut states = ProducerStates::default();
        states.record(&transactional(7, 0, 0, 2), 10, None);
        states.record(&transactional(8, 0, 0, 1), 20, None);
        assert_eq!(states.end_transactions_below(15), 1);
        assert_eq!(states.first_unstable_offset(30), Some(20));
        assert!(!states.has_open_transaction(7, 0));
        assert!(states.has_open_transaction(8, 0));
    }

    #[test]
    fn idle_producers_expire_but_not_with_an_open_transaction() {
        let mut states = ProducerStates::default();
        states.record(&BatchHeader { max_timestamp: 100, ..header(1, 0, 0, 1) }, 0, None);
        states.record(&BatchHeader { max_timestamp: 100, ..transactional(2, 0, 0, 1) }, 1, None);
        assert_eq!(states.expire(200), 1);
        assert_eq!(states.summaries().len(), 1);
        assert_eq!(states.summaries()[0].producer_id, 2);
    }

    #[test]
    fn a_marker_of_an_older_coordinator_is_fenced() {
        let mut states = ProducerStates::default();
        states.record(&transactional(7, 0, 0, 1), 0, None);
        states.record(&marker(7, 0), 1, Some(Marker::commit(3)));
        assert_eq!(states.summaries()[0].coordinator_epoch, 3);
        assert_eq!(
            states.check_marker(7, Marker::abort(2)),
            Err(SequenceError::CoordinatorFenced { current_coordinator_epoch: 3 })
        );
        assert_eq!(states.check_marker(7, Marker::abort(3)), Ok(()));
        assert_eq!(states.check_marker(8, Marker::abort(0)), Ok(()));
    }
}
