//! Decoding fetched `RecordBatch` v2 bytes: [`BatchIter`] walks the batches of one partition's
//! `records` field, [`FetchedBatch::records`] walks a batch's records without copying them.
//!
//! Invariants: a batch is yielded only whole (a Fetch response may end in a partial batch, which
//! is left for the next fetch, see [`BatchIter::remaining_bytes`]); its CRC32C is checked unless
//! switched off; no record field is read past its batch. Compressed batches are inflated once into
//! a buffer the batch owns. Records of batches that start before the fetch offset are yielded too:
//! skipping them is the caller's job, as in every Kafka client. Owned by one thread at a time.

use bytes::Bytes;
use thiserror::Error;

use crate::compression::{self, CodecError, Compression};
use crate::header::{
    ATTRIBUTES_POSITION, BatchHeader, HEADER_SIZE_BYTES, LENGTH_POSITION, LOG_OVERHEAD_BYTES, MAGIC_POSITION, crc32c,
    parse_header,
};
use crate::varint;

/// The most bytes one batch's records may inflate to unless the caller sets another limit
/// ([`BatchIter::with_size_limit`]): far above any batch a broker accepts (Kafka's default
/// `message.max.bytes` is 1 MiB), low enough that hostile bytes cannot exhaust memory.
pub const DECOMPRESSED_SIZE_BYTES_MAX: usize = 256 << 20;

/// Why fetched batch bytes could not be decoded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The magic byte is not 2 (message sets v0/v1 are not supported).
    #[error("unsupported batch magic {magic} at position {position}")]
    UnsupportedMagic {
        /// The magic found.
        magic: i8,
        /// Byte position of the batch in the input.
        position: usize,
    },
    /// The batch length field is impossible.
    #[error("batch at position {position} has invalid length {length}")]
    InvalidLength {
        /// The length field.
        length: i32,
        /// Byte position of the batch in the input.
        position: usize,
    },
    /// The fixed header is unreadable.
    #[error("unreadable batch header")]
    Header(#[from] crate::header::BatchError),
    /// The CRC32C does not match.
    #[error("batch at offset {base_offset} has crc {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The batch's base offset.
        base_offset: i64,
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A record ran past the end of its batch or held a malformed varint or length.
    #[error("malformed record {record_index} in batch at offset {base_offset}")]
    MalformedRecord {
        /// The batch's base offset.
        base_offset: i64,
        /// 0-based index of the record in the batch.
        record_index: i32,
    },
    /// The compression codec id is not 0..=4.
    #[error("unknown compression codec {codec} in batch at offset {base_offset}")]
    UnknownCodec {
        /// The attribute bits' codec id.
        codec: i16,
        /// The batch's base offset.
        base_offset: i64,
    },
    /// Decompression failed.
    #[error("decompression of batch at offset {base_offset} failed")]
    Decompress {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec's reason.
        #[source]
        source: CodecError,
    },
}

impl BatchHeader {
    /// The compression codec.
    ///
    /// # Errors
    /// `UnknownCodec` for codec ids above 4.
    pub fn codec(&self) -> Result<Compression, DecodeError> {
        Compression::from_id(self.compression())
            .ok_or(DecodeError::UnknownCodec { codec: self.compression(), base_offset: self.base_offset })
    }
}

/// Iterates over the whole batches in a partition's fetched `records` bytes.
///
/// ```
/// use sluice_batch::builder::{BatchBuilder, BatchOptions, NewRecord};
/// use sluice_batch::decode::BatchIter;
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
    size_bytes_max: usize,
    failed: bool,
}

impl BatchIter {
    /// Iterates over `bytes`, checking every batch's CRC32C.
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes, position: 0, verify_crc: true, size_bytes_max: DECOMPRESSED_SIZE_BYTES_MAX, failed: false }
    }

    /// Iterates without checking CRCs (as `check.crcs=false` does in the Java client).
    pub fn without_crc_check(bytes: Bytes) -> Self {
        Self { verify_crc: false, ..Self::new(bytes) }
    }

    /// Refuses batches whose records inflate past `size_bytes_max` bytes.
    #[must_use]
    pub fn with_size_limit(self, size_bytes_max: usize) -> Self {
        Self { size_bytes_max, ..self }
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
        let length = crate::header::be_i32(rest, LENGTH_POSITION);
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
        let info = parse_header(rest).expect("length and magic were checked above");
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
        Some(FetchedBatch::new(info, records, self.size_bytes_max))
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
    pub info: BatchHeader,
    records: Bytes,
}

impl FetchedBatch {
    fn new(info: BatchHeader, raw_records: Bytes, size_bytes_max: usize) -> Result<Self, DecodeError> {
        let records = match info.codec()? {
            Compression::None => raw_records,
            codec => compression::decompress(codec, &raw_records, size_bytes_max)
                .map(Bytes::from)
                .map_err(|source| DecodeError::Decompress { base_offset: info.base_offset, source })?,
        };
        Ok(Self { info, records })
    }

    /// The records, in offset order.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter::new(&self.info, &self.records)
    }
}

/// One decoded record, borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp (ms): `CreateTime`, or the batch's `LogAppendTime`.
    pub timestamp_ms: i64,
    /// Key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` when null (a tombstone on compacted topics).
    pub value: Option<&'a [u8]>,
    /// The whole record as stored: its length varint followed by its body.
    pub raw: &'a [u8],
    header_count: i64,
    headers: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers. Keys are raw bytes (UTF-8 by convention, not checked).
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { bytes: self.headers, position: 0, remaining: self.header_count }
    }
}

/// Iterates over one batch's records, given its header and its (uncompressed) records section.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    info: BatchHeader,
    bytes: &'a [u8],
    position: usize,
    index: i32,
}

impl<'a> RecordIter<'a> {
    /// Walks `records`, the uncompressed records section of the batch whose header is `info`.
    pub fn new(info: &BatchHeader, records: &'a [u8]) -> Self {
        Self { info: *info, bytes: records, position: 0, index: 0 }
    }

    fn malformed(&self) -> DecodeError {
        DecodeError::MalformedRecord { base_offset: self.info.base_offset, record_index: self.index }
    }

    fn decode_record(&mut self) -> Option<RecordView<'a>> {
        let start = self.position;
        let length = varint::get_i64(self.bytes, &mut self.position)?;
        let length = usize::try_from(length).ok().filter(|length| *length > 0)?;
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len())?;
        let body = &self.bytes[..end];
        let mut position = self.position + 1; // record attributes: unused in v2
        let timestamp_delta = varint::get_i64(body, &mut position)?;
        let offset_delta = i32::try_from(varint::get_i64(body, &mut position)?).ok()?;
        let key = nullable_bytes(body, &mut position)?;
        let value = nullable_bytes(body, &mut position)?;
        let header_count = varint::get_i64(body, &mut position)?;
        if header_count < 0 || position > end {
            return None;
        }
        let timestamp_ms = if self.info.is_log_append_time() {
            self.info.max_timestamp
        } else {
            self.info.base_timestamp.wrapping_add(timestamp_delta)
        };
        self.position = end;
        Some(RecordView {
            offset: self.info.base_offset.wrapping_add(i64::from(offset_delta)),
            offset_delta,
            timestamp_ms,
            key,
            value,
            raw: &self.bytes[start..end],
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
    use crate::builder::{BatchBuilder, BatchOptions, NewRecord, RecordHeader};

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
