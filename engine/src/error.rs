//! Error enums, one per operation. Each variant carries the partition or path it concerns.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::batch::BatchError;
use crate::config::ConfigError;
use crate::types::{Offset, TopicPartition};

/// Why [`crate::Engine::open`] failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The data directory could not be created, locked or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The engine metadata file is unreadable.
    #[error("engine metadata {path} is corrupt: {reason}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A shard thread or its io_uring could not start.
    #[error("shard {shard} failed to start: {source}")]
    Shard {
        /// The shard index.
        shard: u16,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A partition failed to recover.
    #[error("partition {partition} failed to recover: {source}")]
    Recovery {
        /// The partition.
        partition: TopicPartition,
        /// The underlying error.
        #[source]
        source: RecoveryError,
    },
    /// The configuration is invalid.
    #[error("invalid engine configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

/// Why a partition could not be recovered (the log itself is never the reason: a corrupt tail is
/// truncated; only I/O on the directory fails recovery).
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// Reading, truncating or creating a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why an append failed.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The partition does not exist.
    #[error("unknown partition {partition}")]
    UnknownPartition {
        /// The partition.
        partition: TopicPartition,
    },
    /// The batch is malformed (bad length, magic, count) or its CRC does not match.
    #[error("invalid batch for {partition}: {source}")]
    InvalidBatch {
        /// The partition.
        partition: TopicPartition,
        /// What is wrong.
        #[source]
        source: BatchError,
    },
    /// Records of a valid batch break a rule of the topic; the batch is refused whole.
    #[error("{} record(s) refused on {partition}: {reason}", record_indexes.len())]
    RecordsRejected {
        /// The partition.
        partition: TopicPartition,
        /// 0-based indexes of the offending records within their batch (Kafka's `batch_index`).
        record_indexes: Vec<i32>,
        /// The rule broken.
        reason: RecordRejection,
    },
    /// A compressed batch could not be inflated to check its records.
    #[error("undecodable batch for {partition}: {source}")]
    Undecodable {
        /// The partition.
        partition: TopicPartition,
        /// What is wrong.
        #[source]
        source: sluice_batch::decode::DecodeError,
    },
    /// A follower's batch starts below the log end or below the batch before it.
    #[error("replica batch at offset {base_offset} on {partition} is below {expected_at_least}")]
    UnexpectedOffset {
        /// The partition.
        partition: TopicPartition,
        /// The batch's base offset.
        base_offset: Offset,
        /// The smallest offset it could start at.
        expected_at_least: Offset,
    },
    /// The batch is larger than `max.message.bytes`.
    #[error("batch of {size_bytes} bytes exceeds max.message.bytes {size_bytes_max} on {partition}")]
    TooLarge {
        /// The partition.
        partition: TopicPartition,
        /// The batch size.
        size_bytes: usize,
        /// The topic's limit.
        size_bytes_max: u32,
    },
    /// The producer sequence skips ahead of what the partition has seen.
    #[error("out of order sequence {sequence} (expected {expected}) from producer {producer_id} on {partition}")]
    OutOfOrderSequence {
        /// The partition.
        partition: TopicPartition,
        /// The producer id.
        producer_id: i64,
        /// The batch's base sequence.
        sequence: i32,
        /// The sequence the partition expected.
        expected: i32,
    },
    /// The producer epoch is older than the one the partition has seen.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch} on {partition}")]
    ProducerFenced {
        /// The partition.
        partition: TopicPartition,
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current_epoch: i16,
    },
    /// A transaction marker from a coordinator older than the one that wrote its producer's last
    /// marker here (Kafka's TRANSACTION_COORDINATOR_FENCED).
    #[error("a marker of producer {producer_id} from coordinator epoch {coordinator_epoch} is fenced on {partition}")]
    CoordinatorFenced {
        /// The partition.
        partition: TopicPartition,
        /// The producer id.
        producer_id: i64,
        /// The marker's coordinator epoch.
        coordinator_epoch: i32,
    },
    /// A transactional batch would open a transaction its producer has not opened on this
    /// partition yet, and the append asked for an open one ([`crate::Engine::append_in_transaction`]).
    #[error("producer {producer_id} has no open transaction on {partition}")]
    TransactionNotOpen {
        /// The partition.
        partition: TopicPartition,
        /// The producer id.
        producer_id: i64,
    },
    /// A write or fsync failed earlier; the partition accepts nothing more.
    #[error("partition {partition} failed on a storage error and is read-only")]
    StorageFailed {
        /// The partition.
        partition: TopicPartition,
    },
    /// A write or fsync failed now; the partition is latched failed.
    #[error("storage error on {partition}: {source}")]
    Io {
        /// The partition.
        partition: TopicPartition,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The engine is shutting down.
    #[error("engine is shutting down")]
    ShuttingDown,
}

/// A rule of the topic that a record broke.
///
/// Not `#[non_exhaustive]`: the broker words each rejection as Kafka does, in one exhaustive
/// `match`, so a new rule must be worded there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordRejection {
    /// A record without a key sent to a topic with `cleanup.policy=compact`, which Kafka refuses
    /// because compaction keeps records by key.
    #[error("a compacted topic cannot accept a record without a key")]
    MissingKeyOnCompactedTopic,
}

/// Why a read, offset lookup or record deletion failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The partition does not exist.
    #[error("unknown partition {partition}")]
    UnknownPartition {
        /// The partition.
        partition: TopicPartition,
    },
    /// The offset is below the log start or above the high watermark.
    #[error("offset {offset} out of range [{log_start_offset}, {high_watermark}] on {partition}")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The offset asked for.
        offset: Offset,
        /// First offset present.
        log_start_offset: Offset,
        /// One past the last readable offset.
        high_watermark: Offset,
    },
    /// Bytes on disk failed validation.
    #[error("corrupt data in {path} at position {position} on {partition}")]
    Corrupt {
        /// The partition.
        partition: TopicPartition,
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
    },
    /// The partition is latched failed after a storage error.
    #[error("partition {partition} failed on a storage error")]
    StorageFailed {
        /// The partition.
        partition: TopicPartition,
    },
    /// A read failed.
    #[error("storage error on {partition}: {source}")]
    Io {
        /// The partition.
        partition: TopicPartition,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The engine is shutting down.
    #[error("engine is shutting down")]
    ShuttingDown,
}

/// Why a topic administration call failed.
#[derive(Debug, Error)]
pub enum TopicError {
    /// A topic with that name exists.
    #[error("topic {topic} already exists")]
    AlreadyExists {
        /// The topic name.
        topic: String,
    },
    /// No topic with that name exists.
    #[error("unknown topic {topic}")]
    UnknownTopic {
        /// The topic name.
        topic: String,
    },
    /// The name is empty, too long, `.` or `..`, or has characters other than `[a-zA-Z0-9._-]`.
    #[error("invalid topic name {topic:?}")]
    InvalidName {
        /// The rejected name.
        topic: String,
    },
    /// The partition count is not positive, or would shrink the topic.
    #[error("invalid partition count {count} for topic {topic}")]
    InvalidPartitions {
        /// The topic name.
        topic: String,
        /// The rejected count.
        count: i32,
    },
    /// A config entry is unknown or invalid.
    #[error("invalid config for topic {topic}: {source}")]
    InvalidConfig {
        /// The topic name.
        topic: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// A partition of a topic held here under another id was asked for: the old topic's logs
    /// must be removed first (a topic deleted and created again under the same name).
    #[error("topic {topic} is held here with id {held}, not {given}")]
    TopicIdMismatch {
        /// The topic name.
        topic: String,
        /// The id of the logs held.
        held: crate::types::TopicId,
        /// The id asked for.
        given: crate::types::TopicId,
    },
    /// Writing the metadata or a partition directory failed.
    #[error("storage error for topic {topic}: {source}")]
    Io {
        /// The topic name.
        topic: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The engine is shutting down.
    #[error("engine is shutting down")]
    ShuttingDown,
}
