//! The single mapping from engine errors to Kafka error codes.
//!
//! Every handler turns an engine error into a wire code through [`kafka_error`], so the choice of
//! code for each failure is made once, here. Pure functions; any thread may call them.
//!
//! The engine's error enums are `#[non_exhaustive]`, which forces a catch-all arm per enum in a
//! downstream crate. Those arms exist only to satisfy the compiler: every variant the engine has
//! today is listed explicitly above them, and a new engine variant must get its own arm here.

use kafka_protocol::ResponseError;
use sluice_engine::batch::BatchError;
use sluice_engine::{AppendError, ConfigError, ReadError};

/// An engine error of any operation, borrowed for classification.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EngineError<'a> {
    /// An append failed.
    Append(&'a AppendError),
    /// A read, offset lookup or record deletion failed.
    Read(&'a ReadError),
    /// A topic config entry was rejected.
    Config(&'a ConfigError),
}

/// The Kafka error code for an engine error.
///
/// Shutting down maps to `NOT_LEADER_OR_FOLLOWER` for data calls: clients treat it as retriable,
/// refresh metadata and retry, which is what a restart needs. Storage failures map to
/// `KAFKA_STORAGE_ERROR`, as Kafka reports a failed log directory.
#[allow(clippy::match_same_arms, reason = "one arm per variant documents each choice")]
pub(crate) fn kafka_error(error: EngineError<'_>) -> ResponseError {
    match error {
        // The metadata image decides what exists: a partition it has that the engine does not
        // is one whose log this broker is still opening, or has just removed.
        EngineError::Append(AppendError::UnknownPartition { .. }) => ResponseError::NotLeaderOrFollower,
        EngineError::Append(AppendError::InvalidBatch { source: BatchError::UnsupportedMagic { .. }, .. }) => {
            ResponseError::UnsupportedForMessageFormat
        }
        EngineError::Append(AppendError::InvalidBatch { source: BatchError::CrcMismatch { .. }, .. }) => {
            ResponseError::CorruptMessage
        }
        EngineError::Append(AppendError::InvalidBatch { source: BatchError::Truncated { .. }, .. }) => {
            ResponseError::CorruptMessage
        }
        EngineError::Append(AppendError::InvalidBatch { source: BatchError::LengthTooSmall { .. }, .. }) => {
            ResponseError::CorruptMessage
        }
        EngineError::Append(AppendError::InvalidBatch { source: BatchError::CountMismatch { .. }, .. }) => {
            ResponseError::InvalidRecord
        }
        EngineError::Append(AppendError::RecordsRejected { .. }) => ResponseError::InvalidRecord,
        EngineError::Append(AppendError::Undecodable { .. }) => ResponseError::CorruptMessage,
        EngineError::Append(AppendError::TooLarge { .. }) => ResponseError::MessageTooLarge,
        // A follower's append out of order: the broker's own replication went wrong, not a
        // client; Kafka reports its UnexpectedAppendOffsetException the same way.
        EngineError::Append(AppendError::UnexpectedOffset { .. }) => ResponseError::UnknownServerError,
        EngineError::Append(AppendError::OutOfOrderSequence { .. }) => ResponseError::OutOfOrderSequenceNumber,
        EngineError::Append(AppendError::ProducerFenced { .. }) => ResponseError::InvalidProducerEpoch,
        EngineError::Append(AppendError::TransactionNotOpen { .. }) => ResponseError::InvalidTxnState,
        EngineError::Append(AppendError::CoordinatorFenced { .. }) => ResponseError::TransactionCoordinatorFenced,
        EngineError::Append(AppendError::StorageFailed { .. }) => ResponseError::KafkaStorageError,
        EngineError::Append(AppendError::Io { .. }) => ResponseError::KafkaStorageError,
        EngineError::Append(AppendError::ShuttingDown) => ResponseError::NotLeaderOrFollower,
        EngineError::Read(ReadError::UnknownPartition { .. }) => ResponseError::NotLeaderOrFollower,
        EngineError::Read(ReadError::OffsetOutOfRange { .. }) => ResponseError::OffsetOutOfRange,
        EngineError::Read(ReadError::Corrupt { .. }) => ResponseError::CorruptMessage,
        EngineError::Read(ReadError::StorageFailed { .. }) => ResponseError::KafkaStorageError,
        EngineError::Read(ReadError::Io { .. }) => ResponseError::KafkaStorageError,
        EngineError::Read(ReadError::ShuttingDown) => ResponseError::NotLeaderOrFollower,
        EngineError::Config(ConfigError::UnknownName { .. }) => ResponseError::InvalidConfig,
        EngineError::Config(ConfigError::InvalidValue { .. }) => ResponseError::InvalidConfig,
    }
}

/// The wire code of an append error.
pub(crate) fn append_error_code(error: &AppendError) -> i16 {
    kafka_error(EngineError::Append(error)).code()
}

/// The wire code of a read error.
pub(crate) fn read_error_code(error: &ReadError) -> i16 {
    kafka_error(EngineError::Read(error)).code()
}

/// The wire code of a rejected topic config.
pub(crate) fn config_error_code(error: &ConfigError) -> i16 {
    kafka_error(EngineError::Config(error)).code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::{Offset, TopicPartition};

    fn partition() -> TopicPartition {
        TopicPartition::new("orders", 0)
    }

    #[test]
    fn a_partition_the_engine_does_not_hold_is_not_led_here() {
        // The metadata image answers UNKNOWN_TOPIC_OR_PARTITION for what does not exist; a
        // partition it has that the engine lacks is one whose log is opening or going.
        let append = AppendError::UnknownPartition { partition: partition() };
        let read = ReadError::UnknownPartition { partition: partition() };
        assert_eq!(append_error_code(&append), 6);
        assert_eq!(read_error_code(&read), 6);
    }

    #[test]
    fn offset_out_of_range_keeps_its_kafka_code() {
        let error = ReadError::OffsetOutOfRange {
            partition: partition(),
            offset: Offset(10),
            log_start_offset: Offset(0),
            high_watermark: Offset(5),
        };
        assert_eq!(read_error_code(&error), 1);
    }

    #[test]
    fn bad_crc_is_corrupt_message_and_oversize_is_message_too_large() {
        let crc = AppendError::InvalidBatch {
            partition: partition(),
            source: BatchError::CrcMismatch { stored: 1, computed: 2 },
        };
        let large = AppendError::TooLarge { partition: partition(), size_bytes: 10, size_bytes_max: 5 };
        assert_eq!(append_error_code(&crc), 2);
        assert_eq!(append_error_code(&large), 10);
    }

    #[test]
    fn storage_failure_is_kafka_storage_error() {
        let error = AppendError::StorageFailed { partition: partition() };
        assert_eq!(append_error_code(&error), 56);
    }

    #[test]
    fn rejected_config_is_invalid_config() {
        let error = ConfigError::UnknownName { name: "no.such".to_owned() };
        assert_eq!(config_error_code(&error), 40);
    }
}
