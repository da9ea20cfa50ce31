//! The binary layout of consumer group records in `__consumer_offsets`, byte for byte as Apache
//! Kafka 4.x writes them (its generated `ConsumerGroup*Key` / `ConsumerGroup*Value` classes), so
//! that a log written by either broker reads back in the other and Kafka's tools can decode it.
//!
//! Key: `i16 record type` (see `records.rs`), then the key's fields in the classic encoding
//! (strings with an i16 length). Value: `i16 version (0)`, then the fields in the flexible
//! encoding: compact strings, bytes and arrays (uvarint length+1, 0 = null), UUIDs as 16 bytes,
//! and a tagged-field section after each struct. Tagged fields written when they differ from
//! their defaults: `ConsumerGroupMetadataValue.MetadataHash` (tag 0, i64, default 0) and
//! `ConsumerGroupMemberMetadataValue.ClassicMemberMetadata` (tag 0, default null). Tagged fields
//! this broker does not know (a newer Kafka's, such as the assignment timestamp of the target
//! assignment metadata or per-partition assignment epochs) are skipped when read.
//!
//! Pure functions; decoding never panics on malformed bytes and allocates at most in proportion
//! to the input.

use bytes::Bytes;

use super::TopicId;
use super::records::{
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_RECORD_TYPE, CONSUMER_GROUP_MEMBER_METADATA_RECORD_TYPE,
    CONSUMER_GROUP_METADATA_RECORD_TYPE, CONSUMER_GROUP_PARTITION_METADATA_RECORD_TYPE,
    CONSUMER_GROUP_REGULAR_EXPRESSION_RECORD_TYPE, CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_RECORD_TYPE,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_RECORD_TYPE, CONSUMER_GROUP_VALUE_VERSION, ClassicMemberMetadata,
    ClassicProtocol, ConsumerGroupCurrentMemberAssignmentKey, ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey, ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue, ConsumerGroupPartitionMetadataKey, ConsumerGroupPartitionMetadataValue,
    ConsumerGroupRecord, ConsumerGroupRegularExpressionKey, ConsumerGroupRegularExpressionValue,
    ConsumerGroupTargetAssignmentMemberKey, ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey, ConsumerGroupTargetAssignmentMetadataValue, PartitionMetadata,
    PartitionMetadataTopic, TopicPartitions,
};
use crate::record_codec::{
    Reader, RecordError, put_array_length, put_bytes, put_nullable_string, put_string, put_uvarint,
};

/// Tag of `ConsumerGroupMetadataValue.MetadataHash` and of
/// `ConsumerGroupMemberMetadataValue.ClassicMemberMetadata`.
const TAG_0: u32 = 0;

/// Encodes a record as Kafka writes it: its key, and its value (`None` for a tombstone).
pub(crate) fn encode(record: &ConsumerGroupRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(&record.record_type().to_be_bytes());
    let value = match record {
        ConsumerGroupRecord::Metadata(k, value) => {
            put_string(&mut key, &k.group_id, false);
            value.as_ref().map(|value| value_bytes(|out| put_metadata(out, value)))
        }
        ConsumerGroupRecord::PartitionMetadata(k, value) => {
            put_string(&mut key, &k.group_id, false);
            value.as_ref().map(|value| value_bytes(|out| put_partition_metadata(out, value)))
        }
        ConsumerGroupRecord::MemberMetadata(k, value) => {
            put_string(&mut key, &k.group_id, false);
            put_string(&mut key, &k.member_id, false);
            value.as_ref().map(|value| value_bytes(|out| put_member_metadata(out, value)))
        }
        ConsumerGroupRecord::TargetAssignmentMetadata(k, value) => {
            put_string(&mut key, &k.group_id, false);
            value.as_ref().map(|value| {
                value_bytes(|out| {
                    out.extend_from_slice(&value.assignment_epoch.to_be_bytes());
                    put_uvarint(out, 0);
                })
            })
        }
        ConsumerGroupRecord::TargetAssignmentMember(k, value) => {
            put_string(&mut key, &k.group_id, false);
            put_string(&mut key, &k.member_id, false);
            value.as_ref().map(|value| {
                value_bytes(|out| {
                    put_topic_partitions(out, &value.topic_partitions);
                    put_uvarint(out, 0);
                })
            })
        }
        ConsumerGroupRecord::CurrentMemberAssignment(k, value) => {
            put_string(&mut key, &k.group_id, false);
            put_string(&mut key, &k.member_id, false);
            value.as_ref().map(|value| {
                value_bytes(|out| {
                    out.extend_from_slice(&value.member_epoch.to_be_bytes());
                    out.extend_from_slice(&value.previous_member_epoch.to_be_bytes());
                    out.extend_from_slice(&value.state.to_be_bytes());
                    put_topic_partitions(out, &value.assigned_partitions);
                    put_topic_partitions(out, &value.partitions_pending_revocation);
                    put_uvarint(out, 0);
                })
            })
        }
        ConsumerGroupRecord::RegularExpression(k, value) => {
            put_string(&mut key, &k.group_id, false);
            put_string(&mut key, &k.regular_expression, false);
            value.as_ref().map(|value| {
                value_bytes(|out| {
                    put_strings(out, &value.topics);
                    out.extend_from_slice(&value.version.to_be_bytes());
                    out.extend_from_slice(&value.timestamp.to_be_bytes());
                    put_uvarint(out, 0);
                })
            })
        }
    };
    (key, value)
}

/// Decodes a record of `__consumer_offsets`; `Ok(None)` when the key is not a consumer group
/// record (an offset commit, a classic group, or a record type of another kind of group).
///
/// # Errors
/// `UnknownVersion` for a value version other than 0, or any malformed-bytes error.
pub(crate) fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<ConsumerGroupRecord>, RecordError> {
    let mut keys = Reader::new(key);
    let record_type = keys.i16()?;
    let record = match record_type {
        CONSUMER_GROUP_METADATA_RECORD_TYPE => {
            let key = ConsumerGroupMetadataKey { group_id: keys.string(false)? };
            ConsumerGroupRecord::Metadata(key, read_value(value, read_metadata)?)
        }
        CONSUMER_GROUP_PARTITION_METADATA_RECORD_TYPE => {
            let key = ConsumerGroupPartitionMetadataKey { group_id: keys.string(false)? };
            ConsumerGroupRecord::PartitionMetadata(key, read_value(value, read_partition_metadata)?)
        }
        CONSUMER_GROUP_MEMBER_METADATA_RECORD_TYPE => {
            let key = ConsumerGroupMemberMetadataKey { group_id: keys.string(false)?, member_id: keys.string(false)? };
            ConsumerGroupRecord::MemberMetadata(key, read_value(value, read_member_metadata)?)
        }
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_RECORD_TYPE => {
            let key = ConsumerGroupTargetAssignmentMetadataKey { group_id: keys.string(false)? };
            let value = read_value(value, |reader| {
                let assignment_epoch = reader.i32()?;
                reader.skip_tagged_fields()?;
                Ok(ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch })
            })?;
            ConsumerGroupRecord::TargetAssignmentMetadata(key, value)
        }
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_RECORD_TYPE => {
            let key = ConsumerGroupTargetAssignmentMemberKey {
                group_id: keys.string(false)?,
                member_id: keys.string(false)?,
            };
            let value = read_value(value, |reader| {
                let topic_partitions = read_topic_partitions(reader)?;
                reader.skip_tagged_fields()?;
                Ok(ConsumerGroupTargetAssignmentMemberValue { topic_partitions })
            })?;
            ConsumerGroupRecord::TargetAssignmentMember(key, value)
        }
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_RECORD_TYPE => {
            let key = ConsumerGroupCurrentMemberAssignmentKey {
                group_id: keys.string(false)?,
                member_id: keys.string(false)?,
            };
            let value = read_value(value, |reader| {
                let member_epoch = reader.i32()?;
                let previous_member_epoch = reader.i32()?;
                let state = reader.i8()?;
                let assigned_partitions = read_topic_partitions(reader)?;
                let partitions_pending_revocation = read_topic_partitions(reader)?;
                reader.skip_tagged_fields()?;
                Ok(ConsumerGroupCurrentMemberAssignmentValue {
                    member_epoch,
                    previous_member_epoch,
                    state,
                    assigned_partitions,
                    partitions_pending_revocation,
                })
            })?;
            ConsumerGroupRecord::CurrentMemberAssignment(key, value)
        }
        CONSUMER_GROUP_REGULAR_EXPRESSION_RECORD_TYPE => {
            let key = ConsumerGroupRegularExpressionKey {
                group_id: keys.string(false)?,
                regular_expression: keys.string(false)?,
            };
            let value = read_value(value, |reader| {
                let topics = read_strings(reader)?;
                let version = reader.i64()?;
                let timestamp = reader.i64()?;
                reader.skip_tagged_fields()?;
                Ok(ConsumerGroupRegularExpressionValue { topics, version, timestamp })
            })?;
            ConsumerGroupRecord::RegularExpression(key, value)
        }
        _ => return Ok(None),
    };
    Ok(Some(record))
}

/// A value: its version, then what `fields` writes.
fn value_bytes(fields: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&CONSUMER_GROUP_VALUE_VERSION.to_be_bytes());
    fields(&mut out);
    out
}

/// Reads a value of version 0 with `fields`, or `None` for a tombstone.
fn read_value<T>(
    value: Option<&[u8]>,
    fields: impl FnOnce(&mut Reader<'_>) -> Result<T, RecordError>,
) -> Result<Option<T>, RecordError> {
    let Some(bytes) = value else { return Ok(None) };
    let mut reader = Reader::new(bytes);
    match reader.i16()? {
        CONSUMER_GROUP_VALUE_VERSION => fields(&mut reader).map(Some),
        version => Err(RecordError::UnknownVersion { kind: "consumer group value", version }),
    }
}

fn put_metadata(out: &mut Vec<u8>, value: &ConsumerGroupMetadataValue) {
    out.extend_from_slice(&value.epoch.to_be_bytes());
    if value.metadata_hash == 0 {
        put_uvarint(out, 0);
    } else {
        put_uvarint(out, 1);
        put_uvarint(out, TAG_0);
        put_uvarint(out, 8);
        out.extend_from_slice(&value.metadata_hash.to_be_bytes());
    }
}

fn read_metadata(reader: &mut Reader<'_>) -> Result<ConsumerGroupMetadataValue, RecordError> {
    let epoch = reader.i32()?;
    let mut metadata_hash = 0;
    reader.tagged_fields(|tag, bytes| {
        if tag == TAG_0 {
            let size_error = RecordError::TaggedFieldSize { tag, size_bytes: bytes.len() };
            metadata_hash = i64::from_be_bytes(bytes.try_into().map_err(|_size| size_error)?);
        }
        Ok(())
    })?;
    Ok(ConsumerGroupMetadataValue { epoch, metadata_hash })
}

fn put_partition_metadata(out: &mut Vec<u8>, value: &ConsumerGroupPartitionMetadataValue) {
    put_array_length(out, value.topics.len(), true);
    for topic in &value.topics {
        out.extend_from_slice(topic.topic_id.as_bytes());
        put_string(out, &topic.topic_name, true);
        out.extend_from_slice(&topic.num_partitions.to_be_bytes());
        put_array_length(out, topic.partition_metadata.len(), true);
        for partition in &topic.partition_metadata {
            out.extend_from_slice(&partition.partition.to_be_bytes());
            put_strings(out, &partition.racks);
            put_uvarint(out, 0);
        }
        put_uvarint(out, 0);
    }
    put_uvarint(out, 0);
}

fn read_partition_metadata(reader: &mut Reader<'_>) -> Result<ConsumerGroupPartitionMetadataValue, RecordError> {
    // Smallest topic: uuid, empty name, partition count, empty array, tagged fields.
    let count = reader.array_length_not_null(true, 16 + 1 + 4 + 1 + 1)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = TopicId::from_bytes(reader.uuid()?);
        let topic_name = reader.string(true)?;
        let num_partitions = reader.i32()?;
        let partitions = reader.array_length_not_null(true, 4 + 1 + 1)?;
        let mut partition_metadata = Vec::with_capacity(partitions);
        for _ in 0..partitions {
            let partition = reader.i32()?;
            let racks = read_strings(reader)?;
            reader.skip_tagged_fields()?;
            partition_metadata.push(PartitionMetadata { partition, racks });
        }
        reader.skip_tagged_fields()?;
        topics.push(PartitionMetadataTopic { topic_id, topic_name, num_partitions, partition_metadata });
    }
    reader.skip_tagged_fields()?;
    Ok(ConsumerGroupPartitionMetadataValue { topics })
}

fn put_member_metadata(out: &mut Vec<u8>, value: &ConsumerGroupMemberMetadataValue) {
    put_nullable_string(out, value.instance_id.as_deref(), true);
    put_nullable_string(out, value.rack_id.as_deref(), true);
    put_string(out, &value.client_id, true);
    put_string(out, &value.client_host, true);
    put_strings(out, &value.subscribed_topic_names);
    put_nullable_string(out, value.subscribed_topic_regex.as_deref(), true);
    out.extend_from_slice(&value.rebalance_timeout_ms.to_be_bytes());
    put_nullable_string(out, value.server_assignor.as_deref(), true);
    match &value.classic_member_metadata {
        None => put_uvarint(out, 0),
        Some(classic) => {
            let mut field = Vec::new();
            field.extend_from_slice(&classic.session_timeout_ms.to_be_bytes());
            put_array_length(&mut field, classic.supported_protocols.len(), true);
            for protocol in &classic.supported_protocols {
                put_string(&mut field, &protocol.name, true);
                put_bytes(&mut field, &protocol.metadata, true);
                put_uvarint(&mut field, 0);
            }
            put_uvarint(&mut field, 0);
            put_uvarint(out, 1);
            put_uvarint(out, TAG_0);
            put_uvarint(out, u32::try_from(field.len()).expect("a classic member's metadata fits a record"));
            out.extend_from_slice(&field);
        }
    }
}

fn read_member_metadata(reader: &mut Reader<'_>) -> Result<ConsumerGroupMemberMetadataValue, RecordError> {
    let instance_id = reader.nullable_string(true)?;
    let rack_id = reader.nullable_string(true)?;
    let client_id = reader.string(true)?;
    let client_host = reader.string(true)?;
    let subscribed_topic_names = read_strings(reader)?;
    let subscribed_topic_regex = reader.nullable_string(true)?;
    let rebalance_timeout_ms = reader.i32()?;
    let server_assignor = reader.nullable_string(true)?;
    let mut classic_member_metadata = None;
    reader.tagged_fields(|tag, bytes| {
        if tag == TAG_0 {
            classic_member_metadata = Some(read_classic_member_metadata(&mut Reader::new(bytes))?);
        }
        Ok(())
    })?;
    Ok(ConsumerGroupMemberMetadataValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
        classic_member_metadata,
    })
}

fn read_classic_member_metadata(reader: &mut Reader<'_>) -> Result<ClassicMemberMetadata, RecordError> {
    let session_timeout_ms = reader.i32()?;
    let count = reader.array_length_not_null(true, 1 + 1 + 1)?;
    let mut supported_protocols = Vec::with_capacity(count);
    for _ in 0..count {
        let name = reader.string(true)?;
        let metadata = Bytes::copy_from_slice(reader.bytes(true)?);
        reader.skip_tagged_fields()?;
        supported_protocols.push(ClassicProtocol { name, metadata });
    }
    reader.skip_tagged_fields()?;
    Ok(ClassicMemberMetadata { session_timeout_ms, supported_protocols })
}

/// `[]TopicPartitions`: per topic its id, its partitions, and an empty tagged-field section.
fn put_topic_partitions(out: &mut Vec<u8>, topics: &[TopicPartitions]) {
    put_array_length(out, topics.len(), true);
    for topic in topics {
        out.extend_from_slice(topic.topic_id.as_bytes());
        put_array_length(out, topic.partitions.len(), true);
        for partition in &topic.partitions {
            out.extend_from_slice(&partition.to_be_bytes());
        }
        put_uvarint(out, 0);
    }
}

fn read_topic_partitions(reader: &mut Reader<'_>) -> Result<Vec<TopicPartitions>, RecordError> {
    let count = reader.array_length_not_null(true, 16 + 1 + 1)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = TopicId::from_bytes(reader.uuid()?);
        let length = reader.array_length_not_null(true, 4)?;
        let mut partitions = Vec::with_capacity(length);
        for _ in 0..length {
            partitions.push(reader.i32()?);
        }
        reader.skip_tagged_fields()?;
        topics.push(TopicPartitions { topic_id, partitions });
    }
    Ok(topics)
}

/// `[]string` in the flexible encoding.
fn put_strings(out: &mut Vec<u8>, strings: &[String]) {
    put_array_length(out, strings.len(), true);
    for text in strings {
        put_string(out, text, true);
    }
}

fn read_strings(reader: &mut Reader<'_>) -> Result<Vec<String>, RecordError> {
    let count = reader.array_length_not_null(true, 1)?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        strings.push(reader.string(true)?);
    }
    Ok(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(byte: u8) -> TopicId {
        TopicId::from_bytes([byte; 16])
    }

    fn round_trip(record: &ConsumerGroupRecord) {
        let (key, value) = encode(record);
        assert_eq!(decode(&key, value.as_deref()), Ok(Some(record.clone())), "{record:?}");
        // Every cut of the value is an error, never a panic.
        if let Some(value) = value {
            for cut in 0..value.len() {
                assert!(decode(&key, Some(&value[..cut])).is_err(), "{record:?} cut at {cut}");
            }
        }
    }

    fn member_metadata(classic: bool) -> ConsumerGroupMemberMetadataValue {
        ConsumerGroupMemberMetadataValue {
            instance_id: Some("static-1".to_owned()),
            rack_id: None,
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            subscribed_topic_names: vec!["a".to_owned(), "b".to_owned()],
            subscribed_topic_regex: Some(String::new()),
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("uniform".to_owned()),
            classic_member_metadata: classic.then(|| ClassicMemberMetadata {
                session_timeout_ms: 45_000,
                supported_protocols: vec![ClassicProtocol {
                    name: "range".to_owned(),
                    metadata: Bytes::from_static(b"\x00\x03sub"),
                }],
            }),
        }
    }

    #[test]
    fn every_record_type_round_trips_and_tolerates_no_truncation() {
        let group_id = "orders".to_owned();
        let member_id = "AAAAAAAAAAAAAAAAAAAAAA".to_owned();
        let partitions = vec![
            TopicPartitions { topic_id: topic(1), partitions: vec![0, 2, 4] },
            TopicPartitions { topic_id: topic(2), partitions: vec![] },
        ];
        let records = [
            ConsumerGroupRecord::Metadata(
                ConsumerGroupMetadataKey { group_id: group_id.clone() },
                Some(ConsumerGroupMetadataValue { epoch: 7, metadata_hash: 0 }),
            ),
            ConsumerGroupRecord::Metadata(
                ConsumerGroupMetadataKey { group_id: group_id.clone() },
                Some(ConsumerGroupMetadataValue { epoch: 8, metadata_hash: -42 }),
            ),
            ConsumerGroupRecord::Metadata(ConsumerGroupMetadataKey { group_id: group_id.clone() }, None),
            ConsumerGroupRecord::PartitionMetadata(
                ConsumerGroupPartitionMetadataKey { group_id: group_id.clone() },
                Some(ConsumerGroupPartitionMetadataValue {
                    topics: vec![PartitionMetadataTopic {
                        topic_id: topic(3),
                        topic_name: "t".to_owned(),
                        num_partitions: 2,
                        partition_metadata: vec![PartitionMetadata { partition: 0, racks: vec!["r1".to_owned()] }],
                    }],
                }),
            ),
            ConsumerGroupRecord::MemberMetadata(
                ConsumerGroupMemberMetadataKey { group_id: group_id.clone(), member_id: member_id.clone() },
                Some(member_metadata(false)),
            ),
            ConsumerGroupRecord::MemberMetadata(
                ConsumerGroupMemberMetadataKey { group_id: group_id.clone(), member_id: member_id.clone() },
                Some(member_metadata(true)),
            ),
            ConsumerGroupRecord::TargetAssignmentMetadata(
                ConsumerGroupTargetAssignmentMetadataKey { group_id: group_id.clone() },
                Some(ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch: 7 }),
            ),
            ConsumerGroupRecord::TargetAssignmentMember(
                ConsumerGroupTargetAssignmentMemberKey { group_id: group_id.clone(), member_id: member_id.clone() },
                Some(ConsumerGroupTargetAssignmentMemberValue { topic_partitions: partitions.clone() }),
            ),
            ConsumerGroupRecord::CurrentMemberAssignment(
                ConsumerGroupCurrentMemberAssignmentKey { group_id: group_id.clone(), member_id: member_id.clone() },
                Some(ConsumerGroupCurrentMemberAssignmentValue {
                    member_epoch: 7,
                    previous_member_epoch: 6,
                    state: 1,
                    assigned_partitions: partitions.clone(),
                    partitions_pending_revocation: vec![TopicPartitions { topic_id: topic(9), partitions: vec![1] }],
                }),
            ),
            ConsumerGroupRecord::CurrentMemberAssignment(
                ConsumerGroupCurrentMemberAssignmentKey { group_id: group_id.clone(), member_id },
                None,
            ),
            ConsumerGroupRecord::RegularExpression(
                ConsumerGroupRegularExpressionKey { group_id, regular_expression: "orders-.*".to_owned() },
                Some(ConsumerGroupRegularExpressionValue {
                    topics: vec!["orders-1".to_owned()],
                    version: 12,
                    timestamp: 1_700_000_000_000,
                }),
            ),
        ];
        for record in &records {
            round_trip(record);
        }
    }

    #[test]
    fn the_group_epoch_record_matches_kafkas_bytes() {
        let record = ConsumerGroupRecord::Metadata(
            ConsumerGroupMetadataKey { group_id: "g".to_owned() },
            Some(ConsumerGroupMetadataValue { epoch: 5, metadata_hash: 1 }),
        );
        let (key, value) = encode(&record);
        assert_eq!(key, [0, 3, 0, 1, b'g']);
        // Version 0, epoch 5, one tagged field: tag 0, size 8, the hash.
        assert_eq!(value, Some(vec![0, 0, 0, 0, 0, 5, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn a_current_assignment_matches_kafkas_bytes_and_skips_unknown_tags() {
        let record = ConsumerGroupRecord::CurrentMemberAssignment(
            ConsumerGroupCurrentMemberAssignmentKey { group_id: "g".to_owned(), member_id: "m".to_owned() },
            Some(ConsumerGroupCurrentMemberAssignmentValue {
                member_epoch: 2,
                previous_member_epoch: 1,
                state: 0,
                assigned_partitions: vec![TopicPartitions { topic_id: topic(1), partitions: vec![3] }],
                partitions_pending_revocation: vec![],
            }),
        );
        let (key, value) = encode(&record);
        assert_eq!(key, [0, 8, 0, 1, b'g', 0, 1, b'm']);
        let mut expected = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2];
        expected.extend_from_slice(&[1; 16]);
        expected.extend_from_slice(&[2, 0, 0, 0, 3, 0, 1, 0]);
        assert_eq!(value.as_deref(), Some(&expected[..]));
        // A newer Kafka's tagged field in the topic entry (assignment epochs) is skipped.
        let mut newer = expected.clone();
        let entry_tags = 12 + 16 + 5;
        newer.splice(entry_tags..=entry_tags, [1, 0, 2, 2, 9]);
        assert_eq!(decode(&key, Some(&newer)), Ok(Some(record)));
    }

    #[test]
    fn offsets_and_classic_groups_are_not_consumer_group_records() {
        assert_eq!(decode(&[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0], None), Ok(None));
        assert_eq!(decode(&[0, 2, 0, 1, b'g'], Some(&[0, 3])), Ok(None));
        assert!(matches!(
            decode(&[0, 3, 0, 1, b'g'], Some(&[0, 1, 0, 0, 0, 0, 0])),
            Err(RecordError::UnknownVersion { .. })
        ));
    }
}
