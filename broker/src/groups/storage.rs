//! The coordinators' use of their internal compacted topics (`__consumer_offsets` for groups,
//! `__transaction_state` for transactions): the offsets topic's config, loading a partition,
//! and writing records in order.
//!
//! Writes: every record for one partition goes through a per-shard queue drained by one writer
//! task, so records of a partition are appended in the order they were produced (a later commit
//! of the same offset can never land before an earlier one). Each drain appends one
//! uncompressed keyed batch per partition (several when over [`BATCH_SIZE_BYTES_MAX`]), durably,
//! and then answers every write in it: commits waiting at the same time share one append and one
//! fsync. A drain appends to a partition only while the published image says this broker leads
//! it at the leader epoch the shard's coordinator loaded it at (`leadership::loaded_epoch`), and
//! stamps the batch with that epoch; otherwise its writes fail with NOT_COORDINATOR. So state
//! loaded under one leadership is never written under another (a coordinator that lost the
//! partition, and has not been told yet, appends nothing to a log another broker now leads).
//!
//! Loading: each partition the shard owns is read from its log start to its log end;
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

/// The producer a batch of records is written for: a transactional offset commit's records
/// belong to its producer's transaction and count only once its commit marker is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnProducer {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
}

/// What writes share one batch: the partition, and the producer id and epoch of a transaction.
type BatchKey = (i32, Option<(i64, i16)>);

/// Records waiting for the writer, with whom to tell.
struct PendingWrite {
    partition: i32,
    records: Vec<KeyedRecord>,
    producer: Option<TxnProducer>,
    done: Option<async_channel::Sender<Result<(), ResponseError>>>,
}

/// The ordered write queue of one shard, for one internal topic.
pub(crate) struct WriteQueue {
    topic: &'static str,
    pending: RefCell<Vec<PendingWrite>>,
    event: Event,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").field("pending", &self.pending.borrow().len()).finish_non_exhaustive()
    }
}

impl WriteQueue {
    /// A queue writing to `topic`.
    pub(crate) fn new(topic: &'static str) -> Self {
        Self { topic, pending: RefCell::new(Vec::new()), event: Event::new() }
    }

    /// Queues records and waits until they are durably appended.
    pub(crate) async fn write(&self, partition: i32, records: Vec<KeyedRecord>) -> Result<(), ResponseError> {
        self.write_as(partition, records, None).await
    }

    /// Queues records, in a batch of `producer`'s transaction when given, and waits until they
    /// are durably appended.
    pub(crate) async fn write_as(
        &self,
        partition: i32,
        records: Vec<KeyedRecord>,
        producer: Option<TxnProducer>,
    ) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        let (sender, receiver) = async_channel::bounded(1);
        self.pending.borrow_mut().push(PendingWrite { partition, records, producer, done: Some(sender) });
        self.event.notify(1);
        receiver.recv().await.unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Queues records without waiting (group metadata, whose loss costs only a rebalance).
    pub(crate) fn write_detached(&self, partition: i32, records: Vec<KeyedRecord>) {
        self.pending.borrow_mut().push(PendingWrite { partition, records, producer: None, done: None });
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
            // Plain records of a partition share batches; a transaction's records get their own.
            let mut by_partition: BTreeMap<BatchKey, Vec<PendingWrite>> = BTreeMap::new();
            for write in drained {
                let producer = write.producer.map(|producer| (producer.producer_id, producer.producer_epoch));
                by_partition.entry((write.partition, producer)).or_default().push(write);
            }
            let topic = self.topic;
            let appends = by_partition.into_iter().map(|((partition, _), writes)| async move {
                let records: Vec<&KeyedRecord> = writes.iter().flat_map(|write| &write.records).collect();
                let target = TopicPartition::new(topic, partition);
                let result = match coordinator_leadership(shared, topic, partition) {
                    Ok((leader_epoch, replica_count)) => {
                        let stamp = Stamp {
                            timestamp_ms: shared.clock.unix_ms(),
                            leader_epoch,
                            replica_count,
                            producer: writes[0].producer,
                        };
                        append_records(shared, &target, &records, stamp).await
                    }
                    Err(error) => Err(error),
                };
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

/// The leader epoch to write `topic`'s partition `partition` at, and its replica count: the
/// epoch the calling shard's coordinator loaded it at, while the published image still says this
/// broker leads it at that epoch.
///
/// # Errors
/// NOT_COORDINATOR when the coordinator does not hold the partition, or the image says another
/// broker (or another epoch) leads it: leadership moved since the coordinator loaded it.
fn coordinator_leadership(
    shared: &crate::context::Shared,
    topic: &'static str,
    partition: i32,
) -> Result<(i32, usize), ResponseError> {
    let loaded = crate::leadership::loaded_epoch(topic, partition);
    let image = shared.metadata.image();
    let state = image.topic(topic).and_then(|known| known.partition(partition));
    match (loaded, state) {
        (Some(loaded), Some(state)) if state.leader == shared.identity.node_id && state.leader_epoch == loaded => {
            Ok((loaded, state.replicas.len()))
        }
        _ => {
            tracing::info!(
                topic,
                partition,
                loaded_epoch = ?loaded,
                leader = ?state.map(|state| (state.leader, state.leader_epoch)),
                "a coordinator write refused: this broker no longer leads the partition at the epoch it loaded it at"
            );
            Err(ResponseError::NotCoordinator)
        }
    }
}

/// What an offsets batch is stamped with: its time, and the leader epoch it is written in.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    timestamp_ms: i64,
    leader_epoch: i32,
    replica_count: usize,
    producer: Option<TxnProducer>,
}

/// How long an offsets write waits for the in-sync replicas, Kafka's `offsets.commit.timeout.ms`.
const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Appends `records` to an offsets partition, durably, and (when it is replicated) waits until
/// every in-sync replica has them, as Kafka's coordinator writes with acks=all. Errors as Kafka
/// maps them for group writes: NOT_COORDINATOR when leadership moved, COORDINATOR_NOT_AVAILABLE
/// when too few replicas are in sync or they did not answer in time.
async fn append_records(
    shared: &crate::context::Shared,
    target: &TopicPartition,
    records: &[&KeyedRecord],
    stamp: Stamp,
) -> Result<(), ResponseError> {
    let engine = &shared.engine;
    let replication = shared.metadata.replication();
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
        let batch = match stamp.producer {
            None => sluice_engine::batch::build_keyed_batch(&slices, stamp.timestamp_ms),
            Some(producer) => transactional_batch(&slices, stamp.timestamp_ms, producer),
        };
        let appended =
            engine.append(target, batch, AppendOptions { durable: true, leader_epoch: stamp.leader_epoch }).await;
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
        let replicated = replication.in_sync_replicas(target, stamp.leader_epoch, stamp.replica_count);
        let waited = match replicated {
            Ok(None) => Ok(()),
            Ok(Some(_)) => {
                let deadline = shared.clock.now() + COMMIT_REPLICATION_TIMEOUT;
                let end_offset = appended.last_offset.0 + 1;
                replication.wait_replicated(target, stamp.leader_epoch, end_offset, 1, deadline).await
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

/// A batch of keyed records in `producer`'s transaction (no sequence, as Kafka writes a
/// transactional offset commit).
fn transactional_batch(records: &[(&[u8], Option<&[u8]>)], timestamp_ms: i64, producer: TxnProducer) -> Vec<u8> {
    use sluice_engine::batch::builder::{BatchBuilder, BatchOptions, NewRecord};
    let options = BatchOptions {
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        transactional: true,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(options);
    for (key, value) in records {
        let record = NewRecord { timestamp_ms, key: Some(key), value: *value, ..NewRecord::default() };
        builder.push(&record).expect("an uncompressed batch of bounded records encodes");
    }
    builder.finish().expect("an uncompressed batch encodes").to_vec()
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

/// What loading a partition hands on, in offset order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loaded<'a> {
    /// A keyed record; `producer` is the producer whose transaction it belongs to, if any.
    Record { key: &'a [u8], value: Option<&'a [u8]>, producer: Option<i64> },
    /// A producer's transaction ended: committed or aborted.
    Marker { producer_id: i64, commit: bool },
}

/// Reads one partition of `topic` from start to end, handing every record and transaction
/// marker to `apply`.
pub(crate) async fn load_partition(
    engine: &Engine,
    target: &TopicPartition,
    mut apply: impl FnMut(Loaded<'_>),
) -> Result<u64, LoadError> {
    let read_error = |source| LoadError::Read { partition: target.clone(), source };
    // To the log end, as Kafka's coordinators load: a new leader's high watermark lags its log,
    // and what lies between was acknowledged by the old leader (its replicas had it).
    let offsets = engine.offsets(target).await.map_err(read_error)?;
    let mut next = offsets.log_start_offset;
    let mut record_count = 0u64;
    while next < offsets.local_end_offset {
        let read = engine.read(target, next, LOAD_READ_BYTES_MAX, ReadBound::LogEnd).await.map_err(read_error)?;
        let mut position = 0;
        let mut advanced = false;
        while let Ok(header) = sluice_engine::batch::parse_header(&read.records[position..]) {
            let end = position + header.size_bytes();
            if end > read.records.len() {
                break;
            }
            let bytes = &read.records[position..end];
            if header.is_control() {
                if let Ok(marker) = sluice_engine::batch::parse_control_batch(bytes) {
                    let commit = marker.control_type == sluice_engine::batch::ControlType::Commit;
                    apply(Loaded::Marker { producer_id: header.producer_id, commit });
                }
            } else {
                let producer = header.is_transactional().then_some(header.producer_id);
                let mut bytes = Bytes::copy_from_slice(bytes);
                match RecordBatchDecoder::decode(&mut bytes) {
                    Ok(set) => {
                        for record in set.records {
                            let Some(key) = record.key else { continue };
                            apply(Loaded::Record { key: &key, value: record.value.as_deref(), producer });
                            record_count += 1;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(partition = %target, offset = header.base_offset, %error, "skipping an unreadable batch");
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
