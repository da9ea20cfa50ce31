//! Measures append throughput of 16 KiB batches with several appends in flight, buffered
//! (acks=1) and durable (acks=all, group-committed fdatasync), on one partition.
//!
//! `cargo run --release -p sluice-engine --example append_throughput -- [DIR] [MIB] [IN_FLIGHT] [PREALLOCATE_KIB]`
//! DIR defaults to a temp dir (use one on the disk you want to measure), MIB to 1024,
//! IN_FLIGHT to 32, PREALLOCATE_KIB to the engine's default (`EngineConfig::preallocate_bytes`;
//! 0 turns zero-filling ahead of durable appends off). Prints one line per mode with MiB/s and
//! appends/s.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use sluice_engine::batch::build_batch;
use sluice_engine::{AppendOptions, Engine, EngineConfig, TopicConfig, TopicPartition, block_on};

const BATCH_SIZE_BYTES: usize = 16 * 1024;

fn batch() -> Vec<u8> {
    // 16 KiB of payload: 128 records of 110 bytes plus per-record overhead, just under 16 KiB.
    let records: Vec<Vec<u8>> = (0..BATCH_SIZE_BYTES / 128).map(|index| vec![index as u8; 110]).collect();
    let values: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    build_batch(&values, 1_700_000_000_000)
}

fn run(engine: &Engine, topic: &str, total_bytes: u64, in_flight: usize, durable: bool) -> (f64, u64) {
    let partition = TopicPartition::new(topic, 0);
    let shard = engine.shard_of(&partition).expect("placed");
    let template = batch();
    let count = total_bytes / template.len() as u64;
    let (done_sender, done_receiver) = std::sync::mpsc::channel();
    let started = Instant::now();
    let worker_engine = engine.clone();
    engine.spawn_on(shard, move || async move {
        let remaining = Rc::new(Cell::new(count));
        let mut workers = Vec::new();
        for _ in 0..in_flight {
            let engine = worker_engine.clone();
            let partition = partition.clone();
            let template = template.clone();
            let remaining = remaining.clone();
            workers.push(compio::runtime::spawn(async move {
                while remaining.get() > 0 {
                    remaining.set(remaining.get() - 1);
                    engine
                        .append(&partition, template.clone(), AppendOptions { durable, leader_epoch: 0 })
                        .await
                        .expect("append");
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
        done_sender.send(()).expect("main waits");
    });
    done_receiver.recv().expect("workers finish");
    (started.elapsed().as_secs_f64(), count)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = args.next().map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
    let mib: u64 = args.next().and_then(|value| value.parse().ok()).unwrap_or(1024);
    let in_flight: usize = args.next().and_then(|value| value.parse().ok()).unwrap_or(32);
    let mut config = EngineConfig::new(&dir);
    config.shard_count = Some(1);
    if let Some(kib) = args.next().and_then(|value| value.parse::<u64>().ok()) {
        config.preallocate_bytes = kib << 10;
    }
    let engine = Engine::open(config).expect("open");
    for (topic, durable) in [("buffered", false), ("durable", true)] {
        if engine.topic(topic).is_none() {
            block_on(engine.create_topic(topic, 1, TopicConfig::default())).expect("create");
        }
        let (seconds, count) = run(&engine, topic, mib << 20, in_flight, durable);
        let mib_per_sec = (count * BATCH_SIZE_BYTES as u64) as f64 / f64::from(1u32 << 20) / seconds;
        println!(
            "{topic:>8}: {count} appends of 16 KiB, {in_flight} in flight: {mib_per_sec:.0} MiB/s, {:.0} appends/s",
            count as f64 / seconds
        );
    }
    engine.shutdown();
}
