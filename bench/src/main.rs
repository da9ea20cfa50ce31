//! `produce-load`: a Kafka-protocol load generator for any Kafka-compatible broker.
//!
//! Threads: the main thread plans the run, starts one writer and one reader thread per producer
//! connection and one thread per consumer, prints a progress line each second on stderr,
//! enforces the hard timeout, and merges the threads' histograms into the report.
//!
//! Run steps:
//! 1. Validate flags; connect to the bootstrap broker; ensure the topic; assign partitions.
//! 2. Start consumers and producers; each connects (consumers also read the log end offsets)
//!    and reports ready.
//! 3. Start the run clock for all at once; producers run until their bound (records or warm-up
//!    plus duration), consumers until they have read every acknowledged record.
//! 4. Stop everything at the hard timeout; merge statistics; print the table and, with `--json`,
//!    one JSON object as the last line of stdout.

mod args;
mod consumer;
mod host;
mod payload;
mod plan;
mod producer;
mod report;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;

use crate::args::{Args, Bound, Config};
use crate::payload::Clock;
use crate::plan::Plan;
use crate::producer::{ProducerSpec, Shared};
use crate::report::{ConsumerStats, Live, Outcome, ProducerStats, Report, RunInfo};

/// How long threads get to finish after the hard timeout before their results are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let result = Config::from_args(args).and_then(|config| run(&config));
    match result {
        Ok(report) => {
            print!("{}", report.table());
            if json {
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(error) => eprintln!("error: cannot serialize the report: {error}"),
                }
            }
            if report.timed_out || !report.fatal.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The threads of a run, started but waiting for the clock.
struct Threads {
    producers: Vec<JoinHandle<ProducerStats>>,
    consumers: Vec<JoinHandle<ConsumerStats>>,
    starts: Vec<Sender<Clock>>,
}

fn run(config: &Config) -> anyhow::Result<Report> {
    let started_at_unix_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let deadline = Instant::now() + config.timeout;
    let plan = plan::prepare(config)?;
    let run_id = run_id();
    let live = Arc::new(Live::default());
    let shared = Shared { config: Arc::new(config.clone()), topic: plan.topic.clone(), live: Arc::clone(&live) };
    let threads = start_threads(config, &plan, &shared, run_id)?;
    let load_avg_1m_at_start = host::load_average();
    let cpu_at_start = host::CpuTimes::read();
    let clock = Clock::start();
    for start in &threads.starts {
        start.send(clock).ok();
    }
    let timed_out = monitor(config, &live, &threads, clock, deadline);
    let host_cpu = host::HostCpu {
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        load_avg_1m_at_start,
        over_run: cpu_at_start.zip(host::CpuTimes::read()).and_then(|(start, end)| host::CpuShare::between(start, end)),
    };
    let mut lost = Vec::new();
    let producers = collect(threads.producers, "producer", &mut lost);
    let consumers = collect(threads.consumers, "consumer", &mut lost);
    let run = RunInfo {
        tool: "produce-load",
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("SLUICE_BENCH_COMMIT"),
        host: host_name(),
        started_at_unix_s,
        produce_version: plan.produce_version,
        fetch_version: plan.fetch_version,
        partitions: plan.partition_count,
        producer_connections: plan.producers.len(),
        consumer_connections: plan.consumers.len(),
        host_cpu,
    };
    let outcome = Outcome { run, warmup_ns: config.warmup.as_nanos() as u64, timed_out };
    let consumers = (config.consumers > 0).then_some(consumers.as_slice());
    let mut report = Report::build(config, outcome, &producers, consumers);
    report.fatal.extend(lost);
    Ok(report)
}

/// Step 2: spawn every thread and wait until all are connected.
fn start_threads(config: &Config, plan: &Plan, shared: &Shared, run_id: u32) -> anyhow::Result<Threads> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Threads { producers: Vec::new(), consumers: Vec::new(), starts: Vec::new() };
    for assignment in &plan.consumers {
        let (start_tx, start_rx) = mpsc::channel();
        threads.starts.push(start_tx);
        let handle = consumer::spawn(assignment.clone(), shared.clone(), run_id, ready_tx.clone(), start_rx);
        threads.consumers.push(handle);
    }
    let connections = plan.producers.len() as u64;
    for (index, assignment) in plan.producers.iter().enumerate() {
        let (start_tx, start_rx) = mpsc::channel();
        threads.starts.push(start_tx);
        let spec = ProducerSpec {
            assignment: assignment.clone(),
            quota: match config.bound {
                // Spread the total evenly; the first connections take the remainder.
                Bound::Records(total) => Some(total / connections + u64::from((index as u64) < total % connections)),
                Bound::Duration(_) => None,
            },
            rate: config.rate_records_per_sec.map(|rate| rate / connections as f64),
            run_id: (config.consumers > 0).then_some(run_id),
        };
        threads.producers.push(producer::spawn(spec, shared.clone(), ready_tx.clone(), start_rx));
    }
    drop(ready_tx);
    let expected = threads.producers.len() + threads.consumers.len();
    for _ in 0..expected {
        let ready = ready_rx.recv_timeout(config.request_timeout + Duration::from_secs(5));
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.context("starting the load threads")),
            Err(_) => bail!("the load threads did not connect within the request timeout"),
        }
    }
    Ok(threads)
}

/// Step 3-4: progress each second; returns whether the hard timeout was hit.
fn monitor(config: &Config, live: &Live, threads: &Threads, clock: Clock, deadline: Instant) -> bool {
    let mut last = (0u64, 0u64, 0u64);
    let mut last_cpu = host::CpuTimes::read();
    let mut timed_out = false;
    let mut tick = 1u64;
    loop {
        let producers_running = threads.producers.iter().any(|handle| !handle.is_finished());
        if !producers_running {
            live.producers_done.store(true, Ordering::Relaxed);
        }
        if !producers_running && threads.consumers.iter().all(JoinHandle::is_finished) {
            return timed_out;
        }
        if Instant::now() >= deadline {
            if timed_out {
                return true; // grace period over: abandon what has not finished
            }
            eprintln!("produce-load: hard timeout of {:.0}s reached, stopping", config.timeout.as_secs_f64());
            live.stop.store(true, Ordering::Relaxed);
            timed_out = true;
        }
        let next_tick_ns = tick * 1_000_000_000;
        let sleep_ns = next_tick_ns.saturating_sub(clock.now_ns()).min(20_000_000);
        std::thread::sleep(Duration::from_nanos(sleep_ns.max(1_000_000)));
        if clock.now_ns() >= next_tick_ns {
            last = progress(config, live, clock, last, &mut last_cpu);
            tick += 1;
        }
        if timed_out && Instant::now() >= deadline + STOP_GRACE {
            return true;
        }
    }
}

/// Prints one progress line, with the host's CPU steal over the second where there was any;
/// returns the counters it read.
fn progress(
    config: &Config,
    live: &Live,
    clock: Clock,
    last: (u64, u64, u64),
    last_cpu: &mut Option<host::CpuTimes>,
) -> (u64, u64, u64) {
    let sent = Live::read(&live.records_sent);
    let acked = Live::read(&live.records_acked);
    let consumed = Live::read(&live.records_consumed);
    let failed = Live::read(&live.records_failed);
    let latency_us_max = live.interval_latency_us_max.swap(0, Ordering::Relaxed);
    let counted = if config.acks == 0 { sent - last.0 } else { acked - last.1 };
    let megabytes = counted as f64 * config.record_size_bytes as f64 / (1024.0 * 1024.0);
    let mut line = format!(
        "[{:6.1}s] {counted:>9} rec/s {megabytes:8.2} MB/s  sent {sent} acked {acked} errors {failed}  max latency {:.1} ms",
        clock.now_ns() as f64 / 1e9,
        latency_us_max as f64 / 1_000.0,
    );
    if config.consumers > 0 {
        line = format!("{line}  consumed {consumed} ({} rec/s)", consumed - last.2);
    }
    let cpu = host::CpuTimes::read();
    if let Some(share) = last_cpu.zip(cpu).and_then(|(before, now)| host::CpuShare::between(before, now))
        && share.steal_pct > 0.0
    {
        line = format!("{line}  host steal {:.0}%", share.steal_pct);
    }
    *last_cpu = cpu;
    eprintln!("{line}");
    (sent, acked, consumed)
}

/// Joins the finished threads; notes in `lost` each thread whose figures are missing.
fn collect<T>(handles: Vec<JoinHandle<T>>, role: &str, lost: &mut Vec<String>) -> Vec<T> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        if !handle.is_finished() {
            lost.push(format!("a {role} thread did not stop in time; its figures are missing"));
            continue;
        }
        match handle.join() {
            Ok(result) => results.push(result),
            Err(_) => lost.push(format!("a {role} thread panicked; its figures are missing")),
        }
    }
    results
}

/// A run id that differs between runs, so consumers ignore records of earlier runs.
fn run_id() -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
