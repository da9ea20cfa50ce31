//! Embedding the engine without the broker: open it in a temporary directory, create a topic,
//! append a few batches durably, read them back and print their offsets.
//!
//! Run with `cargo run --release -p sluice-engine --example embed`.

use sluice_engine::batch::{build_batch, validate};
use sluice_engine::{AppendOptions, Engine, EngineConfig, Offset, ReadBound, TopicConfig, TopicPartition, block_on};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = EngineConfig::new(dir.path());
    config.shard_count = Some(2);
    let engine = Engine::open(config)?;
    println!("engine open in {} with {} shards", dir.path().display(), engine.shard_count());

    block_on(async {
        engine.create_topic("events", 2, TopicConfig::default()).await?;
        let partition = TopicPartition::new("events", 0);
        for (index, value) in ["alpha", "beta", "gamma"].iter().enumerate() {
            let batch = build_batch(&[value.as_bytes()], 1_700_000_000_000 + index as i64);
            let appended = engine.append(&partition, batch, AppendOptions { durable: true, leader_epoch: 0 }).await?;
            println!("appended {value:?} at offset {}", appended.base_offset);
        }
        let read = engine.read(&partition, Offset(0), 1 << 20, ReadBound::HighWatermark).await?;
        let mut position = 0;
        while position < read.records.len() {
            let header = validate(&read.records[position..], false)?;
            println!(
                "read batch at offset {} with {} record(s), {} bytes",
                header.base_offset,
                header.record_count,
                header.size_bytes()
            );
            position += header.size_bytes();
        }
        println!("high watermark {}", read.offsets.high_watermark);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    engine.shutdown();
    Ok(())
}
