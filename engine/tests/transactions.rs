//! Goal: transactions in the log behave as Kafka's: the last stable offset stops read_committed
//! reads at the oldest open transaction, aborted transactions are reported with their first
//! offsets, and both survive a restart and a kill (rebuilt from the checkpoint, the `.txnindex`
//! files and the re-scanned tail).
//! Method: append transactional batches and control batches through the public API, read with
//! each bound, reopen the engine (cleanly and without closing), and compare.

mod common;

use common::open;
use sluice_engine::batch::builder::NewRecord;
use sluice_engine::batch::{ControlType, EndTxnMarker};
use sluice_engine::{AbortedTransaction, AppendOptions, Offset, ReadBound, TopicConfig, TopicPartition, block_on};

const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };
const FAST: AppendOptions = AppendOptions { durable: false, leader_epoch: 0 };

fn transactional(producer_id: i64, sequence: i32, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<NewRecord<'_>> = values
        .iter()
        .map(|value| NewRecord { timestamp_ms: 1_000, value: Some(value), ..NewRecord::default() })
        .collect();
    common::transactional_batch(producer_id, sequence, &records)
}

fn marker(producer_id: i64, control_type: ControlType) -> Vec<u8> {
    sluice_engine::batch::build_control_batch(
        producer_id,
        0,
        EndTxnMarker { control_type, coordinator_epoch: 0 },
        1_000,
    )
}

fn plain(value: &[u8]) -> Vec<u8> {
    sluice_engine::batch::build_batch(&[value], 1_000)
}

#[test]
fn last_stable_offset_and_aborted_transactions_survive_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("t", 0);
    let engine = open(dir.path(), 1);
    block_on(async {
        engine.create_topic("t", 1, TopicConfig::default()).await.expect("create");
        // 0-1: producer 7 (aborted later); 2: plain; 3: producer 8 (committed); 4: abort of 7;
        // 5: commit of 8; 6: producer 9 (left open); 7: plain.
        engine.append(&partition, transactional(7, 0, &[b"a", b"b"]), DURABLE).await.expect("append");
        engine.append(&partition, plain(b"c"), DURABLE).await.expect("append");
        engine.append(&partition, transactional(8, 0, &[b"d"]), DURABLE).await.expect("append");
        let read = engine.read(&partition, Offset(0), 1 << 20, ReadBound::LastStable).await.expect("read");
        assert!(read.records.is_empty(), "an open transaction at 0 hides everything from read_committed");
        assert_eq!(read.offsets.last_stable_offset, Offset(0));
        assert_eq!(read.offsets.high_watermark, Offset(4));
        engine.append(&partition, marker(7, ControlType::Abort), DURABLE).await.expect("abort");
        engine.append(&partition, marker(8, ControlType::Commit), DURABLE).await.expect("commit");
        engine.append(&partition, transactional(9, 0, &[b"e"]), DURABLE).await.expect("append");
        engine.append(&partition, plain(b"f"), DURABLE).await.expect("append");
    });
    let expected_aborted = vec![AbortedTransaction { producer_id: 7, first_offset: Offset(0) }];
    let check = |engine: &sluice_engine::Engine, stage: &str| {
        block_on(async {
            let read = engine.read(&partition, Offset(0), 1 << 20, ReadBound::LastStable).await.expect("read");
            assert_eq!(read.offsets.last_stable_offset, Offset(6), "{stage}: the open transaction of producer 9");
            assert_eq!(read.offsets.high_watermark, Offset(8), "{stage}");
            assert_eq!(read.aborted, expected_aborted, "{stage}");
            let last = common::split_batches(&read.records).last().map(|(header, _)| header.last_offset());
            assert_eq!(last, Some(5), "{stage}: read_committed stops before the open transaction");
            let between = engine.read(&partition, Offset(7), 1 << 20, ReadBound::LastStable).await.expect("read");
            assert!(between.records.is_empty(), "{stage}: past the LSO reads nothing, without an error");
            let uncommitted =
                engine.read(&partition, Offset(0), 1 << 20, ReadBound::HighWatermark).await.expect("read");
            assert!(uncommitted.aborted.is_empty(), "{stage}");
            assert_eq!(common::split_batches(&uncommitted.records).len(), 7, "{stage}");
            let producers = engine.producers(&partition).await.expect("producers");
            let open: Vec<(i64, i64)> = producers
                .iter()
                .filter(|producer| producer.current_txn_start_offset >= 0)
                .map(|producer| (producer.producer_id, producer.current_txn_start_offset))
                .collect();
            assert_eq!(open, vec![(9, 6)], "{stage}");
        });
    };
    check(&engine, "live");
    engine.shutdown();
    let engine = open(dir.path(), 1);
    check(&engine, "after a clean restart");
    engine.shutdown();
    // As after a crash before any checkpoint: everything is re-scanned, and what the scan
    // rebuilds must agree.
    std::fs::remove_file(dir.path().join("t-0").join("partition.checkpoint")).expect("remove the checkpoint");
    let engine = open(dir.path(), 1);
    check(&engine, "after a full re-scan");
    block_on(async {
        engine.append(&partition, marker(9, ControlType::Commit), DURABLE).await.expect("commit");
        let read = engine.read(&partition, Offset(0), 1 << 20, ReadBound::LastStable).await.expect("read");
        assert_eq!(read.offsets.last_stable_offset, Offset(9));
        assert_eq!(read.offsets.last_stable_offset, read.offsets.high_watermark);
    });
    engine.shutdown();
}

#[test]
fn append_in_transaction_refuses_a_batch_that_would_open_a_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("t", 0);
    let engine = open(dir.path(), 1);
    block_on(async {
        engine.create_topic("t", 1, TopicConfig::default()).await.expect("create");
        let refused = engine.append_in_transaction(&partition, transactional(7, 0, &[b"a"]), DURABLE).await;
        let refused = refused.expect_err("refused");
        assert!(matches!(refused.error, sluice_engine::AppendError::TransactionNotOpen { producer_id: 7, .. }));
        assert!(refused.batches.is_some(), "the batch is handed back: nothing of it was written");
        assert_eq!(engine.offsets(&partition).await.expect("offsets").log_end_offset, Offset(0), "nothing written");
        // Verified elsewhere, the first batch goes through the plain append; the next ones find
        // the transaction open.
        engine.append(&partition, transactional(7, 0, &[b"a"]), DURABLE).await.expect("first batch");
        engine.append_in_transaction(&partition, transactional(7, 1, &[b"b"]), DURABLE).await.expect("second batch");
        // A retried first batch is still answered as the duplicate it is.
        let duplicate =
            engine.append_in_transaction(&partition, transactional(7, 0, &[b"a"]), DURABLE).await.expect("duplicate");
        assert!(duplicate.duplicate);
        engine.append(&partition, marker(7, ControlType::Commit), DURABLE).await.expect("commit");
        let refused = engine.append_in_transaction(&partition, transactional(7, 2, &[b"c"]), DURABLE).await;
        assert!(
            matches!(
                refused.map_err(|refused| refused.error),
                Err(sluice_engine::AppendError::TransactionNotOpen { .. })
            ),
            "ended: not open"
        );
        // Plain (non-transactional) batches are never refused.
        engine.append_in_transaction(&partition, plain(b"d"), DURABLE).await.expect("plain batch");
    });
    engine.shutdown();
}

fn transactional_keyed(producer_id: i64, sequence: i32, key: &str, value: &str) -> Vec<u8> {
    let record =
        NewRecord { timestamp_ms: 1, key: Some(key.as_bytes()), value: Some(value.as_bytes()), ..NewRecord::default() };
    common::transactional_batch(producer_id, sequence, &[record])
}

#[test]
fn compaction_drops_aborted_records_and_never_lets_them_supersede_committed_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("c", 0);
    let engine = open(dir.path(), 1);
    let mut config = common::small_segments(1024);
    config.set("cleanup.policy", "compact").expect("valid");
    block_on(async {
        engine.create_topic("c", 1, config).await.expect("create");
        for round in 0..20 {
            // A committed value of key-0..3, then an aborted newer one of the same keys.
            for key in 0..4 {
                let batch = sluice_engine::batch::build_keyed_batch(
                    &[(format!("key-{key}").as_bytes(), Some(format!("committed-{round}").as_bytes()))],
                    1,
                );
                engine.append(&partition, batch, FAST).await.expect("append");
            }
            for key in 0..4 {
                let batch = transactional_keyed(9, round * 4 + key, &format!("key-{key}"), &format!("aborted-{round}"));
                engine.append(&partition, batch, FAST).await.expect("append");
            }
            engine.append(&partition, marker(9, ControlType::Abort), FAST).await.expect("abort");
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let batches = loop {
        let batches = common::read_all(&engine, &partition, 0);
        // The active segment is never cleaned: look at the first closed one.
        let first_segment_cleaned =
            batches.iter().take(8).all(|(header, _)| !header.is_transactional() || header.is_control());
        if first_segment_cleaned {
            break batches;
        }
        assert!(std::time::Instant::now() < deadline, "compaction never removed the aborted batches");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Every committed key keeps a committed value: an aborted record never superseded one.
    let mut last: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::collections::BTreeMap::new();
    for (header, bytes) in &batches {
        if header.is_control() {
            continue;
        }
        for record in sluice_engine::batch::records(bytes) {
            if !header.is_transactional() {
                last.insert(record.key.expect("keyed").to_vec(), record.value.expect("a value").to_vec());
            }
        }
    }
    for key in 0..4 {
        let value = last.get(format!("key-{key}").as_bytes()).expect("the key keeps its committed value");
        assert!(value.starts_with(b"committed-"), "key-{key} = {:?}", String::from_utf8_lossy(value));
    }
    let read = block_on(engine.read(&partition, Offset(0), 1 << 20, ReadBound::LastStable)).expect("read");
    assert_eq!(read.aborted.first().map(|aborted| aborted.producer_id), Some(9), "the aborts stay indexed");
    engine.shutdown();
}
