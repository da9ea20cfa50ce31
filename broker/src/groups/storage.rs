//! The coordinator's use of `__consumer_offsets`: its config, loading a partition, and writing
//! records in order.
//!
//! Writes: every record for one partition goes through a per-shard queue drained by one writer
//! task, so records of a partition are appended in the order they were produced (a later commit
//! of the same offset can never land before an earlier one). Each drain appends one
//! uncompressed keyed batch per partition (several when over [`BATCH_SIZE_BYTES_MAX`]), durably,
//! and then answers every write in it: commits waiting at the same time share one append and one
//! fsync.
//!
//! Loading: each partition the shard owns is read from its log start to its high watermark;
//! records are applied in offset order, a null value deleting its key, so the last record per
//! key wins exactly as compaction would leave it.
//!
//! Touched only by the coordinator's shard thread.

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;
use event_listener::Event;
use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use sluice_engine::{AppendOptions, Engine, Offset, ReadBound, TopicConfig, TopicPartition};

use super::config::GroupConfig;
use crate::error::{EngineError, kafka_error};

/// The internal topic holding committed offsets and group metadata.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Largest batch the writer builds; a bigger write is split. Kafka's default
/// `max.message.bytes` (1 MiB) bounds what clients produce; the offsets topic allows more
/// (see [`offsets_topic_config`]), so a large group's metadata record still fits.
const BATCH_SIZE_BYTES_MAX: usize = 1 << 20;
/// Bytes read per call while loading.
const LOAD_READ_BYTES_MAX: u32 = 4 << 20;

/// One keyed record: key, and value or `None` for a tombstone.
pub(crate) type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// Records waiting for the writer, with whom to tell.
struct PendingWrite {
    partition: i32,
    records: Vec<KeyedRecord>,
    done: Option<async_channel::Sender<Result<(), ResponseError>>>,
}

/// The ordered write queue of one shard.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pending: RefCell<Vec<PendingWrite>>,
    event: Event,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").field("pending", &self.pending.borrow().len()).finish_non_exhaustive()
    }
}

impl WriteQueue {
    /// Queues records and waits until they are durably appended.
    pub(crate) async fn write(&self, partition: i32, records: Vec<KeyedRecord>) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        let (sender, receiver) = async_channel::bounded(1);
        self.pending.borrow_mut().push(PendingWrite { partition, records, done: Some(sender) });
        self.event.notify(1);
        receiver.recv().await.unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Queues records without waiting (group metadata, whose loss costs only a rebalance).
    pub(crate) fn write_detached(&self, partition: i32, records: Vec<KeyedRecord>) {
        self.pending.borrow_mut().push(PendingWrite { partition, records, done: None });
        self.event.notify(1);
    }

    /// The writer task: drains the queue forever, appending each partition's records in order.
    pub(crate) async fn run(&self, shared: &crate::context::Shared) {
        loop {
            let listener = self.event.listen();
            let drained = std::mem::take(&mut *self.pending.borrow_mut());
            if drained.is_empty() {
                listener.await;
                continue;
            }
            let mut by_partition: BTreeMap<i32, Vec<PendingWrite>> = BTreeMap::new();
            for write in drained {
                by_partition.entry(write.partition).or_default().push(write);
            }
            let appends = by_partition.into_iter().map(|(partition, writes)| async move {
                let records: Vec<&KeyedRecord> = writes.iter().flat_map(|write| &write.records).collect();
                let (leader_epoch, replica_count) = shared
                    .metadata
                    .image()
                    .topic(OFFSETS_TOPIC)
                    .and_then(|topic| topic.partition(partition))
                    .map_or((0, 1), |state| (state.leader_epoch, state.replicas.len()));
                let stamp = Stamp { timestamp_ms: shared.clock.unix_ms(), leader_epoch, replica_count };
                let result = append_records(shared, partition, &records, stamp).await;
                for write in writes {
                    if let Some(done) = write.done
                        && done.try_send(result).is_err()
                    {
                        tracing::debug!(partition, "offsets write finished after its requester left");
                    }
                }
            });
            join_all(appends).await;
        }
    }
}

/// What an offsets batch is stamped with: its time, and the leader epoch it is written in.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    timestamp_ms: i64,
    leader_epoch: i32,
    replica_count: usize,
}

/// How long an offsets write waits for the in-sync replicas, Kafka's `offsets.commit.timeout.ms`.
const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Appends `records` to an offsets partition, durably, and (when it is replicated) waits until
/// every in-sync replica has them, as Kafka's coordinator writes with acks=all. Errors as Kafka
/// maps them for group writes: NOT_COORDINATOR when leadership moved, COORDINATOR_NOT_AVAILABLE
/// when too few replicas are in sync or they did not answer in time.
async fn append_records(
    shared: &crate::context::Shared,
    partition: i32,
    records: &[&KeyedRecord],
    stamp: Stamp,
) -> Result<(), ResponseError> {
    let engine = &shared.engine;
    let replication = shared.metadata.replication();
    let target = TopicPartition::new(OFFSETS_TOPIC, partition);
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size_bytes = 0;
        while end < records.len() && (end == start || size_bytes < BATCH_SIZE_BYTES_MAX) {
            let (key, value) = records[end];
            size_bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 16;
            end += 1;
        }
        let slices: Vec<(&[u8], Option<&[u8]>)> =
            records[start..end].iter().map(|(key, value)| (key.as_slice(), value.as_deref())).collect();
        let batch = sluice_engine::batch::build_keyed_batch(&slices, stamp.timestamp_ms);
        let appended =
            engine.append(&target, batch, AppendOptions { durable: true, leader_epoch: stamp.leader_epoch }).await;
        let appended = match appended {
            Ok(appended) => appended,
            Err(error) => {
                tracing::error!(partition = %target, %error, "writing to the offsets topic failed");
                return Err(match kafka_error(EngineError::Append(&error)) {
                    ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
                        ResponseError::InvalidCommitOffsetSize
                    }
                    _ => ResponseError::CoordinatorNotAvailable,
                });
            }
        };
        let replicated = replication.in_sync_replicas(&target, stamp.leader_epoch, stamp.replica_count);
        let waited = match replicated {
            Ok(None) => Ok(()),
            Ok(Some(_)) => {
                let deadline = shared.clock.now() + COMMIT_REPLICATION_TIMEOUT;
                let end_offset = appended.last_offset.0 + 1;
                replication.wait_replicated(&target, stamp.leader_epoch, end_offset, 1, deadline).await
            }
            Err(why) => Err(why),
        };
        if let Err(why) = waited {
            tracing::info!(partition = %target, ?why, "an offsets write was not replicated");
            return Err(match why {
                crate::replication::NotReplicated::NotLeader => ResponseError::NotCoordinator,
                _ => ResponseError::CoordinatorNotAvailable,
            });
        }
        start = end;
    }
    Ok(())
}

/// The config of `__consumer_offsets`: compacted, smaller segments, room for big group records.
pub(crate) fn offsets_topic_config(defaults: &TopicConfig, config: &GroupConfig) -> TopicConfig {
    let mut topic = defaults.clone();
    topic.cleanup_policy.compact = true;
    topic.cleanup_policy.delete = false;
    topic.retention_ms = -1;
    topic.retention_bytes = -1;
    topic.segment_bytes = config.offsets_topic_segment_bytes;
    topic.max_message_bytes = topic.max_message_bytes.max(16 << 20);
    topic
}

/// Why loading a partition stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("reading {partition}: {source}")]
    Read {
        partition: TopicPartition,
        #[source]
        source: sluice_engine::ReadError,
    },
}

/// Reads one partition from start to end, handing every record (key, value) to `apply`.
pub(crate) async fn load_partition(
    engine: &Engine,
    partition: i32,
    mut apply: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<u64, LoadError> {
    let target = TopicPartition::new(OFFSETS_TOPIC, partition);
    let read_error = |source| LoadError::Read { partition: target.clone(), source };
    let offsets = engine.offsets(&target).await.map_err(read_error)?;
    let mut next = offsets.log_start_offset;
    let mut record_count = 0u64;
    while next < offsets.high_watermark {
        let read =
            engine.read(&target, next, LOAD_READ_BYTES_MAX, ReadBound::HighWatermark).await.map_err(read_error)?;
        let mut position = 0;
        let mut advanced = false;
        while let Ok(header) = sluice_engine::batch::parse_header(&read.records[position..]) {
            let end = position + header.size_bytes();
            if end > read.records.len() {
                break;
            }
            if !header.is_control() {
                let mut bytes = Bytes::copy_from_slice(&read.records[position..end]);
                match RecordBatchDecoder::decode(&mut bytes) {
                    Ok(set) => {
                        for record in set.records {
                            let Some(key) = record.key else { continue };
                            apply(&key, record.value.as_deref());
                            record_count += 1;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(partition = %target, offset = header.base_offset, %error, "skipping an unreadable offsets batch");
                    }
                }
            }
            next = Offset(header.last_offset() + 1);
            advanced = true;
            position = end;
        }
        if !advanced {
            break;
        }
    }
    Ok(record_count)
}
