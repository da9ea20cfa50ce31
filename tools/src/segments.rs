//! `sluicectl segments dump|verify`: offline inspection of a data directory, as
//! kafka-dump-log.sh does for Kafka. Reads files only (never writes); best run on the data
//! directory of a stopped broker, because a running one writes indexes lazily.
//!
//! `verify` checks, per partition directory:
//! 1. every `.log`: each batch's length, magic, CRC32C and growing offsets (the engine's own
//!    scan, `sluice_engine::inspect`), that the valid batches cover the whole file, and that
//!    every record decodes with the offsets and count its batch header announces;
//! 2. the segment's file name against its first batch, and offsets across segments (overlap is
//!    corruption; a gap is only a warning, as compaction may leave one);
//! 3. `.index`: entries consistent, each pointing at the start of a batch with that base offset;
//! 4. `.timeindex`: entries consistent, each naming the largest timestamp up to a batch's last
//!    offset;
//! 5. `partition.checkpoint`: valid JSON whose offsets lie within the log.
//!
//! Any problem makes the exit status 1. Main thread only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Subcommand;
use serde_json::{Value, json};
use sluice_client::decode::BatchIter;
use sluice_engine::batch::BatchHeader;
use sluice_engine::inspect::{IndexReport, LogReport, read_index, scan_log};

use crate::datetime::format_timestamp_ms;
use crate::output::{Output, Progress, json_bytes, lines, push_fmt, text_of};

#[derive(Debug, Subcommand)]
pub(crate) enum SegmentsCommand {
    /// Print the batches (and with --records, the records) of a .log file, the entries of an
    /// .index or .timeindex file, or every segment of a partition directory.
    Dump {
        /// A .log, .index or .timeindex file, or a partition directory.
        path: PathBuf,
        /// Also decode and print every record.
        #[arg(long)]
        records: bool,
    },
    /// Validate every segment, index and checkpoint under a data directory (or one partition
    /// directory); exit 1 on any corruption.
    Verify {
        /// A data directory or one partition directory.
        dir: PathBuf,
    },
}

pub(crate) fn run(command: &SegmentsCommand, output: Output) -> Result<ExitCode> {
    match command {
        SegmentsCommand::Dump { path, records } => dump(path, *records, output),
        SegmentsCommand::Verify { dir } => verify(dir, output),
    }
}

/// The segment files of one partition directory, by base offset.
#[derive(Debug, Default)]
struct SegmentFiles {
    logs: BTreeMap<i64, PathBuf>,
}

fn segment_files(dir: &Path) -> Result<SegmentFiles> {
    let mut files = SegmentFiles::default();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "log")
            && let Some(base_offset) =
                path.file_stem().and_then(|stem| stem.to_str()).and_then(|stem| stem.parse().ok())
        {
            files.logs.insert(base_offset, path);
        }
    }
    Ok(files)
}

fn compression_name(codec: i16) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

fn batch_json(position: u64, header: &BatchHeader) -> Value {
    json!({
        "position": position, "base_offset": header.base_offset, "last_offset": header.last_offset(),
        "record_count": header.record_count, "size_bytes": header.size_bytes(), "leader_epoch": header.leader_epoch,
        "crc": format!("{:#010x}", header.crc), "compression": compression_name(header.compression()),
        "timestamp_type": if header.is_log_append_time() { "LogAppendTime" } else { "CreateTime" },
        "base_timestamp": header.base_timestamp, "max_timestamp": header.max_timestamp,
        "producer_id": header.producer_id, "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence, "transactional": header.is_transactional(),
        "control": header.is_control(),
    })
}

fn batch_line(position: u64, header: &BatchHeader) -> String {
    format!(
        "baseOffset: {} lastOffset: {} count: {} position: {position} size: {} crc: {:#010x} compression: {} \
         {}: {} producerId: {} producerEpoch: {} baseSequence: {} isTransactional: {} isControl: {}\n",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.size_bytes(),
        header.crc,
        compression_name(header.compression()),
        if header.is_log_append_time() { "LogAppendTime" } else { "CreateTime" },
        format_timestamp_ms(header.max_timestamp),
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.is_transactional(),
        header.is_control(),
    )
}

/// Decodes the records of the valid prefix of `log`: per batch, (json records, text lines).
fn decode_records(path: &Path, report: &LogReport) -> Result<Vec<(Vec<Value>, String)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let valid = Bytes::from(bytes).slice(..report.valid_size_bytes as usize);
    let mut decoded = Vec::new();
    for batch in BatchIter::new(valid) {
        let batch = batch.with_context(|| format!("cannot decode a batch of {}", path.display()))?;
        let mut records = Vec::new();
        let mut lines = String::new();
        for record in batch.records() {
            let record = record.with_context(|| format!("cannot decode a record of {}", path.display()))?;
            let headers: Vec<String> = record
                .headers()
                .map(|header| format!("{}={}", text_of(header.key), text_of(header.value.unwrap_or_default())))
                .collect();
            records.push(json!({
                "offset": record.offset, "timestamp": record.timestamp_ms, "key": json_bytes(record.key),
                "value": json_bytes(record.value), "headers": headers,
            }));
            push_fmt(
                &mut lines,
                format_args!(
                    "| offset: {} timestamp: {} keySize: {} valueSize: {} key: {} payload: {} headers: [{}]\n",
                    record.offset,
                    record.timestamp_ms,
                    record.key.map_or(-1, |key| key.len() as i64),
                    record.value.map_or(-1, |value| value.len() as i64),
                    record.key.map_or_else(|| "null".to_owned(), text_of),
                    record.value.map_or_else(|| "null".to_owned(), text_of),
                    headers.join(","),
                ),
            );
        }
        decoded.push((records, lines));
    }
    Ok(decoded)
}

fn dump(path: &Path, with_records: bool, output: Output) -> Result<ExitCode> {
    if path.is_dir() {
        let files = segment_files(path)?;
        if files.logs.is_empty() {
            bail!("{} holds no .log segment files", path.display());
        }
        let mut documents = Vec::new();
        let mut clean = true;
        for log in files.logs.values() {
            let (document, is_clean) = dump_log(log, with_records, output)?;
            documents.push(document);
            clean &= is_clean;
        }
        if output.is_json() {
            println!("{}", Value::Array(documents));
        }
        return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("log") => {
            let (document, clean) = dump_log(path, with_records, output)?;
            if output.is_json() {
                println!("{document}");
            }
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Some("index" | "timeindex") => dump_index(path, output),
        _ => bail!("{}: expected a .log, .index or .timeindex file or a partition directory", path.display()),
    }
}

/// Dumps one log file: prints text directly, returns the JSON document and whether it is clean.
fn dump_log(path: &Path, with_records: bool, output: Output) -> Result<(Value, bool)> {
    let report = scan_log(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = if with_records { Some(decode_records(path, &report)?) } else { None };
    let mut batches = Vec::new();
    let mut text = format!("Dumping {}\n", path.display());
    for (index, (position, header)) in report.batches.iter().enumerate() {
        let mut document = batch_json(*position, header);
        text.push_str(&batch_line(*position, header));
        if let Some((record_json, lines)) = records.as_ref().and_then(|records| records.get(index)) {
            document["records"] = Value::Array(record_json.clone());
            text.push_str(lines);
        }
        batches.push(document);
    }
    if report.zero_tail && report.valid_size_bytes < report.file_size_bytes {
        push_fmt(
            &mut text,
            format_args!(
                "bytes {}..{} of {} are zero-filled space past the last batch (preallocated; recovery truncates it)\n",
                report.valid_size_bytes,
                report.file_size_bytes,
                path.display()
            ),
        );
    }
    if !report.is_clean() {
        push_fmt(
            &mut text,
            format_args!(
                "CORRUPT: bytes {}..{} of {} are not valid batches (torn write or corruption)\n",
                report.valid_size_bytes,
                report.file_size_bytes,
                path.display()
            ),
        );
    }
    if !output.is_json() {
        print!("{text}");
    }
    let document = json!({
        "file": path.display().to_string(), "base_offset": report.base_offset, "file_size_bytes": report.file_size_bytes,
        "valid_size_bytes": report.valid_size_bytes, "zero_tail": report.zero_tail, "clean": report.is_clean(),
        "batches": batches,
    });
    Ok((document, report.is_clean()))
}

fn dump_index(path: &Path, output: Output) -> Result<ExitCode> {
    let log = path.with_extension("log");
    let log_size_bytes = std::fs::metadata(&log).map_or(u64::MAX, |metadata| metadata.len());
    let report = read_index(path, log_size_bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let (entries, text, consistent) = match &report {
        IndexReport::Offsets(entries) => (
            entries.iter().map(|(offset, position)| json!({"offset": offset, "position": position})).collect(),
            lines(entries, |text, (offset, position)| {
                push_fmt(text, format_args!("offset: {offset} position: {position}"));
            }),
            true,
        ),
        IndexReport::Times(entries) => (
            entries.iter().map(|(timestamp, offset)| json!({"timestamp": timestamp, "offset": offset})).collect(),
            lines(entries, |text, (timestamp, offset)| {
                push_fmt(
                    text,
                    format_args!("timestamp: {timestamp} ({}) offset: {offset}", format_timestamp_ms(*timestamp)),
                );
            }),
            true,
        ),
        IndexReport::Inconsistent => {
            (Vec::new(), "CORRUPT: the index's size or entry order is inconsistent\n".to_owned(), false)
        }
    };
    let json = json!({"file": path.display().to_string(), "consistent": consistent, "entries": entries});
    output.emit(&json, || format!("Dumping {}\n{text}", path.display()));
    Ok(if consistent { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What verifying one segment found.
#[derive(Debug, Default)]
struct SegmentCheck {
    path: String,
    batch_count: usize,
    record_count: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl SegmentCheck {
    fn to_json(&self) -> Value {
        json!({
            "path": self.path, "batches": self.batch_count, "records": self.record_count,
            "first_offset": self.first_offset, "last_offset": self.last_offset,
            "problems": self.problems, "warnings": self.warnings,
        })
    }
}

/// The partition directories under `dir`: `dir` itself when it holds segments.
fn partition_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if !segment_files(dir)?.logs.is_empty() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        // Deleted partitions await removal; hidden entries are not partitions.
        if path.is_dir() && !name.ends_with("-delete") && !name.starts_with('.') {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn verify(dir: &Path, output: Output) -> Result<ExitCode> {
    let partitions = partition_dirs(dir)?;
    let mut progress = Progress::new();
    let mut checks = Vec::new();
    let mut partition_problems = Vec::new();
    for (index, partition) in partitions.iter().enumerate() {
        progress.tick(|| format!("verified {index}/{} partitions", partitions.len()));
        let (segment_checks, problems) = verify_partition(partition)?;
        checks.extend(segment_checks);
        partition_problems.extend(problems);
    }
    progress.finish();
    let problem_count: usize =
        checks.iter().map(|check| check.problems.len()).sum::<usize>() + partition_problems.len();
    let json = json!({
        "dir": dir.display().to_string(), "partitions": partitions.len(), "segments": checks.iter().map(SegmentCheck::to_json).collect::<Vec<_>>(),
        "partition_problems": partition_problems, "problem_count": problem_count,
    });
    output.emit(&json, || render_verify(&checks, &partition_problems, partitions.len()));
    Ok(if problem_count == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn render_verify(checks: &[SegmentCheck], partition_problems: &[String], partition_count: usize) -> String {
    let mut table = crate::output::Table::new(&["SEGMENT", "BATCHES", "RECORDS", "OFFSETS", "STATUS"]);
    let mut notes = String::new();
    for check in checks {
        let offsets = match (check.first_offset, check.last_offset) {
            (Some(first), Some(last)) => format!("{first}..={last}"),
            _ => "-".to_owned(),
        };
        let status = if check.problems.is_empty() { "ok" } else { "CORRUPT" };
        table.push(vec![
            check.path.clone(),
            check.batch_count.to_string(),
            check.record_count.to_string(),
            offsets,
            status.to_owned(),
        ]);
        for problem in &check.problems {
            push_fmt(&mut notes, format_args!("PROBLEM {}: {problem}\n", check.path));
        }
        for warning in &check.warnings {
            push_fmt(&mut notes, format_args!("warning {}: {warning}\n", check.path));
        }
    }
    for problem in partition_problems {
        push_fmt(&mut notes, format_args!("PROBLEM {problem}\n"));
    }
    let problem_count = checks.iter().map(|check| check.problems.len()).sum::<usize>() + partition_problems.len();
    format!(
        "{}{notes}Verified {} segments in {partition_count} partitions: {problem_count} problem(s).\n",
        table.render(),
        checks.len()
    )
}

/// Verifies one partition directory: its segments in order, then its checkpoint.
fn verify_partition(dir: &Path) -> Result<(Vec<SegmentCheck>, Vec<String>)> {
    let files = segment_files(dir)?;
    let mut checks = Vec::new();
    let mut previous_last: Option<i64> = None;
    for (base_offset, log) in &files.logs {
        let mut check = verify_segment(*base_offset, log)?;
        if let (Some(previous), Some(first)) = (previous_last, check.first_offset) {
            if first <= previous {
                check
                    .problems
                    .push(format!("first offset {first} overlaps the previous segment, which ends at {previous}"));
            } else if first > previous + 1 {
                check.warnings.push(format!("offsets {}..{first} are missing between segments", previous + 1));
            }
        }
        previous_last = check.last_offset.or(previous_last);
        checks.push(check);
    }
    let log_end = previous_last.map_or_else(|| files.logs.keys().next_back().copied().unwrap_or(0), |last| last + 1);
    let problems = verify_checkpoint(dir, log_end).into_iter().collect();
    Ok((checks, problems))
}

fn verify_segment(base_offset: i64, log: &Path) -> Result<SegmentCheck> {
    let report = scan_log(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut check = SegmentCheck {
        path: display_path(log),
        batch_count: report.batches.len(),
        first_offset: report.batches.first().map(|(_, header)| header.base_offset),
        last_offset: report.batches.last().map(|(_, header)| header.last_offset()),
        ..SegmentCheck::default()
    };
    if !report.is_clean() {
        check.problems.push(format!(
            "bytes {}..{} are not valid batches (bad length, magic, CRC or offsets, or a torn write)",
            report.valid_size_bytes, report.file_size_bytes
        ));
    }
    if let Some(first) = check.first_offset
        && first < base_offset
    {
        check.problems.push(format!("first batch offset {first} is below the segment's base offset {base_offset}"));
    }
    check_records(log, &report, &mut check)?;
    check_index(&log.with_extension("index"), &report, &mut check)?;
    check_time_index(&log.with_extension("timeindex"), &report, &mut check)?;
    Ok(check)
}

/// Decodes every record of the valid batches: counts and offsets must match the headers.
fn check_records(log: &Path, report: &LogReport, check: &mut SegmentCheck) -> Result<()> {
    let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
    let valid = Bytes::from(bytes).slice(..report.valid_size_bytes as usize);
    for (batch, (_, header)) in BatchIter::new(valid).zip(&report.batches) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                check.problems.push(format!("batch at offset {}: {error}", header.base_offset));
                return Ok(());
            }
        };
        let mut count = 0i64;
        for record in batch.records() {
            match record {
                Ok(record) if record.offset == header.base_offset + count => count += 1,
                Ok(record) => {
                    check.problems.push(format!(
                        "batch at offset {}: record {count} has offset {}, expected {}",
                        header.base_offset,
                        record.offset,
                        header.base_offset + count
                    ));
                    break;
                }
                Err(error) => {
                    check.problems.push(format!("batch at offset {}: {error}", header.base_offset));
                    break;
                }
            }
        }
        if count != i64::from(header.record_count) {
            check.problems.push(format!(
                "batch at offset {} decodes to {count} records, its header says {}",
                header.base_offset, header.record_count
            ));
        }
        check.record_count += count as u64;
    }
    Ok(())
}

fn check_index(path: &Path, report: &LogReport, check: &mut SegmentCheck) -> Result<()> {
    if !path.exists() {
        check.warnings.push("no .index file (the engine rebuilds it at open)".to_owned());
        return Ok(());
    }
    // An entry names the last offset of the batch starting at its position, as Kafka writes it
    // (logs written before Sluice followed Kafka here name the batch's base offset).
    let starts: BTreeMap<u64, (i64, i64)> = report
        .batches
        .iter()
        .map(|(position, header)| (*position, (header.base_offset, header.last_offset())))
        .collect();
    match read_index(path, report.valid_size_bytes).with_context(|| format!("cannot read {}", path.display()))? {
        IndexReport::Offsets(entries) => {
            for (offset, position) in entries {
                let matches =
                    starts.get(&u64::from(position)).is_some_and(|(base, last)| offset == *last || offset == *base);
                if !matches {
                    check
                        .problems
                        .push(format!(".index entry (offset {offset}, position {position}) matches no batch"));
                    break;
                }
            }
        }
        IndexReport::Times(_) | IndexReport::Inconsistent => {
            check.problems.push(".index is inconsistent (size, order, or positions past the valid log)".to_owned());
        }
    }
    Ok(())
}

fn check_time_index(path: &Path, report: &LogReport, check: &mut SegmentCheck) -> Result<()> {
    if !path.exists() {
        check.warnings.push("no .timeindex file (the engine rebuilds it at open)".to_owned());
        return Ok(());
    }
    // The largest timestamp up to and including each batch, keyed by the batch's last offset.
    let mut running_max = i64::MIN;
    let max_through: BTreeMap<i64, i64> = report
        .batches
        .iter()
        .map(|(_, header)| {
            running_max = running_max.max(header.max_timestamp);
            (header.last_offset(), running_max)
        })
        .collect();
    match read_index(path, report.valid_size_bytes).with_context(|| format!("cannot read {}", path.display()))? {
        IndexReport::Times(entries) => {
            for (timestamp, offset) in entries {
                if max_through.get(&offset) != Some(&timestamp) {
                    check
                        .problems
                        .push(format!(".timeindex entry (timestamp {timestamp}, offset {offset}) matches no batch"));
                    break;
                }
            }
        }
        IndexReport::Offsets(_) | IndexReport::Inconsistent => {
            check.problems.push(".timeindex is inconsistent (size or order)".to_owned());
        }
    }
    Ok(())
}

/// Checks `partition.checkpoint`, if present: valid JSON, offsets within the log.
fn verify_checkpoint(dir: &Path, log_end: i64) -> Option<String> {
    let path = dir.join("partition.checkpoint");
    let text = std::fs::read_to_string(&path).ok()?;
    let name = display_path(&path);
    let Ok(checkpoint) = serde_json::from_str::<Value>(&text) else {
        return Some(format!("{name}: not valid JSON"));
    };
    for field in ["recovery_point", "log_start_offset"] {
        match checkpoint.get(field).and_then(Value::as_i64) {
            Some(offset) if (0..=log_end).contains(&offset) => {}
            Some(offset) => return Some(format!("{name}: {field} {offset} lies outside the log (end {log_end})")),
            None => return Some(format!("{name}: missing or non-numeric {field}")),
        }
    }
    None
}

/// `partition-dir/file` for messages: enough to find the file, short enough to read.
fn display_path(path: &Path) -> String {
    let parent = path.parent().and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned());
    let file = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    parent.map_or(file.clone(), |parent| format!("{parent}/{file}"))
}
