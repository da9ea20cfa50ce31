//! Criterion benches for the engine's hot paths: append (durable and not) and read, with
//! 16 KiB batches on a real temp directory.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::batch::build_batch;
use sluice_engine::{AppendOptions, Engine, EngineConfig, Offset, TopicConfig, TopicPartition, block_on};

const BATCH_SIZE_BYTES: usize = 16 * 1024;

fn engine(dir: &std::path::Path) -> Engine {
    let mut config = EngineConfig::new(dir);
    config.shard_count = Some(1);
    config.pin_shards = false;
    Engine::open(config).expect("open")
}

fn batch() -> Vec<u8> {
    let records: Vec<Vec<u8>> = (0..BATCH_SIZE_BYTES / 128).map(|index| vec![index as u8; 110]).collect();
    let values: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    build_batch(&values, 1_700_000_000_000)
}

fn bench_append(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path());
    block_on(engine.create_topic("bench", 1, TopicConfig::default())).expect("create");
    let partition = TopicPartition::new("bench", 0);
    let template = batch();
    let mut group = criterion.benchmark_group("append_16k");
    group.throughput(Throughput::Bytes(template.len() as u64));
    for durable in [false, true] {
        let name = if durable { "durable" } else { "buffered" };
        group.bench_function(name, |bencher| {
            bencher.iter_batched(
                || template.clone(),
                |bytes| {
                    block_on(engine.append(&partition, bytes, AppendOptions { durable, leader_epoch: 0 }))
                        .expect("append")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
    let mut group = criterion.benchmark_group("read_16k");
    group.throughput(Throughput::Bytes(template.len() as u64));
    group.bench_function("read_one_batch", |bencher| {
        let mut offset = 0i64;
        let end = block_on(engine.offsets(&partition)).expect("offsets").high_watermark.0;
        bencher.iter(|| {
            let read = block_on(engine.read(
                &partition,
                Offset(offset),
                BATCH_SIZE_BYTES as u32,
                sluice_engine::ReadBound::HighWatermark,
            ))
            .expect("read");
            offset = (offset + 128) % end.max(1);
            read.records.len()
        });
    });
    group.finish();
    engine.shutdown();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
