//! The record layout of `__transaction_state`, byte for byte as Apache Kafka 4.x writes it, so
//! that Kafka tools reading the topic understand it and a log written by either reads back in the
//! other. Schemas: `TransactionLogKey.json` and `TransactionLogValue.json` in Kafka's
//! `transaction-coordinator` module; writer: `TransactionLog.keyToBytes` and `valueToBytes`.
//!
//! Every key and value starts with a big-endian i16 version. Key, `TransactionLogKey` v0 (the
//! only version; the i16 doubles as the coordinator record type, `TRANSACTION_LOG` = 0):
//! `i16 0, string transactional_id` (string: i16 length + UTF-8).
//!
//! Value, `TransactionLogValue` (a null value is a tombstone: the transactional id was removed):
//! - v0, classic encoding: `i16 0, i64 producer_id, i16 producer_epoch, i32 timeout_ms,
//!   i8 status, nullable array partitions, i64 last_update_ms, i64 start_ms`, where the array is
//!   `i32 count` (-1 = null) of `{string topic, i32 count, i32 partition...}`;
//! - v1, flexible encoding: the same fields in the same order, but the array is `uvarint count+1`
//!   (0 = null) of `{compact string topic, uvarint count+1, i32 partition..., uvarint 0 tagged
//!   fields}` (compact string: uvarint length+1 + UTF-8), followed by the tagged fields
//!   `uvarint count, {uvarint tag, uvarint size, bytes}...` in tag order, each written only when
//!   it differs from its default: tag 0 `PreviousProducerId` i64 (default -1), tag 1
//!   `NextProducerId` i64 (default -1), tag 2 `ClientTransactionVersion` i16 (default 0).
//!   Unknown tags (newer Kafka adds more, such as the next and last producer epochs) are skipped.
//!
//! Which version is written: Kafka 4.x writes v1 when the cluster's finalized
//! `transaction.version` feature is 1 or more (the default of a new 4.x cluster is 2), and v0
//! when it is 0 (`TransactionVersion.transactionLogValueVersion`). [`encode_value`] writes v1,
//! as a Sluice cluster behaves like a 4.x cluster at `transaction.version` 1 or more (v0 is
//! written only by the tests, to check reading it). Partitions are null exactly when the status is
//! `Empty`, and Kafka ignores them when reading an `Empty` record; this module does the same.
//! Kafka writes these records uncompressed, one per batch, with acks=-1.
//!
//! Pure functions; any thread may call them. Decoding never panics on malformed bytes and
//! allocates at most in proportion to the input's length.

use crate::record_codec::{Reader, put_array_length, put_null_array, put_string, put_uvarint};
pub(crate) use crate::record_codec::{RecordError, STRING_SIZE_BYTES_MAX};

/// A transaction's state as Kafka numbers it (`TransactionState.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum TxnStatus {
    /// No transaction has started since the last one completed (or ever).
    Empty = 0,
    /// Partitions or offsets were added; the producer has not ended the transaction.
    Ongoing = 1,
    /// The producer asked to commit; commit markers are being written.
    PrepareCommit = 2,
    /// The producer (or a timeout, or a fence) asked to abort; abort markers are being written.
    PrepareAbort = 3,
    /// Every partition has its commit marker.
    CompleteCommit = 4,
    /// Every partition has its abort marker.
    CompleteAbort = 5,
    /// The transactional id expired and is about to be removed (a tombstone follows).
    Dead = 6,
    /// The epoch is being bumped to fence an older producer before aborting.
    PrepareEpochFence = 7,
}

impl TxnStatus {
    /// The status with Kafka's id `status`, or `None` for an id Kafka does not define.
    pub(crate) fn from_i8(status: i8) -> Option<Self> {
        Some(match status {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's id of this status.
    pub(crate) fn as_i8(self) -> i8 {
        self as i8
    }
}

/// One transactional id's coordinator state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnLogValue {
    /// The producer id in use by the transactional id.
    pub(crate) producer_id: i64,
    /// The producer id of the last committed transaction, or -1 (v1 only, tag 0).
    pub(crate) previous_producer_id: i64,
    /// The producer id handed out when the epoch ran out, or -1 (v1 only, tag 1).
    pub(crate) next_producer_id: i64,
    /// The epoch of `producer_id`.
    pub(crate) producer_epoch: i16,
    /// The transaction timeout the producer asked for.
    pub(crate) timeout_ms: i32,
    /// Where the transaction stands.
    pub(crate) status: TxnStatus,
    /// The partitions in the transaction, by topic; empty (written as null) when `Empty`.
    pub(crate) partitions: Vec<(String, Vec<i32>)>,
    /// When the state last changed, ms since the Unix epoch.
    pub(crate) last_update_ms: i64,
    /// When the transaction started, ms since the Unix epoch, or -1.
    pub(crate) start_ms: i64,
    /// The client's `transaction.version` (0, or 2 for KIP-890 clients) (v1 only, tag 2).
    pub(crate) client_transaction_version: i16,
}

const KEY_VERSION: i16 = 0;
/// The flexible version, what Kafka 4.x writes from `transaction.version` 1 on.
const VALUE_VERSION: i16 = 1;
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;
const NO_PRODUCER_ID: i64 = -1;

/// Encodes the key of `transactional_id`'s records (callers refuse ids longer than
/// [`STRING_SIZE_BYTES_MAX`]).
pub(crate) fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id, false);
    out
}

/// Decodes a key into its transactional id.
///
/// # Errors
/// `UnknownVersion` for a key that is not `TransactionLogKey` v0 (Kafka skips such records),
/// or any malformed-bytes error.
pub(crate) fn decode_key(bytes: &[u8]) -> Result<String, RecordError> {
    let mut reader = Reader::new(bytes);
    match reader.i16()? {
        KEY_VERSION => reader.string(false),
        version => Err(RecordError::UnknownVersion { kind: "key", version }),
    }
}

/// Encodes a value as v1, what a Kafka 4.x cluster at its default `transaction.version` writes.
///
/// # Panics
/// When an `Empty` value lists partitions (Kafka refuses to write one too).
pub(crate) fn encode_value(value: &TxnLogValue) -> Vec<u8> {
    encode_value_as(value, VALUE_VERSION)
}

/// Encodes a value as `version`, 0 or 1. V0, what a Kafka cluster at `transaction.version` 0
/// writes, has no place for the previous and next producer ids and the client's transaction
/// version; they read back as -1, -1 and 0. Only the tests write v0; this stays private rather
/// than a `pub(crate)` version switch nobody calls.
fn encode_value_as(value: &TxnLogValue, version: i16) -> Vec<u8> {
    assert!(matches!(version, 0 | 1), "TransactionLogValue has versions 0 and 1, not {version}");
    assert!(value.status != TxnStatus::Empty || value.partitions.is_empty(), "an Empty transaction has no partitions");
    let flexible = version == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&value.producer_id.to_be_bytes());
    out.extend_from_slice(&value.producer_epoch.to_be_bytes());
    out.extend_from_slice(&value.timeout_ms.to_be_bytes());
    out.extend_from_slice(&value.status.as_i8().to_be_bytes());
    if value.status == TxnStatus::Empty {
        put_null_array(&mut out, flexible);
    } else {
        put_partitions(&mut out, &value.partitions, flexible);
    }
    out.extend_from_slice(&value.last_update_ms.to_be_bytes());
    out.extend_from_slice(&value.start_ms.to_be_bytes());
    if flexible {
        put_value_tagged_fields(&mut out, value);
    }
    out
}

/// Decodes a value of version 0 or 1. The partitions of an `Empty` value are dropped, as Kafka
/// drops them.
///
/// # Errors
/// `UnknownVersion` for versions above 1, `UnknownEnum` for a status Kafka does not define,
/// or any malformed-bytes error.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let flexible = match reader.i16()? {
        0 => false,
        1 => true,
        version => return Err(RecordError::UnknownVersion { kind: "value", version }),
    };
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let status_id = reader.i8()?;
    let status = TxnStatus::from_i8(status_id)
        .ok_or(RecordError::UnknownEnum { kind: "transaction status", value: i32::from(status_id) })?;
    let mut partitions = read_partitions(&mut reader, flexible)?;
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    if status == TxnStatus::Empty {
        partitions.clear();
    }
    let mut value = TxnLogValue {
        producer_id,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        read_value_tagged_fields(&mut reader, &mut value)?;
    }
    Ok(value)
}

fn put_partitions(out: &mut Vec<u8>, partitions: &[(String, Vec<i32>)], flexible: bool) {
    put_array_length(out, partitions.len(), flexible);
    for (topic, partition_ids) in partitions {
        put_string(out, topic, flexible);
        put_array_length(out, partition_ids.len(), flexible);
        for partition_id in partition_ids {
            out.extend_from_slice(&partition_id.to_be_bytes());
        }
        if flexible {
            put_uvarint(out, 0); // the entry's own tagged fields: none
        }
    }
}

/// Writes the tagged fields that differ from their defaults, in tag order, as Kafka does.
fn put_value_tagged_fields(out: &mut Vec<u8>, value: &TxnLogValue) {
    let previous = (value.previous_producer_id != NO_PRODUCER_ID).then_some(value.previous_producer_id);
    let next = (value.next_producer_id != NO_PRODUCER_ID).then_some(value.next_producer_id);
    let client = (value.client_transaction_version != 0).then_some(value.client_transaction_version);
    let count = u32::from(previous.is_some()) + u32::from(next.is_some()) + u32::from(client.is_some());
    put_uvarint(out, count);
    for (tag, producer_id) in [(TAG_PREVIOUS_PRODUCER_ID, previous), (TAG_NEXT_PRODUCER_ID, next)] {
        if let Some(producer_id) = producer_id {
            put_uvarint(out, tag);
            put_uvarint(out, 8);
            out.extend_from_slice(&producer_id.to_be_bytes());
        }
    }
    if let Some(client) = client {
        put_uvarint(out, TAG_CLIENT_TRANSACTION_VERSION);
        put_uvarint(out, 2);
        out.extend_from_slice(&client.to_be_bytes());
    }
}

/// `TransactionPartitions`; null reads as empty.
fn read_partitions(reader: &mut Reader<'_>, flexible: bool) -> Result<Vec<(String, Vec<i32>)>, RecordError> {
    // Smallest entry: an empty topic and an empty partition array, plus the entry's tagged
    // field count when flexible (1 + 1 + 1 bytes), else a 2-byte and a 4-byte length.
    let entry_size_bytes_min = if flexible { 3 } else { 6 };
    let Some(count) = reader.array_length(flexible, entry_size_bytes_min)? else { return Ok(Vec::new()) };
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = reader.string(flexible)?;
        let length = reader.array_length_not_null(flexible, 4)?;
        let mut partition_ids = Vec::with_capacity(length);
        for _ in 0..length {
            partition_ids.push(reader.i32()?);
        }
        if flexible {
            reader.skip_tagged_fields()?;
        }
        partitions.push((topic, partition_ids));
    }
    Ok(partitions)
}

/// The value's tagged fields; unknown ones (a newer Kafka's) are skipped.
fn read_value_tagged_fields(reader: &mut Reader<'_>, value: &mut TxnLogValue) -> Result<(), RecordError> {
    reader.tagged_fields(|tag, bytes| {
        let size_error = RecordError::TaggedFieldSize { tag, size_bytes: bytes.len() };
        match tag {
            TAG_PREVIOUS_PRODUCER_ID => {
                value.previous_producer_id = i64::from_be_bytes(bytes.try_into().map_err(|_size| size_error)?);
            }
            TAG_NEXT_PRODUCER_ID => {
                value.next_producer_id = i64::from_be_bytes(bytes.try_into().map_err(|_size| size_error)?);
            }
            TAG_CLIENT_TRANSACTION_VERSION => {
                value.client_transaction_version = i16::from_be_bytes(bytes.try_into().map_err(|_size| size_error)?);
            }
            _ => {} // A field from a newer Kafka: tagged fields exist so that readers may skip them.
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing(client_transaction_version: i16) -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: -1,
            producer_epoch: 5,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: vec![("t".to_owned(), vec![0, 2])],
            last_update_ms: 2000,
            start_ms: 1000,
            client_transaction_version,
        }
    }

    /// The fields both versions share, as `ongoing` sets them, up to the partitions.
    const COMMON_HEAD: [u8; 15] = [
        0, 0, 0, 0, 0, 0, 0x03, 0xe8, // producer id 1000
        0, 5, // producer epoch
        0, 0, 0xea, 0x60, // timeout 60000 ms
        1,    // status Ongoing
    ];
    /// Last update 2000 ms, start 1000 ms.
    const COMMON_TAIL: [u8; 16] = [0, 0, 0, 0, 0, 0, 0x07, 0xd0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8];

    fn golden(version: [u8; 2], partitions: &[u8], tagged: &[u8]) -> Vec<u8> {
        [&version[..], &COMMON_HEAD, partitions, &COMMON_TAIL, tagged].concat()
    }

    #[test]
    fn key_matches_kafka_bytes() {
        let bytes = encode_key("txn");
        assert_eq!(bytes, [0, 0, 0, 3, b't', b'x', b'n']);
        assert_eq!(decode_key(&bytes), Ok("txn".to_owned()));
    }

    #[test]
    fn value_v0_matches_kafka_bytes() {
        let value = ongoing(0);
        let partitions = [
            0, 0, 0, 1, // one topic
            0, 1, b't', // topic "t"
            0, 0, 0, 2, // two partitions
            0, 0, 0, 0, // partition 0
            0, 0, 0, 2, // partition 2
        ];
        let expected = golden([0, 0], &partitions, &[]);
        assert_eq!(encode_value_as(&value, 0), expected);
        // V0 has no place for the previous producer id: it reads back as the default.
        let decoded = decode_value(&expected).expect("decodes");
        assert_eq!(decoded, TxnLogValue { previous_producer_id: -1, ..value });
    }

    #[test]
    fn value_v1_matches_kafka_bytes() {
        let value = ongoing(2);
        let partitions = [
            2, // compact array: one topic
            2, b't', // compact string "t"
            3,    // compact array: two partitions
            0, 0, 0, 0, // partition 0
            0, 0, 0, 2, // partition 2
            0, // the entry's tagged fields: none
        ];
        let tagged = [
            2, // two tagged fields; NextProducerId is at its default and left out
            0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe7, // tag 0 PreviousProducerId, 8 bytes, 999
            2, 2, 0, 2, // tag 2 ClientTransactionVersion, 2 bytes, 2
        ];
        let expected = golden([0, 1], &partitions, &tagged);
        assert_eq!(encode_value(&value), expected);
        assert_eq!(decode_value(&expected), Ok(value));
    }

    #[test]
    fn empty_value_v1_matches_kafka_bytes() {
        let value = TxnLogValue {
            status: TxnStatus::Empty,
            partitions: Vec::new(),
            previous_producer_id: -1,
            start_ms: -1,
            ..ongoing(0)
        };
        let mut expected = vec![0, 1];
        expected.extend_from_slice(&COMMON_HEAD[..14]);
        expected.push(0); // status Empty
        expected.push(0); // null partitions
        expected.extend_from_slice(&COMMON_TAIL[..8]);
        expected.extend_from_slice(&[0xff; 8]); // start -1
        expected.push(0); // no tagged fields
        assert_eq!(encode_value(&value), expected);
        assert_eq!(decode_value(&expected), Ok(value));
    }

    #[test]
    fn both_versions_round_trip_every_status() {
        for status_id in 0..=7 {
            let status = TxnStatus::from_i8(status_id).expect("Kafka defines ids 0-7");
            assert_eq!(status.as_i8(), status_id);
            let partitions = if status == TxnStatus::Empty {
                Vec::new()
            } else {
                vec![("orders".to_owned(), vec![3, 1, 4]), ("payments".to_owned(), Vec::new())]
            };
            let full = TxnLogValue { status, partitions, next_producer_id: 77, ..ongoing(2) };
            assert_eq!(decode_value(&encode_value(&full)), Ok(full.clone()));
            let classic =
                TxnLogValue { previous_producer_id: -1, next_producer_id: -1, client_transaction_version: 0, ..full };
            assert_eq!(decode_value(&encode_value_as(&classic, 0)), Ok(classic));
        }
        assert_eq!(TxnStatus::from_i8(8), None);
        assert_eq!(TxnStatus::from_i8(-1), None);
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let value = ongoing(0);
        let mut bytes = encode_value(&value);
        // Replace the single tagged field (tag 0) with it plus a tag 3 from a newer Kafka.
        let tagged_start = bytes.len() - 11;
        assert_eq!(bytes[tagged_start], 1);
        bytes[tagged_start] = 2;
        bytes.extend_from_slice(&[3, 2, 0x7f, 0xff]);
        assert_eq!(decode_value(&bytes), Ok(value));
    }

    #[test]
    fn partitions_of_an_empty_value_are_ignored_as_kafka_ignores_them() {
        let mut bytes = encode_value(&ongoing(0));
        bytes[2 + 14] = TxnStatus::Empty.as_i8() as u8;
        let decoded = decode_value(&bytes).expect("decodes");
        assert_eq!(decoded.status, TxnStatus::Empty);
        assert!(decoded.partitions.is_empty());
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let key = encode_key("transactional-id");
        for cut in 0..key.len() {
            assert!(matches!(decode_key(&key[..cut]), Err(RecordError::Truncated { .. })));
        }
        for value in [encode_value(&ongoing(2)), encode_value_as(&ongoing(0), 0)] {
            for cut in 0..value.len() {
                assert!(matches!(decode_value(&value[..cut]), Err(RecordError::Truncated { .. })), "cut {cut}");
            }
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(decode_key(&[0, 1, 0, 0]), Err(RecordError::UnknownVersion { version: 1, .. })));
        assert!(matches!(decode_key(&[0, 0, 0xff, 0xff]), Err(RecordError::InvalidLength { .. })));
        assert!(matches!(decode_key(&[0, 0, 0, 1, 0xff]), Err(RecordError::NotUtf8 { .. })));
        assert!(matches!(decode_value(&[0, 2]), Err(RecordError::UnknownVersion { version: 2, .. })));
        let mut bytes = encode_value(&ongoing(0));
        bytes[2 + 14] = 9;
        assert!(matches!(decode_value(&bytes), Err(RecordError::UnknownEnum { kind: "transaction status", value: 9 })));
        // A partition count far beyond the bytes left is refused before anything is allocated.
        let mut bytes = encode_value_as(&ongoing(0), 0);
        bytes[2 + 15..2 + 19].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_value(&bytes), Err(RecordError::Truncated { .. })));
        // A known tagged field of the wrong size.
        let mut bytes = encode_value(&ongoing(0));
        let tagged_start = bytes.len() - 11;
        bytes.truncate(tagged_start);
        bytes.extend_from_slice(&[1, 2, 1, 0]);
        assert!(matches!(decode_value(&bytes), Err(RecordError::TaggedFieldSize { tag: 2, size_bytes: 1 })));
        // A varint longer than 5 bytes.
        let mut bytes = encode_value(&ongoing(0));
        bytes.truncate(tagged_start);
        bytes.extend_from_slice(&[0xff; 6]);
        assert!(matches!(decode_value(&bytes), Err(RecordError::InvalidLength { .. })));
    }

    #[test]
    #[should_panic(expected = "an Empty transaction has no partitions")]
    fn encoding_an_empty_value_with_partitions_is_a_programmer_error() {
        let _ = encode_value(&TxnLogValue { status: TxnStatus::Empty, ..ongoing(0) });
    }

    fn arbitrary_value() -> impl proptest::strategy::Strategy<Value = TxnLogValue> {
        use proptest::prelude::*;
        let partitions =
            proptest::collection::vec(("[a-z._-]{0,20}", proptest::collection::vec(any::<i32>(), 0..5)), 0..4);
        (any::<[i64; 5]>(), any::<(i16, i32, i16)>(), 0i8..8, partitions).prop_map(
            |(
                [producer_id, previous, next, last_update_ms, start_ms],
                (epoch, timeout_ms, client),
                status,
                partitions,
            )| {
                let status = TxnStatus::from_i8(status).expect("0-7 are defined");
                let partitions = if status == TxnStatus::Empty { Vec::new() } else { partitions };
                TxnLogValue {
                    producer_id,
                    previous_producer_id: previous,
                    next_producer_id: next,
                    producer_epoch: epoch,
                    timeout_ms,
                    status,
                    partitions,
                    last_update_ms,
                    start_ms,
                    client_transaction_version: client,
                }
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = decode_key(&bytes);
            let _ = decode_value(&bytes);
            // Also past the version, where the interesting branches are.
            for version in [0u8, 1] {
                let mut versioned = vec![0, version];
                versioned.extend_from_slice(&bytes);
                let _ = decode_value(&versioned);
            }
        }

        #[test]
        fn v1_round_trips(value in arbitrary_value()) {
            proptest::prop_assert_eq!(decode_value(&encode_value(&value)), Ok(value));
        }

        #[test]
        fn key_round_trips(transactional_id in "\\PC{0,40}") {
            proptest::prop_assert_eq!(decode_key(&encode_key(&transactional_id)), Ok(transactional_id));
        }
    }
}
