//! Idempotent producer state of one partition: per producer id, its epoch and the sequence
//! ranges of its last five batches, as Kafka keeps them.
//!
//! Owned by the partition, so touched only on its shard. Rebuilt at open from the checkpointed
//! snapshot plus the batches recovery re-scans after it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection: Kafka clients keep at most five
/// requests in flight per connection when idempotent.
const REMEMBERED_BATCHES_MAX: usize = 5;

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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// Producer state of a partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
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
    /// Checks a batch against its producer's state. Batches without a producer id always append.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if !header.has_producer_id() || header.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::Fenced { current_epoch: entry.epoch });
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

    /// Records an appended batch (or one replayed by recovery).
    pub(crate) fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        if !header.has_producer_id() || header.base_sequence < 0 {
            return;
        }
        let meta = BatchMeta {
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        };
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = header.producer_epoch;
        }
        if entry.batches.iter().any(|known| known.base_offset == meta.base_offset) {
            return;
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > REMEMBERED_BATCHES_MAX {
            entry.batches.pop_front();
        }
    }

    /// The state as it stood below `offset`: batches at or past it are dropped.
    pub(crate) fn below(&self, offset: i64) -> ProducerStates {
        let mut producers = BTreeMap::new();
        for (id, entry) in &self.producers {
            let batches: VecDeque<BatchMeta> =
                entry.batches.iter().filter(|meta| meta.last_offset < offset).copied().collect();
            if let Some(last) = batches.back() {
                producers.insert(*id, ProducerEntry { epoch: last.epoch, batches });
            }
        }
        ProducerStates { producers }
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
        states.record(&header(7, 0, 0, 3), 10);
        let check = states.check(&header(7, 0, 0, 3)).expect("known");
        assert!(matches!(check, SequenceCheck::Duplicate(meta) if meta.base_offset == 10 && meta.last_offset == 12));
        assert_eq!(states.check(&header(7, 0, 3, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn gap_is_out_of_order_and_old_epoch_is_fenced() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 1, 0, 2), 0);
        assert_eq!(states.check(&header(7, 1, 5, 1)), Err(SequenceError::OutOfOrder { expected: 2 }));
        assert_eq!(states.check(&header(7, 0, 2, 1)), Err(SequenceError::Fenced { current_epoch: 1 }));
        assert_eq!(states.check(&header(7, 2, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn below_drops_newer_batches() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 0, 0, 2), 0);
        states.record(&header(7, 0, 2, 2), 2);
        let older = states.below(2);
        assert_eq!(older.check(&header(7, 0, 2, 2)), Ok(SequenceCheck::Append));
        assert!(matches!(states.check(&header(7, 0, 2, 2)), Ok(SequenceCheck::Duplicate(_))));
    }
}
