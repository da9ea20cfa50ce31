//! The engine's crash test in power-loss mode: the data directory sits on `sluice-powerfail`, a
//! file system that forgets everything not fsynced (see powerfail/README.md).
//!
//! Goal: a power loss at any moment, in the middle of segment rolls, retention, compaction and
//! topic creation and deletion, loses nothing acknowledged as durable, leaves offsets dense and
//! never returns a corrupt batch; a topic whose creation was acknowledged is there, one whose
//! deletion was acknowledged stays gone.
//!
//! Method: each cycle mounts the file system over a backing directory (what earlier cycles
//! left) and re-runs this test binary as a child on the mount. The child opens the engine with
//! two shards and, from four threads, appends durable batches to a two-partition topic with 8
//! KiB segments (a roll every few dozen batches), appends durable keyed batches to a compacted
//! topic with 1 KiB segments and `min.cleanable.dirty.ratio` 0 (compaction runs all the time),
//! appends durable batches to a topic with `retention.bytes` of 8 KiB (segments deleted all the
//! time), and creates a topic, appends to it and deletes the one created two steps earlier, in a
//! loop; it prints each acknowledgement. After a random delay (seeded) the parent cuts the power
//! in one of three orders: right after the N-th write from then on (N random), then SIGKILL; the
//! power, then SIGKILL; SIGKILL, then the power. Every power-off is torn (the last unsynced write
//! of each file is cut at a random byte). Then it unmounts, opens the engine on the backing
//! directory itself and checks everything acknowledged so far:
//! - the plain topic: offsets dense from 0, every acknowledged batch at its offset, byte for byte;
//! - the compacted topic: offsets increasing, every record read at an acknowledged offset is the
//!   one acknowledged there, and for every key the last acknowledged record or a later one of the
//!   same key is still there;
//! - the retained topic: offsets dense from its log start, every acknowledged batch at or past
//!   the log start present, byte for byte;
//! - topics: every topic whose creation was acknowledged, and whose deletion was never asked for,
//!   is there with its acknowledged batch; no topic whose deletion was acknowledged is there.
//!
//! Environment: SLUICE_POWERFAIL_BIN (default target/release/sluice-powerfail, built by
//! `cargo build --release -p sluice-powerfail`; `./tests/run` builds it before this step),
//! POWER_CYCLES (default 12) and SEED. Needs FUSE (root and /dev/fuse): otherwise the test says
//! why on its output and passes without running.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{batch_of, open, read_all, single_value, small_segments};
use sluice_engine::{AppendOptions, Engine, TopicConfig, TopicPartition, batch, block_on};

const CHILD_ENV: &str = "SLUICE_POWER_LOSS_CHILD_DIR";
const CYCLE_ENV: &str = "SLUICE_POWER_LOSS_CYCLE";
const TEST_NAME: &str = "power_loss_never_loses_acknowledged_durable_appends";
const PLAIN: &str = "plain";
const COMPACTED: &str = "compacted";
const RETAINED: &str = "retained";
const CHURN_PREFIX: &str = "churn-";
const KEYS: u64 = 8;
const DURABLE: AppendOptions = AppendOptions { durable: true, leader_epoch: 0 };
/// How long the child may take to open the engine and report READY.
const READY_TIMEOUT: Duration = Duration::from_mins(2);
/// The mount's control socket and the mount itself: each step bounded by this.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the child

fn run_child(dir: &Path, cycle: u64) {
    // The test harness has printed "test NAME ... " without a newline: end that line first.
    println!();
    let engine = open(dir, 2);
    ensure_topic(&engine, PLAIN, 2, small_segments(8 * 1024));
    let mut compacted = small_segments(1024);
    compacted.set("cleanup.policy", "compact").expect("valid");
    compacted.set("min.cleanable.dirty.ratio", "0").expect("valid");
    ensure_topic(&engine, COMPACTED, 1, compacted);
    let mut retained = small_segments(2 * 1024);
    retained.retention_bytes = 8 * 1024;
    ensure_topic(&engine, RETAINED, 1, retained);
    // Churn topics of earlier lives are deleted first, so that they do not pile up.
    for topic in engine.topics() {
        if topic.name.starts_with(CHURN_PREFIX) {
            say(&format!("DELETING {}", topic.name));
            if block_on(engine.delete_topic(&topic.name)).is_err() {
                return;
            }
            say(&format!("DELETED {}", topic.name));
        }
    }
    say("READY");
    let engine = Arc::new(engine);
    let mut threads = Vec::new();
    for partition in 0..2 {
        let engine = Arc::clone(&engine);
        threads.push(std::thread::spawn(move || {
            let target = TopicPartition::new(PLAIN, partition);
            for sequence in 0u64.. {
                let payload = format!("c{cycle}-p{partition}-{sequence}-{}", "x".repeat((sequence % 97) as usize));
                let Ok(appended) = block_on(engine.append(&target, batch_of(payload.as_bytes(), 1), DURABLE)) else {
                    return;
                };
                say(&format!("PLAIN {partition} {} {payload}", appended.base_offset.0));
            }
        }));
    }
    {
        let engine = Arc::clone(&engine);
        threads.push(std::thread::spawn(move || {
            let target = TopicPartition::new(COMPACTED, 0);
            for sequence in 0u64.. {
                let key = format!("k{}", sequence % KEYS);
                let value = format!("c{cycle}-{sequence}");
                let records = batch::build_keyed_batch(&[(key.as_bytes(), Some(value.as_bytes()))], 1);
                let Ok(appended) = block_on(engine.append(&target, records, DURABLE)) else { return };
                say(&format!("KEYED {} {key} {value}", appended.base_offset.0));
            }
        }));
    }
    {
        let engine = Arc::clone(&engine);
        threads.push(std::thread::spawn(move || {
            let target = TopicPartition::new(RETAINED, 0);
            for sequence in 0u64.. {
                let payload = format!("c{cycle}-r{sequence}-{}", "y".repeat((sequence % 61) as usize));
                let Ok(appended) = block_on(engine.append(&target, batch_of(payload.as_bytes(), 1), DURABLE)) else {
                    return;
                };
                say(&format!("RETAINED {} {payload}", appended.base_offset.0));
            }
        }));
    }
    {
        let engine = Arc::clone(&engine);
        threads.push(std::thread::spawn(move || {
            for step in 0u64.. {
                let name = format!("{CHURN_PREFIX}{cycle}-{step}");
                if block_on(engine.create_topic(&name, 1, small_segments(4 * 1024))).is_err() {
                    return;
                }
                say(&format!("CREATED {name}"));
                let payload = format!("{name}-payload");
                let target = TopicPartition::new(name.as_str(), 0);
                let Ok(appended) = block_on(engine.append(&target, batch_of(payload.as_bytes(), 1), DURABLE)) else {
                    return;
                };
                say(&format!("CHURNED {name} {} {payload}", appended.base_offset.0));
                if step >= 2 {
                    let doomed = format!("{CHURN_PREFIX}{cycle}-{}", step - 2);
                    say(&format!("DELETING {doomed}"));
                    if block_on(engine.delete_topic(&doomed)).is_err() {
                        return;
                    }
                    say(&format!("DELETED {doomed}"));
                }
            }
        }));
    }
    for thread in threads {
        let _ended_after_a_failure = thread.join();
    }
    // Every writer stopped on an error (the power is off): wait for the SIGKILL.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ensure_topic(engine: &Engine, name: &str, partitions: i32, config: TopicConfig) {
    if engine.topic(name).is_none() {
        block_on(engine.create_topic(name, partitions, config)).expect("create a topic at the start of a life");
    }
}

/// One line to the parent, written whole (stdout is a pipe: `println!` locks it per line).
fn say(line: &str) {
    println!("{line}");
}

// ---------------------------------------------------------------- what was acknowledged

#[derive(Default)]
struct Acknowledged {
    plain: BTreeMap<(i32, i64), String>,
    /// offset -> (key, value)
    keyed: BTreeMap<i64, (String, String)>,
    retained: BTreeMap<i64, String>,
    /// topic -> (offset, payload) of its acknowledged batch, for topics whose creation was
    /// acknowledged.
    created: BTreeMap<String, Option<(i64, String)>>,
    deleting: BTreeSet<String>,
    deleted: BTreeSet<String>,
}

impl Acknowledged {
    fn take(&mut self, line: &str) -> bool {
        let mut words = line.splitn(4, ' ');
        let kind = words.next().unwrap_or_default();
        let mut next = || words.next().unwrap_or_else(|| panic!("a short line from the child: {line:?}")).to_owned();
        match kind {
            "PLAIN" => {
                let partition = next().parse().expect("partition");
                let offset = next().parse().expect("offset");
                self.plain.insert((partition, offset), next());
            }
            "KEYED" => {
                let offset = next().parse().expect("offset");
                let key = next();
                self.keyed.insert(offset, (key, next()));
            }
            "RETAINED" => {
                let offset = next().parse().expect("offset");
                self.retained.insert(offset, next());
            }
            "CREATED" => {
                self.created.insert(next(), None);
            }
            "CHURNED" => {
                let name = next();
                let offset = next().parse().expect("offset");
                self.created.insert(name, Some((offset, next())));
            }
            "DELETING" => {
                self.deleting.insert(next());
            }
            "DELETED" => {
                self.deleted.insert(next());
            }
            _ => return false,
        }
        true
    }

    fn count(&self) -> usize {
        self.plain.len() + self.keyed.len() + self.retained.len() + self.created.len() + self.deleted.len()
    }
}

// ---------------------------------------------------------------- the checks

fn verify(dir: &Path, acked: &Acknowledged, context: &str) {
    // Recovery only: no retention or compaction pass while the checks read.
    let mut config = sluice_engine::EngineConfig::new(dir);
    config.shard_count = Some(2);
    config.pin_shards = false;
    config.retention_check_interval_ms = 3_600_000;
    let engine = Engine::open(config).expect("the engine opens on what the power loss left");
    verify_plain(&engine, acked, context);
    verify_compacted(&engine, acked, context);
    verify_retained(&engine, acked, context);
    verify_topics(&engine, acked, context);
    engine.shutdown();
}

fn verify_plain(engine: &Engine, acked: &Acknowledged, context: &str) {
    for partition in 0..2 {
        let target = TopicPartition::new(PLAIN, partition);
        let batches = if engine.topic(PLAIN).is_some() { read_all(engine, &target, 0) } else { Vec::new() };
        for (index, (header, _)) in batches.iter().enumerate() {
            assert_eq!(header.base_offset, index as i64, "{PLAIN}-{partition}: offsets dense ({context})");
        }
        for ((_, offset), payload) in acked.plain.range((partition, 0)..(partition, i64::MAX)) {
            let (_, bytes) = batches
                .get(*offset as usize)
                .unwrap_or_else(|| panic!("{PLAIN}-{partition}: acknowledged offset {offset} lost ({context})"));
            assert_eq!(
                single_value(bytes),
                payload.as_bytes(),
                "{PLAIN}-{partition}: bytes differ at {offset} ({context})"
            );
        }
    }
}

fn verify_compacted(engine: &Engine, acked: &Acknowledged, context: &str) {
    if engine.topic(COMPACTED).is_none() {
        assert!(acked.keyed.is_empty(), "the compacted topic is gone ({context})");
        return;
    }
    let target = TopicPartition::new(COMPACTED, 0);
    let mut records: Vec<(i64, String, String)> = Vec::new();
    for (header, bytes) in read_all(engine, &target, 0) {
        for record in batch::records(&bytes) {
            let text =
                |field: Option<&[u8]>| String::from_utf8(field.expect("keyed, with a value").to_vec()).expect("utf-8");
            records.push((header.base_offset + i64::from(record.offset_delta), text(record.key), text(record.value)));
        }
    }
    assert!(records.windows(2).all(|pair| pair[0].0 < pair[1].0), "{COMPACTED}: offsets increase ({context})");
    let mut last_read: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, key, value) in &records {
        last_read.insert(key, *offset);
        if let Some((acked_key, acked_value)) = acked.keyed.get(offset) {
            assert_eq!(
                (key, value),
                (acked_key, acked_value),
                "{COMPACTED}: offset {offset} holds another record than acknowledged ({context})"
            );
        }
    }
    let mut last_acked: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, (key, _)) in &acked.keyed {
        last_acked.insert(key, *offset);
    }
    for (key, offset) in last_acked {
        let kept = last_read.get(key).copied().unwrap_or(-1);
        assert!(
            kept >= offset,
            "{COMPACTED}: key {key} acknowledged last at {offset}, but the last record of it left is at {kept} ({context})"
        );
    }
}

fn verify_retained(engine: &Engine, acked: &Acknowledged, context: &str) {
    if engine.topic(RETAINED).is_none() {
        assert!(acked.retained.is_empty(), "the retained topic is gone ({context})");
        return;
    }
    let target = TopicPartition::new(RETAINED, 0);
    let offsets = block_on(engine.offsets(&target)).expect("offsets");
    let start = offsets.log_start_offset.0;
    let batches = read_all(engine, &target, start);
    for (index, (header, _)) in batches.iter().enumerate() {
        assert_eq!(header.base_offset, start + index as i64, "{RETAINED}: offsets dense from {start} ({context})");
    }
    let last = acked.retained.keys().next_back().copied().unwrap_or(-1);
    assert!(last < offsets.high_watermark.0, "{RETAINED}: acknowledged offset {last} past the end ({context})");
    for (offset, payload) in acked.retained.range(start..) {
        let (_, bytes) = &batches[(offset - start) as usize];
        assert_eq!(single_value(bytes), payload.as_bytes(), "{RETAINED}: bytes differ at {offset} ({context})");
    }
}

fn verify_topics(engine: &Engine, acked: &Acknowledged, context: &str) {
    for (name, batch_acked) in &acked.created {
        if acked.deleting.contains(name) {
            continue;
        }
        assert!(engine.topic(name).is_some(), "topic {name} was created, never deleted, and is gone ({context})");
        if let Some((offset, payload)) = batch_acked {
            let batches = read_all(engine, &TopicPartition::new(name.as_str(), 0), 0);
            let (_, bytes) = batches
                .get(*offset as usize)
                .unwrap_or_else(|| panic!("{name}: acknowledged offset {offset} lost ({context})"));
            assert_eq!(single_value(bytes), payload.as_bytes(), "{name}: bytes differ at {offset} ({context})");
        }
    }
    for name in &acked.deleted {
        assert!(engine.topic(name).is_none(), "topic {name} was deleted, and is back ({context})");
    }
}

// ---------------------------------------------------------------- the file system

/// One `sluice-powerfail mount` process.
struct Mount {
    process: Child,
    control: PathBuf,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Mount {
    fn new(binary: &Path, backing: &Path, mountpoint: &Path, control: &Path, seed: u64, log: &Path) -> Self {
        std::fs::create_dir_all(mountpoint).expect("mountpoint");
        let _stale = std::fs::remove_file(control);
        let log_path = log.to_owned();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("powerfail log");
        let process = Command::new(binary)
            .arg("mount")
            .args([backing, mountpoint])
            .arg("--control")
            .arg(control)
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sluice-powerfail");
        let mut mount = Self { process, control: control.to_owned(), mountpoint: mountpoint.to_owned(), log: log_path };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(status) = mount.process.try_wait().expect("poll") {
                panic!("sluice-powerfail exited with {status} before it mounted:\n{}", mount.log_tail());
            }
            if mount.command("status").is_ok_and(|answer| answer.starts_with("ok")) {
                return mount;
            }
            assert!(Instant::now() < deadline, "sluice-powerfail did not mount within {MOUNT_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the process wrote.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn command(&self, line: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&self.control)?;
        stream.set_read_timeout(Some(Duration::from_mins(1)))?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.trim().to_owned())
    }

    fn power_off(&self, after_writes: Option<u64>) -> String {
        let line = match after_writes {
            Some(count) => format!("power-off --torn --after-writes {count}"),
            None => "power-off --torn".to_owned(),
        };
        let answer = self.command(&line).expect("power-off");
        assert!(answer.starts_with("ok"), "{line}: {answer}");
        answer
    }

    /// Unmounts (retrying while busy) and waits for the process to exit cleanly.
    fn unmount(mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            let answer = self.command("unmount").unwrap_or_else(|error| error.to_string());
            if answer == "ok" {
                break;
            }
            assert!(Instant::now() < deadline, "unmount kept failing: {answer}");
            std::thread::sleep(Duration::from_millis(100));
        }
        loop {
            if let Some(status) = self.process.try_wait().expect("poll") {
                assert!(status.success(), "sluice-powerfail exited with {status}:\n{}", self.log_tail());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sluice-powerfail did not exit after the unmount; its threads:\n{}\nits log:\n{}",
                thread_states(self.process.id()),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // After a failure: detach lazily and end the process.
        if self.process.try_wait().ok().flatten().is_none() {
            let _detached = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
            let _killed = self.process.kill();
            let _reaped = self.process.wait();
        }
    }
}

/// Each thread of process `pid`: its name, state and kernel stack (as root), for a report.
fn thread_states(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return "(gone)".to_owned() };
    let mut report = String::new();
    for task in tasks.filter_map(Result::ok) {
        let read = |name: &str| std::fs::read_to_string(task.path().join(name)).unwrap_or_default();
        let state = read("status").lines().find(|line| line.starts_with("State:")).unwrap_or_default().to_owned();
        let _infallible = writeln!(report, "{} {state} {}\n{}", read("comm").trim(), read("wchan"), read("stack"));
    }
    report
}

/// The sluice-powerfail binary, or why this test cannot run here.
fn powerfail_binary() -> Result<PathBuf, String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".to_owned());
    }
    if let Err(error) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Err(format!("/dev/fuse cannot be opened: {error}"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (the test mounts with the kernel's FUSE directly)".to_owned());
    }
    let binary = std::env::var_os("SLUICE_POWERFAIL_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice-powerfail"),
        PathBuf::from,
    );
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --release -p sluice-powerfail` or set SLUICE_POWERFAIL_BIN",
            binary.display()
        ))
    }
}

// ---------------------------------------------------------------- the loop

/// Reads the child's lines on a thread: every acknowledgement, and READY.
fn read_lines(child: &mut Child) -> (std::sync::mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (receiver, reader)
}

#[test]
fn power_loss_never_loses_acknowledged_durable_appends() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var(CYCLE_ENV).ok().and_then(|cycle| cycle.parse().ok()).unwrap_or(0);
        run_child(Path::new(&dir), cycle);
        return;
    }
    let binary = match powerfail_binary() {
        Ok(binary) => binary,
        Err(reason) => {
            println!("power-loss test not run: {reason}");
            return;
        }
    };
    let cycles: u64 = std::env::var("POWER_CYCLES").ok().and_then(|cycles| cycles.parse().ok()).unwrap_or(12);
    let seed = common::seed_from_env();
    println!("power-loss test seed {seed} (replay with SEED={seed})");
    let mut random = seed;
    let root = tempfile::tempdir().expect("temp dir");
    let backing = root.path().join("backing");
    std::fs::create_dir(&backing).expect("backing dir");
    let log = root.path().join("powerfail.log");
    let executable = std::env::current_exe().expect("test binary path");
    let mut acked = Acknowledged::default();
    let (mut dropped, mut torn) = (0u64, 0u64);
    for cycle in 0..cycles {
        let mount = Mount::new(
            &binary,
            &backing,
            &root.path().join("mnt"),
            &root.path().join("control.sock"),
            seed ^ cycle,
            &log,
        );
        let data = mount.mountpoint.join("data");
        if cycle == 0 {
            std::fs::create_dir(&data).expect("data dir");
            std::fs::File::open(&mount.mountpoint).and_then(|dir| dir.sync_all()).expect("fsync the mountpoint");
        }
        let mut child = Command::new(&executable)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &data)
            .env(CYCLE_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let (lines, reader) = read_lines(&mut child);
        let context = format!("cycle {cycle}, seed {seed}");
        let ready_by = Instant::now() + READY_TIMEOUT;
        loop {
            let remaining = ready_by.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(line) if line == "READY" => break,
                Ok(line) => {
                    acked.take(&line);
                }
                Err(_) => {
                    let _killed = child.kill();
                    panic!("the child did not open the engine within {READY_TIMEOUT:?} ({context})");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50 + common::next_random(&mut random) % 400));
        let order = common::next_random(&mut random) % 3;
        let report = match order {
            0 => {
                let report = mount.power_off(Some(1 + common::next_random(&mut random) % 100));
                child.kill().expect("SIGKILL");
                report
            }
            1 => {
                let report = mount.power_off(None);
                child.kill().expect("SIGKILL");
                report
            }
            _ => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                mount.power_off(None)
            }
        };
        child.wait().expect("reap");
        reader.join().expect("reader");
        while let Ok(line) = lines.try_recv() {
            acked.take(&line);
        }
        for field in report.split_whitespace() {
            if let Some(bytes) = field.strip_prefix("unsynced_bytes_dropped=") {
                dropped += u64::from(bytes != "0");
            }
            if let Some(files) = field.strip_prefix("torn_files=") {
                torn += files.parse::<u64>().unwrap_or(0);
            }
        }
        mount.unmount();
        verify(&backing.join("data"), &acked, &format!("{context}, order {order}, {report}"));
    }
    println!(
        "{cycles} power losses: {} acknowledgements verified ({} plain, {} compacted, {} retained, {} topics created, \
         {} deleted); {dropped} power-offs dropped unsynced bytes, {torn} files torn",
        acked.count(),
        acked.plain.len(),
        acked.keyed.len(),
        acked.retained.len(),
        acked.created.len(),
        acked.deleted.len()
    );
    assert!(acked.plain.len() > 100, "the children acknowledged too little to prove anything");
    assert!(!acked.deleted.is_empty() && !acked.keyed.is_empty(), "no topic deleted or no keyed record acknowledged");
}
