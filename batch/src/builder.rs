//! `RecordBatch` v2 encoding: [`BatchBuilder`] turns records into one batch ready for a Produce
//! request.
//!
//! The uncompressed path is written by hand because it is the load generator's hot loop: records
//! are encoded straight into one reusable buffer behind a 61-byte header placeholder, and
//! finishing a batch patches the header and computes the CRC32C in place. No per-record
//! allocation; after warm-up no per-batch allocation either (the buffer is reclaimed once the
//! previous batch's `Bytes` are dropped). Compressed batches encode the records the same way and
//! hand them to [`crate::compression`] (gzip, Xerial-framed snappy, LZ4 frame, zstd), which
//! produces the framing Kafka expects. A builder is owned by one thread.
//!
//! Layout (big-endian, as on the wire):
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 = 2 | crc u32 (CRC32C of
//! attributes..end) | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//!         keyLength varint | key | valueLength varint | value | headerCount varint | headers
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub use crate::compression::Compression;
use crate::compression::{self, CodecError};
use crate::header::{ATTRIBUTE_TRANSACTIONAL, ATTRIBUTES_POSITION, CRC_POSITION};
pub use crate::header::{HEADER_SIZE_BYTES, LOG_OVERHEAD_BYTES, crc32c};
use crate::varint;

/// Why a `RecordBatch` could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The compression codec failed.
    #[error("{codec:?} compression failed")]
    Compress {
        /// The codec.
        codec: Compression,
        /// The codec's reason.
        #[source]
        source: CodecError,
    },
    /// The batch has no records; Kafka rejects empty batches.
    #[error("a batch needs at least one record")]
    Empty,
    /// The batch would exceed the `RecordBatch` v2 length field (i32) or the offset delta range.
    #[error("batch too large: {size_bytes} bytes")]
    TooLarge {
        /// The size reached.
        size_bytes: usize,
    },
}

/// How batches are stamped: compression and the idempotent/transactional producer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Codec for the records section.
    pub compression: Compression,
    /// Producer id, or -1 for a plain producer.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction.
    pub transactional: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    /// Header key.
    pub key: &'a str,
    /// Header value; `None` encodes as null.
    pub value: Option<&'a [u8]>,
}

/// One record to append; borrowed, so pushing copies the bytes once into the batch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NewRecord<'a> {
    /// `CreateTime` timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Record key; `None` encodes as null.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` encodes as null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Record headers.
    pub headers: &'a [RecordHeader<'a>],
}

/// Accumulates records and encodes them as one `RecordBatch` v2.
///
/// ```
/// use sluice_batch::builder::{BatchBuilder, BatchOptions, NewRecord};
///
/// let mut builder = BatchBuilder::new(BatchOptions::default());
/// builder.push(&NewRecord { timestamp_ms: 1_700_000_000_000, value: Some(b"hello"), ..NewRecord::default() })?;
/// let batch = builder.finish()?;
/// assert_eq!(batch[16], 2); // magic
/// assert!(builder.is_empty());
/// # Ok::<(), sluice_batch::builder::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    options: BatchOptions,
    /// Empty, or a header placeholder followed by the encoded (uncompressed) records. It is left
    /// empty after `finish` and refilled on the next `push`, so that by then the previous batch's
    /// `Bytes` may have been dropped and `reserve` can reclaim the same allocation.
    buffer: BytesMut,
    /// How much to reserve when a batch starts: the largest batch so far.
    capacity_bytes: usize,
    record_count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new(options: BatchOptions) -> Self {
        Self::with_capacity(options, 16 * 1024)
    }

    /// An empty builder whose buffer starts with room for `capacity_bytes`.
    pub fn with_capacity(options: BatchOptions, capacity_bytes: usize) -> Self {
        let capacity_bytes = capacity_bytes.max(HEADER_SIZE_BYTES);
        let buffer = BytesMut::with_capacity(capacity_bytes);
        Self { options, buffer, capacity_bytes, record_count: 0, base_timestamp_ms: 0, max_timestamp_ms: -1 }
    }

    /// The options batches are stamped with.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// Changes the options for the next batch (for example the base sequence).
    ///
    /// # Panics
    /// When records are pending: a batch has one set of options.
    pub fn set_options(&mut self, options: BatchOptions) {
        assert!(self.is_empty(), "options change while records are pending");
        self.options = options;
    }

    /// Number of records pending.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size of the batch if it were finished uncompressed now: header plus encoded records.
    pub fn size_bytes(&self) -> usize {
        self.buffer.len().max(HEADER_SIZE_BYTES)
    }

    /// Encoded size of `record` inside a batch, given its offset and timestamp deltas.
    pub fn record_size_bytes(record: &NewRecord<'_>, offset_delta: i32, timestamp_delta_ms: i64) -> usize {
        let body = record_body_size_bytes(record, offset_delta, timestamp_delta_ms);
        varint::size_i64(body as i64) + body
    }

    /// Appends one record.
    ///
    /// # Errors
    /// `TooLarge` when the batch would overflow its i32 length or offset delta.
    pub fn push(&mut self, record: &NewRecord<'_>) -> Result<(), EncodeError> {
        if self.record_count == 0 {
            self.base_timestamp_ms = record.timestamp_ms;
            if self.buffer.is_empty() {
                self.buffer.reserve(self.capacity_bytes);
                self.buffer.put_bytes(0, HEADER_SIZE_BYTES);
            }
        }
        let offset_delta = self.record_count;
        let timestamp_delta_ms = record.timestamp_ms.wrapping_sub(self.base_timestamp_ms);
        let body_size = record_body_size_bytes(record, offset_delta, timestamp_delta_ms);
        let size_after = self.buffer.len() + varint::size_i64(body_size as i64) + body_size;
        if size_after - LOG_OVERHEAD_BYTES > i32::MAX as usize || offset_delta == i32::MAX {
            return Err(EncodeError::TooLarge { size_bytes: size_after });
        }
        let start = self.buffer.len();
        let buffer = &mut self.buffer;
        varint::put_i64(buffer, body_size as i64);
        buffer.put_u8(0); // record attributes: unused in v2
        varint::put_i64(buffer, timestamp_delta_ms);
        varint::put_i64(buffer, i64::from(offset_delta));
        put_nullable_bytes(buffer, record.key);
        put_nullable_bytes(buffer, record.value);
        varint::put_i64(buffer, record.headers.len() as i64);
        for header in record.headers {
            put_nullable_bytes(buffer, Some(header.key.as_bytes()));
            put_nullable_bytes(buffer, header.value);
        }
        debug_assert_eq!(self.buffer.len() - start, size_after - start);
        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(record.timestamp_ms);
        Ok(())
    }

    /// Encodes the pending records as one batch (base offset 0) and empties the builder.
    ///
    /// # Errors
    /// `Empty` when no record is pending; `Compress` when the codec fails (the records are
    /// dropped either way, so the builder is always empty afterwards).
    pub fn finish(&mut self) -> Result<Bytes, EncodeError> {
        if self.is_empty() {
            return Err(EncodeError::Empty);
        }
        let mut attributes: i16 = self.options.compression.id();
        if self.options.transactional {
            attributes |= ATTRIBUTE_TRANSACTIONAL;
        }
        let fields = HeaderFields {
            attributes,
            last_offset_delta: self.record_count - 1,
            base_timestamp_ms: self.base_timestamp_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            options: self.options,
            record_count: self.record_count,
        };
        self.capacity_bytes = self.capacity_bytes.max(self.buffer.len());
        let result = if self.options.compression == Compression::None {
            write_header(&mut self.buffer, &fields);
            Ok(self.buffer.split().freeze())
        } else {
            self.finish_compressed(&fields)
        };
        self.reset();
        result
    }

    /// Drops the pending records.
    pub fn clear(&mut self) {
        self.reset();
    }

    fn finish_compressed(&self, fields: &HeaderFields) -> Result<Bytes, EncodeError> {
        let records = &self.buffer[HEADER_SIZE_BYTES..];
        let mut batch = Vec::with_capacity(HEADER_SIZE_BYTES + records.len() / 2);
        batch.resize(HEADER_SIZE_BYTES, 0);
        let codec = self.options.compression;
        compression::compress_into(codec, records, &mut batch)
            .map_err(|source| EncodeError::Compress { codec, source })?;
        if batch.len() - LOG_OVERHEAD_BYTES > i32::MAX as usize {
            return Err(EncodeError::TooLarge { size_bytes: batch.len() });
        }
        write_header(&mut batch, fields);
        Ok(Bytes::from(batch))
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.record_count = 0;
        self.base_timestamp_ms = 0;
        self.max_timestamp_ms = -1;
    }
}

struct HeaderFields {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    options: BatchOptions,
    record_count: i32,
}

/// Fills the 61-byte header at the start of `batch` and computes the CRC over the rest.
fn write_header(batch: &mut [u8], fields: &HeaderFields) {
    assert!(batch.len() > HEADER_SIZE_BYTES, "a batch holds a header and at least one record");
    let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
    let mut header = [0u8; HEADER_SIZE_BYTES];
    let mut cursor = &mut header[..];
    cursor.put_i64(0); // base offset: the broker assigns it
    cursor.put_i32(batch_length);
    cursor.put_i32(-1); // partition leader epoch: the broker assigns it
    cursor.put_i8(2); // magic
    cursor.put_u32(0); // crc, computed below
    cursor.put_i16(fields.attributes);
    cursor.put_i32(fields.last_offset_delta);
    cursor.put_i64(fields.base_timestamp_ms);
    cursor.put_i64(fields.max_timestamp_ms);
    cursor.put_i64(fields.options.producer_id);
    cursor.put_i16(fields.options.producer_epoch);
    cursor.put_i32(fields.options.base_sequence);
    cursor.put_i32(fields.record_count);
    assert!(cursor.is_empty(), "header fields fill exactly 61 bytes");
    batch[..HEADER_SIZE_BYTES].copy_from_slice(&header);
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

fn record_body_size_bytes(record: &NewRecord<'_>, offset_delta: i32, timestamp_delta_ms: i64) -> usize {
    let mut size = 1 // attributes
        + varint::size_i64(timestamp_delta_ms)
        + varint::size_i64(i64::from(offset_delta))
        + nullable_size_bytes(record.key)
        + nullable_size_bytes(record.value)
        + varint::size_i64(record.headers.len() as i64);
    for header in record.headers {
        size += nullable_size_bytes(Some(header.key.as_bytes())) + nullable_size_bytes(header.value);
    }
    size
}

fn nullable_size_bytes(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint::size_i64(-1),
        Some(bytes) => varint::size_i64(bytes.len() as i64) + bytes.len(),
    }
}

fn put_nullable_bytes(buffer: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put_i64(buffer, -1),
        Some(bytes) => {
            varint::put_i64(buffer, bytes.len() as i64);
            buffer.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    /// Timestamp, key, value.
    type Sample = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

    fn sample_records() -> Vec<Sample> {
        vec![
            (1_700_000_000_000, None, Some(b"first".to_vec())),
            (1_700_000_000_005, Some(b"key".to_vec()), Some(vec![7u8; 300])),
            (1_699_999_999_990, Some(Vec::new()), None),
        ]
    }

    fn build(compression: Compression) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions { compression, ..BatchOptions::default() });
        let headers = [RecordHeader { key: "h1", value: Some(b"v1") }, RecordHeader { key: "h2", value: None }];
        for (index, (timestamp_ms, key, value)) in sample_records().iter().enumerate() {
            let record_headers: &[RecordHeader<'_>] = if index == 1 { &headers } else { &[] };
            let record = NewRecord {
                timestamp_ms: *timestamp_ms,
                key: key.as_deref(),
                value: value.as_deref(),
                headers: record_headers,
            };
            builder.push(&record).expect("record fits");
        }
        builder.finish().expect("batch encodes")
    }

    #[test]
    fn uncompressed_batch_passes_engine_validation() {
        let batch = build(Compression::None);
        let header = crate::validate(&batch, true).expect("valid batch");
        assert_eq!(header.record_count, 3);
        assert_eq!(header.size_bytes(), batch.len());
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_005);
        assert_eq!(header.compression(), 0);
    }

    #[test]
    fn every_codec_round_trips_through_kafka_protocol_decoder() {
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut batch = build(compression);
            let header = crate::validate(&batch, true).expect("crc covers the compressed bytes");
            assert_eq!(header.compression(), compression.id());
            let set = RecordBatchDecoder::decode(&mut batch).expect("kafka-protocol decodes it");
            assert_eq!(set.compression as i16, compression.id(), "the independent decoder sees the same codec");
            assert_eq!(set.records.len(), 3);
            for (index, (record, expected)) in set.records.iter().zip(sample_records()).enumerate() {
                assert_eq!(record.offset, index as i64);
                assert_eq!(record.timestamp, expected.0);
                assert_eq!(record.key.as_deref(), expected.1.as_deref());
                assert_eq!(record.value.as_deref(), expected.2.as_deref());
            }
            let headers = &set.records[1].headers;
            assert_eq!(headers.len(), 2);
            let header =
                |key: &str| headers.iter().find(|(name, _)| name.as_str() == key).map(|(_, value)| value.clone());
            assert_eq!(header("h1"), Some(Some(Bytes::from_static(b"v1"))));
            assert_eq!(header("h2"), Some(None));
        }
    }

    #[test]
    fn size_bytes_predicts_the_uncompressed_batch_size() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        let value = [1u8; 100];
        let record = NewRecord { timestamp_ms: 5, value: Some(&value), ..NewRecord::default() };
        for offset_delta in 0..200 {
            let before = builder.size_bytes();
            builder.push(&record).expect("fits");
            assert_eq!(builder.size_bytes() - before, BatchBuilder::record_size_bytes(&record, offset_delta, 0));
        }
        let expected = builder.size_bytes();
        assert_eq!(builder.finish().expect("encodes").len(), expected);
    }

    #[test]
    fn builder_is_reusable_after_finish() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        let record = NewRecord { timestamp_ms: 9, value: Some(b"x"), ..NewRecord::default() };
        builder.push(&record).expect("fits");
        let first = builder.finish().expect("encodes");
        builder.push(&record).expect("fits");
        let second = builder.finish().expect("encodes");
        assert_eq!(first, second);
        assert!(matches!(builder.finish(), Err(EncodeError::Empty)));
    }

    #[test]
    fn steady_state_reuses_the_buffer_once_the_previous_batch_is_dropped() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        let value = [3u8; 100];
        let record = NewRecord { timestamp_ms: 1, value: Some(&value), ..NewRecord::default() };
        let fill = |builder: &mut BatchBuilder| {
            for _ in 0..150 {
                builder.push(&record).expect("fits");
            }
            builder.finish().expect("encodes")
        };
        let first = fill(&mut builder);
        let first_address = first.as_ptr();
        drop(first);
        // The next batch lands in the same allocation: no per-batch allocation after warm-up.
        for _ in 0..3 {
            let batch = fill(&mut builder);
            assert_eq!(batch.as_ptr(), first_address);
        }
    }

    #[test]
    fn producer_fields_are_stamped() {
        let options = BatchOptions {
            compression: Compression::None,
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 17,
            transactional: true,
        };
        let mut builder = BatchBuilder::new(options);
        builder.push(&NewRecord { timestamp_ms: 1, value: Some(b"v"), ..NewRecord::default() }).expect("fits");
        let batch = builder.finish().expect("encodes");
        let header = crate::validate(&batch, true).expect("valid");
        assert_eq!(header.producer_id, 42);
        assert_eq!(header.producer_epoch, 3);
        assert_eq!(header.base_sequence, 17);
        assert!(header.is_transactional());
    }
}
