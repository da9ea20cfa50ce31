//! Goal: zero-filling ahead of durable appends, and starting writeback early behind
//! non-durable ones, change nothing a reader, a restart or a crash can see: reads stop at the
//! last batch, a clean close leaves each segment file exactly its batches, recovery drops a zero
//! tail a crash left behind, and appends racing a fill are never overwritten by its zeros.
//!
//! Method: a real engine with a small `preallocate_bytes`; the files are checked with the
//! inspection API, and a crash is simulated by copying the data directory while the engine runs
//! (every acknowledged durable append is on disk then, and the zeros past it too).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{batch_of, read_all, single_value, small_segments};
use sluice_engine::inspect::scan_log;
use sluice_engine::{AppendOptions, Engine, EngineConfig, Offset, TopicConfig, TopicPartition, block_on};

const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };
const FAST: AppendOptions = AppendOptions { durable: false, leader_epoch: 0 };

fn open_with(dir: &Path, preallocate_bytes: u64) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.shard_count = Some(1);
    config.pin_shards = false;
    config.preallocate_bytes = preallocate_bytes;
    // Early writeback every few appends, so that it runs beside the fills in every test here.
    config.writeback_bytes = 8 * 1024;
    Engine::open(config).expect("engine opens")
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("log file").len()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn payload(index: usize) -> Vec<u8> {
    format!("record-{index}-{}", "z".repeat(index % 300)).into_bytes()
}

#[test]
fn zeros_ahead_are_never_read_and_a_clean_close_truncates_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("ahead", 0);
    let log = dir.path().join("ahead-0").join(format!("{:020}.log", 0));
    {
        let engine = open_with(dir.path(), 256 * 1024);
        block_on(async {
            engine.create_topic("ahead", 1, TopicConfig::default()).await.expect("create");
            for index in 0..50 {
                engine.append(&partition, batch_of(&payload(index), 1), DURABLE).await.expect("append");
            }
        });
        let report = scan_log(&log).expect("scan");
        assert_eq!(report.batches.len(), 50);
        wait_until("the fill past the appended batches", || file_size(&log) > report.valid_size_bytes);
        let report = scan_log(&log).expect("scan");
        assert!(report.zero_tail && report.is_clean(), "the space past the batches is zeros: {report:?}");
        let batches = read_all(&engine, &partition, 0);
        assert_eq!(batches.len(), 50, "readers stop at the last batch");
        for (index, (_, bytes)) in batches.iter().enumerate() {
            assert_eq!(single_value(bytes), payload(index));
        }
        engine.shutdown();
    }
    let report = scan_log(&log).expect("scan");
    assert_eq!(report.file_size_bytes, report.valid_size_bytes, "close truncates the zeros");
    assert!(!report.zero_tail);
    let engine = open_with(dir.path(), 256 * 1024);
    assert_eq!(read_all(&engine, &partition, 0).len(), 50);
    let appended = block_on(engine.append(&partition, batch_of(b"after", 1), DURABLE)).expect("append");
    assert_eq!(appended.base_offset, Offset(50));
    engine.shutdown();
}

#[test]
fn recovery_drops_the_zero_tail_a_crash_leaves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crashed = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("crashed", 0);
    let engine = open_with(dir.path(), 256 * 1024);
    block_on(async {
        engine.create_topic("crashed", 1, TopicConfig::default()).await.expect("create");
        for index in 0..40 {
            engine.append(&partition, batch_of(&payload(index), 1), DURABLE).await.expect("append");
        }
    });
    let live_log = dir.path().join("crashed-0").join(format!("{:020}.log", 0));
    let valid = scan_log(&live_log).expect("scan").valid_size_bytes;
    wait_until("the fill past the appended batches", || file_size(&live_log) > valid);
    copy_dir(dir.path(), crashed.path());
    engine.shutdown();

    let log = crashed.path().join("crashed-0").join(format!("{:020}.log", 0));
    assert!(file_size(&log) > valid, "the copy holds the zeros as a crash would");
    let engine = open_with(crashed.path(), 256 * 1024);
    let batches = read_all(&engine, &partition, 0);
    assert_eq!(batches.len(), 40);
    for (index, (header, bytes)) in batches.iter().enumerate() {
        assert_eq!(header.base_offset, index as i64);
        assert_eq!(single_value(bytes), payload(index));
    }
    assert_eq!(file_size(&log), valid, "recovery truncated the zeros");
    let appended = block_on(engine.append(&partition, batch_of(b"after", 1), DURABLE)).expect("append");
    assert_eq!(appended.base_offset, Offset(40));
    engine.shutdown();
}

#[test]
fn appends_racing_fills_keep_their_bytes_across_rolls_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("race", 0);
    let partition_dir = dir.path().join("race-0");
    // Fills of 8-16 KiB against appends of up to 2 KiB from 8 threads: appends often reserve
    // space a running fill covers, and segments of 96 KiB roll every few dozen appends.
    let engine = open_with(dir.path(), 16 * 1024);
    block_on(engine.create_topic("race", 1, small_segments(96 * 1024))).expect("create");
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let engine = engine.clone();
            let partition = partition.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for step in 0..60 {
                    let index = writer * 1000 + step;
                    let options = if step % 3 == 0 { FAST } else { DURABLE };
                    let value = format!("{index}:{}", "w".repeat((index * 7) % 2000)).into_bytes();
                    let appended = block_on(engine.append(&partition, batch_of(&value, 1), options)).expect("append");
                    acknowledged.push((appended.base_offset.0, value));
                }
                acknowledged
            })
        })
        .collect();
    let mut expected: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for writer in writers {
        expected.extend(writer.join().expect("writer"));
    }
    // A last durable append syncs, and so truncates, every segment rolled before it.
    let last = block_on(engine.append(&partition, batch_of(b"last", 1), DURABLE)).expect("append");
    expected.insert(last.base_offset.0, b"last".to_vec());
    let check = |engine: &Engine| {
        let batches = read_all(engine, &partition, 0);
        assert_eq!(batches.len(), expected.len());
        for ((offset, value), (header, bytes)) in expected.iter().zip(&batches) {
            assert_eq!(header.base_offset, *offset);
            assert_eq!(&single_value(bytes), value, "bytes at offset {offset}");
        }
    };
    check(&engine);
    let logs = log_files(&partition_dir);
    assert!(logs.len() > 3, "segments rolled: {logs:?}");
    for rolled in &logs[..logs.len() - 1] {
        let report = scan_log(rolled).expect("scan");
        assert_eq!(report.file_size_bytes, report.valid_size_bytes, "rolled segment {} truncated", rolled.display());
    }
    engine.shutdown();
    for log in log_files(&partition_dir) {
        let report = scan_log(&log).expect("scan");
        assert_eq!(report.file_size_bytes, report.valid_size_bytes, "{} holds only batches", log.display());
    }
    let engine = open_with(dir.path(), 16 * 1024);
    check(&engine);
    engine.shutdown();
}

#[test]
fn non_durable_appends_never_preallocate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("buffered", 0);
    let engine = open_with(dir.path(), 256 * 1024);
    block_on(async {
        engine.create_topic("buffered", 1, TopicConfig::default()).await.expect("create");
        for index in 0..30 {
            engine.append(&partition, batch_of(&payload(index), 1), FAST).await.expect("append");
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let log = dir.path().join("buffered-0").join(format!("{:020}.log", 0));
    let report = scan_log(&log).expect("scan");
    assert_eq!(report.file_size_bytes, report.valid_size_bytes);
    engine.shutdown();
}
