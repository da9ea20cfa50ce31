//! Transaction control batches: the commit and abort markers a transaction coordinator has each
//! partition leader append when a transaction ends ([`build_control_batch`]), and reading one
//! back ([`parse_control_batch`]).
//!
//! Layout, as Kafka's `MemoryRecords.withEndTransactionMarker` writes it: a `RecordBatch` v2,
//! uncompressed, attributes transactional (0x10) + control (0x20), base offset 0 (the leader
//! assigns it at append), partition leader epoch -1 (patched at append), base sequence -1, the
//! producer's id and epoch, both timestamps the marker's timestamp, and one record (offset and
//! timestamp delta 0, no headers) whose
//! - key is `ControlRecordType`'s v0 key: `i16 version = 0, i16 type` (0 abort, 1 commit);
//! - value is `EndTransactionMarker` v0: `i16 version = 0, i32 coordinator_epoch`.
//!
//! So a marker is 78 bytes: the 61-byte header plus a 17-byte record (length varint 1 byte,
//! attributes 1, timestamp delta 1, offset delta 1, key length 1 + key 4, value length 1 +
//! value 6, header count 1).
//!
//! Reading follows Kafka's `ControlRecordType.parseTypeId` and
//! `EndTransactionMarker.deserializeValue`: a negative key or value version is corrupt, a higher
//! one is read as v0 (later versions may only append fields). Pure functions; any thread.

use thiserror::Error;

use crate::builder::{BatchBuilder, BatchOptions, NewRecord};
use crate::decode::{DecodeError, RecordIter};
use crate::header::{ATTRIBUTE_CONTROL, ATTRIBUTES_POSITION, BatchError, CRC_POSITION, be_i16, be_i32, crc32c};

/// The size of one marker's records section once inflated, at most. A marker record is 17
/// bytes; anything that inflates past this is not a marker, and the cap keeps hostile
/// compressed bytes from allocating more.
const RECORDS_SIZE_BYTES_MAX: usize = 4096;
/// `ControlRecordType` key: i16 version + i16 type.
const KEY_SIZE_BYTES: usize = 4;
/// `EndTransactionMarker` value: i16 version + i32 coordinator epoch.
const VALUE_SIZE_BYTES: usize = 6;

/// Which way a transaction ended (Kafka's `ControlRecordType` ids for transaction markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum ControlType {
    /// The transaction aborted: consumers at `read_committed` skip its records.
    Abort = 0,
    /// The transaction committed.
    Commit = 1,
}

impl ControlType {
    /// The marker type with Kafka's id `control_type`; `None` for other control records (the
    /// KRaft ones, 2-6) and unknown ids.
    pub fn from_i16(control_type: i16) -> Option<Self> {
        match control_type {
            0 => Some(Self::Abort),
            1 => Some(Self::Commit),
            _ => None,
        }
    }

    /// Kafka's id of this type.
    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

/// The content of one commit or abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// Commit or abort.
    pub control_type: ControlType,
    /// The epoch of the transaction coordinator that wrote the marker, so that a partition
    /// leader can refuse markers from a deposed coordinator.
    pub coordinator_epoch: i32,
}

/// Why bytes are not a well-formed transaction marker batch.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControlBatchError {
    /// The batch itself is invalid: truncated, wrong magic, bad CRC, bad record count.
    #[error("invalid batch")]
    Batch(#[from] BatchError),
    /// The control attribute bit is not set.
    #[error("not a control batch (attributes {attributes:#06x})")]
    NotControl {
        /// The batch's attributes.
        attributes: i16,
    },
    /// The transactional attribute bit is not set; every transaction marker carries it.
    #[error("control batch is not transactional (attributes {attributes:#06x})")]
    NotTransactional {
        /// The batch's attributes.
        attributes: i16,
    },
    /// A marker batch holds exactly one record.
    #[error("control batch holds {record_count} records, not 1")]
    RecordCount {
        /// The header's record count.
        record_count: i32,
    },
    /// The records section does not decode (codec failure, malformed record).
    #[error("unreadable control record")]
    Record(#[from] DecodeError),
    /// The record's key is null or shorter than a control key.
    #[error("control record key of {size_bytes:?} bytes")]
    InvalidKey {
        /// The key's size, `None` when null.
        size_bytes: Option<usize>,
    },
    /// The record's value is null or shorter than an end-transaction marker.
    #[error("end transaction marker value of {size_bytes:?} bytes")]
    InvalidValue {
        /// The value's size, `None` when null.
        size_bytes: Option<usize>,
    },
    /// A key or value version is negative, which Kafka treats as corruption.
    #[error("negative control record {kind} version {version}")]
    NegativeVersion {
        /// Key or value.
        kind: &'static str,
        /// The version found.
        version: i16,
    },
    /// The control type is not abort or commit (for example a KRaft control record).
    #[error("control type {control_type} is not a transaction marker")]
    NotTransactionMarker {
        /// The type id found.
        control_type: i16,
    },
}

/// Builds one control batch carrying `marker` for the producer `producer_id` at
/// `producer_epoch`, stamped `timestamp_ms`; see the module docs for the layout. The base offset
/// is 0 and the leader epoch -1, both patched at append outside the CRC.
///
/// ```
/// use sluice_batch::control::{ControlType, EndTxnMarker, build_control_batch, parse_control_batch};
///
/// let marker = EndTxnMarker { control_type: ControlType::Commit, coordinator_epoch: 3 };
/// let batch = build_control_batch(7, 1, marker, 1_700_000_000_000);
/// assert!(sluice_batch::validate(&batch, true)?.is_control());
/// assert_eq!(parse_control_batch(&batch)?, marker);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build_control_batch(producer_id: i64, producer_epoch: i16, marker: EndTxnMarker, timestamp_ms: i64) -> Vec<u8> {
    let mut key = [0u8; KEY_SIZE_BYTES];
    key[2..].copy_from_slice(&marker.control_type.as_i16().to_be_bytes()); // version 0, type
    let mut value = [0u8; VALUE_SIZE_BYTES];
    value[2..].copy_from_slice(&marker.coordinator_epoch.to_be_bytes()); // version 0, epoch
    // The builder writes the header, the record and the CRC as for any transactional batch; only
    // the control bit is left to set here. Adding a `control` flag to `BatchOptions` instead was
    // rejected: it would change a public struct every producer builds, for a batch the producer
    // path never makes.
    let options =
        BatchOptions { producer_id, producer_epoch, base_sequence: -1, transactional: true, ..BatchOptions::default() };
    let mut builder = BatchBuilder::with_capacity(options, 128);
    let record = NewRecord { timestamp_ms, key: Some(&key), value: Some(&value), headers: &[] };
    let built = builder.push(&record).and_then(|()| builder.finish());
    let built = built.expect("one uncompressed record of 10 bytes always fits a batch");
    let mut batch = built.to_vec();
    let attributes = be_i16(&batch, ATTRIBUTES_POSITION) | ATTRIBUTE_CONTROL;
    batch[ATTRIBUTES_POSITION..ATTRIBUTES_POSITION + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Reads the marker of the control batch at the start of `bytes` (the whole batch; bytes past
/// its announced size are ignored).
///
/// # Errors
/// Any [`ControlBatchError`] when the bytes are not a valid, transactional control batch of one
/// record whose key and value are an abort or commit marker. Never panics, whatever the bytes.
pub fn parse_control_batch(bytes: &[u8]) -> Result<EndTxnMarker, ControlBatchError> {
    let header = crate::validate(bytes, true)?;
    if !header.is_control() {
        return Err(ControlBatchError::NotControl { attributes: header.attributes });
    }
    if !header.is_transactional() {
        return Err(ControlBatchError::NotTransactional { attributes: header.attributes });
    }
    if header.record_count != 1 {
        return Err(ControlBatchError::RecordCount { record_count: header.record_count });
    }
    let records = crate::records_section(&bytes[..header.size_bytes()], RECORDS_SIZE_BYTES_MAX)?;
    let record = RecordIter::new(&header, &records).next();
    let record = record.ok_or(DecodeError::MalformedRecord { base_offset: header.base_offset, record_index: 0 })??;
    let key = record.key.filter(|key| key.len() >= KEY_SIZE_BYTES);
    let key = key.ok_or(ControlBatchError::InvalidKey { size_bytes: record.key.map(<[u8]>::len) })?;
    let key_version = be_i16(key, 0);
    if key_version < 0 {
        return Err(ControlBatchError::NegativeVersion { kind: "key", version: key_version });
    }
    let type_id = be_i16(key, 2);
    let control_type =
        ControlType::from_i16(type_id).ok_or(ControlBatchError::NotTransactionMarker { control_type: type_id })?;
    let value = record.value.filter(|value| value.len() >= VALUE_SIZE_BYTES);
    let value = value.ok_or(ControlBatchError::InvalidValue { size_bytes: record.value.map(<[u8]>::len) })?;
    let value_version = be_i16(value, 0);
    if value_version < 0 {
        return Err(ControlBatchError::NegativeVersion { kind: "value", version: value_version });
    }
    Ok(EndTxnMarker { control_type, coordinator_epoch: be_i32(value, 2) })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::header::HEADER_SIZE_BYTES;

    const COMMIT: EndTxnMarker = EndTxnMarker { control_type: ControlType::Commit, coordinator_epoch: 9 };
    const ABORT: EndTxnMarker = EndTxnMarker { control_type: ControlType::Abort, coordinator_epoch: -1 };

    #[test]
    fn built_marker_validates_and_parses_back() {
        for marker in [COMMIT, ABORT] {
            let batch = build_control_batch(4242, 17, marker, 1_700_000_000_000);
            let header = crate::validate(&batch, true).expect("valid batch");
            assert!(header.is_control());
            assert!(header.is_transactional());
            assert_eq!(header.compression(), 0);
            assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (4242, 17, -1));
            assert_eq!((header.base_offset, header.leader_epoch), (0, -1));
            assert_eq!((header.base_timestamp, header.max_timestamp), (1_700_000_000_000, 1_700_000_000_000));
            assert_eq!((header.record_count, header.last_offset_delta), (1, 0));
            assert_eq!(parse_control_batch(&batch).expect("parses"), marker);
        }
    }

    #[test]
    fn marker_record_matches_kafka_bytes() {
        let batch = build_control_batch(1, 0, COMMIT, 5);
        assert_eq!(batch.len(), 78);
        assert_eq!(&batch[8..12], &66i32.to_be_bytes()); // batch length: 78 - 12
        assert_eq!(&batch[ATTRIBUTES_POSITION..ATTRIBUTES_POSITION + 2], &[0x00, 0x30]);
        let record = [
            0x20, // record length 16, zigzag
            0x00, // attributes
            0x00, // timestamp delta 0
            0x00, // offset delta 0
            0x08, 0x00, 0x00, 0x00, 0x01, // key: length 4, version 0, type 1 (commit)
            0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // value: length 6, version 0, epoch 9
            0x00, // no headers
        ];
        assert_eq!(&batch[HEADER_SIZE_BYTES..], &record);
    }

    #[test]
    fn base_offset_and_leader_epoch_patches_keep_it_parseable() {
        let mut batch = build_control_batch(1, 0, ABORT, 5);
        crate::patch_base_offset(&mut batch, 1234);
        crate::patch_leader_epoch(&mut batch, 6);
        assert_eq!(parse_control_batch(&batch).expect("parses"), ABORT);
    }

    #[test]
    fn kafka_protocol_decoder_agrees() {
        let mut bytes = Bytes::from(build_control_batch(4242, 17, COMMIT, 1_700_000_000_000));
        let set = RecordBatchDecoder::decode(&mut bytes).expect("kafka-protocol decodes it");
        assert_eq!(set.records.len(), 1);
        let record = &set.records[0];
        assert!(record.control);
        assert!(record.transactional);
        assert_eq!((record.producer_id, record.producer_epoch, record.sequence), (4242, 17, -1));
        assert_eq!(record.timestamp, 1_700_000_000_000);
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 9][..]));
    }

    #[test]
    fn data_batches_are_not_markers() {
        let plain = crate::build_batch(&[b"v"], 5);
        assert!(matches!(parse_control_batch(&plain), Err(ControlBatchError::NotControl { .. })));
        let options =
            BatchOptions { producer_id: 1, producer_epoch: 0, transactional: true, ..BatchOptions::default() };
        let mut builder = BatchBuilder::new(options);
        builder.push(&NewRecord { timestamp_ms: 5, value: Some(b"v"), ..NewRecord::default() }).expect("fits");
        let transactional = builder.finish().expect("encodes");
        assert!(matches!(parse_control_batch(&transactional), Err(ControlBatchError::NotControl { .. })));
    }

    /// Rewrites the marker record's key or value byte at `index` (0-based within the record)
    /// and fixes the CRC, so that only the marker check can object.
    fn with_record_byte(index: usize, byte: u8) -> Vec<u8> {
        let mut batch = build_control_batch(1, 0, COMMIT, 5);
        batch[HEADER_SIZE_BYTES + index] = byte;
        let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
        batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn malformed_markers_are_errors() {
        let kraft = with_record_byte(8, 2); // type 2: a KRaft LeaderChange record
        assert!(matches!(
            parse_control_batch(&kraft),
            Err(ControlBatchError::NotTransactionMarker { control_type: 2 })
        ));
        let corrupt = with_record_byte(5, 0xff); // key version -256
        assert!(matches!(parse_control_batch(&corrupt), Err(ControlBatchError::NegativeVersion { kind: "key", .. })));
        let corrupt = with_record_byte(10, 0x80); // value version negative
        assert!(matches!(parse_control_batch(&corrupt), Err(ControlBatchError::NegativeVersion { kind: "value", .. })));
        let newer = with_record_byte(6, 1); // key version 1: read as v0, as Kafka does
        assert_eq!(parse_control_batch(&newer).expect("parses"), COMMIT);
        let mut flipped = build_control_batch(1, 0, COMMIT, 5);
        flipped[70] ^= 1;
        assert!(matches!(parse_control_batch(&flipped), Err(ControlBatchError::Batch(BatchError::CrcMismatch { .. }))));
        let batch = build_control_batch(1, 0, COMMIT, 5);
        assert!(matches!(
            parse_control_batch(&batch[..77]),
            Err(ControlBatchError::Batch(BatchError::Truncated { .. }))
        ));
    }

    #[test]
    fn non_transactional_control_batch_is_refused() {
        let mut batch = build_control_batch(1, 0, COMMIT, 5);
        batch[ATTRIBUTES_POSITION + 1] = 0x20;
        let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
        batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(parse_control_batch(&batch), Err(ControlBatchError::NotTransactional { .. })));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..160)) {
            let _ = parse_control_batch(&bytes);
        }

        #[test]
        fn parse_never_panics_on_a_mutated_marker(index in 0usize..78, byte in proptest::num::u8::ANY) {
            let mut batch = build_control_batch(1, 0, COMMIT, 5);
            batch[index] = byte;
            let crc = crc32c(&batch[ATTRIBUTES_POSITION..]);
            batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
            let _ = parse_control_batch(&batch);
        }

        #[test]
        fn every_marker_round_trips(
            producer_id in proptest::num::i64::ANY,
            producer_epoch in proptest::num::i16::ANY,
            commit in proptest::bool::ANY,
            coordinator_epoch in proptest::num::i32::ANY,
            timestamp_ms in proptest::num::i64::ANY,
        ) {
            let control_type = if commit { ControlType::Commit } else { ControlType::Abort };
            let marker = EndTxnMarker { control_type, coordinator_epoch };
            let batch = build_control_batch(producer_id, producer_epoch, marker, timestamp_ms);
            proptest::prop_assert_eq!(parse_control_batch(&batch).expect("parses"), marker);
        }
    }
}
