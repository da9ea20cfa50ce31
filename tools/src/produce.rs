//! `sluicectl produce TOPIC`: one record per line of standard input, as
//! kafka-console-producer.sh does.
//!
//! Steps:
//! 1. Look the topic up (an unknown topic is an error before anything is read).
//! 2. A reader thread reads stdin line by line (a trailing `\r` is dropped) into a bounded
//!    channel, so the main thread can flush after `--linger-ms` of silence while a person types.
//! 3. The main thread splits each line into key and value (`--key-separator`), picks a partition
//!    (`--partition`; else the key's murmur2 hash, as Kafka's default partitioner does; else one
//!    partition per flush, rotating, as Kafka's sticky partitioner does) and buffers it.
//! 4. A flush builds one batch per partition and sends one Produce request per leader, retrying
//!    retriable errors after refreshing Metadata. Any other error stops the command, non-zero.
//!
//! Threads: the main thread and the stdin reader.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use sluice_client::batch::{BatchBuilder, BatchOptions, Compression, NewRecord, RecordHeader};
use sluice_client::requests::{TopicInfo, produce_request, produced_partitions};

use crate::datetime::now_ms;
use crate::output::{Output, Progress};
use crate::session::{RETRY_BACKOFF, RETRY_COUNT_MAX, Session};
use crate::topics::parse_key_value;

/// Lines buffered between the reader thread and the main thread.
const LINE_QUEUE_DEPTH: usize = 10_000;
/// Buffered record bytes that force a flush: 1 MiB, below Kafka's default `message.max.bytes`.
const PENDING_SIZE_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Topic to produce to (must exist).
    topic: String,
    /// Split each line at the first SEP into key and value (a line without SEP is an error);
    /// without it, the whole line is the value and the key is null.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header added to every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Acknowledgements: all (-1), 1 (leader) or 0 (none, no error reporting).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_negative_numbers = true)]
    acks: i16,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Compression codec of the batches.
    #[arg(long, short = 'z', value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Flush after this many buffered records.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    batch_records: usize,
    /// Flush buffered records after this long without new input.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    linger_ms: u64,
}

/// Compression codecs, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Self::None => Compression::None,
            Self::Gzip => Compression::Gzip,
            Self::Snappy => Compression::Snappy,
            Self::Lz4 => Compression::Lz4,
            Self::Zstd => Compression::Zstd,
        }
    }
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("acks must be all, -1, 1 or 0, got {text:?}")),
    }
}

/// Kafka's murmur2 (as in `Utils.murmur2`), which the default partitioner hashes keys with.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut hash = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if let Some(first) = tail.first() {
        hash ^= u32::from(*first);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition Kafka's default partitioner picks for `key`.
pub(crate) fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// One buffered record.
#[derive(Debug)]
struct Pending {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp_ms: i64,
}

/// Where the produced records landed, per partition: (first offset, last offset, count).
type Landed = BTreeMap<i32, (i64, i64, u64)>;

struct Producer<'a> {
    session: &'a mut Session,
    args: &'a ProduceArgs,
    topic: TopicInfo,
    pending: BTreeMap<i32, Vec<Pending>>,
    pending_count: usize,
    pending_size_bytes: usize,
    sticky_partition: i32,
    landed: Landed,
    produced_count: u64,
}

pub(crate) fn run(session: &mut Session, args: &ProduceArgs, output: Output) -> Result<()> {
    let topic = session.topic(&args.topic)?;
    let partition_count = topic.partitions.len() as i32;
    if let Some(partition) = args.partition
        && !(0..partition_count).contains(&partition)
    {
        bail!("topic {} has no partition {partition} (it has {partition_count})", args.topic);
    }
    let (sender, lines) = std::sync::mpsc::sync_channel(LINE_QUEUE_DEPTH);
    std::thread::Builder::new().name("stdin".to_owned()).spawn(move || read_lines(&sender))?;
    let mut producer = Producer {
        session,
        args,
        topic,
        pending: BTreeMap::new(),
        pending_count: 0,
        pending_size_bytes: 0,
        sticky_partition: 0,
        landed: BTreeMap::new(),
        produced_count: 0,
    };
    producer.pump(&lines)?;
    report(&producer, output);
    Ok(())
}

/// Reads stdin into `sender` until EOF; a read error is sent as the last item.
fn read_lines(sender: &SyncSender<std::io::Result<Vec<u8>>>) {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if sender.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(error) => {
                // The main thread reports it; nothing else to do when it has gone.
                let _ = sender.send(Err(error));
                return;
            }
        }
    }
}

impl Producer<'_> {
    fn pump(&mut self, lines: &Receiver<std::io::Result<Vec<u8>>>) -> Result<()> {
        let linger = Duration::from_millis(self.args.linger_ms);
        let mut progress = Progress::new();
        let mut line_number = 0u64;
        loop {
            match lines.recv_timeout(linger) {
                Ok(line) => {
                    line_number += 1;
                    let line = line.context("cannot read standard input")?;
                    self.push(line, line_number)?;
                    if self.pending_count >= self.args.batch_records.max(1)
                        || self.pending_size_bytes >= PENDING_SIZE_BYTES_MAX
                    {
                        self.flush()?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.flush()?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
            progress.tick(|| format!("produced {} records", self.produced_count));
        }
        self.flush()?;
        progress.finish();
        Ok(())
    }

    fn push(&mut self, line: Vec<u8>, line_number: u64) -> Result<()> {
        let (key, value) = match &self.args.key_separator {
            None => (None, line),
            Some(separator) => {
                let separator = separator.as_bytes();
                let Some(position) = find(&line, separator) else {
                    bail!("line {line_number} has no key separator {:?}", String::from_utf8_lossy(separator));
                };
                (Some(line[..position].to_vec()), line[position + separator.len()..].to_vec())
            }
        };
        let partition_count = self.topic.partitions.len() as i32;
        let partition = match (self.args.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partition_count),
            (None, None) => self.sticky_partition,
        };
        self.pending_size_bytes += value.len() + key.as_ref().map_or(0, Vec::len);
        self.pending_count += 1;
        self.pending.entry(partition).or_default().push(Pending { key, value, timestamp_ms: now_ms() });
        Ok(())
    }

    /// Sends everything buffered, one request per leader.
    fn flush(&mut self) -> Result<()> {
        if self.pending_count == 0 {
            return Ok(());
        }
        let partition_count = self.topic.partitions.len() as i32;
        self.sticky_partition = (self.sticky_partition + 1) % partition_count;
        let pending = std::mem::take(&mut self.pending);
        self.pending_count = 0;
        self.pending_size_bytes = 0;
        let mut attempt = 0;
        let mut remaining = pending;
        while !remaining.is_empty() {
            remaining = self.send(remaining)?;
            if !remaining.is_empty() {
                attempt += 1;
                if attempt > RETRY_COUNT_MAX {
                    bail!("produce to {} kept failing with retriable errors", self.topic.topic.name);
                }
                std::thread::sleep(RETRY_BACKOFF);
                self.topic = self.session.topic(&self.topic.topic.name)?;
            }
        }
        Ok(())
    }

    /// Sends `pending` to the leaders; returns the partitions that failed with retriable errors.
    fn send(&mut self, mut pending: BTreeMap<i32, Vec<Pending>>) -> Result<BTreeMap<i32, Vec<Pending>>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in pending.keys() {
            let leader = self
                .topic
                .partitions
                .iter()
                .find(|info| info.partition == *partition)
                .map_or(-1, |info| info.leader_id);
            by_leader.entry(leader).or_default().push(*partition);
        }
        let mut retry = BTreeMap::new();
        for (leader, partitions) in by_leader {
            if leader < 0 {
                retry.extend(partitions.iter().filter_map(|partition| pending.remove_entry(partition)));
                continue;
            }
            let mut batches = Vec::with_capacity(partitions.len());
            for partition in &partitions {
                batches.push((*partition, self.encode(&pending[partition])?));
            }
            let request = produce_request(&self.topic.topic, self.args.acks, 30_000, batches);
            let connection = self.session.node(leader)?;
            let response =
                connection.produce(&request).with_context(|| format!("produce to {} failed", self.topic.topic.name))?;
            let Some(response) = response else {
                // acks=0: no response, so no offsets to report.
                for partition in &partitions {
                    self.record_landed(*partition, -1, pending[partition].len());
                }
                continue;
            };
            for result in produced_partitions(&response) {
                let count = pending.get(&result.partition).map_or(0, Vec::len);
                match result.error {
                    None => self.record_landed(result.partition, result.base_offset, count),
                    Some(error) if error.is_retriable() => {
                        retry.extend(pending.remove_entry(&result.partition));
                    }
                    Some(error) => bail!("produce to {}-{} failed: {error}", self.topic.topic.name, result.partition),
                }
            }
        }
        Ok(retry)
    }

    fn encode(&self, records: &[Pending]) -> Result<bytes::Bytes> {
        let options = BatchOptions { compression: self.args.compression.compression(), ..BatchOptions::default() };
        let mut builder = BatchBuilder::new(options);
        let headers: Vec<RecordHeader<'_>> = self
            .args
            .headers
            .iter()
            .map(|(key, value)| RecordHeader { key: key.as_str(), value: Some(value.as_bytes()) })
            .collect();
        for record in records {
            builder
                .push(&NewRecord {
                    timestamp_ms: record.timestamp_ms,
                    key: record.key.as_deref(),
                    value: Some(&record.value),
                    headers: &headers,
                })
                .context("cannot encode a record batch")?;
        }
        builder.finish().context("cannot encode a record batch")
    }

    fn record_landed(&mut self, partition: i32, base_offset: i64, count: usize) {
        let count = count as u64;
        self.produced_count += count;
        let last_offset = if base_offset < 0 { -1 } else { base_offset + count as i64 - 1 };
        let entry = self.landed.entry(partition).or_insert((base_offset, last_offset, 0));
        entry.1 = last_offset;
        entry.2 += count;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn report(producer: &Producer<'_>, output: Output) {
    let partitions: serde_json::Map<String, serde_json::Value> = producer
        .landed
        .iter()
        .map(|(partition, (first, last, count))| {
            (partition.to_string(), json!({"first_offset": first, "last_offset": last, "records": count}))
        })
        .collect();
    if output.is_json() {
        let json =
            json!({"topic": producer.topic.topic.name, "records": producer.produced_count, "partitions": partitions});
        println!("{json}");
    } else {
        eprintln!(
            "Produced {} records to {} ({} partitions).",
            producer.produced_count,
            producer.topic.topic.name,
            producer.landed.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 7] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyed_partition_is_non_negative_and_stable() {
        for key in [&b"a"[..], b"key-1", b"21", b""] {
            let partition = partition_for_key(key, 7);
            assert!((0..7).contains(&partition));
            assert_eq!(partition, partition_for_key(key, 7));
        }
    }

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn separator_search_finds_the_first_match() {
        assert_eq!(find(b"k::v::w", b"::"), Some(1));
        assert_eq!(find(b"kv", b":"), None);
    }
}
