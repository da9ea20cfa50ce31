//! Fetch (v4-v16), without fetch sessions: every response carries session id 0, which clients
//! read as "no session", so they keep sending full requests (KIP-227 allows a broker to decline).
//!
//! Steps:
//! 1. resolve topics by name (v4-v12) or id (v13+);
//! 2. register a "new data" listener on every partition, then read all partitions at once
//!    (each read runs on the partition's owning shard), each up to its `partition_max_bytes`;
//! 3. keep whole partitions in request order while the total stays under `max_bytes`; the first
//!    non-empty partition is always kept whole, even when larger (KIP-74);
//! 4. answer when at least `min_bytes` were found, on any partition error, at `max_wait_ms`, or on
//!    shutdown; otherwise wait for a listener to fire and go back to step 2.
//!
//! A fetch from a follower (`replica_id`, or `replica_state` from v15, at least 0) reads up to
//! the log end instead of the high watermark; a `last_fetched_epoch` that this leader's log does
//! not share answers a diverging epoch (v12+) for the follower to truncate; and the fetch offset
//! of each partition tells [`crate::replication`] how far the follower has the log, which moves
//! the high watermark and the ISR.
//!
//! Record bytes are never read by the broker: the engine answers each partition with a segment
//! file range ([`Engine::read_range`](sluice_engine::Engine::read_range)), and the response
//! encoder in [`response`] puts those ranges in the reply for the connection to `splice` from
//! the page cache to the socket. As in Kafka, a range may end inside a batch (clients drop a
//! partial last batch), and CRCs are not checked on this path: appends and recovery check them,
//! clients check them again.

use std::rc::Rc;
use std::time::Duration;

mod response;

pub(crate) use response::encode;

use futures_util::future::{LocalBoxFuture, join_all, select_all};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::FetchRequest;
use sluice_engine::{FileRange, Offset, PartitionOffsets, ReadError, TopicPartition};
use uuid::Uuid;

use super::{code, topic_id_of};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::error::read_error_code;
pub(crate) use response::FetchAnswer;
use response::{PartitionAnswer, TopicAnswer};

/// `isolation_level` of read_committed.
const READ_COMMITTED: i8 = 1;

/// One partition to read.
#[derive(Debug, Clone)]
struct Target {
    /// `None` when the topic is unknown.
    partition: Option<TopicPartition>,
    index: i32,
    fetch_offset: i64,
    size_bytes_max: i32,
    /// Error found before reading (unknown topic, fenced epoch).
    error: Option<ResponseError>,
    /// The partition's leader and epoch, told to a client that asked the wrong broker or an old
    /// epoch (KIP-951) so it re-routes without a Metadata round trip.
    current_leader: Option<(i32, i32)>,
    /// The epoch of the follower's last fetched batch (-1: none, or not a follower).
    last_fetched_epoch: i32,
}

/// One topic of the request, resolved.
#[derive(Debug)]
struct TopicTargets {
    name: String,
    id: Uuid,
    partitions: Vec<Target>,
}

/// One partition's read.
struct PartitionRead {
    error_code: i16,
    offsets: Option<PartitionOffsets>,
    records: Option<FileRange>,
    /// Where a follower's log parts from this leader's: epoch and its end offset here.
    diverging_epoch: Option<(i32, i64)>,
    /// The aborted transactions a read_committed read covers.
    aborted: Vec<sluice_engine::AbortedTransaction>,
}

impl PartitionRead {
    fn size_bytes(&self) -> usize {
        self.records.as_ref().map_or(0, |range| range.size_bytes as usize)
    }
}

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::Fetch, min: 4, max: 16 };

pub(crate) async fn handle(shard: Rc<ShardContext>, call: Call, request: FetchRequest) -> Outcome<FetchAnswer> {
    let version = call.version;
    // A positive epoch continues a session; none exists, since the broker never creates one.
    if request.session_epoch > 0 {
        let error_code = code(ResponseError::FetchSessionIdNotFound);
        return Outcome::Respond(FetchAnswer { error_code, ..FetchAnswer::default() });
    }
    let mut targets = resolve(&shard, version, &request);
    let replica = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    let readable = crate::security::checks::fetch_check(&shard, &call, replica);
    for target in targets.iter_mut().filter(|topic| !readable(&topic.name)).flat_map(|topic| &mut topic.partitions) {
        if target.error != Some(ResponseError::UnknownTopicId) {
            (target.partition, target.current_leader) = (None, None);
            target.error = Some(ResponseError::TopicAuthorizationFailed);
        }
    }
    let follower = (replica >= 0).then_some(replica);
    let mut reported = false;
    let clock = shard.shared.clock.clone();
    let deadline = clock.now() + Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let bytes_min = usize::try_from(request.min_bytes).unwrap_or(0);
    let quota = crate::quota::FetchQuota::of(&shard, &call, follower.is_some());
    let bytes_max = quota.cap(&shard, usize::try_from(request.max_bytes).unwrap_or(0));
    let committed = request.isolation_level == READ_COMMITTED;
    loop {
        let listeners: Vec<_> = targets
            .iter()
            .flat_map(|topic| &topic.partitions)
            .filter_map(|target| target.partition.as_ref().and_then(|partition| shard.engine().listen(partition)))
            .collect();
        let reads = read_all(&shard, &targets, follower.is_some(), committed).await;
        if let Some(follower) = follower
            && !reported
        {
            reported = true;
            report_progress(&shard, &targets, &reads, follower).await;
        }
        let (mut response, found_bytes, failed) = assemble(&shard, &targets, reads, bytes_max, committed);
        let now = clock.now();
        if found_bytes >= bytes_min || failed || now >= deadline || shard.shared.shutdown.is_started() {
            response.throttle_time_ms = quota.charge(&shard, &call, found_bytes);
            if response.throttle_time_ms > 0 {
                // Over the quota: Kafka answers a throttled fetch without data.
                response.topics.clear();
            }
            if version >= 16 {
                let leaders = response.topics.iter().flat_map(|topic| &topic.partitions);
                let leaders = leaders.filter_map(|partition| partition.current_leader.map(|(leader, _)| leader));
                let listener = &call.session.listener;
                response.node_endpoints = crate::metadata::endpoints(&shard.image(), leaders, listener);
            }
            return Outcome::Respond(response);
        }
        let mut waits: Vec<LocalBoxFuture<'_, ()>> =
            listeners.into_iter().map(|listener| Box::pin(listener) as _).collect();
        waits.push(clock.sleep(deadline - now));
        waits.push(Box::pin(shard.shared.shutdown.wait(&shard.shared.engine)));
        select_all(waits).await;
    }
}

fn resolve(shard: &ShardContext, version: i16, request: &FetchRequest) -> Vec<TopicTargets> {
    let image = shard.image();
    let node_id = shard.node_id();
    request
        .topics
        .iter()
        .map(|topic| {
            let info = if version >= 13 {
                image.topic_by_id(topic_id_of(topic.topic_id))
            } else {
                image.topic(topic.topic.as_str())
            };
            // As Kafka: an id no topic has is UNKNOWN_TOPIC_ID; a known topic without the
            // partition (or a name, before v13) is UNKNOWN_TOPIC_OR_PARTITION.
            let unknown = if version >= 13 && info.is_none() {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let led = match info {
                        Some(info) => {
                            crate::metadata::lead(node_id, info, partition.partition, partition.current_leader_epoch)
                                .map_err(
                                    |error| {
                                        if error == ResponseError::UnknownTopicOrPartition { unknown } else { error }
                                    },
                                )
                        }
                        None => Err(unknown),
                    };
                    let current_leader = match (&led, info) {
                        (Err(ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch), Some(info)) => {
                            crate::metadata::current_leader(info, partition.partition)
                        }
                        _ => None,
                    };
                    Target {
                        partition: led.as_ref().ok().map(|led| led.partition.clone()),
                        index: partition.partition,
                        fetch_offset: partition.fetch_offset,
                        size_bytes_max: partition.partition_max_bytes,
                        error: led.err(),
                        current_leader,
                        last_fetched_epoch: if version >= 12 { partition.last_fetched_epoch } else { -1 },
                    }
                })
                .collect();
            let name = info.as_ref().map_or_else(|| topic.topic.as_str().to_owned(), |info| info.name.to_string());
            TopicTargets { name, id: topic.topic_id, partitions }
        })
        .collect()
}

/// Reads every partition at once; each read runs on its partition's shard. A follower reads up
/// to the log end, after a check that its log has not parted from this one; a read_committed
/// consumer up to the last stable offset.
async fn read_all(
    shard: &ShardContext,
    targets: &[TopicTargets],
    follower: bool,
    committed: bool,
) -> Vec<PartitionRead> {
    let reads = targets.iter().flat_map(|topic| &topic.partitions).map(|target| {
        let engine = shard.engine().clone();
        let target = target.clone();
        async move {
            if let Some(error) = target.error {
                return PartitionRead::failed(code(error));
            }
            let Some(partition) = target.partition else {
                return PartitionRead::failed(code(ResponseError::UnknownTopicOrPartition));
            };
            if follower && target.last_fetched_epoch >= 0 {
                match engine.end_offset_for_epoch(&partition, target.last_fetched_epoch).await {
                    Ok(end)
                        if end.leader_epoch != target.last_fetched_epoch || end.end_offset.0 < target.fetch_offset =>
                    {
                        let mut read = read_one(
                            &engine,
                            &partition,
                            target.fetch_offset.min(end.end_offset.0),
                            0,
                            sluice_engine::ReadBound::LogEnd,
                        )
                        .await;
                        read.diverging_epoch = Some((end.leader_epoch, end.end_offset.0));
                        return read;
                    }
                    Ok(_) => {}
                    Err(error) => return PartitionRead::failed(read_error_code(&error)),
                }
            }
            let bound = match (follower, committed) {
                (true, _) => sluice_engine::ReadBound::LogEnd,
                (false, true) => sluice_engine::ReadBound::LastStable,
                (false, false) => sluice_engine::ReadBound::HighWatermark,
            };
            read_one(&engine, &partition, target.fetch_offset, target.size_bytes_max, bound).await
        }
    });
    join_all(reads).await
}

/// Tells replication how far `follower` has each partition it fetched without error, then
/// publishes any high watermark that moved and proposes any follower that caught up.
async fn report_progress(shard: &ShardContext, targets: &[TopicTargets], reads: &[PartitionRead], follower: i32) {
    let replication = shard.shared.metadata.replication().clone();
    let fetched = targets.iter().flat_map(|topic| &topic.partitions).zip(reads);
    for (target, read) in fetched {
        let (Some(partition), Some(offsets)) = (&target.partition, &read.offsets) else { continue };
        if read.error_code != 0 || read.diverging_epoch.is_some() {
            continue;
        }
        let outcome =
            replication.follower_fetched(partition, follower, target.fetch_offset, offsets.local_end_offset.0);
        if outcome.high_watermark.is_some() {
            replication.publish_high_watermark(shard.engine(), partition).await;
        }
        if let Some(change) = outcome.expand {
            let replication = replication.clone();
            compio::runtime::spawn(async move { replication.propose(change).await }).detach();
        }
    }
}

async fn read_one(
    engine: &sluice_engine::Engine,
    partition: &TopicPartition,
    offset: i64,
    size_bytes_max: i32,
    bound: sluice_engine::ReadBound,
) -> PartitionRead {
    let result = if size_bytes_max <= 0 {
        engine.offsets(partition).await.map(|offsets| (offsets, None, Vec::new()))
    } else {
        engine
            .read_range(partition, Offset(offset), size_bytes_max as u32, bound)
            .await
            .map(|read| (read.offsets, read.range, read.aborted))
    };
    match result {
        Ok((offsets, records, aborted)) => {
            PartitionRead { error_code: 0, offsets: Some(offsets), records, diverging_epoch: None, aborted }
        }
        Err(error) => {
            let offsets = match &error {
                ReadError::OffsetOutOfRange { log_start_offset, high_watermark, .. } => Some(PartitionOffsets {
                    log_start_offset: *log_start_offset,
                    high_watermark: *high_watermark,
                    last_stable_offset: *high_watermark,
                    local_end_offset: *high_watermark,
                    log_end_offset: *high_watermark,
                }),
                _ => None,
            };
            PartitionRead {
                error_code: read_error_code(&error),
                offsets,
                records: None,
                diverging_epoch: None,
                aborted: Vec::new(),
            }
        }
    }
}

impl PartitionRead {
    fn failed(error_code: i16) -> Self {
        Self { error_code, offsets: None, records: None, diverging_epoch: None, aborted: Vec::new() }
    }
}

/// Builds the answer from the reads, in request order, keeping the total under `bytes_max`.
/// Returns the answer, the record bytes it holds, and whether any partition failed.
fn assemble(
    shard: &ShardContext,
    targets: &[TopicTargets],
    reads: Vec<PartitionRead>,
    bytes_max: usize,
    read_committed: bool,
) -> (FetchAnswer, usize, bool) {
    let mut reads = reads.into_iter();
    let mut total_bytes = 0usize;
    let mut failed = false;
    let mut ranges = 0u64;
    let mut topics = Vec::with_capacity(targets.len());
    for topic in targets {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (target, read) in topic.partitions.iter().zip(reads.by_ref()) {
            failed |= read.error_code != 0;
            let size_bytes = read.size_bytes();
            let keep = total_bytes == 0 || total_bytes + size_bytes <= bytes_max;
            let (records, aborted) = if keep && size_bytes > 0 {
                total_bytes += size_bytes;
                ranges += 1;
                (read.records, read.aborted)
            } else {
                (None, Vec::new())
            };
            let offsets = read.offsets.unwrap_or(PartitionOffsets {
                log_start_offset: Offset(-1),
                high_watermark: Offset(-1),
                last_stable_offset: Offset(-1),
                local_end_offset: Offset(-1),
                log_end_offset: Offset(-1),
            });
            partitions.push(PartitionAnswer {
                index: target.index,
                error_code: read.error_code,
                high_watermark: offsets.high_watermark.0,
                last_stable_offset: offsets.last_stable_offset.0,
                log_start_offset: offsets.log_start_offset.0,
                aborted: read_committed.then_some(aborted),
                records,
                current_leader: target.current_leader,
                diverging_epoch: read.diverging_epoch,
            });
        }
        let name = topic.name.clone();
        topics.push(TopicAnswer { name, id: topic.id, partitions });
    }
    shard.metrics().add_record_sets_out(ranges);
    (FetchAnswer { error_code: 0, topics, node_endpoints: Vec::new(), throttle_time_ms: 0 }, total_bytes, failed)
}
