//! One producer connection: a writer thread that builds and sends Produce requests and a reader
//! thread that receives their responses in order and measures latency.
//!
//! The writer holds a credit per request in flight (`max_in_flight` credits, returned by the
//! reader), so at most that many requests are outstanding, like Kafka's
//! `max.in.flight.requests.per.connection`. Records are assigned to partitions stickily: each
//! batch fills one partition, and one request carries up to one batch per partition of the
//! connection (bounded by `max_request_size`).
//!
//! Scheduling:
//! - Closed loop (no rate): whenever a credit is free, build a request of full batches; each
//!   record's start time is when the request was built.
//! - Open loop (`--rate`): record k of this connection is scheduled at `k / rate`. Records that are
//!   due but not yet sent are only a count, so a slow broker builds no memory backlog; when they
//!   are sent, their latency still runs from the scheduled time, which keeps coordinated omission
//!   visible. A partial batch waits for more records at most `linger_ms`.
//!
//! Latency is recorded per record (response time minus its start time) for records scheduled
//! after the warm-up; with acks=0 there is no response and so no latency.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest;
use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
use sluice_client::requests::{TopicRef, produce_request, produced_partitions};
use sluice_client::{Connection, RequestWriter, ResponseReader, Ticket};

use crate::args::{Bound, Config};
use crate::payload::{Clock, Payload};
use crate::plan::{Assignment, connection_config};
use crate::report::{Live, ProducerStats};

/// What one producer connection is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct ProducerSpec {
    pub assignment: Assignment,
    /// Records this connection produces in records mode.
    pub quota: Option<u64>,
    /// Records/s for this connection in open loop.
    pub rate: Option<f64>,
    /// Stamp values with this run id (end-to-end mode).
    pub run_id: Option<u32>,
}

/// Shared, read-only inputs of the producer and consumer threads.
#[derive(Clone)]
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub topic: TopicRef,
    pub live: Arc<Live>,
}

/// Metadata of one batch in a request in flight.
#[derive(Debug, Clone, Copy)]
struct BatchMeta {
    partition: i32,
    records: u32,
    first_ns: u64,
    last_ns: u64,
}

/// A request in flight, handed from writer to reader.
struct InFlight {
    ticket: Ticket<ProduceRequest>,
    sent_ns: u64,
    batches: Vec<BatchMeta>,
}

/// Starts the connection's threads. The thread connects, reports readiness on `ready`, waits for
/// the run's clock on `start`, produces, and returns its statistics.
pub(crate) fn spawn(
    spec: ProducerSpec,
    shared: Shared,
    ready: Sender<anyhow::Result<()>>,
    start: Receiver<Clock>,
) -> JoinHandle<ProducerStats> {
    std::thread::spawn(move || {
        let connected = Connection::connect(&spec.assignment.address, &connection_config(&shared.config))
            .with_context(|| format!("producer connecting to {}", spec.assignment.address));
        let connection = match connected {
            Ok(connection) => {
                ready.send(Ok(())).ok();
                connection
            }
            Err(error) => {
                let mut stats = ProducerStats::new();
                stats.fatal = Some(format!("{error:#}"));
                ready.send(Err(error)).ok();
                return stats;
            }
        };
        let Ok(clock) = start.recv() else { return ProducerStats::new() };
        run(&spec, &shared, connection, clock)
    })
}

fn run(spec: &ProducerSpec, shared: &Shared, connection: Connection, clock: Clock) -> ProducerStats {
    let config = &shared.config;
    let (mut writer, reader) = connection.into_split();
    let (inflight_tx, inflight_rx) = mpsc::channel::<InFlight>();
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(config.max_in_flight);
    for _ in 0..config.max_in_flight {
        credit_tx.send(()).expect("the credit channel holds max_in_flight credits");
    }
    let warmup_ns = config.warmup.as_nanos() as u64;
    let reader_thread = (config.acks != 0).then(|| {
        let live = Arc::clone(&shared.live);
        std::thread::spawn(move || read_responses(reader, &inflight_rx, &credit_tx, &live, clock, warmup_ns))
    });
    let mut state = WriterState::new(spec, config);
    let written = state.write_requests(&mut writer, shared, &inflight_tx, &credit_rx, clock);
    drop(inflight_tx);
    let mut stats = if let Some(thread) = reader_thread {
        thread.join().unwrap_or_else(|_| {
            let mut stats = ProducerStats::new();
            stats.fatal = Some("response reader panicked".to_owned());
            stats
        })
    } else {
        let mut stats = ProducerStats::new();
        stats.measured_records = state.measured_sent;
        stats.measured_end_ns = state.last_send_ns;
        stats
    };
    stats.records_sent = state.sent;
    if let Err(error) = written {
        shared.live.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        stats.fatal.get_or_insert(format!("{error:#}"));
    }
    stats
}

struct WriterState {
    builders: Vec<BatchBuilder>,
    partitions: Vec<i32>,
    payload: Payload,
    records_per_batch: u64,
    batches_per_request: usize,
    partition_cursor: usize,
    /// Records built so far; in open loop also the index of the next scheduled record.
    sent: u64,
    measured_sent: u64,
    last_send_ns: u64,
    quota: Option<u64>,
    interval_ns: Option<f64>,
    end_ns: Option<u64>,
    warmup_ns: u64,
    linger_ns: u64,
    acks: i16,
    timeout_ms: i32,
}

impl WriterState {
    fn new(spec: &ProducerSpec, config: &Config) -> Self {
        let options = BatchOptions { compression: config.compression, ..BatchOptions::default() };
        let records_per_batch = records_per_batch(config.record_size_bytes, config.batch_size_bytes);
        let batch_size_bytes =
            (records_per_batch as usize * (config.record_size_bytes + 12)).max(config.batch_size_bytes);
        let batches_per_request =
            (config.max_request_size_bytes / batch_size_bytes).clamp(1, spec.assignment.partitions.len());
        let warmup_ns = config.warmup.as_nanos() as u64;
        Self {
            builders: spec
                .assignment
                .partitions
                .iter()
                .map(|_| BatchBuilder::with_capacity(options, batch_size_bytes))
                .collect(),
            partitions: spec.assignment.partitions.clone(),
            payload: Payload::new(config.record_size_bytes, config.seed, spec.run_id),
            records_per_batch,
            batches_per_request,
            partition_cursor: 0,
            sent: 0,
            measured_sent: 0,
            last_send_ns: 0,
            quota: spec.quota,
            interval_ns: spec.rate.map(|rate| 1e9 / rate),
            end_ns: match config.bound {
                Bound::Records(_) => None,
                Bound::Duration(duration) => Some(warmup_ns + duration.as_nanos() as u64),
            },
            warmup_ns,
            linger_ns: config.linger_ms * 1_000_000,
            acks: config.acks,
            timeout_ms: config.request_timeout.as_millis() as i32,
        }
    }

    fn write_requests(
        &mut self,
        writer: &mut RequestWriter,
        shared: &Shared,
        inflight_tx: &Sender<InFlight>,
        credit_rx: &Receiver<()>,
        clock: Clock,
    ) -> anyhow::Result<()> {
        loop {
            if shared.live.should_stop() {
                return Ok(());
            }
            let Some(count) = self.next_request_size(clock) else { return Ok(()) };
            if count == 0 {
                continue; // next_request_size slept until records are due
            }
            if self.acks != 0 && !take_credit(credit_rx, &shared.live) {
                return Ok(());
            }
            // Open loop: more records may have come due while waiting for the credit.
            let count = if self.interval_ns.is_some() {
                self.next_request_size(clock).unwrap_or(count).max(count)
            } else {
                count
            };
            let now_ns = clock.now_ns();
            let (request, batches) = self.build_request(&shared.topic, count, now_ns)?;
            let sent_ns = clock.now_ns();
            if self.acks == 0 {
                writer.enqueue_without_response(&request)?;
                self.last_send_ns = sent_ns;
            } else {
                let ticket = writer.enqueue(&request)?;
                if inflight_tx.send(InFlight { ticket, sent_ns, batches }).is_err() {
                    return Ok(()); // the reader failed and reported why
                }
            }
            Live::add(&shared.live.records_sent, count);
        }
    }

    /// Records to put in the next request; `Some(0)` after sleeping, `None` when done.
    fn next_request_size(&mut self, clock: Clock) -> Option<u64> {
        let remaining = self.quota.map_or(u64::MAX, |quota| quota - self.sent);
        if remaining == 0 {
            return None;
        }
        let request_max = (self.records_per_batch * self.batches_per_request as u64).min(remaining);
        let now_ns = clock.now_ns();
        let Some(interval_ns) = self.interval_ns else {
            return if self.end_ns.is_some_and(|end| now_ns >= end) { None } else { Some(request_max) };
        };
        let horizon_ns = self.end_ns.map_or(now_ns, |end| end.min(now_ns));
        let due = ((horizon_ns as f64 / interval_ns) as u64 + 1).min(self.sent.saturating_add(remaining));
        let backlog = due.saturating_sub(self.sent);
        let oldest_ns = self.scheduled_ns(self.sent);
        if backlog == 0 {
            if self.end_ns.is_some_and(|end| now_ns >= end || oldest_ns >= end) {
                return None;
            }
            sleep_until(clock, oldest_ns);
            return Some(0);
        }
        let batch_ready = backlog >= self.records_per_batch.min(remaining);
        let lingered = now_ns >= oldest_ns + self.linger_ns;
        let ending = self.end_ns.is_some_and(|end| now_ns >= end);
        if !(batch_ready || lingered || ending) {
            let full_at_ns = self.scheduled_ns(self.sent + self.records_per_batch - 1);
            sleep_until(clock, full_at_ns.min(oldest_ns + self.linger_ns));
            return Some(0);
        }
        Some(backlog.min(request_max))
    }

    fn scheduled_ns(&self, index: u64) -> u64 {
        self.interval_ns.map_or(0, |interval_ns| (index as f64 * interval_ns) as u64)
    }

    /// Builds one request holding `count` records: full batches for consecutive partitions.
    fn build_request(
        &mut self,
        topic: &TopicRef,
        count: u64,
        now_ns: u64,
    ) -> anyhow::Result<(ProduceRequest, Vec<BatchMeta>)> {
        let timestamp_ms = unix_ms();
        let mut remaining = count;
        let mut batches: Vec<(i32, Bytes)> = Vec::with_capacity(self.batches_per_request);
        let mut metas = Vec::with_capacity(self.batches_per_request);
        while remaining > 0 {
            let slot = self.partition_cursor;
            self.partition_cursor = (self.partition_cursor + 1) % self.partitions.len();
            let records = remaining.min(self.records_per_batch);
            let first_index = self.sent;
            let interval_ns = self.interval_ns;
            let builder = &mut self.builders[slot];
            for index in first_index..first_index + records {
                let scheduled_ns = interval_ns.map_or(now_ns, |interval_ns| (index as f64 * interval_ns) as u64);
                let value = self.payload.next(scheduled_ns);
                builder.push(&NewRecord { timestamp_ms, value: Some(value), ..NewRecord::default() })?;
            }
            batches.push((self.partitions[slot], builder.finish()?));
            let (first_ns, last_ns) = if self.interval_ns.is_some() {
                (self.scheduled_ns(first_index), self.scheduled_ns(first_index + records - 1))
            } else {
                (now_ns, now_ns)
            };
            metas.push(BatchMeta { partition: self.partitions[slot], records: records as u32, first_ns, last_ns });
            if self.acks == 0 {
                self.measured_sent += count_measured(first_ns, last_ns, records, self.warmup_ns);
            }
            self.sent += records;
            remaining -= records;
        }
        Ok((produce_request(topic, self.acks, self.timeout_ms, batches), metas))
    }
}

/// Records of `record_size_bytes` that fit a batch of `batch_size_bytes` (at least one).
fn records_per_batch(record_size_bytes: usize, batch_size_bytes: usize) -> u64 {
    let value = vec![0u8; record_size_bytes];
    let mut builder = BatchBuilder::new(BatchOptions::default());
    let record = NewRecord { timestamp_ms: 0, value: Some(&value), ..NewRecord::default() };
    let mut count = 0;
    loop {
        let next = BatchBuilder::record_size_bytes(&record, count as i32, 0);
        if count > 0 && builder.size_bytes() + next > batch_size_bytes {
            return count;
        }
        if builder.push(&record).is_err() {
            return count.max(1);
        }
        count += 1;
    }
}

/// Waits for a credit, checking the stop flag; `false` when the run is over.
fn take_credit(credit_rx: &Receiver<()>, live: &Live) -> bool {
    loop {
        match credit_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => return true,
            Err(RecvTimeoutError::Timeout) if !live.should_stop() => {}
            Err(_) => return false,
        }
    }
}

fn sleep_until(clock: Clock, target_ns: u64) {
    let now_ns = clock.now_ns();
    if target_ns > now_ns {
        // Capped so the stop flag is checked at least every 50 ms.
        std::thread::sleep(Duration::from_nanos((target_ns - now_ns).min(50_000_000)));
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// How many of `records` evenly spread from `first_ns` to `last_ns` start at or after `warmup_ns`.
fn count_measured(first_ns: u64, last_ns: u64, records: u64, warmup_ns: u64) -> u64 {
    if first_ns >= warmup_ns {
        return records;
    }
    if last_ns < warmup_ns || records <= 1 {
        return 0;
    }
    let step = (last_ns - first_ns) as f64 / (records - 1) as f64;
    let skipped = ((warmup_ns - first_ns) as f64 / step).ceil() as u64;
    records.saturating_sub(skipped)
}

fn read_responses(
    mut reader: ResponseReader,
    inflight_rx: &Receiver<InFlight>,
    credit_tx: &SyncSender<()>,
    live: &Live,
    clock: Clock,
    warmup_ns: u64,
) -> ProducerStats {
    let mut stats = ProducerStats::new();
    while let Ok(inflight) = inflight_rx.recv() {
        let response = match reader.receive(inflight.ticket) {
            Ok(response) => response,
            Err(error) => {
                stats.fatal = Some(format!("{:#}", anyhow::Error::from(error)));
                live.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
        };
        let now_ns = clock.now_ns();
        stats.request_latency_us.saturating_record(((now_ns - inflight.sent_ns) / 1_000).max(1));
        let results: Vec<_> = produced_partitions(&response).collect();
        for batch in &inflight.batches {
            let result = results.iter().find(|result| result.partition == batch.partition);
            match result.map(|result| result.error) {
                Some(None) => record_batch(&mut stats, live, batch, now_ns, warmup_ns),
                Some(Some(error)) => record_failure(&mut stats, live, batch, &format!("{error:?}")),
                None => record_failure(&mut stats, live, batch, "MissingPartitionInResponse"),
            }
        }
        credit_tx.send(()).ok();
    }
    stats
}

fn record_batch(stats: &mut ProducerStats, live: &Live, batch: &BatchMeta, now_ns: u64, warmup_ns: u64) {
    let records = u64::from(batch.records);
    stats.records_acked += records;
    Live::add(&live.records_acked, records);
    let mut latency_us_max = 0;
    if batch.first_ns == batch.last_ns || records == 1 {
        let latency_us = (now_ns.saturating_sub(batch.first_ns) / 1_000).max(1);
        latency_us_max = latency_us;
        if batch.first_ns >= warmup_ns {
            stats.latency_us.saturating_record_n(latency_us, records);
            stats.measured_records += records;
        }
    } else {
        let step = (batch.last_ns - batch.first_ns) as f64 / (records - 1) as f64;
        for index in 0..records {
            let scheduled_ns = batch.first_ns + (index as f64 * step) as u64;
            let latency_us = (now_ns.saturating_sub(scheduled_ns) / 1_000).max(1);
            latency_us_max = latency_us_max.max(latency_us);
            if scheduled_ns >= warmup_ns {
                stats.latency_us.saturating_record(latency_us);
                stats.measured_records += 1;
            }
        }
    }
    if stats.measured_records > 0 {
        stats.measured_end_ns = now_ns;
    }
    live.interval_latency_us_max.fetch_max(latency_us_max, std::sync::atomic::Ordering::Relaxed);
}

fn record_failure(stats: &mut ProducerStats, live: &Live, batch: &BatchMeta, code: &str) {
    let records = u64::from(batch.records);
    stats.records_failed += records;
    *stats.error_codes.entry(code.to_owned()).or_insert(0) += records;
    Live::add(&live.records_failed, records);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_batch_fills_the_batch_size() {
        // 100-byte values take 100 + 7 or 8 bytes each in a batch (length, attributes, deltas,
        // null key, value length, header count): 16 KiB - 61 B of header holds about 150.
        let count = records_per_batch(100, 16_384);
        assert!((140..=155).contains(&count), "{count}");
        assert_eq!(records_per_batch(100_000, 16_384), 1);
    }

    #[test]
    fn warm_up_records_are_not_measured() {
        assert_eq!(count_measured(100, 200, 11, 50), 11);
        assert_eq!(count_measured(100, 200, 11, 300), 0);
        assert_eq!(count_measured(100, 200, 11, 150), 6);
    }
}
