//! Goal: nothing acknowledged as durable is lost when the process dies at any moment, offsets
//! stay dense, and nothing corrupt is ever returned after recovery.
//!
//! Method: this test binary re-runs itself as a child process (selected by an environment
//! variable) that appends durable batches in a loop from several threads and prints each
//! acknowledged (offset, payload) line. The parent kills the child with SIGKILL after a random
//! delay, reopens the engine on the same directory, and checks every acknowledged batch reads
//! back byte-identical at its offset. 50 cycles on one directory, so recovery also runs over
//! logs already recovered before.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{batch_of, open, read_all, single_value, small_segments};
use sluice_engine::{AppendOptions, TopicPartition, block_on};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
const CYCLES: u32 = 50;
const TOPIC: &str = "crash";

/// The child: append durable batches forever, reporting each acknowledgment.
fn run_child(dir: &str) {
    let engine = open(std::path::Path::new(dir), 2);
    if engine.topic(TOPIC).is_none() {
        block_on(engine.create_topic(TOPIC, 2, small_segments(8 * 1024))).expect("create");
    }
    let writers: Vec<_> = (0..2)
        .map(|partition| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let target = TopicPartition::new(TOPIC, partition);
                for sequence in 0u64.. {
                    let payload = format!("p{partition}-{sequence}-{}", "x".repeat((sequence % 97) as usize));
                    let appended = block_on(engine.append(
                        &target,
                        batch_of(payload.as_bytes(), now_ms()),
                        AppendOptions { durable: true, leader_epoch: 0 },
                    ))
                    .expect("append");
                    println!("ACK {partition} {} {payload}", appended.base_offset.0);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[test]
fn sigkill_never_loses_acknowledged_durable_appends() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(&dir);
        return;
    }
    let seed = common::seed_from_env();
    println!("crash test seed {seed} (replay with SEED={seed})");
    let mut random = seed;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut acknowledged: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let executable = std::env::current_exe().expect("test binary path");
    for cycle in 0..CYCLES {
        let mut child = Command::new(&executable)
            .args(["--exact", "sigkill_never_loses_acknowledged_durable_appends", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let kill_after = Duration::from_millis(20 + common::next_random(&mut random) % 200);
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        let started = Instant::now();
        while started.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap child");
        for line in reader.join().expect("reader") {
            let mut parts = line.splitn(4, ' ');
            if parts.next() != Some("ACK") {
                continue;
            }
            let partition: i32 = parts.next().and_then(|part| part.parse().ok()).expect("partition");
            let offset: i64 = parts.next().and_then(|part| part.parse().ok()).expect("offset");
            let payload = parts.next().expect("payload").to_owned();
            acknowledged.insert((partition, offset), payload);
        }
        verify(dir.path(), &acknowledged, cycle, seed);
    }
    assert!(acknowledged.len() > 100, "the children acknowledged too little to prove anything");
}

fn verify(dir: &std::path::Path, acknowledged: &BTreeMap<(i32, i64), String>, cycle: u32, seed: u64) {
    let engine = open(dir, 2);
    for partition in 0..2 {
        let target = TopicPartition::new(TOPIC, partition);
        let batches = if engine.topic(TOPIC).is_some() { read_all(&engine, &target, 0) } else { Vec::new() };
        for (index, (header, _)) in batches.iter().enumerate() {
            assert_eq!(header.base_offset, index as i64, "offsets dense (cycle {cycle}, seed {seed})");
        }
        for ((_, offset), payload) in acknowledged.range((partition, 0)..(partition, i64::MAX)) {
            let (_, bytes) = batches.get(*offset as usize).unwrap_or_else(|| {
                panic!("acknowledged offset {offset} of partition {partition} lost (cycle {cycle}, seed {seed})")
            });
            assert_eq!(
                single_value(bytes),
                payload.as_bytes(),
                "bytes differ at {offset} (cycle {cycle}, seed {seed})"
            );
        }
    }
    engine.shutdown();
}
