//! `sluicectl consume TOPIC`: fetch records and print one line per record, as
//! kafka-console-consumer.sh does.
//!
//! Steps:
//! 1. Choose partitions: `--partition`, or every partition, or (with `--group`) those the group
//!    assigns this member.
//! 2. Choose start positions: `--offset`, `--timestamp` (`ListOffsets` by time), the group's
//!    committed offsets, else the log start (`--from-beginning`) or the log end.
//! 3. Fetch from each partition's leader in a loop and print records at or past the position
//!    (skipping control batches and records of a batch before the position).
//! 4. Stop at `--max-messages`, at `--timeout-ms` without records, at the end of every partition
//!    with `--exit-at-end`, or on Ctrl-C; in a group, commit the positions and leave.
//!
//! Threads: main (this loop), the signal watcher, and with `--group` the heartbeat thread.

use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, Stdout, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use kafka_protocol::ResponseError;
use serde_json::json;
use sluice_client::decode::{BatchIter, RecordView};
use sluice_client::requests::{
    EARLIEST_TIMESTAMP, FetchLimits, LATEST_TIMESTAMP, TopicInfo, fetch_request, fetched_partitions,
};

use crate::datetime::parse_timestamp_ms;
use crate::member::GroupMember;
use crate::output::{Output, json_bytes, text_of};
use crate::session::Session;
use crate::signals::StopSignal;

/// How often a group member commits while consuming.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools, reason = "independent command-line switches")]
pub(crate) struct ConsumeArgs {
    /// Topic to consume.
    topic: String,
    /// Start at the log start offset (with --group: where the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset in every consumed partition (pick one with --partition).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..), conflicts_with_all = ["timestamp", "group"])]
    offset: Option<i64>,
    /// Start at the first record with a timestamp at or after T (milliseconds or ISO-8601, e.g.
    /// 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "T", value_parser = parse_timestamp_ms, conflicts_with = "group")]
    timestamp: Option<i64>,
    /// Consume only this partition (repeatable); default: all.
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Vec<i32>,
    /// Consume as a member of this consumer group: start at its committed offsets, commit
    /// every 5 s and on exit.
    #[arg(long, short = 'g', value_name = "G")]
    group: Option<String>,
    /// Stop after printing N records.
    #[arg(long, short = 'n', value_name = "N")]
    max_messages: Option<u64>,
    /// Stop once every partition has been read up to its end.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Stop when no record arrived for this long.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Line format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),
    /// %h headers (k=v,...), %% a percent sign; \n and \t escapes. A newline follows each record.
    /// Ignored with --output json, which prints one JSON object per record.
    #[arg(long, short = 'f', default_value = "%v", value_name = "FMT")]
    format: String,
}

/// One piece of a `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

/// Parses a `--format` template.
fn parse_format(format: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut characters = format.chars();
    while let Some(character) = characters.next() {
        let piece = match (character, characters.clone().next()) {
            ('%', Some(next)) => {
                characters.next();
                match next {
                    't' => Piece::Topic,
                    'p' => Piece::Partition,
                    'o' => Piece::Offset,
                    'k' => Piece::Key,
                    'v' | 's' => Piece::Value,
                    'T' => Piece::Timestamp,
                    'h' => Piece::Headers,
                    '%' => Piece::Text("%".to_owned()),
                    other => bail!("unknown format placeholder %{other} (use %t %p %o %k %v %T %h %%)"),
                }
            }
            ('\\', Some(next @ ('n' | 't' | '\\'))) => {
                characters.next();
                Piece::Text(
                    match next {
                        'n' => "\n",
                        't' => "\t",
                        _ => "\\",
                    }
                    .to_owned(),
                )
            }
            (other, _) => Piece::Text(other.to_string()),
        };
        match piece {
            Piece::Text(literal) => text.push_str(&literal),
            placeholder => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(placeholder);
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Writes records to stdout in the chosen form.
struct Printer {
    pieces: Vec<Piece>,
    json: bool,
    stdout: BufWriter<Stdout>,
    line: Vec<u8>,
}

impl Printer {
    /// Writes one record; `Ok(false)` when stdout is closed (a pipe reader went away).
    fn print(&mut self, topic: &str, partition: i32, record: &RecordView<'_>) -> Result<bool> {
        self.line.clear();
        if self.json {
            let headers: Vec<_> = record
                .headers()
                .map(|header| json!({"key": text_of(header.key), "value": json_bytes(header.value)}))
                .collect();
            let object = json!({
                "topic": topic, "partition": partition, "offset": record.offset, "timestamp": record.timestamp_ms,
                "key": json_bytes(record.key), "value": json_bytes(record.value), "headers": headers,
            });
            serde_json::to_writer(&mut self.line, &object)?;
        } else {
            for piece in &self.pieces {
                match piece {
                    Piece::Text(text) => self.line.extend_from_slice(text.as_bytes()),
                    Piece::Topic => self.line.extend_from_slice(topic.as_bytes()),
                    Piece::Partition => self.line.extend_from_slice(partition.to_string().as_bytes()),
                    Piece::Offset => self.line.extend_from_slice(record.offset.to_string().as_bytes()),
                    Piece::Key => self.line.extend_from_slice(record.key.unwrap_or_default()),
                    Piece::Value => self.line.extend_from_slice(record.value.unwrap_or_default()),
                    Piece::Timestamp => self.line.extend_from_slice(record.timestamp_ms.to_string().as_bytes()),
                    Piece::Headers => {
                        let headers: Vec<String> = record
                            .headers()
                            .map(|header| {
                                format!("{}={}", text_of(header.key), text_of(header.value.unwrap_or_default()))
                            })
                            .collect();
                        self.line.extend_from_slice(headers.join(",").as_bytes());
                    }
                }
            }
        }
        self.line.push(b'\n');
        write_or_closed(self.stdout.write_all(&self.line))
    }

    fn flush(&mut self) -> Result<bool> {
        write_or_closed(self.stdout.flush())
    }
}

fn write_or_closed(result: std::io::Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to standard output"),
    }
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    Done,
}

struct Consumer<'a> {
    session: &'a mut Session,
    args: &'a ConsumeArgs,
    topic: TopicInfo,
    positions: BTreeMap<i32, i64>,
    /// Partitions seen at their end (position reached the high watermark).
    at_end: BTreeMap<i32, bool>,
    printed_count: u64,
    printer: Printer,
    member: Option<GroupMember>,
    last_record: Instant,
    last_commit: Instant,
}

pub(crate) fn run(session: &mut Session, args: &ConsumeArgs, output: Output, stop: &StopSignal) -> Result<()> {
    let topic = session.topic(&args.topic)?;
    let printer = Printer {
        pieces: parse_format(&args.format)?,
        json: output.is_json(),
        stdout: BufWriter::new(std::io::stdout()),
        line: Vec::new(),
    };
    let mut consumer = Consumer {
        session,
        args,
        topic,
        positions: BTreeMap::new(),
        at_end: BTreeMap::new(),
        printed_count: 0,
        printer,
        member: None,
        last_record: Instant::now(),
        last_commit: Instant::now(),
    };
    consumer.start()?;
    let result = consumer.pump(stop);
    let finished = consumer.finish();
    result.and(finished)?;
    eprintln!("Processed a total of {} messages", consumer.printed_count);
    Ok(())
}

impl Consumer<'_> {
    fn start(&mut self) -> Result<()> {
        if let Some(group) = &self.args.group {
            let member = GroupMember::join(self.session, group, &self.args.topic)?;
            self.member = Some(member);
            return self.start_from_committed();
        }
        let all: Vec<i32> = self.topic.partitions.iter().map(|partition| partition.partition).collect();
        let partitions = if self.args.partition.is_empty() { all.clone() } else { self.args.partition.clone() };
        for partition in &partitions {
            if !all.contains(partition) {
                bail!("topic {} has no partition {partition}", self.args.topic);
            }
        }
        let positions = match (self.args.offset, self.args.timestamp) {
            (Some(offset), _) => partitions.iter().map(|partition| (*partition, offset)).collect(),
            (None, Some(timestamp)) => {
                let found = self.session.offsets_for(&self.topic, Some(&partitions), timestamp)?;
                let ends = self.session.offsets_for(&self.topic, Some(&partitions), LATEST_TIMESTAMP)?;
                // No record at or after the time: start at the end, as Kafka's consumer does.
                found
                    .into_iter()
                    .map(|(partition, offset)| (partition, if offset < 0 { ends[&partition] } else { offset }))
                    .collect()
            }
            (None, None) => self.default_positions(&partitions)?,
        };
        self.positions = positions;
        Ok(())
    }

    /// The start offsets when nothing else says: log start with `--from-beginning`, else log end.
    fn default_positions(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let timestamp = if self.args.from_beginning { EARLIEST_TIMESTAMP } else { LATEST_TIMESTAMP };
        self.session.offsets_for(&self.topic, Some(partitions), timestamp)
    }

    fn start_from_committed(&mut self) -> Result<()> {
        let member = self.member.as_mut().expect("called in group mode");
        let partitions = member.partitions.clone();
        let committed = member.committed()?;
        let without: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|partition| committed.get(partition).is_none_or(|offset| *offset < 0))
            .collect();
        let defaults = if without.is_empty() { BTreeMap::new() } else { self.default_positions(&without)? };
        self.positions = partitions
            .iter()
            .map(|partition| {
                let offset = committed.get(partition).copied().filter(|offset| *offset >= 0);
                (*partition, offset.unwrap_or_else(|| defaults.get(partition).copied().unwrap_or(0)))
            })
            .collect();
        self.at_end.clear();
        Ok(())
    }

    fn pump(&mut self, stop: &StopSignal) -> Result<()> {
        while !stop.is_stopping() {
            if self.member.as_ref().is_some_and(GroupMember::needs_rejoin) {
                self.rebalance()?;
            }
            if self.fetch_once()? == Stop::Done {
                break;
            }
            if let Some(timeout_ms) = self.args.timeout_ms
                && self.last_record.elapsed() >= Duration::from_millis(timeout_ms)
            {
                break;
            }
            if self.args.exit_at_end && self.positions.keys().all(|partition| self.at_end.get(partition) == Some(&true))
            {
                break;
            }
            if self.member.is_some() && self.last_commit.elapsed() >= AUTO_COMMIT_INTERVAL {
                self.commit()?;
            }
        }
        Ok(())
    }

    fn rebalance(&mut self) -> Result<()> {
        if let Err(error) = self.commit() {
            eprintln!("sluicectl: warning: commit before rebalance failed: {error:#}");
        }
        let member = self.member.as_mut().expect("called in group mode");
        member.rejoin(self.session)?;
        self.start_from_committed()
    }

    fn commit(&mut self) -> Result<()> {
        self.last_commit = Instant::now();
        match self.member.as_mut() {
            Some(member) => member.commit(&self.positions),
            None => Ok(()),
        }
    }

    /// One Fetch per leader; prints what arrived.
    fn fetch_once(&mut self) -> Result<Stop> {
        if self.positions.is_empty() {
            // A group member with no partitions waits for a rebalance.
            std::thread::sleep(Duration::from_millis(200));
            return Ok(Stop::Running);
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (partition, position) in &self.positions {
            let leader = self
                .topic
                .partitions
                .iter()
                .find(|info| info.partition == *partition)
                .map_or(-1, |info| info.leader_id);
            by_leader.entry(leader).or_default().push((*partition, *position));
        }
        let leader_count = by_leader.len() as i32;
        for (leader, positions) in by_leader {
            if leader < 0 {
                self.refresh_metadata()?;
                continue;
            }
            // Several leaders are polled in turn, so each waits less.
            let limits = FetchLimits { max_wait_ms: 500 / leader_count, ..FetchLimits::default() };
            let request = fetch_request(&self.topic.topic, &positions, limits);
            let response = self.session.node(leader)?.fetch(&request).context("Fetch request failed")?;
            for fetched in fetched_partitions(&response) {
                if let Some(error) = fetched.error {
                    self.handle_partition_error(fetched.partition, error)?;
                    continue;
                }
                if self.print_records(fetched.partition, fetched.records)? == Stop::Done {
                    return Ok(Stop::Done);
                }
                let position = self.positions.get(&fetched.partition).copied().unwrap_or(0);
                self.at_end.insert(fetched.partition, position >= fetched.high_watermark);
            }
        }
        if !self.printer.flush()? {
            return Ok(Stop::Done);
        }
        Ok(Stop::Running)
    }

    fn print_records(&mut self, partition: i32, records: bytes::Bytes) -> Result<Stop> {
        let Some(mut position) = self.positions.get(&partition).copied() else { return Ok(Stop::Running) };
        for batch in BatchIter::new(records) {
            let batch = batch.with_context(|| format!("corrupt batch from {}-{partition}", self.args.topic))?;
            if !batch.info.is_control() {
                for record in batch.records() {
                    let record =
                        record.with_context(|| format!("corrupt record from {}-{partition}", self.args.topic))?;
                    if record.offset < position {
                        continue;
                    }
                    if !self.printer.print(&self.args.topic, partition, &record)? {
                        return Ok(Stop::Done);
                    }
                    self.printed_count += 1;
                    self.last_record = Instant::now();
                    position = record.offset + 1;
                    self.positions.insert(partition, position);
                    if self.args.max_messages.is_some_and(|max| self.printed_count >= max) {
                        return Ok(Stop::Done);
                    }
                }
            }
            position = position.max(batch.info.last_offset() + 1);
            self.positions.insert(partition, position);
        }
        Ok(Stop::Running)
    }

    fn handle_partition_error(&mut self, partition: i32, error: ResponseError) -> Result<()> {
        match error {
            ResponseError::OffsetOutOfRange => {
                let reset = self.default_positions(&[partition])?;
                let offset = reset.get(&partition).copied().unwrap_or(0);
                eprintln!(
                    "sluicectl: warning: offset out of range on {}-{partition}; resetting to {offset}",
                    self.args.topic
                );
                self.positions.insert(partition, offset);
                Ok(())
            }
            error if error.is_retriable() => {
                std::thread::sleep(Duration::from_millis(100));
                self.refresh_metadata()
            }
            error => bail!("fetch from {}-{partition} failed: {error}", self.args.topic),
        }
    }

    fn refresh_metadata(&mut self) -> Result<()> {
        self.topic = self.session.topic(&self.args.topic)?;
        Ok(())
    }

    /// Flushes output; in a group, commits and leaves.
    fn finish(&mut self) -> Result<()> {
        // A closed stdout at the end is not an error worth reporting.
        self.printer.flush()?;
        if let Some(mut member) = self.member.take() {
            member.commit(&self.positions)?;
            member.leave()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_placeholders_and_escapes_parse() {
        let pieces = parse_format("%k=%v\\t%p:%o %T %h %t 100%%").expect("parses");
        assert_eq!(
            pieces,
            [
                Piece::Key,
                Piece::Text("=".to_owned()),
                Piece::Value,
                Piece::Text("\t".to_owned()),
                Piece::Partition,
                Piece::Text(":".to_owned()),
                Piece::Offset,
                Piece::Text(" ".to_owned()),
                Piece::Timestamp,
                Piece::Text(" ".to_owned()),
                Piece::Headers,
                Piece::Text(" ".to_owned()),
                Piece::Topic,
                Piece::Text(" 100%".to_owned()),
            ]
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        assert!(parse_format("%x").is_err());
        assert_eq!(parse_format("50%").expect("trailing percent is text"), [Piece::Text("50%".to_owned())]);
    }
}
