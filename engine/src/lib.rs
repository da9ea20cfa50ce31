//! # sluice-engine
//!
//! An embeddable, thread-per-core log store for Kafka RecordBatch v2 data.
//!
//! ## Design
//! The engine starts one thread per shard, each pinned to a core and running its own
//! single-threaded compio (io_uring) runtime. Every partition is owned by exactly one shard,
//! chosen by [`placement`] and recorded in the engine metadata so it survives restarts. All work
//! on a partition runs on its shard; other threads reach it only through that shard's bounded
//! mailbox, carrying owned buffers. Shard state is `!Send` (`Rc`, `RefCell`, `Cell`).
//!
//! On disk a partition is a folder of Kafka-format segments (`.log`, `.index`, `.timeindex`):
//! batches are stored exactly as produced, with only the base offset (and, for LogAppendTime
//! topics, the timestamp) patched. Appends that ask for durability are acknowledged after an
//! `fdatasync` shared by every append waiting at that moment (group commit). On open, each
//! partition re-validates its log from the last recovery checkpoint and truncates a torn tail.
//! The byte layout is in `engine/FORMAT.md`.
//!
//! [`Engine`] is a cheap, cloneable, `Send + Sync` handle. Its async methods can be awaited on
//! any executor (or with [`block_on`]); on the owning shard they run without a mailbox hop.
//!
//! ## Example
//! ```
//! use sluice_engine::{AppendOptions, Engine, EngineConfig, Offset, ReadBound, TopicConfig, TopicPartition};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let mut config = EngineConfig::new(dir.path());
//! config.shard_count = Some(2);
//! let engine = Engine::open(config).expect("open");
//! sluice_engine::block_on(async {
//!     engine.create_topic("events", 2, TopicConfig::default()).await.expect("create");
//!     let partition = TopicPartition::new("events", 0);
//!     for value in [&b"first"[..], b"second"] {
//!         let batch = sluice_engine::batch::build_batch(&[value], 1_700_000_000_000);
//!         let appended = engine
//!             .append(&partition, batch, AppendOptions { durable: true, leader_epoch: 0 })
//!             .await
//!             .expect("append");
//!         println!("appended at offset {}", appended.base_offset);
//!     }
//!     let read = engine.read(&partition, Offset(0), 1 << 20, ReadBound::HighWatermark).await.expect("read");
//!     assert_eq!(read.offsets.high_watermark, Offset(2));
//!     assert!(!read.records.is_empty());
//! });
//! engine.shutdown();
//! ```

mod catalog;
pub mod clock;
pub mod config;
pub mod error;
pub mod inspect;
pub mod io;
pub mod notify;
pub mod panic;
mod partition;
pub mod placement;
mod segment;
mod shard;
pub mod stats;
mod types;

use std::future::Future;
use std::sync::Arc;

pub use catalog::TopicInfo;
pub use config::{CleanupPolicy, ConfigError, EngineConfig, TimestampType, TopicConfig};
pub use error::{AppendError, OpenError, ReadError, RecordRejection, RecoveryError, TopicError};
pub use event_listener::EventListener;
pub use partition::ProducerSummary;
pub use shard::admin::is_valid_topic_name;
pub use shard::{CROSS_THREAD_WAKES_MAX, block_on, new_runtime};
/// RecordBatch v2: header, records, codecs (the `sluice-batch` crate).
pub use sluice_batch as batch;
pub use types::{Offset, PartitionId, ShardId, TopicId, TopicPartition};

/// A partition log to open: which partition, under which topic id, with which config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// The partition.
    pub partition: TopicPartition,
    /// Its topic's id (logs of another topic of the same name must be removed first).
    pub topic_id: TopicId,
    /// Its topic's config.
    pub config: TopicConfig,
}

/// How an append is acknowledged, and as which leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOptions {
    /// Answer only once the batch is fsynced (Kafka's acks=all). Otherwise answer once the write
    /// completed (acks=1); `flush.messages` and `flush.ms` still bound how long data stays unsynced.
    pub durable: bool,
    /// The leader epoch stamped on the batches (0 for a log that never changes leader).
    pub leader_epoch: i32,
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
    /// The append time stamped on the batch, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    /// The partition's log start offset after the append.
    pub log_start_offset: Offset,
    /// The batch repeated an earlier one of the same idempotent producer; nothing was written and
    /// the offsets are those of the original.
    pub duplicate: bool,
}

/// An append refused, with the batches handed back when nothing of them was written (a
/// refusal by the checks before an append), so that the caller can retry them without a copy.
#[derive(Debug)]
pub struct RefusedAppend {
    /// Why.
    pub error: AppendError,
    /// The batches, when the refusal came before any write.
    pub batches: Option<Vec<u8>>,
}

impl From<AppendError> for RefusedAppend {
    fn from(error: AppendError) -> Self {
        Self { error, batches: None }
    }
}

/// The offsets that bound a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// First offset still present.
    pub log_start_offset: Offset,
    /// One past the last offset readers may see.
    pub high_watermark: Offset,
    /// One past the last offset with no open transaction before it (equal to the high
    /// watermark until transactions exist).
    pub last_stable_offset: Offset,
    /// One past the last offset written on this replica and readable by other replicas (fsynced
    /// too where its append asked for it). The high watermark of an unreplicated partition.
    pub local_end_offset: Offset,
    /// One past the last offset assigned (writes may still be in flight below it).
    pub log_end_offset: Offset,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadResult {
    /// Concatenated RecordBatch v2 bytes, starting with the batch that holds the requested offset.
    pub records: Vec<u8>,
    /// The partition's offsets at the time of the read.
    pub offsets: PartitionOffsets,
    /// For a [`ReadBound::LastStable`] read, the aborted transactions overlapping what it
    /// covers (Kafka's `AbortedTransactions` of a read_committed fetch); empty otherwise.
    pub aborted: Vec<AbortedTransaction>,
}

/// A transaction aborted on a partition: its producer and its first offset. A read_committed
/// consumer skips that producer's records from there up to its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer id.
    pub producer_id: i64,
    /// The transaction's first offset on the partition.
    pub first_offset: Offset,
}

/// A byte range of a segment file holding whole batches (and possibly a partial last one), for
/// sending without copying (`sendfile`, `splice`) or reading with `pread` on any thread.
///
/// The file stays readable for as long as the range lives, even if retention deletes the
/// segment meanwhile (the descriptor keeps the inode).
#[derive(Debug, Clone)]
pub struct FileRange {
    /// A read-only handle of the segment file.
    pub file: Arc<std::fs::File>,
    /// Byte position of the first batch.
    pub position: u64,
    /// Bytes in the range.
    pub size_bytes: u32,
}

impl FileRange {
    /// Reads the range into memory with positional reads (blocking; page-cache fast).
    ///
    /// # Errors
    /// An I/O error from `pread`.
    pub fn read_to_vec(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        let mut bytes = vec![0u8; self.size_bytes as usize];
        self.file.read_exact_at(&mut bytes, self.position)?;
        Ok(bytes)
    }
}

/// A read answered as a file range, see [`Engine::read_range`].
#[derive(Debug, Clone)]
pub struct RangeRead {
    /// The bytes to send, `None` when the offset is at the high watermark.
    pub range: Option<FileRange>,
    /// The partition's offsets at the time of the read.
    pub offsets: PartitionOffsets,
    /// As [`ReadResult::aborted`].
    pub aborted: Vec<AbortedTransaction>,
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadBound {
    /// Up to the high watermark: what consumers may see.
    #[default]
    HighWatermark,
    /// Up to the local end: everything written on this replica (fsynced too where its append
    /// asked for it), as a follower fetching from this leader reads it.
    LogEnd,
    /// Up to the last stable offset, with the aborted transactions in the range: what a
    /// read_committed consumer may see. An offset between the last stable offset and the high
    /// watermark reads nothing (it is not out of range).
    LastStable,
}

/// Where a leader epoch ends on this replica, as OffsetForLeaderEpoch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked for, or -1 when none is known.
    pub leader_epoch: i32,
    /// The first offset after that epoch (the log end for the latest epoch), or -1.
    pub end_offset: Offset,
}

/// Which offset [`Engine::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The offset of the record with the largest timestamp.
    MaxTimestamp,
    /// The first offset whose timestamp is at least this many milliseconds since the epoch.
    Timestamp(i64),
}

/// An offset with its timestamp, as ListOffsets reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAnswer {
    /// The offset found.
    pub offset: Offset,
    /// Its timestamp, or -1 when the query was not by time.
    pub timestamp_ms: i64,
}

/// A handle to a running engine. Cloning is cheap; every clone reaches the same shards.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<shard::Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("data_dir", &self.shared.config.data_dir).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the engine in `config.data_dir`: starts the shards and recovers every
    /// partition before returning.
    ///
    /// # Errors
    /// [`OpenError`] when the directory cannot be used, the metadata is corrupt, a shard cannot
    /// start, or a partition's files cannot be read.
    pub fn open(config: EngineConfig) -> Result<Self, OpenError> {
        Ok(Self { shared: shard::Shared::open(config)? })
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u16 {
        self.shared.shard_count()
    }

    /// The shard the calling thread is, if it is one of this engine's shard threads.
    pub fn current_shard(&self) -> Option<ShardId> {
        self.shared.current_shard()
    }

    /// Runs `task` on `shard`'s thread and runtime, detached. Use it to serve connections on the
    /// shard that owns them.
    ///
    /// Returns `false` when the engine is shutting down and the task was dropped.
    pub fn spawn_on<F, Fut>(&self, shard: ShardId, task: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.shared.spawn_on(shard, task)
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.shared.catalog().topics()
    }

    /// One topic by name.
    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.shared.catalog().topic(name)
    }

    /// One topic by id.
    pub fn topic_by_id(&self, id: TopicId) -> Option<TopicInfo> {
        self.shared.catalog().topic_by_id(id)
    }

    /// The shard owning a partition.
    pub fn shard_of(&self, partition: &TopicPartition) -> Option<ShardId> {
        self.shared.catalog().shard_of(partition)
    }

    /// A listener that fires when new data becomes readable on `partition` (or it is deleted).
    /// Create it, check the offsets, then await it, so that no append is missed in between.
    pub fn listen(&self, partition: &TopicPartition) -> Option<EventListener> {
        self.shared.catalog().listen(partition)
    }

    /// Creates a topic with `partition_count` partitions.
    ///
    /// # Errors
    /// [`TopicError`] for an existing or invalid name, a bad count, or a storage failure.
    pub async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        config: TopicConfig,
    ) -> Result<TopicInfo, TopicError> {
        self.shared.create_topic(name, partition_count, config).await
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// [`TopicError::UnknownTopic`], or a storage failure.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.shared.delete_topic(name).await
    }

    /// Grows a topic to `partition_count` partitions.
    ///
    /// # Errors
    /// [`TopicError::InvalidPartitions`] when the count does not grow the topic.
    pub async fn create_partitions(&self, name: &str, partition_count: i32) -> Result<TopicInfo, TopicError> {
        self.shared.create_partitions(name, partition_count).await
    }

    /// Opens the partition logs `specs` asks for, creating the missing ones, and gives those
    /// already open the config of their spec. This is how a broker places the partitions its
    /// metadata assigns to it; the engine picks each new partition's shard.
    ///
    /// # Errors
    /// [`TopicError::TopicIdMismatch`] for a partition of a topic held under another id,
    /// [`TopicError::InvalidName`], or a storage failure.
    pub async fn open_partitions(&self, specs: Vec<PartitionSpec>) -> Result<(), TopicError> {
        self.shared.open_partition_logs(specs).await
    }

    /// Closes and deletes the logs of `partitions`; partitions not held are skipped.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn remove_partitions(&self, partitions: Vec<TopicPartition>) -> Result<(), TopicError> {
        self.shared.remove_partition_logs(partitions).await
    }

    /// Replaces a topic's config.
    ///
    /// # Errors
    /// [`TopicError::UnknownTopic`], or a storage failure.
    pub async fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, TopicError> {
        self.shared.alter_topic_config(name, config).await
    }

    /// Appends one or more whole RecordBatch v2 batches to `partition`, assigning offsets.
    ///
    /// # Errors
    /// [`AppendError`]: unknown partition, invalid or oversized batch, producer sequence or
    /// epoch errors, or a storage failure (which latches the partition failed).
    pub async fn append(
        &self,
        partition: &TopicPartition,
        batch: Vec<u8>,
        options: AppendOptions,
    ) -> Result<AppendResult, AppendError> {
        self.shared.append(partition, batch, options, false).await.map_err(|refused| refused.error)
    }

    /// As [`Engine::append`], but a transactional batch whose producer has no open transaction
    /// on the partition is refused with [`AppendError::TransactionNotOpen`] (a duplicate is still
    /// answered): the caller checks with the transaction's coordinator that the partition is in
    /// the transaction (Kafka's KIP-890 verification), then appends with [`Engine::append`].
    ///
    /// # Errors
    /// As [`Engine::append`], plus [`AppendError::TransactionNotOpen`]; a refusal by the checks
    /// before the append hands the batches back ([`RefusedAppend::batches`]).
    pub async fn append_in_transaction(
        &self,
        partition: &TopicPartition,
        batch: Vec<u8>,
        options: AppendOptions,
    ) -> Result<AppendResult, RefusedAppend> {
        self.shared.append(partition, batch, options, true).await
    }

    /// Reads whole batches starting with the one holding `offset`, up to `size_bytes_max` bytes
    /// (always at least the first batch) and never past `bound`. Reading at the bound returns
    /// no records.
    ///
    /// # Errors
    /// [`ReadError::OffsetOutOfRange`] outside `[log start, bound]`, or a storage error.
    pub async fn read(
        &self,
        partition: &TopicPartition,
        offset: Offset,
        size_bytes_max: u32,
        bound: ReadBound,
    ) -> Result<ReadResult, ReadError> {
        self.shared.read(partition, offset, size_bytes_max, bound).await
    }

    /// Like [`Engine::read`], but answers with a file range for zero-copy sends instead of bytes,
    /// as Kafka's fetch does: the range starts at the batch holding `offset`, holds at least that
    /// whole batch, and otherwise ends at `size_bytes_max` or the high watermark, so its last
    /// batch may be partial (Kafka clients discard a partial last batch). Only batch headers are
    /// read to find the start; CRCs are not checked (clients check them).
    ///
    /// # Errors
    /// As [`Engine::read`].
    pub async fn read_range(
        &self,
        partition: &TopicPartition,
        offset: Offset,
        size_bytes_max: u32,
        bound: ReadBound,
    ) -> Result<RangeRead, ReadError> {
        self.shared.read_range(partition, offset, size_bytes_max, bound).await
    }

    /// Appends batches as a follower: they keep the offsets and leader epochs the leader gave
    /// them (they must start at or past the log end and grow), and producer state and the
    /// leader-epoch cache follow them. Answers once written, and fsynced when `durable`.
    ///
    /// # Errors
    /// [`AppendError::UnexpectedOffset`] for a batch below the log end, an invalid batch, or a
    /// storage failure.
    pub async fn append_replica(
        &self,
        partition: &TopicPartition,
        batches: Vec<u8>,
        durable: bool,
    ) -> Result<AppendResult, AppendError> {
        self.shared.append_replica(partition, batches, durable).await
    }

    /// Truncates the log so that it ends at or before `offset` (whole batches are kept or
    /// dropped; an offset at or below the log start empties the log and restarts it there).
    /// Returns the new log end. The caller stops appending to the partition meanwhile.
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`], or a storage error (the partition is then failed).
    pub async fn truncate_to(&self, partition: &TopicPartition, offset: Offset) -> Result<Offset, ReadError> {
        self.shared.truncate_to(partition, offset).await
    }

    /// Sets the high watermark of a replicated partition (capped at the local end), or with
    /// `None` makes it unreplicated: its high watermark is then its local end. Returns the
    /// partition's offsets afterwards.
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn set_high_watermark(
        &self,
        partition: &TopicPartition,
        high_watermark: Option<Offset>,
    ) -> Result<PartitionOffsets, ReadError> {
        self.shared.set_high_watermark(partition, high_watermark).await
    }

    /// Where leader epoch `epoch` ends in this replica's log, from its leader-epoch cache
    /// (Kafka's OffsetForLeaderEpoch).
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn end_offset_for_epoch(&self, partition: &TopicPartition, epoch: i32) -> Result<EpochEnd, ReadError> {
        self.shared.end_offset_for_epoch(partition, epoch).await
    }

    /// Notes that this replica leads the partition from `epoch` on, starting at its log end, as
    /// Kafka's new leader does before it serves followers: OffsetForLeaderEpoch and diverging-
    /// epoch answers then tell a follower where the older epochs end here even before a batch
    /// of the new epoch is written (an empty log included). Returns the epoch's start offset.
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn assign_leader_epoch(&self, partition: &TopicPartition, epoch: i32) -> Result<Offset, ReadError> {
        self.shared.assign_leader_epoch(partition, epoch).await
    }

    /// The newest leader epoch among the partition's batches, `None` for an empty log.
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn latest_epoch(&self, partition: &TopicPartition) -> Result<Option<i32>, ReadError> {
        self.shared.latest_epoch(partition).await
    }

    /// The partition's log start, high watermark, last stable and log end offsets.
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn offsets(&self, partition: &TopicPartition) -> Result<PartitionOffsets, ReadError> {
        self.shared.offsets(partition).await
    }

    /// The producers a partition remembers (idempotence and transaction state), as Kafka's
    /// DescribeProducers lists them.
    ///
    /// # Errors
    /// [`ReadError`] for an unknown partition.
    pub async fn producers(&self, partition: &TopicPartition) -> Result<Vec<ProducerSummary>, ReadError> {
        self.shared.producers(partition).await
    }

    /// Looks up an offset by position or time, as Kafka's ListOffsets does. `None` when no
    /// record has a timestamp at or after the one asked for.
    ///
    /// # Errors
    /// [`ReadError`] for an unknown partition or a storage error.
    pub async fn list_offsets(
        &self,
        partition: &TopicPartition,
        query: OffsetQuery,
    ) -> Result<Option<OffsetAnswer>, ReadError> {
        self.shared.list_offsets(partition, query).await
    }

    /// Moves the log start offset to `offset` (-1 means the high watermark), deleting whole
    /// segments below it. Returns the new log start offset.
    ///
    /// # Errors
    /// [`ReadError::OffsetOutOfRange`] above the high watermark, or a storage error.
    pub async fn delete_records(&self, partition: &TopicPartition, offset: Offset) -> Result<Offset, ReadError> {
        self.shared.delete_records(partition, offset).await
    }

    /// Storage counters of one shard (fsync latency, bytes appended), `None` for an unknown shard.
    pub fn storage_stats(&self, shard: ShardId) -> Option<stats::StorageStats> {
        self.shared.storage_stats(shard)
    }

    /// Bytes of log a partition holds on disk (all its segments).
    ///
    /// # Errors
    /// [`ReadError::UnknownPartition`].
    pub async fn size_bytes(&self, partition: &TopicPartition) -> Result<u64, ReadError> {
        self.shared.size_bytes(partition).await
    }

    /// Flushes every partition, writes checkpoints, and stops the shard threads. Idempotent;
    /// also run when the last handle is dropped.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }
}
