//! Criterion benches for the batch hot paths: building a batch in the client (the load
//! generator's per-record cost), and the engine's header parse and CRC32C validation (the
//! broker's per-batch cost on the produce path).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_client::batch::{BatchBuilder, BatchOptions, Compression, NewRecord};

/// 150 records of 100 bytes fill a 16 KiB batch (Kafka's default batch.size).
const RECORDS_PER_BATCH: usize = 150;
const RECORD_SIZE_BYTES: usize = 100;

fn build_batch(builder: &mut BatchBuilder, value: &[u8]) -> bytes::Bytes {
    for _ in 0..RECORDS_PER_BATCH {
        let record = NewRecord { timestamp_ms: 1_700_000_000_000, value: Some(value), ..NewRecord::default() };
        builder.push(&record).expect("fits");
    }
    builder.finish().expect("encodes")
}

fn payload() -> Vec<u8> {
    (0..RECORD_SIZE_BYTES).map(|index| b"abcdefghijklmnopqrstuvwxyz0123456789"[index % 36]).collect()
}

fn encode(c: &mut Criterion) {
    let value = payload();
    let mut group = c.benchmark_group("client_batch_encode");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    for (name, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let mut builder = BatchBuilder::new(BatchOptions { compression, ..BatchOptions::default() });
        group.bench_function(format!("{RECORDS_PER_BATCH}x{RECORD_SIZE_BYTES}B_{name}"), |b| {
            b.iter(|| black_box(build_batch(&mut builder, black_box(&value))));
        });
    }
    group.finish();
}

fn validate(c: &mut Criterion) {
    let value = payload();
    let mut builder = BatchBuilder::new(BatchOptions::default());
    let batch = build_batch(&mut builder, &value);
    let mut group = c.benchmark_group("engine_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("parse_header", |b| {
        b.iter(|| black_box(sluice_engine::batch::parse_header(black_box(&batch))).expect("valid"));
    });
    group.bench_function("validate_16KiB", |b| {
        b.iter(|| black_box(sluice_engine::batch::validate(black_box(&batch), true)).expect("valid"));
    });
    group.bench_function("crc32c_16KiB", |b| b.iter(|| black_box(sluice_engine::batch::crc32c(black_box(&batch)))));
    let large = vec![0x5au8; 1024 * 1024];
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("crc32c_1MiB", |b| b.iter(|| black_box(sluice_engine::batch::crc32c(black_box(&large)))));
    group.finish();

    let mut group = c.benchmark_group("engine_batch_patch");
    group.bench_function("patch_base_offset", |b| {
        b.iter_batched_ref(
            || batch.to_vec(),
            |bytes| sluice_engine::batch::patch_base_offset(bytes, black_box(42)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, encode, validate);
criterion_main!(benches);
