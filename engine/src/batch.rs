//! RecordBatch v2 header: parse, validate CRC32C, patch the base offset in place.
//!
//! The engine treats a batch as opaque bytes. It reads only the fixed 61-byte header, checks the
//! CRC32C that covers everything from `attributes` to the end of the batch, and rewrites the two
//! fields the CRC does not cover (base offset, partition leader epoch). Only LogAppendTime rewrites
//! a covered field (`max_timestamp` and the timestamp-type bit) and so recomputes the CRC.
//! Pure functions over byte slices; any thread may call them. The layout is in `engine/FORMAT.md`.

use thiserror::Error;

/// Size of the RecordBatch v2 header, up to and including the record count.
pub const HEADER_SIZE_BYTES: usize = 61;
/// Bytes before the `batch_length` field's coverage begins: base offset (8) + length (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;

const BASE_OFFSET_POSITION: usize = 0;
const LENGTH_POSITION: usize = 8;
const LEADER_EPOCH_POSITION: usize = 12;
const MAGIC_POSITION: usize = 16;
const CRC_POSITION: usize = 17;
const ATTRIBUTES_POSITION: usize = 21;
const LAST_OFFSET_DELTA_POSITION: usize = 23;
const BASE_TIMESTAMP_POSITION: usize = 27;
const MAX_TIMESTAMP_POSITION: usize = 35;
const PRODUCER_ID_POSITION: usize = 43;
const PRODUCER_EPOCH_POSITION: usize = 51;
const BASE_SEQUENCE_POSITION: usize = 53;
const RECORD_COUNT_POSITION: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

fn be_i16(bytes: &[u8], position: usize) -> i16 {
    i16::from_be_bytes([bytes[position], bytes[position + 1]])
}

fn be_i32(bytes: &[u8], position: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[position..position + 4]);
    i32::from_be_bytes(word)
}

fn be_i64(bytes: &[u8], position: usize) -> i64 {
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

/// Builds a valid uncompressed RecordBatch v2 holding `values` as records with null keys.
///
/// For embedders and tests that have no Kafka client at hand: the result is what a producer
/// would send, with base offset 0 and no producer id.
pub fn build_batch(values: &[&[u8]], timestamp_ms: i64) -> Vec<u8> {
    assert!(!values.is_empty(), "a batch holds at least one record");
    let mut records = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // record attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, index as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // header count
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = values.len() as i32;
    let mut batch = Vec::with_capacity(HEADER_SIZE_BYTES + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&records);
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The (offset delta, timestamp) of each record of an uncompressed batch, in order. Stops
/// silently at the first malformed record, so corrupt bytes yield fewer items, never a panic.
pub fn record_timestamps(bytes: &[u8]) -> impl Iterator<Item = (i32, i64)> + '_ {
    let base_timestamp = if bytes.len() >= HEADER_SIZE_BYTES { be_i64(bytes, BASE_TIMESTAMP_POSITION) } else { 0 };
    records(bytes).map(move |record| (record.offset_delta, base_timestamp.wrapping_add(record.timestamp_delta)))
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Whether the value is null (a tombstone on compacted topics).
    pub value_is_null: bool,
    /// The whole record as stored: its length varint followed by its body.
    pub raw: &'a [u8],
}

/// The records of an uncompressed batch, in order. Stops at the first malformed record, so
/// corrupt bytes yield fewer records, never a panic. Yields nothing for compressed batches.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = RecordView<'_>> + '_ {
    let end = parse_header(bytes)
        .ok()
        .filter(|header| header.compression() == 0)
        .map_or(0, |header| header.size_bytes().min(bytes.len()));
    let mut position = HEADER_SIZE_BYTES.min(end);
    std::iter::from_fn(move || {
        let start = position;
        let (length, length_size) = get_varint(&bytes[position..end])?;
        let body_start = position + length_size;
        let body_end = body_start.checked_add(usize::try_from(length).ok()?)?;
        if body_end > end || body_start >= body_end {
            return None;
        }
        let body = &bytes[body_start + 1..body_end]; // skip the record attributes byte
        let (timestamp_delta, used) = get_varint(body)?;
        let mut cursor = used;
        let (offset_delta, used) = get_varint(&body[cursor..])?;
        cursor += used;
        let (key_length, used) = get_varint(&body[cursor..])?;
        cursor += used;
        let key = if key_length < 0 {
            None
        } else {
            let key_end = cursor.checked_add(usize::try_from(key_length).ok()?)?;
            let key = body.get(cursor..key_end)?;
            cursor = key_end;
            Some(key)
        };
        let (value_length, _) = get_varint(&body[cursor..])?;
        position = body_end;
        Some(RecordView {
            offset_delta: i32::try_from(offset_delta).ok()?,
            timestamp_delta,
            key,
            value_is_null: value_length < 0,
            raw: &bytes[start..body_end],
        })
    })
}

/// Rebuilds an uncompressed batch keeping only `kept` records (raw bytes taken from the same
/// batch). Base offset, last offset delta, timestamps, producer fields and attributes stay as
/// they were, as Kafka's cleaner does, so offsets are preserved; the count and CRC are redone.
///
/// # Panics
/// When `original` is shorter than a header (the caller validated it).
pub fn rebuild_with_records(original: &[u8], kept: &[&[u8]]) -> Vec<u8> {
    assert!(original.len() >= HEADER_SIZE_BYTES, "rebuilding a batch shorter than its header");
    let body_size: usize = kept.iter().map(|record| record.len()).sum();
    let mut batch = Vec::with_capacity(HEADER_SIZE_BYTES + body_size);
    batch.extend_from_slice(&original[..HEADER_SIZE_BYTES]);
    for record in kept {
        batch.extend_from_slice(record);
    }
    let length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
    batch[LENGTH_POSITION..LENGTH_POSITION + 4].copy_from_slice(&length.to_be_bytes());
    batch[RECORD_COUNT_POSITION..RECORD_COUNT_POSITION + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Builds an uncompressed batch of keyed records (`None` value = tombstone), for embedders and
/// tests; see [`build_batch`].
pub fn build_keyed_batch(records: &[(&[u8], Option<&[u8]>)], timestamp_ms: i64) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let template = build_batch(&[b""], timestamp_ms);
    let mut encoded = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, index as i64);
        put_varint(&mut body, key.len() as i64);
        body.extend_from_slice(key);
        match value {
            Some(value) => {
                put_varint(&mut body, value.len() as i64);
                body.extend_from_slice(value);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, 0);
        let mut record = Vec::new();
        put_varint(&mut record, body.len() as i64);
        record.extend_from_slice(&body);
        encoded.push(record);
    }
    let views: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let mut batch = rebuild_with_records(&template, &views);
    let last_delta = (records.len() - 1) as i32;
    batch[LAST_OFFSET_DELTA_POSITION..LAST_OFFSET_DELTA_POSITION + 4].copy_from_slice(&last_delta.to_be_bytes());
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Decodes a zigzag varint (up to 64 bits); returns the value and the bytes it used.
fn get_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let value = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            return Some((value, index + 1));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn record_timestamps_walks_every_record() {
        let batch = build_batch(&[b"a", b"bb", b"ccc"], 500);
        let records: Vec<_> = record_timestamps(&batch).collect();
        assert_eq!(records, vec![(0, 500), (1, 500), (2, 500)]);
    }

    #[test]
    fn keyed_records_round_trip_and_rebuild_keeps_offsets() {
        let batch = build_keyed_batch(&[(b"k1", Some(b"v1")), (b"k2", None), (b"k1", Some(b"v3"))], 9);
        let header = validate(&batch, true).expect("valid");
        let views: Vec<_> = records(&batch).collect();
        assert_eq!(views.len(), 3);
        assert_eq!(views[1].key, Some(&b"k2"[..]));
        assert!(views[1].value_is_null);
        let kept: Vec<&[u8]> = vec![views[1].raw, views[2].raw];
        let rebuilt = rebuild_with_records(&batch, &kept);
        let rebuilt_header = validate(&rebuilt, false).expect("valid after rebuild");
        assert_eq!(rebuilt_header.record_count, 2);
        assert_eq!(rebuilt_header.last_offset_delta, header.last_offset_delta);
        let offsets: Vec<_> = records(&rebuilt).map(|view| view.offset_delta).collect();
        assert_eq!(offsets, vec![1, 2]);
    }

    proptest::proptest! {
        #[test]
        fn validate_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = validate(&bytes, true);
            let _ = record_timestamps(&bytes).count();
            let _ = records(&bytes).count();
        }
    }
}
