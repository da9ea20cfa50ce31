//! Building small uncompressed batches and walking or filtering the records of stored ones.
//!
//! For the engine (compaction rebuilds a batch with the records it keeps), for embedders and
//! tests that have no Kafka client at hand, and for checks that look at every record of a batch
//! (a compacted topic refuses records without a key). [`records`] walks uncompressed batches
//! only; [`records_section`] inflates a compressed batch's records first. Pure functions; any thread.

use crate::compression::{self, CodecError, Compression};
use crate::decode::{DecodeError, RecordIter, RecordView};
use crate::header::{
    ATTRIBUTES_POSITION, CRC_POSITION, HEADER_SIZE_BYTES, LENGTH_POSITION, LOG_OVERHEAD_BYTES, RECORD_COUNT_POSITION,
    crc32c, parse_header,
};
use crate::varint;

/// A record to encode: its key and value, either possibly null.
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed RecordBatch v2 holding `values` as records with null keys.
///
/// For embedders and tests that have no Kafka client at hand: the result is what a producer
/// would send, with base offset 0 and no producer id.
///
/// # Panics
/// When `values` is empty: a batch holds at least one record.
pub fn build_batch(values: &[&[u8]], timestamp_ms: i64) -> Vec<u8> {
    assert!(!values.is_empty(), "a batch holds at least one record");
    let records: Vec<KeyValue<'_>> = values.iter().map(|value| (None, Some(*value))).collect();
    encode(&records, timestamp_ms)
}

/// Builds an uncompressed batch of keyed records (`None` value = tombstone); see [`build_batch`].
///
/// # Panics
/// When `records` is empty.
pub fn build_keyed_batch(records: &[(&[u8], Option<&[u8]>)], timestamp_ms: i64) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<KeyValue<'_>> = records.iter().map(|(key, value)| (Some(*key), *value)).collect();
    encode(&records, timestamp_ms)
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            varint::put_i64(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => varint::put_i64(out, -1),
    }
}

fn encode(records: &[KeyValue<'_>], timestamp_ms: i64) -> Vec<u8> {
    let mut body = Vec::new();
    let mut batch = vec![0u8; HEADER_SIZE_BYTES];
    for (index, (key, value)) in records.iter().enumerate() {
        body.clear();
        body.push(0u8); // record attributes
        varint::put_i64(&mut body, 0); // timestamp delta
        varint::put_i64(&mut body, index as i64); // offset delta
        put_nullable(&mut body, *key);
        put_nullable(&mut body, *value);
        varint::put_i64(&mut body, 0); // header count
        varint::put_i64(&mut batch, body.len() as i64);
        batch.extend_from_slice(&body);
    }
    let count = records.len() as i32;
    let mut header = Vec::with_capacity(HEADER_SIZE_BYTES);
    header.extend_from_slice(&0i64.to_be_bytes()); // base offset
    header.extend_from_slice(&((batch.len() - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    header.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    header.push(2); // magic
    header.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    header.extend_from_slice(&0i16.to_be_bytes()); // attributes
    header.extend_from_slice(&(count - 1).to_be_bytes());
    header.extend_from_slice(&timestamp_ms.to_be_bytes()); // base timestamp
    header.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
    header.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    header.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    header.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    header.extend_from_slice(&count.to_be_bytes());
    batch[..HEADER_SIZE_BYTES].copy_from_slice(&header);
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The records of an uncompressed batch, in order. Stops at the first malformed record, so
/// corrupt bytes yield fewer records, never a panic. Yields nothing for compressed batches.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = RecordView<'_>> + '_ {
    let header = parse_header(bytes).ok().filter(|header| header.compression() == 0);
    let (header, section) = match header {
        Some(header) => {
            let end = header.size_bytes().min(bytes.len());
            (header, &bytes[HEADER_SIZE_BYTES.min(end)..end])
        }
        None => (crate::header::BatchHeader::default(), &[][..]),
    };
    RecordIter::new(&header, section).map_while(Result::ok)
}

/// The (offset delta, timestamp) of each record of an uncompressed batch, in order. Stops
/// silently at the first malformed record, so corrupt bytes yield fewer items, never a panic.
pub fn record_timestamps(bytes: &[u8]) -> impl Iterator<Item = (i32, i64)> + '_ {
    records(bytes).map(|record| (record.offset_delta, record.timestamp_ms))
}

/// The uncompressed records section of a whole, validated batch: borrowed when the batch is not
/// compressed, inflated (to at most `size_bytes_max` bytes) when it is.
///
/// # Errors
/// [`DecodeError::Header`] for bytes shorter than a header, [`DecodeError::UnknownCodec`] or
/// [`DecodeError::Decompress`].
pub fn records_section(bytes: &[u8], size_bytes_max: usize) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    let header = parse_header(bytes)?;
    let end = header.size_bytes().min(bytes.len());
    let section = &bytes[HEADER_SIZE_BYTES..end];
    match header.codec()? {
        Compression::None => Ok(std::borrow::Cow::Borrowed(section)),
        codec => compression::decompress(codec, section, size_bytes_max)
            .map(std::borrow::Cow::Owned)
            .map_err(|source: CodecError| DecodeError::Decompress { base_offset: header.base_offset, source }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::validate;

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
        assert!(views[1].value.is_none());
        assert_eq!(views[2].value, Some(&b"v3"[..]));
        let kept: Vec<&[u8]> = vec![views[1].raw, views[2].raw];
        let rebuilt = rebuild_with_records(&batch, &kept);
        let rebuilt_header = validate(&rebuilt, false).expect("valid after rebuild");
        assert_eq!(rebuilt_header.record_count, 2);
        assert_eq!(rebuilt_header.last_offset_delta, header.last_offset_delta);
        let offsets: Vec<_> = records(&rebuilt).map(|view| view.offset_delta).collect();
        assert_eq!(offsets, vec![1, 2]);
    }

    #[test]
    fn compressed_sections_are_inflated_and_plain_ones_borrowed() {
        use crate::builder::{BatchBuilder, BatchOptions, NewRecord};
        for codec in [Compression::None, Compression::Zstd, Compression::Snappy] {
            let mut builder = BatchBuilder::new(BatchOptions { compression: codec, ..BatchOptions::default() });
            builder.push(&NewRecord { timestamp_ms: 1, key: Some(b"k"), ..NewRecord::default() }).expect("fits");
            builder.push(&NewRecord { timestamp_ms: 2, value: Some(b"v"), ..NewRecord::default() }).expect("fits");
            let batch = builder.finish().expect("encodes");
            let header = validate(&batch, true).expect("valid");
            let section = records_section(&batch, 1 << 20).expect("inflates");
            assert_eq!(matches!(section, std::borrow::Cow::Borrowed(_)), codec == Compression::None);
            let keys: Vec<_> = RecordIter::new(&header, &section).map(|record| record.expect("valid").key).collect();
            assert_eq!(keys, vec![Some(&b"k"[..]), None]);
        }
    }

    proptest::proptest! {
        #[test]
        fn walking_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = record_timestamps(&bytes).count();
            let _ = records(&bytes).count();
            let _ = records_section(&bytes, 1 << 16);
        }
    }
}
