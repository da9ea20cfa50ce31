//! Goal: producer state is snapshotted per segment, as Kafka's `<offset>.snapshot` files: each
//! roll leaves a snapshot at the new segment's base, the checkpoint no longer carries the
//! producers, and a restart rebuilds the same state from the latest snapshot (or an older one
//! when the latest is missing or damaged, or a checkpoint written before snapshots existed).
//! Truncation removes the snapshots past the new end, retention those below the first segment.
//! Method: idempotent and transactional producers append across many rolls; the state the
//! engine reports (DescribeProducers' view, and duplicate and sequence checks) is compared
//! across restarts and against a recovery from the log alone.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{open, small_segments};
use sluice_engine::batch::builder::{BatchBuilder, BatchOptions, NewRecord};
use sluice_engine::{AppendError, AppendOptions, Engine, Offset, ProducerSummary, TopicPartition, block_on};

const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };
const TOPIC: &str = "snap";

fn batch(producer_id: i64, sequence: i32, transactional: bool) -> Vec<u8> {
    let options = BatchOptions {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        transactional,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(options);
    let value = [b'v'; 200];
    // A current timestamp: producers idle for `producer.id.expiration.ms` are forgotten.
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
    builder.push(&NewRecord { timestamp_ms, value: Some(&value), ..NewRecord::default() }).expect("push");
    builder.finish().expect("finish").to_vec()
}

fn partition_dir(dir: &Path) -> PathBuf {
    dir.join(format!("{TOPIC}-0"))
}

fn files_with(dir: &Path, extension: &str) -> BTreeSet<i64> {
    std::fs::read_dir(partition_dir(dir))
        .expect("partition dir")
        .filter_map(|entry| {
            let path = entry.expect("entry").path();
            if path.extension()? != extension {
                return None;
            }
            path.file_stem()?.to_str()?.parse().ok()
        })
        .collect()
}

/// Waits (bounded) until a maintenance pass has written a snapshot at each segment base but
/// the first.
fn wait_for_snapshots(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bases = files_with(dir, "log");
        let expected: BTreeSet<i64> = bases.iter().skip(1).copied().collect();
        if files_with(dir, "snapshot") == expected {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot at each segment base: {bases:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn producers(engine: &Engine) -> Vec<ProducerSummary> {
    block_on(engine.producers(&TopicPartition::new(TOPIC, 0))).expect("producers")
}

/// Appends `count` batches of producer 7 (idempotent) interleaved with producer 8
/// (transactional, left open), each following its last sequence.
fn append_batches(engine: &Engine, count: i32) {
    let partition = TopicPartition::new(TOPIC, 0);
    let state = producers(engine);
    let next = |id: i64| state.iter().find(|producer| producer.producer_id == id).map_or(0, |p| p.last_sequence + 1);
    let (first_7, first_8) = (next(7), next(8));
    block_on(async {
        for step in 0..count {
            engine.append(&partition, batch(7, first_7 + step, false), DURABLE).await.expect("append");
            engine.append(&partition, batch(8, first_8 + step, true), DURABLE).await.expect("append");
        }
    });
}

/// A fresh engine on `dir` with a topic of small segments and 20 batches of each producer.
fn populated(dir: &Path) -> Engine {
    let engine = open(dir, 1);
    block_on(engine.create_topic(TOPIC, 1, small_segments(2 * 1024))).expect("create");
    append_batches(&engine, 20);
    engine
}

/// The producer state a recovery from the log alone finds.
fn rescanned(dir: &Path) -> Vec<ProducerSummary> {
    let partition = partition_dir(dir);
    std::fs::remove_file(partition.join("partition.checkpoint")).expect("remove the checkpoint");
    for offset in files_with(dir, "snapshot") {
        std::fs::remove_file(partition.join(format!("{offset:020}.snapshot"))).expect("remove a snapshot");
    }
    let engine = open(dir, 1);
    let state = producers(&engine);
    engine.shutdown();
    state
}

#[test]
fn each_roll_leaves_a_snapshot_and_a_restart_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = populated(dir.path());
    wait_for_snapshots(dir.path());
    assert!(files_with(dir.path(), "log").len() > 4, "the segments rolled");
    let live = producers(&engine);
    assert_eq!(live.iter().map(|producer| producer.producer_id).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(live[0].last_sequence, 19);
    let checkpoint = std::fs::read_to_string(partition_dir(dir.path()).join("partition.checkpoint")).expect("read");
    assert!(!checkpoint.contains("producers"), "the checkpoint carries no producer state: {checkpoint}");
    engine.shutdown();

    let engine = open(dir.path(), 1);
    assert_eq!(producers(&engine), live, "after a restart");
    let partition = TopicPartition::new(TOPIC, 0);
    block_on(async {
        // The last batch again is a duplicate, answered with its offsets; a gap is refused.
        let again = engine.append(&partition, batch(7, 19, false), DURABLE).await.expect("duplicate");
        assert!(again.duplicate);
        let gap = engine.append(&partition, batch(7, 25, false), DURABLE).await;
        assert!(matches!(gap, Err(AppendError::OutOfOrderSequence { .. })), "{gap:?}");
    });
    engine.shutdown();

    // Without the newest snapshot, then with the one before damaged, recovery starts from an
    // older one and re-scans more of the log, to the same state.
    let snapshots: Vec<i64> = files_with(dir.path(), "snapshot").into_iter().collect();
    let newest = snapshots[snapshots.len() - 1];
    let before = snapshots[snapshots.len() - 2];
    std::fs::remove_file(partition_dir(dir.path()).join(format!("{newest:020}.snapshot"))).expect("remove");
    let engine = open(dir.path(), 1);
    assert_eq!(producers(&engine), live, "without the newest snapshot");
    engine.shutdown();
    std::fs::write(partition_dir(dir.path()).join(format!("{before:020}.snapshot")), b"{\"version\":1,\"pro")
        .expect("damage");
    let engine = open(dir.path(), 1);
    assert_eq!(producers(&engine), live, "with a damaged snapshot");
    engine.shutdown();
    assert_eq!(rescanned(dir.path()), live, "a recovery from the log alone agrees");
}

#[test]
fn truncation_removes_the_snapshots_past_the_new_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = populated(dir.path());
    wait_for_snapshots(dir.path());
    let snapshots: Vec<i64> = files_with(dir.path(), "snapshot").into_iter().collect();
    let cut = snapshots[snapshots.len() / 2] - 1;
    let partition = TopicPartition::new(TOPIC, 0);
    let end = block_on(engine.truncate_to(&partition, Offset(cut))).expect("truncate");
    assert!(end.0 <= cut);
    let left = files_with(dir.path(), "snapshot");
    assert!(left.iter().all(|offset| *offset <= end.0), "snapshots past the end {end:?} remain: {left:?}");
    assert!(!left.is_empty(), "snapshots below the end stay");
    // Appending again past the old snapshots' offsets: a restart must not load a removed one.
    append_batches(&engine, 20);
    wait_for_snapshots(dir.path());
    let live = producers(&engine);
    engine.shutdown();
    let engine = open(dir.path(), 1);
    assert_eq!(producers(&engine), live, "after a restart");
    engine.shutdown();
    assert_eq!(rescanned(dir.path()), live, "a recovery from the log alone agrees");
}

#[test]
fn deleting_old_segments_removes_their_snapshots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = populated(dir.path());
    wait_for_snapshots(dir.path());
    let bases: Vec<i64> = files_with(dir.path(), "log").into_iter().collect();
    let partition = TopicPartition::new(TOPIC, 0);
    block_on(engine.delete_records(&partition, Offset(bases[3]))).expect("delete records");
    let first = files_with(dir.path(), "log").into_iter().next().expect("a segment");
    assert_eq!(first, bases[3]);
    let left = files_with(dir.path(), "snapshot");
    assert_eq!(left.iter().next().copied(), Some(first), "no snapshot below the first segment: {left:?}");
    let live = producers(&engine);
    engine.shutdown();
    let engine = open(dir.path(), 1);
    assert_eq!(producers(&engine), live, "after a restart");
    engine.shutdown();
}

#[test]
fn a_checkpoint_from_before_snapshots_still_provides_the_producer_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    block_on(engine.create_topic(TOPIC, 1, small_segments(1 << 20))).expect("create");
    let partition = TopicPartition::new(TOPIC, 0);
    block_on(engine.append(&partition, batch(7, 0, false), DURABLE)).expect("append");
    block_on(engine.append(&partition, common::batch_of(b"plain", 1_000), DURABLE)).expect("append");
    engine.shutdown();
    // The older checkpoint layout: the state below the recovery point (offset 1) inside it. The
    // scan of the active segment replays only offsets from 1 on, so producer 7 is known from
    // the checkpoint alone.
    let legacy = r#"{"recovery_point": 1, "log_start_offset": 0, "cleaned_up_to": 0, "high_watermark": null,
        "producers": {"producers": {"7": {"epoch": 0, "batches": [
            {"epoch": 0, "first_sequence": 0, "last_sequence": 0, "base_offset": 0, "last_offset": 0}]}}}}"#;
    std::fs::write(partition_dir(dir.path()).join("partition.checkpoint"), legacy).expect("write");
    let engine = open(dir.path(), 1);
    let again = block_on(engine.append(&partition, batch(7, 0, false), DURABLE)).expect("duplicate");
    assert!(again.duplicate, "the checkpoint's producer state was loaded");
    assert_eq!(files_with(dir.path(), "snapshot"), BTreeSet::from([1]), "it became a snapshot at the recovery point");
    engine.shutdown();
    let checkpoint = std::fs::read_to_string(partition_dir(dir.path()).join("partition.checkpoint")).expect("read");
    assert!(!checkpoint.contains("producers"), "{checkpoint}");
    let engine = open(dir.path(), 1);
    assert!(block_on(engine.append(&partition, batch(7, 0, false), DURABLE)).expect("duplicate").duplicate);
    engine.shutdown();
}
