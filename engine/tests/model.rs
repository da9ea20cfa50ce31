//! Goal: any sequence of appends, reads, restarts, record deletions and small-segment rolls
//! leaves the log equal to a simple in-memory model.
//!
//! Method: proptest generates operation sequences; each runs against a real engine on a temp
//! directory and against a `Vec` of acknowledged payloads. After every read and restart the
//! engine's visible batches must equal the model's from the log start offset on.

mod common;

use common::{batch_of, open, read_all, single_value, small_segments};
use proptest::prelude::*;
use sluice_engine::{AppendOptions, Offset, TopicPartition, block_on};

#[derive(Debug, Clone)]
enum Operation {
    Append { size: usize, durable: bool },
    ReadAt { fraction: u8 },
    DeleteRecords { fraction: u8 },
    Restart,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (1usize..600, any::<bool>()).prop_map(|(size, durable)| Operation::Append { size, durable }),
        2 => any::<u8>().prop_map(|fraction| Operation::ReadAt { fraction }),
        1 => any::<u8>().prop_map(|fraction| Operation::DeleteRecords { fraction }),
        1 => Just(Operation::Restart),
    ]
}

fn check_against_model(engine: &sluice_engine::Engine, partition: &TopicPartition, model: &[Vec<u8>], log_start: i64) {
    let batches = read_all(engine, partition, log_start);
    assert_eq!(batches.len() as i64, model.len() as i64 - log_start);
    for (header, bytes) in &batches {
        assert_eq!(single_value(bytes), model[header.base_offset as usize]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(operations in proptest::collection::vec(operation(), 1..60)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let partition = TopicPartition::new("model", 0);
        let mut engine = open(dir.path(), 1);
        block_on(engine.create_topic("model", 1, small_segments(2048))).expect("create");
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut log_start = 0i64;
        for operation in operations {
            match operation {
                Operation::Append { size, durable } => {
                    let payload: Vec<u8> = (0..size).map(|index| (index + model.len()) as u8).collect();
                    let appended = block_on(engine.append(&partition, batch_of(&payload, 1), AppendOptions { durable, leader_epoch: 0 }))
                        .expect("append");
                    prop_assert_eq!(appended.base_offset, Offset(model.len() as i64));
                    model.push(payload);
                }
                Operation::ReadAt { fraction } => {
                    let span = model.len() as i64 - log_start;
                    let offset = log_start + span * i64::from(fraction) / 256;
                    let read = block_on(engine.read(&partition, Offset(offset), 512, sluice_engine::ReadBound::HighWatermark)).expect("read");
                    if offset < model.len() as i64 {
                        let batches = common::split_batches(&read.records);
                        prop_assert!(!batches.is_empty());
                        prop_assert_eq!(batches[0].0.base_offset, offset);
                    } else {
                        prop_assert!(read.records.is_empty());
                    }
                }
                Operation::DeleteRecords { fraction } => {
                    let span = model.len() as i64 - log_start;
                    let target = log_start + span * i64::from(fraction) / 256;
                    let moved = block_on(engine.delete_records(&partition, Offset(target))).expect("delete records");
                    log_start = log_start.max(target);
                    prop_assert_eq!(moved, Offset(log_start));
                }
                Operation::Restart => {
                    engine.shutdown();
                    drop(engine);
                    engine = open(dir.path(), 1);
                    check_against_model(&engine, &partition, &model, log_start);
                }
            }
        }
        check_against_model(&engine, &partition, &model, log_start);
        engine.shutdown();
    }
}
