//! End-to-end mode: one consumer thread per consumer connection fetches its partitions from the
//! log end offsets taken before producing began, and measures, for every record of this run,
//! the time from its scheduled send to its arrival in a Fetch response.
//!
//! Each value starts with a stamp (run id, scheduled nanoseconds on the run's clock), so the
//! measurement needs no clock synchronisation and ignores records of other runs. A consumer stops
//! when the producers are done and every acknowledged record has been consumed, when the drain
//! deadline passes, or on the stop flag.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_client::Connection;
use sluice_client::decode::BatchIter;
use sluice_client::requests::{FetchLimits, LATEST_TIMESTAMP, fetch_request, fetched_partitions};

use crate::payload::{Clock, read_stamp};
use crate::plan::{Assignment, connection_config};
use crate::producer::Shared;
use crate::report::{ConsumerStats, Live, latency_histogram};

/// How long consumers keep fetching after the producers finish, waiting for the last records.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Starts one consumer thread; like a producer, it reports readiness (after reading its start
/// offsets) and then waits for the run's clock.
pub(crate) fn spawn(
    assignment: Assignment,
    shared: Shared,
    run_id: u32,
    ready: Sender<anyhow::Result<()>>,
    start: Receiver<Clock>,
) -> JoinHandle<ConsumerStats> {
    std::thread::spawn(move || {
        let mut stats = ConsumerStats {
            latency_us: latency_histogram(),
            records_consumed: 0,
            fetch_errors: std::collections::BTreeMap::new(),
            fatal: None,
        };
        let prepared = prepare(&assignment, &shared);
        let (mut connection, positions) = match prepared {
            Ok(prepared) => {
                ready.send(Ok(())).ok();
                prepared
            }
            Err(error) => {
                stats.fatal = Some(format!("{error:#}"));
                ready.send(Err(error)).ok();
                return stats;
            }
        };
        let Ok(clock) = start.recv() else { return stats };
        if let Err(error) = consume(&mut connection, positions, &shared, run_id, clock, &mut stats) {
            stats.fatal = Some(format!("{error:#}"));
            shared.live.stop.store(true, Ordering::Relaxed);
        }
        stats
    })
}

fn prepare(assignment: &Assignment, shared: &Shared) -> anyhow::Result<(Connection, Vec<(i32, i64)>)> {
    let mut connection = Connection::connect(&assignment.address, &connection_config(&shared.config))
        .with_context(|| format!("consumer connecting to {}", assignment.address))?;
    let positions = connection
        .list_offsets(&shared.topic, &assignment.partitions, LATEST_TIMESTAMP)
        .context("reading the log end offsets")?;
    Ok((connection, positions))
}

fn consume(
    connection: &mut Connection,
    mut positions: Vec<(i32, i64)>,
    shared: &Shared,
    run_id: u32,
    clock: Clock,
    stats: &mut ConsumerStats,
) -> anyhow::Result<()> {
    let warmup_ns = shared.config.warmup.as_nanos() as u64;
    let limits = FetchLimits { max_wait_ms: 100, ..FetchLimits::default() };
    let mut drain_started: Option<Instant> = None;
    while !shared.live.should_stop() {
        if shared.live.producers_done.load(Ordering::Relaxed) {
            let drained = Live::read(&shared.live.records_consumed) >= Live::read(&shared.live.records_acked);
            let started = *drain_started.get_or_insert_with(Instant::now);
            if drained || started.elapsed() >= DRAIN_MAX {
                return Ok(());
            }
        }
        let asked = Instant::now();
        let response = connection.fetch(&fetch_request(&shared.topic, &positions, limits))?;
        let now_ns = clock.now_ns();
        let mut consumed = 0;
        for partition in fetched_partitions(&response) {
            if let Some(error) = partition.error {
                *stats.fetch_errors.entry(format!("{error:?}")).or_insert(0) += 1;
                continue;
            }
            let Some(position) = positions.iter_mut().find(|(index, _)| *index == partition.partition) else {
                continue;
            };
            for batch in BatchIter::new(partition.records) {
                let batch = batch?;
                if !batch.info.is_control() {
                    for record in batch.records() {
                        let record = record?;
                        if record.offset < position.1 {
                            continue;
                        }
                        let Some(scheduled_ns) = record.value.and_then(|value| read_stamp(value, run_id)) else {
                            continue;
                        };
                        consumed += 1;
                        if scheduled_ns >= warmup_ns {
                            stats.latency_us.saturating_record((now_ns.saturating_sub(scheduled_ns) / 1_000).max(1));
                        }
                    }
                }
                position.1 = position.1.max(batch.info.last_offset() + 1);
            }
        }
        stats.records_consumed += consumed;
        Live::add(&shared.live.records_consumed, consumed);
        if consumed == 0 && asked.elapsed() < Duration::from_millis(1) {
            // The broker answered an empty fetch without waiting: do not spin on a shared core.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}
