//! Goal: storage faults latch only the partition they hit, are never acknowledged as durable,
//! and the time- and count-based policies (flush.messages, flush.ms, segment.ms, retention.ms)
//! act as Kafka's do.
//!
//! Method: a real engine with a `FaultInjector`; an injected fsync failure is how a test
//! observes that an fsync happened.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::batch_of;
use sluice_engine::io::{FaultInjector, FaultKind};
use sluice_engine::{
    AppendError, AppendOptions, Engine, EngineConfig, Offset, ReadError, TopicConfig, TopicPartition, block_on,
};

const FAST: AppendOptions = AppendOptions { durable: false, leader_epoch: 0 };
const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };

fn open_with_faults(dir: &std::path::Path) -> (Engine, Arc<FaultInjector>) {
    let faults = Arc::new(FaultInjector::new());
    let mut config = EngineConfig::new(dir);
    config.shard_count = Some(2);
    config.pin_shards = false;
    config.retention_check_interval_ms = 100;
    config.faults = Some(faults.clone());
    (Engine::open(config).expect("open"), faults)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_panic_in_partition_work_takes_only_that_partition_offline_until_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, faults) = open_with_faults(dir.path());
    let bad = TopicPartition::new("panicky", 0);
    let good = TopicPartition::new("calm", 0);
    block_on(async {
        engine.create_topic("panicky", 1, TopicConfig::default()).await.expect("create");
        engine.create_topic("calm", 1, TopicConfig::default()).await.expect("create");
        engine.append(&bad, batch_of(b"kept", 1), DURABLE).await.expect("before the panic");
        faults.fail(FaultKind::Panic, Some("panicky"));
        let panicked = engine.append(&bad, batch_of(b"x", 1), DURABLE).await;
        assert!(matches!(panicked, Err(AppendError::StorageFailed { .. })), "{panicked:?}");
        faults.clear();
        // Offline for everything, not only appends: its state may be half updated.
        assert!(matches!(engine.append(&bad, batch_of(b"y", 1), FAST).await, Err(AppendError::StorageFailed { .. })));
        assert!(matches!(
            engine.read(&bad, Offset(0), 100, sluice_engine::ReadBound::HighWatermark).await,
            Err(ReadError::StorageFailed { .. })
        ));
        engine.append(&good, batch_of(b"z", 1), DURABLE).await.expect("other partitions keep working");
    });
    engine.shutdown();
    let (engine, _faults) = open_with_faults(dir.path());
    let offsets = block_on(engine.offsets(&bad)).expect("reopened");
    assert_eq!(offsets.log_end_offset, Offset(1), "what was acknowledged before the panic is there");
    block_on(engine.append(&bad, batch_of(b"again", 1), DURABLE)).expect("serves again after reopening");
    engine.shutdown();
}

#[test]
fn failed_fsync_is_not_acknowledged_and_fails_only_that_partition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, faults) = open_with_faults(dir.path());
    let bad = TopicPartition::new("bad", 0);
    let good = TopicPartition::new("good", 0);
    block_on(async {
        engine.create_topic("bad", 1, TopicConfig::default()).await.expect("create");
        engine.create_topic("good", 1, TopicConfig::default()).await.expect("create");
        faults.fail(FaultKind::Sync, Some("bad"));
        assert!(matches!(engine.append(&bad, batch_of(b"x", 1), DURABLE).await, Err(AppendError::Io { .. })));
        assert!(matches!(engine.append(&bad, batch_of(b"y", 1), FAST).await, Err(AppendError::StorageFailed { .. })));
        assert!(matches!(
            engine.read(&bad, Offset(0), 100, sluice_engine::ReadBound::HighWatermark).await,
            Err(ReadError::StorageFailed { .. })
        ));
        let appended = engine.append(&good, batch_of(b"z", 1), DURABLE).await.expect("other partitions keep working");
        assert_eq!(appended.base_offset, Offset(0));
    });
    engine.shutdown();
}

#[test]
fn failed_write_latches_the_partition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, faults) = open_with_faults(dir.path());
    let partition = TopicPartition::new("w", 0);
    block_on(async {
        engine.create_topic("w", 1, TopicConfig::default()).await.expect("create");
        engine.append(&partition, batch_of(b"ok", 1), FAST).await.expect("first write");
        faults.fail_writes_after(0);
        assert!(matches!(engine.append(&partition, batch_of(b"no", 1), FAST).await, Err(AppendError::Io { .. })));
        faults.clear();
        assert!(matches!(
            engine.append(&partition, batch_of(b"no", 1), FAST).await,
            Err(AppendError::StorageFailed { .. })
        ));
    });
    engine.shutdown();
    // After a restart the partition recovers what was written before the failure.
    let (engine, _) = open_with_faults(dir.path());
    let read =
        block_on(engine.read(&partition, Offset(0), 1 << 20, sluice_engine::ReadBound::HighWatermark)).expect("read");
    assert_eq!(common::split_batches(&read.records).len(), 1);
    engine.shutdown();
}

#[test]
fn flush_messages_forces_an_fsync_on_non_durable_appends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, faults) = open_with_faults(dir.path());
    let partition = TopicPartition::new("fm", 0);
    let config = TopicConfig { flush_messages: 2, ..TopicConfig::default() };
    block_on(async {
        engine.create_topic("fm", 1, config).await.expect("create");
        faults.fail(FaultKind::Sync, Some("fm"));
        engine.append(&partition, batch_of(b"one", 1), FAST).await.expect("below flush.messages, no fsync");
        assert!(matches!(engine.append(&partition, batch_of(b"two", 1), FAST).await, Err(AppendError::Io { .. })));
    });
    engine.shutdown();
}

#[test]
fn flush_ms_fsyncs_in_the_background() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, faults) = open_with_faults(dir.path());
    let partition = TopicPartition::new("fms", 0);
    let config = TopicConfig { flush_ms: 50, ..TopicConfig::default() };
    block_on(engine.create_topic("fms", 1, config)).expect("create");
    faults.fail(FaultKind::Sync, Some("fms"));
    block_on(engine.append(&partition, batch_of(b"one", 1), FAST)).expect("append");
    wait_until("the background fsync", || {
        matches!(
            block_on(engine.read(&partition, Offset(0), 100, sluice_engine::ReadBound::HighWatermark)),
            Err(ReadError::StorageFailed { .. })
        )
    });
    engine.shutdown();
}

#[test]
fn segment_ms_rolls_and_retention_ms_deletes_old_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, _) = open_with_faults(dir.path());
    let partition = TopicPartition::new("aging", 0);
    let config = TopicConfig { segment_ms: 100, retention_ms: 60_000, ..TopicConfig::default() };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    block_on(engine.create_topic("aging", 1, config)).expect("create");
    // Two old batches (timestamps two minutes ago), then recent ones in later segments.
    for _ in 0..2 {
        block_on(engine.append(&partition, batch_of(b"old", now_ms - 120_000), FAST)).expect("append");
    }
    std::thread::sleep(Duration::from_millis(150));
    block_on(engine.append(&partition, batch_of(b"new", now_ms), FAST)).expect("append rolls by segment.ms");
    wait_until("retention.ms to delete the old segment", || {
        block_on(engine.offsets(&partition)).expect("offsets").log_start_offset == Offset(2)
    });
    let read = block_on(engine.read(&partition, Offset(2), 100, sluice_engine::ReadBound::HighWatermark))
        .expect("read the new data");
    assert_eq!(common::split_batches(&read.records).len(), 1);
    engine.shutdown();
}
