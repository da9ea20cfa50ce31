//! Goal: the engine's partition log behaves as Kafka's does through its public API.
//! Method: open a real engine on a temp dir, drive appends, reads, rolls, retention, restarts
//! and admin calls, and compare with what was written.

mod common;

use common::{batch_of, keyed_records, open, read_all, single_value, small_segments, split_batches};
use sluice_engine::{
    AppendError, AppendOptions, Offset, OffsetQuery, ReadError, TopicConfig, TopicError, TopicPartition, block_on,
};

const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };
const FAST: AppendOptions = AppendOptions { durable: false, leader_epoch: 0 };

#[test]
fn appends_read_back_byte_identical_at_dense_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 2);
    let partition = TopicPartition::new("t", 1);
    block_on(async {
        engine.create_topic("t", 2, small_segments(4096)).await.expect("create");
        for index in 0..200i64 {
            let payload = format!("value-{index:05}").repeat(3);
            let appended =
                engine.append(&partition, batch_of(payload.as_bytes(), 1_000 + index), FAST).await.expect("append");
            assert_eq!(appended.base_offset, Offset(index));
        }
    });
    let batches = read_all(&engine, &partition, 0);
    assert_eq!(batches.len(), 200);
    for (index, (header, bytes)) in batches.iter().enumerate() {
        assert_eq!(header.base_offset, index as i64);
        assert_eq!(single_value(bytes), format!("value-{index:05}").repeat(3).into_bytes());
    }
    assert!(std::fs::read_dir(dir.path().join("t-1")).expect("dir").count() > 3, "segments rolled");
    engine.shutdown();
}

#[test]
fn read_mid_batch_offset_starts_with_the_holding_batch_and_respects_max_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("t", 0);
    block_on(async {
        engine.create_topic("t", 1, TopicConfig::default()).await.expect("create");
        let three = sluice_engine::batch::build_batch(&[b"a", b"b", b"c"], 5);
        engine.append(&partition, three.clone(), FAST).await.expect("append");
        engine.append(&partition, three.clone(), FAST).await.expect("append");
        let read = engine.read(&partition, Offset(1), 1, sluice_engine::ReadBound::HighWatermark).await.expect("read");
        let batches = split_batches(&read.records);
        assert_eq!(batches.len(), 1, "max_bytes below one batch still returns the first whole batch");
        assert_eq!(batches[0].0.base_offset, 0);
        let read =
            engine.read(&partition, Offset(4), 1 << 20, sluice_engine::ReadBound::HighWatermark).await.expect("read");
        assert_eq!(split_batches(&read.records)[0].0.base_offset, 3);
        assert_eq!(read.offsets.high_watermark, Offset(6));
        assert!(matches!(
            engine.read(&partition, Offset(7), 100, sluice_engine::ReadBound::HighWatermark).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert!(
            engine
                .read(&partition, Offset(6), 100, sluice_engine::ReadBound::HighWatermark)
                .await
                .expect("read at hw")
                .records
                .is_empty()
        );
    });
    engine.shutdown();
}

#[test]
fn restart_keeps_data_topics_and_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("keep", 0);
    {
        let engine = open(dir.path(), 2);
        block_on(async {
            engine.create_topic("keep", 3, small_segments(2048)).await.expect("create");
            for index in 0..100i64 {
                engine.append(&partition, batch_of(&index.to_be_bytes(), index), DURABLE).await.expect("append");
            }
        });
        engine.shutdown();
    }
    let engine = open(dir.path(), 3);
    assert_eq!(engine.topic("keep").expect("topic survives").partition_count(), 3);
    let batches = read_all(&engine, &partition, 0);
    assert_eq!(batches.len(), 100);
    let appended = block_on(engine.append(&partition, batch_of(b"next", 0), FAST)).expect("append after restart");
    assert_eq!(appended.base_offset, Offset(100));
    engine.shutdown();
}

#[test]
fn torn_tail_is_truncated_and_appends_continue_densely() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("torn", 0);
    {
        let engine = open(dir.path(), 1);
        block_on(async {
            engine.create_topic("torn", 1, TopicConfig::default()).await.expect("create");
            for index in 0..10i64 {
                engine.append(&partition, batch_of(b"payload", index), DURABLE).await.expect("append");
            }
        });
        engine.shutdown();
    }
    let log = dir.path().join("torn-0").join(format!("{:020}.log", 0));
    let length = std::fs::metadata(&log).expect("log").len();
    let file = std::fs::OpenOptions::new().write(true).open(&log).expect("open");
    file.set_len(length - 5).expect("tear the last batch");
    drop(file);
    std::fs::remove_file(dir.path().join("torn-0").join("partition.checkpoint")).expect("simulate a crash");
    let engine = open(dir.path(), 1);
    assert_eq!(read_all(&engine, &partition, 0).len(), 9);
    let appended = block_on(engine.append(&partition, batch_of(b"again", 0), FAST)).expect("append");
    assert_eq!(appended.base_offset, Offset(9));
    engine.shutdown();
}

#[test]
fn corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("idx", 0);
    {
        let engine = open(dir.path(), 1);
        block_on(async {
            engine.create_topic("idx", 1, small_segments(1024)).await.expect("create");
            for index in 0..60i64 {
                engine.append(&partition, batch_of(&[7u8; 40], index), FAST).await.expect("append");
            }
        });
        engine.shutdown();
    }
    for entry in std::fs::read_dir(dir.path().join("idx-0")).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|extension| extension == "index" || extension == "timeindex") {
            std::fs::write(&path, b"garbage!!").expect("corrupt index");
        }
    }
    let engine = open(dir.path(), 1);
    let batches = read_all(&engine, &partition, 0);
    assert_eq!(batches.len(), 60);
    let middle =
        block_on(engine.read(&partition, Offset(33), 1, sluice_engine::ReadBound::HighWatermark)).expect("read");
    assert_eq!(split_batches(&middle.records)[0].0.base_offset, 33);
    engine.shutdown();
}

#[test]
fn retention_bytes_deletes_old_segments_and_moves_log_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("ret", 0);
    let mut config = small_segments(1024);
    config.retention_bytes = 2048;
    block_on(async {
        engine.create_topic("ret", 1, config).await.expect("create");
        for index in 0..100i64 {
            engine.append(&partition, batch_of(&[1u8; 50], index), FAST).await.expect("append");
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let offsets = block_on(engine.offsets(&partition)).expect("offsets");
        if offsets.log_start_offset.0 > 0 {
            assert!(matches!(
                block_on(engine.read(&partition, Offset(0), 100, sluice_engine::ReadBound::HighWatermark)),
                Err(ReadError::OffsetOutOfRange { .. })
            ));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    engine.shutdown();
}

#[test]
fn delete_records_moves_log_start_durably() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("del", 0);
    {
        let engine = open(dir.path(), 1);
        block_on(async {
            engine.create_topic("del", 1, small_segments(1024)).await.expect("create");
            for index in 0..50i64 {
                engine.append(&partition, batch_of(&[2u8; 40], index), FAST).await.expect("append");
            }
            assert_eq!(engine.delete_records(&partition, Offset(30)).await.expect("delete"), Offset(30));
            assert!(matches!(
                engine.delete_records(&partition, Offset(99)).await,
                Err(ReadError::OffsetOutOfRange { .. })
            ));
        });
        engine.shutdown();
    }
    let engine = open(dir.path(), 1);
    let offsets = block_on(engine.offsets(&partition)).expect("offsets");
    assert_eq!(offsets.log_start_offset, Offset(30));
    assert_eq!(read_all(&engine, &partition, 30).len(), 20);
    engine.shutdown();
}

#[test]
fn removed_segments_give_their_space_back_once_readers_let_go() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("space", 0);
    block_on(async {
        engine.create_topic("space", 1, small_segments(1024)).await.expect("create");
        for index in 0..50i64 {
            engine.append(&partition, batch_of(&[3u8; 40], index), FAST).await.expect("append");
        }
    });
    // A zero-copy send in flight holds the first segment while DeleteRecords removes it.
    let held = block_on(engine.read_range(&partition, Offset(0), 100, sluice_engine::ReadBound::HighWatermark))
        .expect("range")
        .range
        .expect("data");
    let before = held.read_to_vec().expect("read before");
    assert_eq!(block_on(engine.delete_records(&partition, Offset(30))).expect("delete"), Offset(30));
    assert!(deleted_segment_bytes(dir.path()) > 0, "the held segment is unlinked but kept");
    assert_eq!(held.read_to_vec().expect("read after"), before, "a held range reads back whole");
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while deleted_segment_bytes(dir.path()) > 0 {
        assert!(std::time::Instant::now() < deadline, "removed segments kept their space");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(read_all(&engine, &partition, 30).len(), 20);
    engine.shutdown();
}

/// Bytes of unlinked files under `dir` that this process still holds open.
fn deleted_segment_bytes(dir: &std::path::Path) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("fd table").flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy();
        if target.starts_with(&*dir.to_string_lossy()) && target.ends_with(" (deleted)") {
            bytes += std::fs::metadata(entry.path()).map_or(0, |metadata| metadata.len());
        }
    }
    bytes
}

#[test]
fn list_offsets_by_time_and_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("time", 0);
    block_on(async {
        engine.create_topic("time", 1, small_segments(1024)).await.expect("create");
        for index in 0..40i64 {
            engine.append(&partition, batch_of(&[3u8; 30], 10_000 + index * 10), FAST).await.expect("append");
        }
        let at = |query| {
            let engine = engine.clone();
            let partition = partition.clone();
            async move { engine.list_offsets(&partition, query).await.expect("list") }
        };
        assert_eq!(at(OffsetQuery::Earliest).await.expect("some").offset, Offset(0));
        assert_eq!(at(OffsetQuery::Latest).await.expect("some").offset, Offset(40));
        assert_eq!(at(OffsetQuery::Timestamp(10_125)).await.expect("some").offset, Offset(13));
        assert_eq!(at(OffsetQuery::Timestamp(10_130)).await.expect("some").offset, Offset(13));
        assert_eq!(at(OffsetQuery::Timestamp(0)).await.expect("some").offset, Offset(0));
        assert!(at(OffsetQuery::Timestamp(99_999)).await.is_none());
        let max = at(OffsetQuery::MaxTimestamp).await.expect("some");
        assert_eq!((max.offset, max.timestamp_ms), (Offset(39), 10_390));
    });
    engine.shutdown();
}

#[test]
fn invalid_batches_get_typed_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("bad", 0);
    block_on(async {
        let config = TopicConfig { max_message_bytes: 200, ..TopicConfig::default() };
        engine.create_topic("bad", 1, config).await.expect("create");
        let mut corrupt = batch_of(b"hello", 1);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(engine.append(&partition, corrupt, FAST).await, Err(AppendError::InvalidBatch { .. })));
        assert!(matches!(engine.append(&partition, vec![0; 10], FAST).await, Err(AppendError::InvalidBatch { .. })));
        assert!(matches!(
            engine.append(&partition, batch_of(&[0; 300], 1), FAST).await,
            Err(AppendError::TooLarge { .. })
        ));
        let unknown = TopicPartition::new("bad", 5);
        assert!(matches!(
            engine.append(&unknown, batch_of(b"x", 1), FAST).await,
            Err(AppendError::UnknownPartition { .. })
        ));
        assert_eq!(engine.offsets(&partition).await.expect("offsets").log_end_offset, Offset(0));
    });
    engine.shutdown();
}

#[test]
fn topic_admin_validates_and_persists() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let engine = open(dir.path(), 2);
        block_on(async {
            engine.create_topic("a", 2, TopicConfig::default()).await.expect("create");
            assert!(matches!(
                engine.create_topic("a", 1, TopicConfig::default()).await,
                Err(TopicError::AlreadyExists { .. })
            ));
            assert!(matches!(
                engine.create_topic("a/b", 1, TopicConfig::default()).await,
                Err(TopicError::InvalidName { .. })
            ));
            assert!(matches!(
                engine.create_topic("z", 0, TopicConfig::default()).await,
                Err(TopicError::InvalidPartitions { .. })
            ));
            engine.create_partitions("a", 5).await.expect("grow");
            assert!(matches!(engine.create_partitions("a", 3).await, Err(TopicError::InvalidPartitions { .. })));
            let mut config = TopicConfig::default();
            config.set("retention.ms", "1234").expect("valid");
            engine.alter_topic_config("a", config).await.expect("alter");
            engine.create_topic("gone", 1, TopicConfig::default()).await.expect("create");
            engine.append(&TopicPartition::new("gone", 0), batch_of(b"x", 1), FAST).await.expect("append");
            engine.delete_topic("gone").await.expect("delete");
            assert!(matches!(engine.delete_topic("gone").await, Err(TopicError::UnknownTopic { .. })));
        });
        engine.shutdown();
    }
    assert!(!dir.path().join("gone-0").exists());
    let engine = open(dir.path(), 2);
    let topic = engine.topic("a").expect("a survives");
    assert_eq!(topic.partition_count(), 5);
    assert_eq!(topic.config.retention_ms, 1234);
    assert!(engine.topic("gone").is_none());
    block_on(engine.append(&TopicPartition::new("a", 4), batch_of(b"x", 1), FAST)).expect("new partition works");
    engine.shutdown();
}

#[test]
fn idempotent_duplicates_return_the_original_offsets_across_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let partition = TopicPartition::new("idem", 0);
    let with_producer = |sequence: i32| {
        let mut bytes = batch_of(format!("seq-{sequence}").as_bytes(), 1);
        bytes[43..51].copy_from_slice(&77i64.to_be_bytes());
        bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
        bytes[53..57].copy_from_slice(&sequence.to_be_bytes());
        let crc = sluice_engine::batch::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    };
    {
        let engine = open(dir.path(), 1);
        block_on(async {
            engine.create_topic("idem", 1, TopicConfig::default()).await.expect("create");
            engine.append(&partition, batch_of(b"plain", 1), FAST).await.expect("append");
            for sequence in 0..3 {
                engine.append(&partition, with_producer(sequence), DURABLE).await.expect("append");
            }
            let again = engine.append(&partition, with_producer(1), DURABLE).await.expect("duplicate");
            assert!(again.duplicate);
            assert_eq!(again.base_offset, Offset(2));
            assert!(matches!(
                engine.append(&partition, with_producer(9), DURABLE).await,
                Err(AppendError::OutOfOrderSequence { .. })
            ));
        });
        engine.shutdown();
    }
    let engine = open(dir.path(), 1);
    let again = block_on(engine.append(&partition, with_producer(2), DURABLE)).expect("duplicate after restart");
    assert!(again.duplicate);
    assert_eq!(again.base_offset, Offset(3));
    assert_eq!(block_on(engine.offsets(&partition)).expect("offsets").log_end_offset, Offset(4));
    engine.shutdown();
}

#[test]
fn listener_fires_on_new_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 2);
    let partition = TopicPartition::new("poll", 0);
    block_on(engine.create_topic("poll", 1, TopicConfig::default())).expect("create");
    let listener = engine.listen(&partition).expect("listener");
    let writer = engine.clone();
    let target = partition.clone();
    let handle = std::thread::spawn(move || {
        block_on(writer.append(&target, batch_of(b"wake", 1), FAST)).expect("append");
    });
    block_on(listener);
    handle.join().expect("writer");
    assert_eq!(block_on(engine.offsets(&partition)).expect("offsets").high_watermark, Offset(1));
    engine.shutdown();
}

#[test]
fn inspect_reports_batches_and_indexes_of_a_closed_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    block_on(async {
        engine.create_topic("ins", 1, small_segments(1 << 20)).await.expect("create");
        for index in 0..30i64 {
            engine.append(&TopicPartition::new("ins", 0), batch_of(&[5u8; 200], index), FAST).await.expect("append");
        }
    });
    engine.shutdown();
    let log = dir.path().join("ins-0").join(format!("{:020}.log", 0));
    let report = sluice_engine::inspect::scan_log(&log).expect("scan");
    assert!(report.is_clean());
    assert_eq!(report.batches.len(), 30);
    assert_eq!(report.batches[29].1.base_offset, 29);
    let index =
        sluice_engine::inspect::read_index(&log.with_extension("index"), report.file_size_bytes).expect("index");
    assert!(
        matches!(index, sluice_engine::inspect::IndexReport::Offsets(entries) if entries.len() > 1 && entries[0] == (0, 0))
    );
}

#[test]
fn compaction_keeps_the_last_record_per_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("compacted", 0);
    let config = compacted(&[]);
    block_on(async {
        engine.create_topic("compacted", 1, config).await.expect("create");
        for round in 0..20u32 {
            for key in 0..10u32 {
                let key_bytes = format!("key-{key}");
                let value = format!("value-{round}-{key}");
                let batch =
                    sluice_engine::batch::build_keyed_batch(&[(key_bytes.as_bytes(), Some(value.as_bytes()))], 1);
                engine.append(&partition, batch, FAST).await.expect("append");
            }
        }
    });
    let total_written = 200;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let remaining = loop {
        let records = keyed_records(&engine, &partition, 0);
        if records.len() < total_written || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(remaining.len() < total_written, "compaction never ran");
    let offsets: Vec<i64> = remaining.iter().map(|(offset, _)| *offset).collect();
    assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]), "offsets stay increasing");
    for key in 0..10u32 {
        let key_bytes = format!("key-{key}").into_bytes();
        let last = remaining.iter().filter(|(_, found)| *found == key_bytes).map(|(offset, _)| *offset).max();
        assert_eq!(last, Some(190 + i64::from(key)), "the last record of each key survives");
    }
    let more = sluice_engine::batch::build_keyed_batch(&[(b"key-more", Some(b"more"))], 1);
    let appended = block_on(engine.append(&partition, more, FAST)).expect("append after compaction");
    assert_eq!(appended.base_offset, Offset(200));
    let before_restart = read_all(&engine, &partition, 0);
    engine.shutdown();
    let engine = open(dir.path(), 1);
    assert_eq!(block_on(engine.offsets(&partition)).expect("offsets").log_end_offset, Offset(201));
    let after_restart = read_all(&engine, &partition, 0);
    let offsets_of = |batches: &[(sluice_engine::batch::BatchHeader, Vec<u8>)]| -> Vec<(i64, Vec<u8>)> {
        batches.iter().map(|(header, bytes)| (header.base_offset, bytes.clone())).collect()
    };
    assert_eq!(offsets_of(&after_restart), offsets_of(&before_restart), "the compacted log reads back after a restart");
    // Reads from every surviving offset start at the batch holding it (indexes match the log).
    for (header, _) in &after_restart {
        let from =
            block_on(engine.read(&partition, Offset(header.base_offset), 64, sluice_engine::ReadBound::HighWatermark))
                .expect("read");
        let first = sluice_engine::batch::validate(&from.records, false).expect("whole batch");
        assert_eq!(first.base_offset, header.base_offset);
    }
    engine.shutdown();
}

#[test]
fn compaction_keeps_an_unchanged_prefix_and_every_unique_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("prefix", 0);
    let config = compacted(&[]);
    let keyed = |key: &str, value: &str| {
        sluice_engine::batch::build_keyed_batch(&[(key.as_bytes(), Some(value.as_bytes()))], 1)
    };
    block_on(async {
        engine.create_topic("prefix", 1, config).await.expect("create");
        // Unique keys first, so the first segment's leading batches survive whole.
        for unique in 0..6 {
            engine.append(&partition, keyed(&format!("unique-{unique}"), "kept"), FAST).await.expect("append");
        }
        for round in 0..30 {
            for key in 0..3 {
                let value = format!("v{round}");
                engine.append(&partition, keyed(&format!("hot-{key}"), &value), FAST).await.expect("append");
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let remaining = loop {
        let remaining = keyed_records(&engine, &partition, 0);
        if remaining.len() < 96 {
            break remaining;
        }
        assert!(std::time::Instant::now() < deadline, "compaction never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let expected_prefix: Vec<(i64, Vec<u8>)> =
        (0..6).map(|unique| (unique, format!("unique-{unique}").into_bytes())).collect();
    assert_eq!(remaining[..6], expected_prefix[..], "the leading unique keys survive in place");
    for key in 0..3 {
        let name = format!("hot-{key}").into_bytes();
        let last = remaining.iter().filter(|(_, found)| *found == name).map(|(offset, _)| *offset).max();
        assert_eq!(last, Some(6 + 29 * 3 + key), "the last record of each hot key survives");
    }
    engine.shutdown();
    let engine = open(dir.path(), 1);
    assert_eq!(keyed_records(&engine, &partition, 0), remaining, "the compacted log reads back after a restart");
    engine.shutdown();
}

/// A compacted topic's config with 1 KiB segments, plus `settings`.
fn compacted(settings: &[(&str, &str)]) -> TopicConfig {
    let mut config = small_segments(1024);
    config.set("cleanup.policy", "compact").expect("valid");
    for (name, value) in settings {
        config.set(name, value).expect("valid");
    }
    config
}

/// Appends one single-record batch per key, each with `value`, stamped at 1 ms (long ago).
fn append_keyed(engine: &sluice_engine::Engine, partition: &TopicPartition, keys: &[String], value: &str) {
    append_keyed_at(engine, partition, keys, value, 1);
}

/// [`append_keyed`] with the batches stamped at `timestamp_ms`.
fn append_keyed_at(
    engine: &sluice_engine::Engine,
    partition: &TopicPartition,
    keys: &[String],
    value: &str,
    timestamp_ms: i64,
) {
    block_on(async {
        for key in keys {
            let batch =
                sluice_engine::batch::build_keyed_batch(&[(key.as_bytes(), Some(value.as_bytes()))], timestamp_ms);
            engine.append(partition, batch, FAST).await.expect("append");
        }
    });
}

/// Polls `keyed_records` until `done` holds for them, for at most `seconds`.
fn wait_for_keyed(
    engine: &sluice_engine::Engine,
    partition: &TopicPartition,
    seconds: u64,
    done: impl Fn(&[(i64, Vec<u8>)]) -> bool,
) -> Vec<(i64, Vec<u8>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let records = keyed_records(engine, partition, 0);
        if done(&records) || std::time::Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How many records of `key` the log holds.
fn versions_of(records: &[(i64, Vec<u8>)], key: &str) -> usize {
    records.iter().filter(|(_, found)| found == key.as_bytes()).count()
}

#[test]
fn compaction_with_a_small_key_map_cleans_in_several_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut engine_config = sluice_engine::EngineConfig::new(dir.path());
    engine_config.shard_count = Some(1);
    engine_config.pin_shards = false;
    engine_config.retention_check_interval_ms = 100;
    // 1 KiB of map: 28 keys per pass, against 120 keys written.
    engine_config.compaction_map_bytes = 1024;
    let engine = sluice_engine::Engine::open(engine_config).expect("engine opens");
    let partition = TopicPartition::new("small-map", 0);
    let config = compacted(&[("min.cleanable.dirty.ratio", "0")]);
    block_on(engine.create_topic("small-map", 1, config)).expect("create");
    let keys: Vec<String> = (0..120).map(|key| format!("key-{key:03}")).collect();
    for round in 0..3 {
        append_keyed(&engine, &partition, &keys, &format!("round-{round}"));
    }
    // Unique keys after them close every segment holding the 360 records above.
    let fillers: Vec<String> = (0..40).map(|filler| format!("filler-{filler}")).collect();
    append_keyed(&engine, &partition, &fillers, "filler");
    let remaining =
        wait_for_keyed(&engine, &partition, 30, |records| keys.iter().all(|key| versions_of(records, key) == 1));
    for (index, key) in keys.iter().enumerate() {
        let offsets: Vec<i64> =
            remaining.iter().filter(|(_, found)| found == key.as_bytes()).map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, vec![240 + index as i64], "only the last record of {key} is left");
    }
    assert!(fillers.iter().all(|filler| versions_of(&remaining, filler) == 1), "unique keys all survive");
    engine.shutdown();
}

#[test]
fn compaction_waits_for_the_dirty_ratio_and_remembers_what_it_cleaned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("ratio", 0);
    let mut config = compacted(&[("min.cleanable.dirty.ratio", "0")]);
    block_on(engine.create_topic("ratio", 1, config.clone())).expect("create");
    let keys: Vec<String> = (0..10).map(|key| format!("key-{key}")).collect();
    let fillers = |from: usize| (from..from + 40).map(|filler| format!("filler-{filler}")).collect::<Vec<_>>();
    for round in 0..20 {
        append_keyed(&engine, &partition, &keys, &format!("v{round}"));
    }
    append_keyed(&engine, &partition, &fillers(0), "filler");
    let compacted =
        wait_for_keyed(&engine, &partition, 10, |records| keys.iter().all(|key| versions_of(records, key) == 1));
    assert!(keys.iter().all(|key| versions_of(&compacted, key) == 1), "compacted while the ratio was 0");
    config.set("min.cleanable.dirty.ratio", "0.9").expect("valid");
    block_on(engine.alter_topic_config("ratio", config.clone())).expect("alter");
    // Two more versions of each key, then a few fillers to close their segment: dirty bytes are
    // now well under 90% of the cleanable log, so no pass runs, however long we wait.
    for round in 20..22 {
        append_keyed(&engine, &partition, &keys, &format!("v{round}"));
    }
    append_keyed(&engine, &partition, &fillers(40), "filler");
    let pending = |engine: &sluice_engine::Engine| {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        keyed_records(engine, &partition, 0)
    };
    assert_eq!(versions_of(&pending(&engine), "key-0"), 3, "no pass below the dirty ratio");
    // After a restart the checkpoint still says which part is clean.
    engine.shutdown();
    let engine = open(dir.path(), 1);
    assert_eq!(versions_of(&pending(&engine), "key-0"), 3, "the clean part survives a restart");
    // Any dirty part is enough at ratio 0.
    config.set("min.cleanable.dirty.ratio", "0").expect("valid");
    block_on(engine.alter_topic_config("ratio", config)).expect("alter");
    let remaining = wait_for_keyed(&engine, &partition, 10, |records| versions_of(records, "key-0") == 1);
    for (index, key) in keys.iter().enumerate() {
        let last: Vec<i64> =
            remaining.iter().filter(|(_, found)| found == key.as_bytes()).map(|(offset, _)| *offset).collect();
        assert_eq!(last, vec![200 + 40 + 10 + index as i64], "only the last record of {key} is left");
    }
    engine.shutdown();
}

#[test]
fn compaction_honours_the_minimum_and_maximum_compaction_lag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let keys: Vec<String> = (0..10).map(|key| format!("key-{key}")).collect();
    let fillers: Vec<String> = (0..40).map(|filler| format!("filler-{filler}")).collect();
    let now_ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis(),
    )
    .expect("fits");
    let settle = |engine: &sluice_engine::Engine, partition: &TopicPartition| {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        keyed_records(engine, partition, 0)
    };

    // Records younger than min.compaction.lag.ms are not cleanable, whatever the dirty ratio.
    let young = TopicPartition::new("young", 0);
    let mut config = compacted(&[("min.cleanable.dirty.ratio", "0"), ("min.compaction.lag.ms", "3600000")]);
    block_on(engine.create_topic("young", 1, config.clone())).expect("create");
    for round in 0..5 {
        append_keyed_at(&engine, &young, &keys, &format!("v{round}"), now_ms);
    }
    append_keyed_at(&engine, &young, &fillers, "filler", now_ms);
    assert_eq!(versions_of(&settle(&engine, &young), "key-0"), 5, "an hour's lag keeps every version");
    config.set("min.compaction.lag.ms", "0").expect("valid");
    block_on(engine.alter_topic_config("young", config)).expect("alter");
    let remaining = wait_for_keyed(&engine, &young, 10, |records| versions_of(records, "key-0") == 1);
    assert_eq!(versions_of(&remaining, "key-0"), 1, "without the lag they are cleaned");

    // A dirty record older than max.compaction.lag.ms forces a pass below the dirty ratio.
    let overdue = TopicPartition::new("overdue", 0);
    let mut config = compacted(&[("min.cleanable.dirty.ratio", "0")]);
    block_on(engine.create_topic("overdue", 1, config.clone())).expect("create");
    for round in 0..20 {
        append_keyed(&engine, &overdue, &keys, &format!("v{round}"));
    }
    append_keyed(&engine, &overdue, &fillers, "filler");
    wait_for_keyed(&engine, &overdue, 10, |records| keys.iter().all(|key| versions_of(records, key) == 1));
    config.set("min.cleanable.dirty.ratio", "1").expect("valid");
    block_on(engine.alter_topic_config("overdue", config.clone())).expect("alter");
    for round in 20..22 {
        append_keyed(&engine, &overdue, &keys, &format!("v{round}"));
    }
    let more: Vec<String> = (40..80).map(|filler| format!("filler-{filler}")).collect();
    append_keyed(&engine, &overdue, &more, "filler");
    assert_eq!(versions_of(&settle(&engine, &overdue), "key-0"), 3, "below the dirty ratio, no pass");
    // The records are stamped at 1 ms: a day's maximum lag is long over.
    config.set("max.compaction.lag.ms", "86400000").expect("valid");
    block_on(engine.alter_topic_config("overdue", config)).expect("alter");
    let remaining = wait_for_keyed(&engine, &overdue, 10, |records| versions_of(records, "key-0") == 1);
    assert_eq!(versions_of(&remaining, "key-0"), 1, "the overdue records are cleaned");
    engine.shutdown();
}

#[test]
fn file_ranges_start_at_the_holding_batch_and_match_byte_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 2);
    let partition = TopicPartition::new("ranges", 0);
    block_on(async {
        engine.create_topic("ranges", 1, small_segments(2048)).await.expect("create");
        for index in 0..60i64 {
            let values: Vec<Vec<u8>> = (0..3).map(|record| format!("r{index}-{record}").into_bytes()).collect();
            let views: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            engine.append(&partition, sluice_engine::batch::build_batch(&views, index), FAST).await.expect("append");
        }
    });
    for offset in [0i64, 1, 2, 3, 50, 100, 179] {
        let ranged =
            block_on(engine.read_range(&partition, Offset(offset), 300, sluice_engine::ReadBound::HighWatermark))
                .expect("range read");
        let range = ranged.range.expect("data below the high watermark");
        let bytes = range.read_to_vec().expect("pread");
        assert_eq!(bytes.len(), range.size_bytes as usize);
        let whole = sluice_engine::batch::validate(&bytes, false).expect("the first batch is whole");
        assert!(whole.base_offset <= offset && whole.last_offset() >= offset, "starts at the holding batch");
        let read = block_on(engine.read(&partition, Offset(offset), 300, sluice_engine::ReadBound::HighWatermark))
            .expect("byte read");
        assert!(bytes.starts_with(&read.records), "whole batches agree with byte reads");
    }
    let at_end = block_on(engine.read_range(&partition, Offset(180), 300, sluice_engine::ReadBound::HighWatermark))
        .expect("range read at hw");
    assert!(at_end.range.is_none());
    assert!(matches!(
        block_on(engine.read_range(&partition, Offset(181), 300, sluice_engine::ReadBound::HighWatermark)),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    engine.shutdown();
}

#[test]
fn spawn_on_from_a_shard_reaches_another_shard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 2);
    let (sender, receiver) = std::sync::mpsc::channel();
    let inner = engine.clone();
    assert!(engine.spawn_on(sluice_engine::ShardId(0), move || async move {
        let from = inner.current_shard();
        let target = inner.clone();
        assert!(inner.spawn_on(sluice_engine::ShardId(1), move || async move {
            sender.send((from, target.current_shard())).expect("test waits");
        }));
    }));
    let hops = receiver.recv_timeout(std::time::Duration::from_secs(10)).expect("task ran on shard 1");
    assert_eq!(hops, (Some(sluice_engine::ShardId(0)), Some(sluice_engine::ShardId(1))));
    engine.shutdown();
}

#[test]
fn a_compacted_log_reads_back_when_recovery_scans_segments_compaction_emptied() {
    // A power loss can take the checkpoint written after a compaction pass: recovery then
    // scans the cleaned segments instead of trusting them, and one that compaction emptied
    // holds no batch at all. Reads from any offset must still step over it.
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path(), 1);
    let partition = TopicPartition::new("emptied", 0);
    block_on(engine.create_topic("emptied", 1, compacted(&[("min.cleanable.dirty.ratio", "0")]))).expect("create");
    let keys: Vec<String> = (0..10).map(|key| format!("key-{key}")).collect();
    for round in 0..6 {
        append_keyed(&engine, &partition, &keys, &format!("round-{round}"));
    }
    let fillers: Vec<String> = (0..30).map(|filler| format!("filler-{filler}")).collect();
    append_keyed(&engine, &partition, &fillers, "filler");
    let remaining =
        wait_for_keyed(&engine, &partition, 30, |records| keys.iter().all(|key| versions_of(records, key) == 1));
    let end = block_on(engine.offsets(&partition)).expect("offsets").high_watermark.0;
    engine.shutdown();
    let segments = std::fs::read_dir(dir.path().join("emptied-0"))
        .expect("partition dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "log"))
        .map(|entry| entry.metadata().expect("metadata").len())
        .collect::<Vec<_>>();
    assert!(segments.contains(&0), "compaction emptied a segment (segment sizes {segments:?})");
    std::fs::remove_file(dir.path().join("emptied-0").join("partition.checkpoint")).expect("remove the checkpoint");
    let engine = open(dir.path(), 1);
    assert_eq!(keyed_records(&engine, &partition, 0), remaining, "the compacted log reads back after the scan");
    for offset in 0..end {
        let read = block_on(engine.read(&partition, Offset(offset), 1024, sluice_engine::ReadBound::HighWatermark))
            .unwrap_or_else(|error| panic!("read at {offset}: {error}"));
        let first = sluice_engine::batch::validate(&read.records, false).expect("a whole batch");
        assert!(first.last_offset() >= offset, "a read at {offset} returned the batch at {}", first.base_offset);
    }
    engine.shutdown();
}
