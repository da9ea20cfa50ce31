//! RecordBatch v2 header: parse, validate CRC32C, patch the base offset in place.
//!
//! The broker and engine treat a batch as opaque bytes. It reads only the fixed 61-byte header, checks the
//! CRC32C that covers everything from `attributes` to the end of the batch, and rewrites the two
//! fields the CRC does not cover (base offset, partition leader epoch). Only LogAppendTime rewrites
//! a covered field (`max_timestamp` and the timestamp-type bit) and so recomputes the CRC.
//! Pure functions over byte slices; any thread may call them. The layout is in `engine/FORMAT.md`.

use thiserror::Error;

/// Size of the RecordBatch v2 header, up to and including the record count.
pub const HEADER_SIZE_BYTES: usize = 61;
/// Bytes before the `batch_length` field's coverage begins: base offset (8) + length (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;

pub(crate) const BASE_OFFSET_POSITION: usize = 0;
pub(crate) const LENGTH_POSITION: usize = 8;
pub(crate) const LEADER_EPOCH_POSITION: usize = 12;
pub(crate) const MAGIC_POSITION: usize = 16;
pub(crate) const CRC_POSITION: usize = 17;
pub(crate) const ATTRIBUTES_POSITION: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_POSITION: usize = 23;
pub(crate) const BASE_TIMESTAMP_POSITION: usize = 27;
pub(crate) const MAX_TIMESTAMP_POSITION: usize = 35;
pub(crate) const PRODUCER_ID_POSITION: usize = 43;
pub(crate) const PRODUCER_EPOCH_POSITION: usize = 51;
pub(crate) const BASE_SEQUENCE_POSITION: usize = 53;
pub(crate) const RECORD_COUNT_POSITION: usize = 57;

pub(crate) const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub(crate) const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
pub(crate) const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub(crate) const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the header's length field claims.
    #[error("batch truncated: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated {
        /// Bytes the header requires.
        needed_bytes: usize,
        /// Bytes present.
        available_bytes: usize,
    },
    /// The length field is smaller than a header.
    #[error("batch length {length} is smaller than a header")]
    LengthTooSmall {
        /// The length field's value.
        length: i32,
    },
    /// The magic byte is not 2.
    #[error("unsupported batch magic {magic}")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The CRC32C does not match the bytes.
    #[error("batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The record count disagrees with the last offset delta, or is not positive.
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    CountMismatch {
        /// The header's record count.
        record_count: i32,
        /// The header's last offset delta.
        last_offset_delta: i32,
    },
}

/// The decoded fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchHeader {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Value of the length field (bytes after it).
    pub batch_length: i32,
    /// Partition leader epoch.
    pub leader_epoch: i32,
    /// Magic byte (always 2 once validated).
    pub magic: i8,
    /// Stored CRC32C.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset of the last record relative to the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch on disk and on the wire: the 12-byte log overhead plus the length.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    /// Whether the batch carries LogAppendTime rather than CreateTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Whether the batch is a control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// Whether the producer asked for idempotence (a producer id is set).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

pub(crate) fn be_i16(bytes: &[u8], position: usize) -> i16 {
    i16::from_be_bytes([bytes[position], bytes[position + 1]])
}

pub(crate) fn be_i32(bytes: &[u8], position: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[position..position + 4]);
    i32::from_be_bytes(word)
}

pub(crate) fn be_i64(bytes: &[u8], position: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[position..position + 8]);
    i64::from_be_bytes(word)
}

/// Reads the 12-byte log overhead: base offset and the total batch size it announces.
///
/// Returns `None` when fewer than 12 bytes are given.
pub fn peek_size(bytes: &[u8]) -> Option<(i64, i32)> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    Some((be_i64(bytes, BASE_OFFSET_POSITION), be_i32(bytes, LENGTH_POSITION)))
}

/// Decodes the fixed header without checking the CRC.
///
/// # Errors
/// `Truncated` when `bytes` is shorter than the header, `LengthTooSmall` when the length field
/// cannot hold a header, `UnsupportedMagic` when the magic byte is not 2.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_SIZE_BYTES {
        return Err(BatchError::Truncated { needed_bytes: HEADER_SIZE_BYTES, available_bytes: bytes.len() });
    }
    let batch_length = be_i32(bytes, LENGTH_POSITION);
    if batch_length < (HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::LengthTooSmall { length: batch_length });
    }
    let magic = bytes[MAGIC_POSITION] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic { magic });
    }
    Ok(BatchHeader {
        base_offset: be_i64(bytes, BASE_OFFSET_POSITION),
        batch_length,
        leader_epoch: be_i32(bytes, LEADER_EPOCH_POSITION),
        magic,
        crc: be_i32(bytes, CRC_POSITION) as u32,
        attributes: be_i16(bytes, ATTRIBUTES_POSITION),
        last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_POSITION),
        base_timestamp: be_i64(bytes, BASE_TIMESTAMP_POSITION),
        max_timestamp: be_i64(bytes, MAX_TIMESTAMP_POSITION),
        producer_id: be_i64(bytes, PRODUCER_ID_POSITION),
        producer_epoch: be_i16(bytes, PRODUCER_EPOCH_POSITION),
        base_sequence: be_i32(bytes, BASE_SEQUENCE_POSITION),
        record_count: be_i32(bytes, RECORD_COUNT_POSITION),
    })
}

/// CRC32C (Castagnoli) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Parses and fully validates the batch at the start of `bytes`: header, length, magic and CRC.
///
/// With `strict_count`, the record count must be positive and equal `last_offset_delta + 1`, as
/// it is for every batch a producer sends (compaction may later leave gaps, so recovery is lax).
///
/// # Errors
/// Any [`BatchError`]; never panics, whatever the bytes.
pub fn validate(bytes: &[u8], strict_count: bool) -> Result<BatchHeader, BatchError> {
    let header = parse_header(bytes)?;
    let size = header.size_bytes();
    if bytes.len() < size {
        return Err(BatchError::Truncated { needed_bytes: size, available_bytes: bytes.len() });
    }
    let computed = crc32c(&bytes[ATTRIBUTES_POSITION..size]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    let count_ok = header.record_count > 0 && header.last_offset_delta == header.record_count - 1;
    let lax_ok = header.record_count >= 0 && header.last_offset_delta >= 0;
    if (strict_count && !count_ok) || !lax_ok {
        return Err(BatchError::CountMismatch {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Writes the base offset into a batch; the CRC does not cover it.
///
/// # Panics
/// When `bytes` is shorter than the log overhead (the caller validated the batch first).
pub fn patch_base_offset(bytes: &mut [u8], base_offset: i64) {
    assert!(bytes.len() >= LOG_OVERHEAD_BYTES, "patching a batch shorter than its overhead");
    bytes[BASE_OFFSET_POSITION..BASE_OFFSET_POSITION + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch; the CRC does not cover it.
///
/// # Panics
/// When `bytes` is shorter than a header.
pub fn patch_leader_epoch(bytes: &mut [u8], leader_epoch: i32) {
    assert!(bytes.len() >= HEADER_SIZE_BYTES, "patching a batch shorter than its header");
    bytes[LEADER_EPOCH_POSITION..LEADER_EPOCH_POSITION + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with `timestamp_ms` as its max timestamp and recomputes the CRC.
///
/// # Panics
/// When `bytes` is shorter than the size its header announces (the caller validated it).
pub fn patch_log_append_time(bytes: &mut [u8], timestamp_ms: i64) {
    let batch_length = be_i32(bytes, LENGTH_POSITION);
    let size = LOG_OVERHEAD_BYTES + batch_length as usize;
    assert!(bytes.len() >= size && size >= HEADER_SIZE_BYTES, "patching a batch that was not validated");
    let attributes = be_i16(bytes, ATTRIBUTES_POSITION) | ATTRIBUTE_LOG_APPEND_TIME;
    bytes[ATTRIBUTES_POSITION..ATTRIBUTES_POSITION + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[MAX_TIMESTAMP_POSITION..MAX_TIMESTAMP_POSITION + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c(&bytes[ATTRIBUTES_POSITION..size]);
    bytes[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::build_batch;

    #[test]
    fn built_batch_validates_and_reports_its_fields() {
        let batch = build_batch(&[b"a", b"bc"], 1_000);
        let header = validate(&batch, true).expect("valid batch");
        assert_eq!(header.record_count, 2);
        assert_eq!(header.last_offset_delta, 1);
        assert_eq!(header.size_bytes(), batch.len());
        assert_eq!(header.max_timestamp, 1_000);
    }

    #[test]
    fn base_offset_patch_keeps_crc_valid() {
        let mut batch = build_batch(&[b"x"], 5);
        patch_base_offset(&mut batch, 42);
        patch_leader_epoch(&mut batch, 7);
        let header = validate(&batch, true).expect("still valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.leader_epoch, 7);
    }

    #[test]
    fn log_append_time_patch_recomputes_crc() {
        let mut batch = build_batch(&[b"x"], 5);
        patch_log_append_time(&mut batch, 99);
        let header = validate(&batch, true).expect("still valid");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99);
    }

    #[test]
    fn flipped_byte_is_a_crc_mismatch() {
        let mut batch = build_batch(&[b"hello"], 5);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(validate(&batch, true), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn truncated_batch_is_rejected() {
        let batch = build_batch(&[b"hello"], 5);
        assert!(matches!(validate(&batch[..batch.len() - 1], true), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&batch[..10], true), Err(BatchError::Truncated { .. })));
    }

    proptest::proptest! {
        #[test]
        fn validate_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = validate(&bytes, true);
        }
    }
}
