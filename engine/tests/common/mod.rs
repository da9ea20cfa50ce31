//! Helpers shared by the engine's integration tests.

#![allow(dead_code, unreachable_pub)]

use sluice_engine::batch::builder::{BatchBuilder, BatchOptions, NewRecord};
use sluice_engine::batch::{self, BatchHeader, LOG_OVERHEAD_BYTES};
use sluice_engine::clock::ManualClock;
use sluice_engine::{Engine, EngineConfig, TopicConfig};

/// Opens an engine with `shard_count` shards on `dir`, unpinned (tests share the cores).
pub fn open(dir: &std::path::Path, shard_count: u16) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.shard_count = Some(shard_count);
    config.pin_shards = false;
    config.retention_check_interval_ms = 100;
    Engine::open(config).expect("engine opens")
}

/// As [`open`] with one shard, on `clock`'s time.
pub fn open_with_clock(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.shard_count = Some(1);
    config.pin_shards = false;
    config.retention_check_interval_ms = 100;
    config.clock = clock.shared();
    Engine::open(config).expect("engine opens")
}

/// A transactional batch of `producer_id` (epoch 0) from `sequence`, holding `records`.
pub fn transactional_batch(producer_id: i64, sequence: i32, records: &[NewRecord<'_>]) -> Vec<u8> {
    let options = BatchOptions {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        transactional: true,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(options);
    for record in records {
        builder.push(record).expect("push");
    }
    builder.finish().expect("finish").to_vec()
}

/// A topic config with small segments so that tests roll often.
pub fn small_segments(segment_bytes: u64) -> TopicConfig {
    // Tests stamp batches with small timestamps; time-based retention would delete them.
    TopicConfig { segment_bytes, index_interval_bytes: 256, retention_ms: -1, ..TopicConfig::default() }
}

/// A one-record batch whose value is `payload`, with `timestamp_ms`.
pub fn batch_of(payload: &[u8], timestamp_ms: i64) -> Vec<u8> {
    batch::build_batch(&[payload], timestamp_ms)
}

/// Splits concatenated batches into (header, bytes) pairs, checking each one's CRC.
pub fn split_batches(bytes: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut batches = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = batch::validate(&bytes[position..], false).expect("every returned batch is valid");
        let size = header.size_bytes();
        assert!(size >= LOG_OVERHEAD_BYTES);
        batches.push((header, bytes[position..position + size].to_vec()));
        position += size;
    }
    batches
}

/// The value of the single record of a batch built by `batch_of`.
pub fn single_value(batch_bytes: &[u8]) -> Vec<u8> {
    // Layout after the 61-byte header: length, attributes, timestamp delta, offset delta,
    // key length (-1), value length, value, header count. All varints are one byte here
    // except the value length and the record length for values of 64 bytes or more.
    let mut position = batch::HEADER_SIZE_BYTES;
    let (_, used) = varint(&batch_bytes[position..]);
    position += used + 1;
    for _ in 0..3 {
        let (_, used) = varint(&batch_bytes[position..]);
        position += used;
    }
    let (length, used) = varint(&batch_bytes[position..]);
    position += used;
    batch_bytes[position..position + length as usize].to_vec()
}

fn varint(bytes: &[u8]) -> (i64, usize) {
    let mut raw: u64 = 0;
    for (index, byte) in bytes.iter().enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return ((raw >> 1) as i64 ^ -((raw & 1) as i64), index + 1);
        }
    }
    panic!("unterminated varint");
}

/// Reads every batch of a partition from `from` to the high watermark.
pub fn read_all(engine: &Engine, partition: &sluice_engine::TopicPartition, from: i64) -> Vec<(BatchHeader, Vec<u8>)> {
    sluice_engine::block_on(async {
        let mut batches = Vec::new();
        let mut offset = from;
        loop {
            let read = engine
                .read(partition, sluice_engine::Offset(offset), 64 * 1024, sluice_engine::ReadBound::HighWatermark)
                .await
                .expect("read");
            if read.records.is_empty() {
                assert_eq!(offset, read.offsets.high_watermark.0, "an empty read happens only at the high watermark");
                return batches;
            }
            for (header, bytes) in split_batches(&read.records) {
                offset = header.last_offset() + 1;
                batches.push((header, bytes));
            }
        }
    })
}

/// Every record of `partition` from `from` on, as (offset, key); the records must be keyed.
pub fn keyed_records(engine: &Engine, partition: &sluice_engine::TopicPartition, from: i64) -> Vec<(i64, Vec<u8>)> {
    read_all(engine, partition, from)
        .iter()
        .flat_map(|(header, bytes)| {
            batch::records(bytes)
                .map(|record| {
                    (header.base_offset + i64::from(record.offset_delta), record.key.expect("keyed").to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The seed of a randomized test: SEED from the environment, or the clock (printed by the
/// caller, for a replay).
pub fn seed_from_env() -> u64 {
    std::env::var("SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            | 1
    })
}

/// A small deterministic generator (xorshift) over `state`, which must not be 0.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
