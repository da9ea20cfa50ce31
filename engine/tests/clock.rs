//! Time is passed in: the engine reads time only from the clock in its config.
//!
//! Goal: time-driven behaviour (time-based retention, `segment.ms` rolls, LogAppendTime stamps)
//! follows a manual clock, so a test of an hour-long setting runs in milliseconds and never
//! depends on the machine's speed.
//!
//! Method: open a real engine with a `ManualClock`, append batches stamped with the clock's
//! time, advance the clock past the setting, and wait (bounded, on real time) for the shard's
//! maintenance task, which sleeps on the same clock, to act.

mod common;

use std::time::{Duration, Instant};

use sluice_engine::clock::{Clock, ManualClock};
use sluice_engine::{AppendOptions, Offset, TimestampType, TopicConfig, TopicPartition, block_on};

const HOUR_MS: i64 = 3_600_000;
/// Real time the tests give the shard threads to act once the clock has moved.
const ACT_WITHIN: Duration = Duration::from_secs(20);

/// Advances the clock in maintenance-sized steps until `done` holds (or real time runs out).
fn advance_until(clock: &ManualClock, step: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + ACT_WITHIN;
    while !done() {
        assert!(Instant::now() < deadline, "the engine never acted on the advanced clock");
        clock.advance(step);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn time_retention_follows_the_manual_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = common::open_with_clock(dir.path(), &clock);
    let config = TopicConfig { segment_bytes: 512, retention_ms: HOUR_MS, ..TopicConfig::default() };
    let partition = TopicPartition::new("timed", 0);
    block_on(async {
        engine.create_topic("timed", 1, config).await.expect("create");
        for _ in 0..20 {
            let batch = common::batch_of(&[7u8; 100], clock.unix_ms());
            engine.append(&partition, batch, AppendOptions::default()).await.expect("append");
        }
    });
    let start = || block_on(engine.offsets(&partition)).expect("offsets").log_start_offset;
    // Half an hour on: nothing is old enough.
    clock.advance(Duration::from_mins(30));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(start(), Offset(0), "retention deleted records younger than retention.ms");
    // Past the hour: every closed segment goes, leaving the active one.
    clock.advance(Duration::from_secs(1801));
    advance_until(&clock, Duration::from_millis(100), || start() > Offset(0));
    let offsets = block_on(engine.offsets(&partition)).expect("offsets");
    assert!(offsets.log_start_offset > Offset(0) && offsets.log_start_offset <= offsets.high_watermark);
    engine.shutdown();
}

#[test]
fn log_append_time_is_the_clock_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(42_000);
    let engine = common::open_with_clock(dir.path(), &clock);
    let config = TopicConfig { timestamp_type: TimestampType::LogAppendTime, ..TopicConfig::default() };
    let partition = TopicPartition::new("stamped", 0);
    let appended = block_on(async {
        engine.create_topic("stamped", 1, config).await.expect("create");
        clock.advance(Duration::from_millis(58));
        engine.append(&partition, common::batch_of(b"x", 1), AppendOptions::default()).await.expect("append")
    });
    assert_eq!(appended.log_append_time_ms, 42_058);
    engine.shutdown();
}

#[test]
fn segment_ms_rolls_on_the_manual_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = common::open_with_clock(dir.path(), &clock);
    let config = TopicConfig { segment_ms: HOUR_MS, retention_ms: -1, ..TopicConfig::default() };
    let partition = TopicPartition::new("rolled", 0);
    block_on(async {
        engine.create_topic("rolled", 1, config).await.expect("create");
        engine
            .append(&partition, common::batch_of(b"a", clock.unix_ms()), AppendOptions::default())
            .await
            .expect("append");
    });
    let segment_count = || {
        std::fs::read_dir(dir.path().join("rolled-0"))
            .expect("partition dir")
            .filter(|entry| entry.as_ref().is_ok_and(|entry| entry.file_name().to_string_lossy().ends_with(".log")))
            .count()
    };
    assert_eq!(segment_count(), 1);
    clock.advance(Duration::from_millis(HOUR_MS as u64));
    advance_until(&clock, Duration::from_millis(100), || segment_count() == 2);
    engine.shutdown();
}

#[test]
fn a_moved_high_watermark_is_checkpointed_within_five_seconds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(1_700_000_000_000);
    let mut config = sluice_engine::EngineConfig::new(dir.path());
    config.shard_count = Some(1);
    config.pin_shards = false;
    // The full checkpoint comes with the retention check: an hour away, so only the high
    // watermark's own checkpoint can write the file in this test.
    config.retention_check_interval_ms = HOUR_MS as u64;
    config.clock = clock.shared();
    let engine = sluice_engine::Engine::open(config).expect("engine opens");
    let partition = TopicPartition::new("hw", 0);
    block_on(async {
        engine.create_topic("hw", 1, TopicConfig::default()).await.expect("create");
        engine.set_high_watermark(&partition, Some(Offset(0))).await.expect("replicated");
        for _ in 0..10 {
            let batch = common::batch_of(&[7u8; 100], clock.unix_ms());
            engine.append(&partition, batch, AppendOptions::default()).await.expect("append");
        }
        engine.set_high_watermark(&partition, Some(Offset(6))).await.expect("set");
    });
    let checkpointed = || {
        std::fs::read_to_string(dir.path().join("hw-0").join("partition.checkpoint"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|checkpoint| checkpoint["high_watermark"].as_i64())
    };
    advance_until(&clock, Duration::from_millis(100), || checkpointed() == Some(6));
    engine.shutdown();
}
