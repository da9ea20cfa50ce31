//! Decoding fetched `RecordBatch` v2 bytes: [`BatchIter`] walks the batches of one partition's
//! `records` field, [`FetchedBatch::records`] walks a batch's records without copying them.
//!
//! Invariants: a batch is yielded only whole (a Fetch response may end in a partial batch, which
//! is left for the next fetch, see [`BatchIter::remaining_bytes`]); its CRC32C is checked unless
//! switched off; no record field is read past its batch. Compressed batches are inflated once into
//! a buffer the batch owns. Records of batches that start before the fetch offset are yielded too:
//! skipping them is the caller's job, as in every Kafka client. Owned by one thread at a time.

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

use crate::batch::{
    ATTRIBUTES_POSITION, HEADER_SIZE_BYTES, LENGTH_POSITION, LOG_OVERHEAD_BYTES, MAGIC_POSITION, crc32c,
};
use crate::error::DecodeError;
use crate::varint;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// The fixed header of one `RecordBatch` v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The length field: bytes after it.
    pub batch_length: i32,
    /// Partition leader epoch.
    pub leader_epoch: i32,
    /// Stored CRC32C.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (ms).
    pub base_timestamp_ms: i64,
    /// Largest timestamp in the batch (ms); every record's timestamp under `LogAppendTime`.
    pub max_timestamp_ms: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchInfo {
    /// Parses the fixed header at the start of `bytes` (at least 61 bytes, magic already checked).
    fn parse(bytes: &[u8]) -> Self {
        let i16_at = |position: usize| i16::from_be_bytes([bytes[position], bytes[position + 1]]);
        let i32_at = |position: usize| {
            i32::from_be_bytes([bytes[position], bytes[position + 1], bytes[position + 2], bytes[position + 3]])
        };
        let i64_at = |position: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[position..position + 8]);
            i64::from_be_bytes(word)
        };
        Self {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            leader_epoch: i32_at(12),
            crc: i32_at(17) as u32,
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp_ms: i64_at(27),
            max_timestamp_ms: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            record_count: i32_at(57),
        }
    }

    /// Total bytes of the batch: the 12-byte log overhead plus the length field.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record; the next fetch starts after it.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The compression codec.
    ///
    /// # Errors
    /// `UnknownCodec` for codec ids above 4.
    pub fn compression(&self) -> Result<Compression, DecodeError> {
        match self.attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(DecodeError::UnknownCodec { codec, base_offset: self.base_offset }),
        }
    }

    /// Whether timestamps are `LogAppendTime` (all records carry `max_timestamp_ms`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Whether this is a control batch (transaction markers), which consumers do not show.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
}

/// Iterates over the whole batches in a partition's fetched `records` bytes.
///
/// ```
/// use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
/// use sluice_client::decode::BatchIter;
///
/// let mut builder = BatchBuilder::new(BatchOptions::default());
/// builder.push(&NewRecord { timestamp_ms: 1, value: Some(b"v"), ..NewRecord::default() })?;
/// let bytes = builder.finish()?;
/// for batch in BatchIter::new(bytes) {
///     for record in batch?.records() {
///         assert_eq!(record?.value, Some(&b"v"[..]));
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchIter {
    bytes: Bytes,
    position: usize,
    verify_crc: bool,
    failed: bool,
}

impl BatchIter {
    /// Iterates over `bytes`, checking every batch's CRC32C.
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes, position: 0, verify_crc: true, failed: false }
    }

    /// Iterates without checking CRCs (as `check.crcs=false` does in the Java client).
    pub fn without_crc_check(bytes: Bytes) -> Self {
        Self { verify_crc: false, ..Self::new(bytes) }
    }

    /// Bytes not yet yielded: after the iterator ends, the size of a trailing partial batch.
    pub fn remaining_bytes(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn next_batch(&mut self) -> Option<Result<FetchedBatch, DecodeError>> {
        let rest = &self.bytes[self.position..];
        if rest.len() < LOG_OVERHEAD_BYTES {
            return None;
        }
        let length = i32::from_be_bytes([
            rest[LENGTH_POSITION],
            rest[LENGTH_POSITION + 1],
            rest[LENGTH_POSITION + 2],
            rest[LENGTH_POSITION + 3],
        ]);
        if length < (HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Some(Err(DecodeError::InvalidLength { length, position: self.position }));
        }
        let size = LOG_OVERHEAD_BYTES + length as usize;
        if rest.len() < size {
            return None;
        }
        let magic = rest[MAGIC_POSITION] as i8;
        if magic != 2 {
            return Some(Err(DecodeError::UnsupportedMagic { magic, position: self.position }));
        }
        let info = BatchInfo::parse(rest);
        if self.verify_crc {
            let computed = crc32c(&rest[ATTRIBUTES_POSITION..size]);
            if computed != info.crc {
                return Some(Err(DecodeError::CrcMismatch {
                    base_offset: info.base_offset,
                    stored: info.crc,
                    computed,
                }));
            }
        }
        let start = self.position;
        self.position += size;
        let records = self.bytes.slice(start + HEADER_SIZE_BYTES..start + size);
        Some(FetchedBatch::new(info, records))
    }
}

impl Iterator for BatchIter {
    type Item = Result<FetchedBatch, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_batch();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

/// One whole batch; its records section is already decompressed.
#[derive(Debug, Clone)]
pub struct FetchedBatch {
    /// The fixed header.
    pub info: BatchInfo,
    records: Bytes,
}

impl FetchedBatch {
    fn new(info: BatchInfo, raw_records: Bytes) -> Result<Self, DecodeError> {
        let records = decompress(&info, raw_records)?;
        Ok(Self { info, records })
    }

    /// The records, in offset order.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter { info: &self.info, bytes: &self.records, position: 0, index: 0 }
    }
}

fn decompress(info: &BatchInfo, mut raw: Bytes) -> Result<Bytes, DecodeError> {
    let take = |buffer: &mut Bytes| Ok(std::mem::take(buffer));
    let inflated = match info.compression()? {
        Compression::None => return Ok(raw),
        Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(&mut raw, take),
        Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(&mut raw, take),
        Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(&mut raw, take),
        Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(&mut raw, take),
    };
    inflated.map_err(|source| DecodeError::Decompress { base_offset: info.base_offset, source: source.into() })
}

/// One decoded record, borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp (ms): `CreateTime`, or the batch's `LogAppendTime`.
    pub timestamp_ms: i64,
    /// Key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` when null.
    pub value: Option<&'a [u8]>,
    header_count: i64,
    headers: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers. Keys are raw bytes (UTF-8 by convention, not checked).
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { bytes: self.headers, position: 0, remaining: self.header_count }
    }
}

/// Iterates over one batch's records.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    info: &'a BatchInfo,
    bytes: &'a [u8],
    position: usize,
    index: i32,
}

impl<'a> RecordIter<'a> {
    fn malformed(&self) -> DecodeError {
        DecodeError::MalformedRecord { base_offset: self.info.base_offset, record_index: self.index }
    }

    fn decode_record(&mut self) -> Option<RecordView<'a>> {
        let length = varint::get_i64(self.bytes, &mut self.position)?;
        let length = usize::try_from(length).ok()?;
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len())?;
        let body = &self.bytes[..end];
        let mut position = self.position + 1; // record attributes: unused in v2
        let timestamp_delta = varint::get_i64(body, &mut position)?;
        let offset_delta = varint::get_i64(body, &mut position)?;
        let key = nullable_bytes(body, &mut position)?;
        let value = nullable_bytes(body, &mut position)?;
        let header_count = varint::get_i64(body, &mut position)?;
        if header_count < 0 || position > end {
            return None;
        }
        let timestamp_ms = if self.info.is_log_append_time() {
            self.info.max_timestamp_ms
        } else {
            self.info.base_timestamp_ms.wrapping_add(timestamp_delta)
        };
        self.position = end;
        Some(RecordView {
            offset: self.info.base_offset.wrapping_add(offset_delta),
            timestamp_ms,
            key,
            value,
            header_count,
            headers: &body[position..end],
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.info.record_count || self.position >= self.bytes.len() {
            return None;
        }
        let Some(record) = self.decode_record() else {
            let error = self.malformed();
            // Stop after a malformed record: its length cannot be trusted.
            self.index = self.info.record_count;
            return Some(Err(error));
        };
        self.index += 1;
        Some(Ok(record))
    }
}

/// One record header, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// Header key bytes.
    pub key: &'a [u8],
    /// Header value, `None` when null.
    pub value: Option<&'a [u8]>,
}

/// Iterates over one record's headers; ends early on malformed bytes.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    bytes: &'a [u8],
    position: usize,
    remaining: i64,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderView<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        let key = nullable_bytes(self.bytes, &mut self.position)?.unwrap_or_default();
        let value = nullable_bytes(self.bytes, &mut self.position)?;
        Some(HeaderView { key, value })
    }
}

/// Reads a varint length and that many bytes; -1 is null. `None` when malformed.
#[allow(clippy::option_option, reason = "outer: malformed input, inner: a null field")]
fn nullable_bytes<'a>(bytes: &'a [u8], position: &mut usize) -> Option<Option<&'a [u8]>> {
    let length = varint::get_i64(bytes, position)?;
    if length == -1 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    let end = position.checked_add(length).filter(|end| *end <= bytes.len())?;
    let slice = &bytes[*position..end];
    *position = end;
    Some(Some(slice))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, BatchOptions, NewRecord, RecordHeader};

    fn batch_of(values: &[&[u8]], compression: Compression) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions { compression, ..BatchOptions::default() });
        for (index, value) in values.iter().enumerate() {
            let record = NewRecord { timestamp_ms: 1_000 + index as i64, value: Some(value), ..NewRecord::default() };
            builder.push(&record).expect("fits");
        }
        builder.finish().expect("encodes")
    }

    fn patch_base_offset(batch: &mut [u8], base_offset: i64) {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    }

    #[test]
    fn every_codec_decodes_what_the_builder_encodes() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut bytes = batch_of(&[b"a", b"bb", b"ccc"], compression).to_vec();
            patch_base_offset(&mut bytes, 100);
            let batches: Vec<_> = BatchIter::new(Bytes::from(bytes)).collect::<Result<_, _>>().expect("decodes");
            assert_eq!(batches.len(), 1);
            let records: Vec<_> = batches[0].records().collect::<Result<_, _>>().expect("records decode");
            let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
            assert_eq!(offsets, [100, 101, 102]);
            assert_eq!(records[2].value, Some(&b"ccc"[..]));
            assert_eq!(records[2].timestamp_ms, 1_002);
            assert_eq!(records[0].key, None);
        }
    }

    #[test]
    fn trailing_partial_batch_is_left_for_the_next_fetch() {
        let first = batch_of(&[b"one"], Compression::None);
        let second = batch_of(&[b"two"], Compression::None);
        let mut bytes = first.to_vec();
        bytes.extend_from_slice(&second[..second.len() - 3]);
        let mut iter = BatchIter::new(Bytes::from(bytes));
        assert!(matches!(iter.next(), Some(Ok(_))));
        assert!(iter.next().is_none());
        assert_eq!(iter.remaining_bytes(), second.len() - 3);
    }

    #[test]
    fn corrupt_batch_is_a_crc_mismatch_unless_unchecked() {
        let mut bytes = batch_of(&[b"payload"], Compression::None).to_vec();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        let bytes = Bytes::from(bytes);
        assert!(matches!(BatchIter::new(bytes.clone()).next(), Some(Err(DecodeError::CrcMismatch { .. }))));
        assert!(matches!(BatchIter::without_crc_check(bytes).next(), Some(Ok(_))));
    }

    #[test]
    fn headers_are_decoded() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        let headers = [RecordHeader { key: "trace", value: Some(b"abc") }, RecordHeader { key: "empty", value: None }];
        let record = NewRecord { timestamp_ms: 7, key: Some(b"k"), value: None, headers: &headers };
        builder.push(&record).expect("fits");
        let batch = BatchIter::new(builder.finish().expect("encodes")).next().expect("one batch").expect("valid");
        let view = batch.records().next().expect("one record").expect("valid");
        assert_eq!(view.key, Some(&b"k"[..]));
        assert_eq!(view.value, None);
        let decoded: Vec<_> = view.headers().collect();
        assert_eq!(
            decoded,
            [HeaderView { key: b"trace", value: Some(b"abc") }, HeaderView { key: b"empty", value: None }]
        );
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut bytes = batch_of(&[b"x"], Compression::None).to_vec();
        bytes[MAGIC_POSITION] = 1;
        assert!(matches!(BatchIter::new(Bytes::from(bytes)).next(), Some(Err(DecodeError::UnsupportedMagic { .. }))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for batch in BatchIter::without_crc_check(Bytes::from(bytes)) {
                let Ok(batch) = batch else { break };
                for record in batch.records().flatten() {
                    let _ = record.headers().count();
                }
            }
        }
    }
}
