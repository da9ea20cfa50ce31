//! Goal: the follower side of a log (appends that keep the leader's offsets and epochs,
//! truncation, an externally set high watermark) and the leader-epoch cache stay equal to a
//! simple model through any sequence of operations and restarts.
//!
//! Method: proptest generates operation sequences mixing leader appends (offsets assigned,
//! epoch stamped), follower appends (offsets and epochs given, sometimes leaving a gap as a
//! compacted leader log does), truncations, high watermark changes and clean restarts, on a
//! real engine with small segments. The model is the list of batches (base offset, last offset,
//! epoch, payload). After every operation: the log read up to its local end holds exactly the
//! model's batches; the log end matches; OffsetForLeaderEpoch answers for every epoch match the
//! model's epoch boundaries (Kafka's rules); the high watermark is the one set, capped at the
//! local end.

mod common;

use common::{open, single_value, small_segments};
use proptest::prelude::*;
use sluice_engine::batch::{build_batch, patch_base_offset, patch_leader_epoch};
use sluice_engine::{AppendOptions, Engine, Offset, ReadBound, TopicPartition, block_on};

#[derive(Debug, Clone)]
enum Operation {
    /// As leader, with the current epoch, bumped first when `new_epoch`.
    LeaderAppend {
        size: usize,
        records: usize,
        new_epoch: bool,
        durable: bool,
    },
    /// As follower: a batch starting `gap` offsets past the log end, with the current epoch,
    /// bumped first when `new_epoch`.
    ReplicaAppend {
        size: usize,
        records: usize,
        gap: i64,
        new_epoch: bool,
    },
    /// Truncate at a point `fraction/255` of the way through the log.
    Truncate {
        fraction: u8,
    },
    /// Set a replicated high watermark `fraction/255` of the way, or unset it.
    HighWatermark {
        fraction: Option<u8>,
    },
    Restart,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        5 => (1usize..400, 1usize..4, prop::bool::weighted(0.2), any::<bool>())
            .prop_map(|(size, records, new_epoch, durable)| Operation::LeaderAppend { size, records, new_epoch, durable }),
        5 => (1usize..400, 1usize..4, prop::sample::select(vec![0i64, 0, 0, 3]), prop::bool::weighted(0.2))
            .prop_map(|(size, records, gap, new_epoch)| Operation::ReplicaAppend { size, records, gap, new_epoch }),
        2 => any::<u8>().prop_map(|fraction| Operation::Truncate { fraction }),
        1 => prop::option::of(any::<u8>()).prop_map(|fraction| Operation::HighWatermark { fraction }),
        1 => Just(Operation::Restart),
    ]
}

/// One batch as the model keeps it.
#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: i64,
    last_offset: i64,
    epoch: i32,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    /// One past the last offset: the last batch's last offset + 1 (gaps come before batches),
    /// or where an emptied log restarts.
    end: i64,
    epoch: i32,
    high_watermark: Option<i64>,
}

impl Model {
    fn epoch_for(&mut self, new_epoch: bool) -> i32 {
        let floor = self.batches.last().map_or(0, |batch| batch.epoch);
        self.epoch = self.epoch.max(floor) + i32::from(new_epoch);
        self.epoch
    }

    /// Kafka's OffsetForLeaderEpoch answer from the batches' epochs.
    fn end_offset_for(&self, requested: i32) -> (i32, i64) {
        if requested < 0 {
            return (-1, -1);
        }
        let mut starts: Vec<(i32, i64)> = Vec::new();
        for batch in &self.batches {
            if starts.last().is_none_or(|(epoch, _)| *epoch < batch.epoch) {
                starts.push((batch.epoch, batch.base_offset));
            }
        }
        if starts.last().is_some_and(|(epoch, _)| *epoch == requested) {
            return (requested, self.end);
        }
        let Some(higher) = starts.iter().find(|(epoch, _)| *epoch > requested) else { return (-1, -1) };
        match starts.iter().rev().find(|(epoch, _)| *epoch <= requested) {
            Some((floor, _)) => (*floor, higher.1),
            None => (requested, higher.1),
        }
    }

    /// Truncation at `offset`, with the log starting at `log_start`: whole batches reaching the
    /// offset go; the log then ends after its last batch, or at its start when none is left.
    fn truncate(&mut self, offset: i64, log_start: i64) {
        self.batches.retain(|batch| batch.last_offset < offset);
        self.end = self.batches.last().map_or(log_start.max(offset.min(log_start)), |batch| batch.last_offset + 1);
        self.high_watermark = self.high_watermark.map(|high_watermark| high_watermark.min(self.end));
    }
}

/// A batch of `records` copies of `payload`, placed at `base_offset` with `epoch`.
fn placed_batch(payload: &[u8], records: usize, base_offset: i64, epoch: i32) -> Vec<u8> {
    let values: Vec<&[u8]> = std::iter::repeat_n(payload, records).collect();
    let mut batch = build_batch(&values, 1_700_000_000_000);
    patch_base_offset(&mut batch, base_offset);
    patch_leader_epoch(&mut batch, epoch);
    batch
}

fn payload(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|index| ((index * 31 + seed * 7) % 251) as u8).collect()
}

fn check(engine: &Engine, partition: &TopicPartition, model: &Model) {
    let offsets = block_on(engine.offsets(partition)).expect("offsets");
    assert_eq!(offsets.log_end_offset.0, model.end, "log end");
    assert_eq!(offsets.local_end_offset.0, model.end, "everything is written once appends return");
    let expected_high_watermark = model.high_watermark.map_or(model.end, |set| set.min(model.end));
    assert_eq!(offsets.high_watermark.0, expected_high_watermark, "high watermark");
    let mut next = offsets.log_start_offset.0;
    let mut found = Vec::new();
    while next < offsets.local_end_offset.0 {
        let read = block_on(engine.read(partition, Offset(next), 64 * 1024, ReadBound::LogEnd)).expect("read");
        let batches = common::split_batches(&read.records);
        assert!(!batches.is_empty(), "a read below the local end returns a batch");
        for (header, bytes) in batches {
            next = header.last_offset() + 1;
            found.push((header.base_offset, header.last_offset(), header.leader_epoch, single_value(&bytes)));
        }
    }
    let expected: Vec<_> = model
        .batches
        .iter()
        .map(|batch| (batch.base_offset, batch.last_offset, batch.epoch, batch.payload.clone()))
        .collect();
    assert_eq!(found, expected, "the log holds the model's batches");
    for epoch in -1..=model.epoch + 1 {
        let answer = block_on(engine.end_offset_for_epoch(partition, epoch)).expect("epoch lookup");
        assert_eq!((answer.leader_epoch, answer.end_offset.0), model.end_offset_for(epoch), "epoch {epoch}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn follower_log_matches_model(operations in proptest::collection::vec(operation(), 1..50)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let partition = TopicPartition::new("replica", 0);
        let mut engine = open(dir.path(), 1);
        block_on(engine.create_topic("replica", 1, small_segments(1024))).expect("create");
        let mut model = Model::default();
        for (step, operation) in operations.into_iter().enumerate() {
            match operation {
                Operation::LeaderAppend { size, records, new_epoch, durable } => {
                    let epoch = model.epoch_for(new_epoch);
                    let bytes = payload(size, step);
                    let batch = placed_batch(&bytes, records, 0, -1);
                    let options = AppendOptions { durable, leader_epoch: epoch };
                    let appended = block_on(engine.append(&partition, batch, options)).expect("leader append");
                    assert_eq!(appended.base_offset.0, model.end);
                    let last_offset = model.end + records as i64 - 1;
                    model.batches.push(ModelBatch { base_offset: model.end, last_offset, epoch, payload: bytes });
                    model.end = last_offset + 1;
                }
                Operation::ReplicaAppend { size, records, gap, new_epoch } => {
                    let epoch = model.epoch_for(new_epoch);
                    let bytes = payload(size, step);
                    let base_offset = model.end + gap;
                    let batch = placed_batch(&bytes, records, base_offset, epoch);
                    block_on(engine.append_replica(&partition, batch, true)).expect("replica append");
                    let last_offset = base_offset + records as i64 - 1;
                    model.batches.push(ModelBatch { base_offset, last_offset, epoch, payload: bytes });
                    model.end = last_offset + 1;
                }
                Operation::Truncate { fraction } => {
                    let start = block_on(engine.offsets(&partition)).expect("offsets").log_start_offset.0;
                    let offset = start + (model.end - start) * i64::from(fraction) / 255;
                    block_on(engine.truncate_to(&partition, Offset(offset))).expect("truncate");
                    model.truncate(offset, start);
                }
                Operation::HighWatermark { fraction } => {
                    let set = fraction.map(|fraction| model.end * i64::from(fraction) / 255);
                    block_on(engine.set_high_watermark(&partition, set.map(Offset))).expect("set high watermark");
                    model.high_watermark = set;
                }
                Operation::Restart => {
                    engine.shutdown();
                    engine = open(dir.path(), 1);
                    // A restart keeps the replicated high watermark only as far as the last
                    // checkpoint took it; the owner sets it again, as a broker does.
                    block_on(engine.set_high_watermark(&partition, model.high_watermark.map(Offset))).expect("set");
                }
            }
            check(&engine, &partition, &model);
        }
        engine.shutdown();
    }
}

#[test]
fn replica_append_below_the_log_end_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("order", 0);
    let engine = open(dir.path(), 1);
    block_on(engine.create_topic("order", 1, small_segments(4096))).expect("create");
    block_on(engine.append_replica(&partition, placed_batch(b"a", 2, 0, 1), true)).expect("first");
    let refused = block_on(engine.append_replica(&partition, placed_batch(b"b", 1, 1, 1), true));
    assert!(matches!(refused, Err(sluice_engine::AppendError::UnexpectedOffset { .. })), "{refused:?}");
    engine.shutdown();
}

#[test]
fn consumers_never_read_past_the_replicated_high_watermark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("bounded", 0);
    let engine = open(dir.path(), 1);
    block_on(engine.create_topic("bounded", 1, small_segments(1 << 20))).expect("create");
    block_on(engine.set_high_watermark(&partition, Some(Offset(0)))).expect("replicated");
    for epoch in [1, 1, 2] {
        let options = AppendOptions { durable: true, leader_epoch: epoch };
        block_on(engine.append(&partition, placed_batch(b"x", 3, 0, -1), options)).expect("append");
    }
    block_on(engine.set_high_watermark(&partition, Some(Offset(6)))).expect("set");
    let consumer = block_on(engine.read(&partition, Offset(0), 1 << 20, ReadBound::HighWatermark)).expect("read");
    let served: Vec<i64> =
        common::split_batches(&consumer.records).iter().map(|(header, _)| header.base_offset).collect();
    assert_eq!(served, vec![0, 3], "the batch past the high watermark is not served");
    let range = block_on(engine.read_range(&partition, Offset(0), 1 << 20, ReadBound::HighWatermark)).expect("range");
    let bytes = range.range.expect("a range").read_to_vec().expect("read the range");
    assert_eq!(common::split_batches(&bytes).len(), 2, "the zero-copy range stops at the high watermark too");
    let follower = block_on(engine.read(&partition, Offset(6), 1 << 20, ReadBound::LogEnd)).expect("read");
    assert_eq!(common::split_batches(&follower.records).len(), 1, "followers read up to the local end");
    // Between the high watermark and the log end: nothing yet, but in range (Kafka's answer to a
    // consumer a new leader's fetch position put there); past the log end: out of range.
    let between = block_on(engine.read(&partition, Offset(7), 1 << 20, ReadBound::HighWatermark)).expect("in range");
    assert!(between.records.is_empty());
    assert!(matches!(
        block_on(engine.read(&partition, Offset(10), 1 << 20, ReadBound::HighWatermark)),
        Err(sluice_engine::ReadError::OffsetOutOfRange { .. })
    ));
    engine.shutdown();
}

/// A new leader starts its epoch at its log end before writing anything in it, so a follower
/// whose log outgrew the leader's (an old leader's unreplicated tail) learns where to cut, even
/// when the new leader's log is empty.
#[test]
fn a_new_leader_epoch_starts_at_the_log_end_before_any_batch_of_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("lead", 0);
    let engine = open(dir.path(), 1);
    block_on(engine.create_topic("lead", 1, small_segments(1024))).expect("create");
    let answer = |epoch| {
        let end = block_on(engine.end_offset_for_epoch(&partition, epoch)).expect("epoch lookup");
        (end.leader_epoch, end.end_offset.0)
    };
    // Empty: epoch 3 starts at 0, so epoch 2 (the old leader's) ends at 0 here.
    assert_eq!(block_on(engine.assign_leader_epoch(&partition, 3)).expect("assign").0, 0);
    assert_eq!(answer(2), (2, 0));
    assert_eq!(answer(3), (3, 0));
    // Batches of epoch 3 and then a later leadership at epoch 5 starting at the log end.
    let bytes = payload(50, 1);
    let options = AppendOptions { durable: true, leader_epoch: 3 };
    block_on(engine.append(&partition, placed_batch(&bytes, 4, 0, -1), options)).expect("append");
    assert_eq!(block_on(engine.assign_leader_epoch(&partition, 5)).expect("assign").0, 4);
    assert_eq!(answer(4), (3, 4), "epoch 4 was never written here: 3's end answers");
    assert_eq!(answer(5), (5, 4));
    // An older or equal epoch changes nothing.
    assert_eq!(block_on(engine.assign_leader_epoch(&partition, 4)).expect("assign").0, 4);
    let options = AppendOptions { durable: true, leader_epoch: 5 };
    block_on(engine.append(&partition, placed_batch(&bytes, 2, 0, -1), options)).expect("append");
    assert_eq!(answer(3), (3, 4), "epoch 5 still starts where leadership began");
    assert_eq!(answer(5), (5, 6));
    // Leader at epoch 7 without writing, then a follower told to truncate at its log end: the
    // empty epoch goes, so its next fetch names epoch 5 again.
    assert_eq!(block_on(engine.assign_leader_epoch(&partition, 7)).expect("assign").0, 6);
    assert_eq!(block_on(engine.latest_epoch(&partition)).expect("epoch"), Some(7));
    assert_eq!(block_on(engine.truncate_to(&partition, Offset(6))).expect("truncate").0, 6);
    assert_eq!(block_on(engine.latest_epoch(&partition)).expect("epoch"), Some(5));
}
