//! `sluicectl segments dump|verify` over data directories written by the engine itself.
//!
//! Goal: verify accepts what the engine writes, finds every kind of damage (a flipped byte in a
//! log, an index or a time index; a torn tail) with a non-zero exit, and dump prints what was
//! appended.
//!
//! Method: open `sluice_engine::Engine` on a temporary directory with small segments (so a
//! partition has several, with indexes), append known batches, shut the engine down, then run the
//! `sluicectl` binary on the files; damage copies of them byte by byte and run it again.

mod support;

use std::path::{Path, PathBuf};

use sluice_engine::{AppendOptions, Engine, EngineConfig, TopicConfig, TopicPartition};

const BATCH_COUNT: usize = 40;
const RECORDS_PER_BATCH: usize = 5;

/// Writes topic "events" with 2 partitions; partition 0 gets `BATCH_COUNT` batches over several
/// segments, partition 1 one batch. Returns the data directory.
fn write_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = EngineConfig::new(dir.path());
    config.shard_count = Some(1);
    let engine = Engine::open(config).expect("engine opens");
    // Roughly 10 batches per segment, an index entry every ~2 batches.
    let topic_config = TopicConfig { segment_bytes: 4_000, index_interval_bytes: 500, ..TopicConfig::default() };
    sluice_engine::block_on(async {
        engine.create_topic("events", 2, topic_config).await.expect("topic created");
        for batch_index in 0..BATCH_COUNT {
            let values: Vec<String> = (0..RECORDS_PER_BATCH)
                .map(|record| format!("value-{batch_index}-{record}-{}", "p".repeat(50)))
                .collect();
            let value_refs: Vec<&[u8]> = values.iter().map(String::as_bytes).collect();
            let batch = sluice_engine::batch::build_batch(&value_refs, 1_700_000_000_000 + batch_index as i64);
            let partition = TopicPartition::new("events", 0);
            engine.append(&partition, batch, AppendOptions { durable: true, leader_epoch: 0 }).await.expect("append");
        }
        let batch = sluice_engine::batch::build_batch(&[b"solo"], 1_700_000_000_000);
        engine
            .append(&TopicPartition::new("events", 1), batch, AppendOptions { durable: true, leader_epoch: 0 })
            .await
            .expect("append");
    });
    engine.shutdown();
    dir
}

fn partition_dir(data: &Path, partition: i32) -> PathBuf {
    data.join(format!("events-{partition}"))
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
        .collect();
    files.sort();
    files
}

fn flip_byte(path: &Path, position: usize) {
    let mut bytes = std::fs::read(path).expect("readable");
    assert!(position < bytes.len(), "{} has only {} bytes", path.display(), bytes.len());
    bytes[position] ^= 0x01;
    std::fs::write(path, bytes).expect("writable");
}

fn copy_dir(source: &Path, target: &Path) {
    std::fs::create_dir_all(target).expect("target dir");
    for entry in std::fs::read_dir(source).expect("readable") {
        let path = entry.expect("entry").path();
        let destination = target.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &destination);
        } else {
            std::fs::copy(&path, &destination).expect("copy");
        }
    }
}

fn verify(dir: &Path) -> support::Run {
    support::run_raw(&["segments", "verify", dir.to_str().expect("utf-8 path")], b"")
}

#[test]
fn verify_accepts_what_the_engine_wrote() {
    let data = write_data_dir();
    let segments = files_with_extension(&partition_dir(data.path(), 0), "log");
    assert!(segments.len() >= 3, "small segments roll: {segments:?}");
    let run = verify(data.path());
    let text = run.ok();
    assert!(text.contains("0 problem(s)"), "{text}");
    let report =
        support::run_raw(&["segments", "verify", data.path().to_str().expect("utf-8"), "-o", "json"], b"").json();
    assert_eq!(report["problem_count"], 0);
    let records: u64 =
        report["segments"].as_array().expect("segments").iter().map(|s| s["records"].as_u64().expect("n")).sum();
    assert_eq!(records, (BATCH_COUNT * RECORDS_PER_BATCH + 1) as u64);
    // One partition directory works as well as the data directory.
    verify(&partition_dir(data.path(), 0)).ok();
}

#[test]
fn dump_prints_batches_records_and_index_entries() {
    let data = write_data_dir();
    let dir = partition_dir(data.path(), 0);
    let first_log = &files_with_extension(&dir, "log")[0];
    let text =
        support::run_raw(&["segments", "dump", first_log.to_str().expect("utf-8"), "--records"], b"").ok().to_owned();
    assert!(text.contains("baseOffset: 0 lastOffset: 4 count: 5 position: 0"), "{text}");
    assert!(text.contains("| offset: 0 timestamp: 1700000000000 keySize: -1"), "{text}");
    assert!(text.contains("payload: value-0-0-"), "{text}");

    let all = support::run_raw(&["segments", "dump", dir.to_str().expect("utf-8"), "-o", "json"], b"").json();
    let batch_count: usize =
        all.as_array().expect("files").iter().map(|file| file["batches"].as_array().expect("b").len()).sum();
    assert_eq!(batch_count, BATCH_COUNT);

    let index = &files_with_extension(&dir, "index")[0];
    let entries = support::run_raw(&["segments", "dump", index.to_str().expect("utf-8"), "-o", "json"], b"").json();
    assert_eq!(entries["consistent"], true);
    // As Kafka writes it: the first batch (offsets 0-4) is indexed by its last offset.
    assert_eq!(entries["entries"][0]["offset"], 4);
    assert_eq!(entries["entries"][0]["position"], 0);
}

#[test]
fn verify_fails_on_a_flipped_byte_in_a_log() {
    let data = write_data_dir();
    let damaged = tempfile::tempdir().expect("temp dir");
    copy_dir(data.path(), damaged.path());
    let log = files_with_extension(&partition_dir(damaged.path(), 0), "log")[1].clone();
    // A byte in the middle of the second batch's records: only the CRC can tell.
    flip_byte(&log, 200);
    let run = verify(damaged.path());
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stdout.contains("CORRUPT") && run.stdout.contains("not valid batches"), "{}", run.stdout);
    let dump = support::run_raw(&["segments", "dump", log.to_str().expect("utf-8")], b"");
    assert_eq!(dump.status, 1);
    assert!(dump.stdout.contains("CORRUPT"), "{}", dump.stdout);
}

#[test]
fn verify_fails_on_damaged_indexes_and_torn_tails() {
    let data = write_data_dir();
    for (extension, position) in [("index", 9), ("timeindex", 3)] {
        let damaged = tempfile::tempdir().expect("temp dir");
        copy_dir(data.path(), damaged.path());
        let file = files_with_extension(&partition_dir(damaged.path(), 0), extension)[0].clone();
        flip_byte(&file, position);
        let run = verify(damaged.path());
        assert_eq!(run.status, 1, "a flipped .{extension} byte must be found:\n{}", run.stdout);
        assert!(run.stdout.contains(&format!(".{extension}")), "{}", run.stdout);
    }
    let torn = tempfile::tempdir().expect("temp dir");
    copy_dir(data.path(), torn.path());
    let logs = files_with_extension(&partition_dir(torn.path(), 0), "log");
    let last = logs.last().expect("a segment");
    let length = std::fs::metadata(last).expect("metadata").len();
    std::fs::OpenOptions::new().write(true).open(last).expect("open").set_len(length - 7).expect("truncate");
    let run = verify(torn.path());
    assert_eq!(run.status, 1, "{}", run.stdout);
}

#[test]
fn verify_of_a_missing_directory_is_an_error() {
    let run = support::run_raw(&["segments", "verify", "/nonexistent/sluice-data"], b"");
    assert!(run.error().contains("is not a directory"), "{}", run.stderr);
}
