//! Goal: after a kill -9 at any moment, recovery rebuilds a partition's transaction state
//! exactly: the last stable offset, each producer's open transaction, and the aborted
//! transactions (`.txnindex`) are what a recovery from nothing but the log would find.
//!
//! Method: this test binary re-runs itself as a child that appends transactional batches of
//! three producers, with commit and abort markers at random, to a partition with small segments
//! (so segments roll and checkpoints land between them), until the parent kills it with SIGKILL.
//! The parent then opens the engine on the directory (recovery from the checkpoint, the index
//! files and a re-scan of the tail), records the transaction state, closes it, deletes the
//! checkpoint, every `.txnindex` and every producer snapshot, opens again (a re-scan of the
//! whole log) and compares, producer by producer.
//! Ten cycles on one directory.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{open, small_segments};
use sluice_engine::batch::builder::{BatchBuilder, BatchOptions, NewRecord};
use sluice_engine::batch::{ControlType, EndTxnMarker};
use sluice_engine::{AbortedTransaction, AppendOptions, Offset, ProducerSummary, ReadBound, TopicPartition, block_on};

const CHILD_ENV: &str = "SLUICE_TXN_CRASH_CHILD_DIR";
const CYCLES: u32 = 10;
const TOPIC: &str = "txn";
const PRODUCERS: i64 = 3;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The child: random transactional appends and markers, durable or not, forever.
fn run_child(dir: &str) {
    let engine = open(std::path::Path::new(dir), 1);
    if engine.topic(TOPIC).is_none() {
        block_on(engine.create_topic(TOPIC, 1, small_segments(4 * 1024))).expect("create");
    }
    let target = TopicPartition::new(TOPIC, 0);
    let mut random = u64::try_from(now_ms()).unwrap_or(1) | 1;
    let mut sequences = [0i32; PRODUCERS as usize];
    // Each child run is a new producer epoch, so sequences restart at 0 after a crash.
    let epoch = i16::try_from(now_ms() % 1_000).unwrap_or(0);
    loop {
        let producer = common::next_random(&mut random) % PRODUCERS as u64;
        let producer_id = 100 + producer as i64;
        let choice = common::next_random(&mut random) % 10;
        let durable = common::next_random(&mut random).is_multiple_of(2);
        let batch = if choice < 7 {
            let sequence = &mut sequences[producer as usize];
            let options = BatchOptions {
                producer_id,
                producer_epoch: epoch,
                base_sequence: *sequence,
                transactional: true,
                ..BatchOptions::default()
            };
            *sequence += 1;
            let mut builder = BatchBuilder::new(options);
            let value = format!("v{}", "x".repeat((choice * 40) as usize));
            builder
                .push(&NewRecord { timestamp_ms: now_ms(), value: Some(value.as_bytes()), ..NewRecord::default() })
                .expect("push");
            builder.finish().expect("finish").to_vec()
        } else {
            let control_type = if choice < 9 { ControlType::Commit } else { ControlType::Abort };
            sluice_engine::batch::build_control_batch(
                producer_id,
                epoch,
                EndTxnMarker { control_type, coordinator_epoch: 0 },
                now_ms(),
            )
        };
        match block_on(engine.append(&target, batch, AppendOptions { durable, leader_epoch: 0 })) {
            Ok(_) => {}
            // A new epoch's first batch after a crash may be refused for its sequence: skip on.
            Err(error) => eprintln!("append refused: {error}"),
        }
    }
}

/// What a partition's transaction state looks like from outside.
#[derive(Debug, PartialEq, Eq)]
struct TxnState {
    last_stable_offset: Offset,
    high_watermark: Offset,
    open: Vec<(i64, i64)>,
    aborted: Vec<AbortedTransaction>,
    /// Every producer's state (epoch, last sequence, coordinator epoch, open transaction).
    producers: Vec<ProducerSummary>,
}

fn state(dir: &std::path::Path) -> TxnState {
    let engine = open(dir, 1);
    let target = TopicPartition::new(TOPIC, 0);
    let state = block_on(async {
        let offsets = engine.offsets(&target).await.expect("offsets");
        let producers = engine.producers(&target).await.expect("producers");
        let mut open: Vec<(i64, i64)> = producers
            .iter()
            .filter(|producer| producer.current_txn_start_offset >= 0)
            .map(|producer| (producer.producer_id, producer.current_txn_start_offset))
            .collect();
        open.sort_unstable();
        // Every aborted transaction, read segment by segment up to the last stable offset.
        let mut aborted: Vec<AbortedTransaction> = Vec::new();
        let mut next = offsets.log_start_offset;
        while next < offsets.last_stable_offset {
            let read = engine.read(&target, next, 1 << 20, ReadBound::LastStable).await.expect("read");
            for entry in read.aborted {
                if !aborted.contains(&entry) {
                    aborted.push(entry);
                }
            }
            let batches = common::split_batches(&read.records);
            let Some((last, _)) = batches.last() else { break };
            next = Offset(last.last_offset() + 1);
        }
        aborted.sort_by_key(|entry| (entry.first_offset, entry.producer_id));
        TxnState {
            last_stable_offset: offsets.last_stable_offset,
            high_watermark: offsets.high_watermark,
            open,
            aborted,
            producers,
        }
    });
    engine.shutdown();
    state
}

#[test]
fn sigkill_recovery_rebuilds_the_transaction_state_exactly() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(&dir);
        return;
    }
    let seed = common::seed_from_env();
    println!("transaction crash test seed {seed} (replay with SEED={seed})");
    let mut random = seed;
    let dir = tempfile::tempdir().expect("temp dir");
    let executable = std::env::current_exe().expect("test binary path");
    let mut aborts_seen = 0;
    for cycle in 0..CYCLES {
        let mut child = Command::new(&executable)
            .args([
                "--exact",
                "sigkill_recovery_rebuilds_the_transaction_state_exactly",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let kill_after = Duration::from_millis(150 + common::next_random(&mut random) % 400);
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap child");
        let recovered = state(dir.path());
        let partition_dir = dir.path().join(format!("{TOPIC}-0"));
        std::fs::remove_file(partition_dir.join("partition.checkpoint")).expect("remove the checkpoint");
        for entry in std::fs::read_dir(&partition_dir).expect("partition dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|extension| extension == "txnindex" || extension == "snapshot") {
                std::fs::remove_file(&path).expect("remove a txnindex or producer snapshot");
            }
        }
        let rescanned = state(dir.path());
        assert_eq!(recovered, rescanned, "recovery differs from a full re-scan (cycle {cycle}, seed {seed})");
        assert!(recovered.last_stable_offset <= recovered.high_watermark);
        aborts_seen = aborts_seen.max(recovered.aborted.len());
    }
    assert!(aborts_seen > 0, "the children never aborted a transaction: nothing was proven");
}
