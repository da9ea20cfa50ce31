//! Consume-only throughput: reads a topic's partitions from the log start to the log end offsets
//! taken at the start, as fast as the broker serves them, and prints MiB/s and records/s.
//!
//! Usage: `fetch_throughput ADDRESS TOPIC [CONNECTIONS] [PASSES]`
//! (defaults: one connection, three passes; each pass re-reads the whole range, and the median
//! pass is reported beside all of them). Partitions are split round-robin over the connections,
//! one thread each; every connection has one Fetch in flight at a time with the Java consumer's
//! limits (50 MiB per response, 1 MiB per partition). Records are counted from batch headers,
//! so the client's cost per record stays small next to the broker's.
//!
//! Fill the topic first, for example with
//! `produce-load --topic T --partitions 4 --record-size 1024 --records 2000000 --acks 1`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_client::decode::BatchIter;
use sluice_client::requests::{
    EARLIEST_TIMESTAMP, FetchLimits, LATEST_TIMESTAMP, TopicRef, fetch_request, fetched_partitions,
};
use sluice_client::{Connection, ConnectionConfig};

/// What one connection read in one pass.
#[derive(Debug, Default, Clone, Copy)]
struct Read {
    bytes: u64,
    records: u64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, topic, rest @ ..] = args.as_slice() else {
        bail!("usage: fetch_throughput ADDRESS TOPIC [CONNECTIONS] [PASSES]");
    };
    let connections: usize = rest.first().map_or(Ok(1), |text| text.parse()).context("CONNECTIONS")?;
    let passes: usize = rest.get(1).map_or(Ok(3), |text| text.parse()).context("PASSES")?;
    let config = ConnectionConfig { request_timeout: Duration::from_secs(30), ..ConnectionConfig::default() };
    let mut admin = Connection::connect(address, &config)?;
    let cluster = admin.metadata(Some(&[topic.as_str()]))?;
    let info = cluster.topic(topic).context("topic not found")?.clone();
    let partitions: Vec<i32> = info.partitions.iter().map(|partition| partition.partition).collect();
    let starts = admin.list_offsets(&info.topic, &partitions, EARLIEST_TIMESTAMP)?;
    let ends = admin.list_offsets(&info.topic, &partitions, LATEST_TIMESTAMP)?;
    let ranges: Vec<(i32, i64, i64)> =
        starts.iter().zip(&ends).map(|((partition, start), (_, end))| (*partition, *start, *end)).collect();
    let mut rates = Vec::new();
    for pass in 1..=passes {
        let started = Instant::now();
        let threads: Vec<_> = (0..connections)
            .map(|connection| {
                let mine: Vec<_> = ranges.iter().copied().skip(connection).step_by(connections).collect();
                let (address, topic, config) = (address.clone(), info.topic.clone(), config.clone());
                std::thread::spawn(move || read_all(&address, &topic, &config, &mine))
            })
            .collect();
        let mut total = Read::default();
        for thread in threads {
            let read = thread.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
            total.bytes += read.bytes;
            total.records += read.records;
        }
        let seconds = started.elapsed().as_secs_f64();
        let mib_per_second = total.bytes as f64 / seconds / f64::from(1 << 20);
        let records_per_second = total.records as f64 / seconds;
        println!(
            "pass {pass}: {} records, {:.1} MiB in {seconds:.2} s: {mib_per_second:.1} MiB/s, {records_per_second:.0} records/s",
            total.records,
            total.bytes as f64 / f64::from(1 << 20)
        );
        rates.push((mib_per_second, records_per_second));
    }
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((mib, records)) = rates.get(rates.len() / 2) {
        println!("median: {mib:.1} MiB/s, {records:.0} records/s over {passes} passes, {connections} connections");
    }
    Ok(())
}

/// Reads every `(partition, start, end)` range to its end over one connection.
fn read_all(
    address: &str,
    topic: &TopicRef,
    config: &ConnectionConfig,
    ranges: &[(i32, i64, i64)],
) -> anyhow::Result<Read> {
    let mut connection = Connection::connect(address, config)?;
    let ends: Vec<(i32, i64)> = ranges.iter().map(|(partition, _, end)| (*partition, *end)).collect();
    let mut positions: Vec<(i32, i64)> =
        ranges.iter().filter(|(_, start, end)| start < end).map(|(partition, start, _)| (*partition, *start)).collect();
    let limits = FetchLimits { max_wait_ms: 0, ..FetchLimits::default() };
    let mut read = Read::default();
    while !positions.is_empty() {
        let response = connection.fetch(&fetch_request(topic, &positions, limits))?;
        for partition in fetched_partitions(&response) {
            if let Some(error) = partition.error {
                bail!("partition {}: {error:?}", partition.partition);
            }
            let Some(position) = positions.iter_mut().find(|(index, _)| *index == partition.partition) else {
                continue;
            };
            let mut iter = BatchIter::new(partition.records.clone());
            for batch in iter.by_ref() {
                let batch = batch?;
                read.records += u64::try_from(batch.info.record_count).unwrap_or(0);
                position.1 = batch.info.last_offset() + 1;
            }
            read.bytes += (partition.records.len() - iter.remaining_bytes()) as u64;
        }
        positions.retain(|(partition, offset)| ends.iter().any(|(index, end)| index == partition && offset < end));
    }
    Ok(read)
}
