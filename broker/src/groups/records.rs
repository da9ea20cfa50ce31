//! The record layout of `__consumer_offsets`, byte for byte as Kafka writes it, so that Kafka
//! tools reading the topic understand it and a log written by either reads back in the other.
//!
//! Keys (big-endian, strings as i16 length + UTF-8, nullable strings with length -1):
//! - offset commit, `OffsetCommitKey` v1: `i16 version=1, string group, string topic, i32 partition`
//!   (v0 has the same layout);
//! - group metadata, `GroupMetadataKey` v2: `i16 version=2, string group`.
//!
//! Values (a null value is a tombstone: the key's offset or group was deleted):
//! - `OffsetCommitValue` v1: `i16 1, i64 offset, string metadata, i64 commit_timestamp,
//!   i64 expire_timestamp`, written when the commit asked for its own retention;
//!   v3: `i16 3, i64 offset, i32 leader_epoch, string metadata, i64 commit_timestamp`, otherwise.
//!   v0 (`offset, metadata, timestamp`) and v2 (`offset, metadata, commit_timestamp`) are read too.
//! - `GroupMetadataValue` v3: `i16 3, string protocol_type, i32 generation, nullable string
//!   protocol, nullable string leader, i64 current_state_timestamp, i32 member count`, then per
//!   member `string member_id, nullable string group_instance_id, string client_id, string
//!   client_host, i32 rebalance_timeout, i32 session_timeout, bytes subscription, bytes
//!   assignment` (bytes: i32 length). v0-v2 are read too (v0 lacks the rebalance timeout, v0-v1
//!   the state timestamp, v0-v2 the instance id).
//!
//! Pure functions; any thread may call them. Decoding never panics on malformed bytes.

use bytes::Bytes;

pub(crate) use crate::record_codec::RecordError;
use crate::record_codec::{Reader, put_bytes, put_nullable_string, put_string};

/// What a `__consumer_offsets` record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    /// One committed offset.
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A group's membership and generation.
    Group {
        /// The group.
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    /// The next offset the group will consume.
    pub(crate) offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub(crate) leader_epoch: i32,
    /// Client metadata.
    pub(crate) metadata: String,
    /// When it was committed, ms since the Unix epoch.
    pub(crate) commit_timestamp_ms: i64,
    /// Explicit expiry asked for by the commit (OffsetCommit v2-v4 retention time), if any.
    pub(crate) expire_timestamp_ms: Option<i64>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group's state as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub(crate) protocol_type: String,
    pub(crate) generation_id: i32,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) current_state_timestamp_ms: i64,
    pub(crate) members: Vec<MemberValue>,
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// Encodes a record key.
pub(crate) fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut out = Vec::new();
    match key {
        RecordKey::Offset { group, topic, partition } => {
            out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
            put_string(&mut out, group, false);
            put_string(&mut out, topic, false);
            out.extend_from_slice(&partition.to_be_bytes());
        }
        RecordKey::Group { group } => {
            out.extend_from_slice(&GROUP_KEY_VERSION.to_be_bytes());
            put_string(&mut out, group, false);
        }
    }
    out
}

/// Decodes a record key.
pub(crate) fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut reader = Reader::new(bytes);
    match reader.i16()? {
        0 | 1 => {
            let group = read_string(&mut reader)?;
            let topic = read_string(&mut reader)?;
            let partition = reader.i32()?;
            Ok(RecordKey::Offset { group, topic, partition })
        }
        2 => Ok(RecordKey::Group { group: read_string(&mut reader)? }),
        version => Err(RecordError::UnknownVersion { kind: "key", version }),
    }
}

/// Encodes a committed offset: v1 when it carries its own expiry, else v3.
pub(crate) fn encode_offset_value(value: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(expire_timestamp_ms) = value.expire_timestamp_ms {
        out.extend_from_slice(&OFFSET_VALUE_VERSION_WITH_EXPIRY.to_be_bytes());
        out.extend_from_slice(&value.offset.to_be_bytes());
        put_string(&mut out, &value.metadata, false);
        out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&expire_timestamp_ms.to_be_bytes());
    } else {
        out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
        out.extend_from_slice(&value.offset.to_be_bytes());
        out.extend_from_slice(&value.leader_epoch.to_be_bytes());
        put_string(&mut out, &value.metadata, false);
        out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
    }
    out
}

/// Decodes a committed offset of any version 0-3 (v4 is v3 plus tagged fields, which are skipped).
pub(crate) fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.i16()?;
    let offset = reader.i64()?;
    let mut value = OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: -1,
        expire_timestamp_ms: None,
    };
    match version {
        0 | 2 => {
            value.metadata = read_string(&mut reader)?;
            value.commit_timestamp_ms = reader.i64()?;
        }
        1 => {
            value.metadata = read_string(&mut reader)?;
            value.commit_timestamp_ms = reader.i64()?;
            value.expire_timestamp_ms = Some(reader.i64()?).filter(|expiry| *expiry >= 0);
        }
        3 => {
            value.leader_epoch = reader.i32()?;
            value.metadata = read_string(&mut reader)?;
            value.commit_timestamp_ms = reader.i64()?;
        }
        version => return Err(RecordError::UnknownVersion { kind: "offset value", version }),
    }
    Ok(value)
}

/// Encodes a group's metadata as v3.
pub(crate) fn encode_group_value(value: &GroupValue) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
    put_string(&mut out, &value.protocol_type, false);
    out.extend_from_slice(&value.generation_id.to_be_bytes());
    put_nullable_string(&mut out, value.protocol_name.as_deref(), false);
    put_nullable_string(&mut out, value.leader.as_deref(), false);
    out.extend_from_slice(&value.current_state_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(value.members.len() as i32).to_be_bytes());
    for member in &value.members {
        put_string(&mut out, &member.member_id, false);
        put_nullable_string(&mut out, member.group_instance_id.as_deref(), false);
        put_string(&mut out, &member.client_id, false);
        put_string(&mut out, &member.client_host, false);
        out.extend_from_slice(&member.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&member.session_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &member.subscription, false);
        put_bytes(&mut out, &member.assignment, false);
    }
    out
}

/// Decodes a group's metadata of any version 0-3.
pub(crate) fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.i16()?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnknownVersion { kind: "group value", version });
    }
    let protocol_type = read_string(&mut reader)?;
    let generation_id = reader.i32()?;
    let protocol_name = reader.nullable_string(false)?;
    let leader = reader.nullable_string(false)?;
    let current_state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
    let count = reader.i32()?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = read_string(&mut reader)?;
        let group_instance_id = if version >= 3 { reader.nullable_string(false)? } else { None };
        let client_id = read_string(&mut reader)?;
        let client_host = read_string(&mut reader)?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
        let subscription = Bytes::copy_from_slice(reader.bytes(false)?);
        let assignment = Bytes::copy_from_slice(reader.bytes(false)?);
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue { protocol_type, generation_id, protocol_name, leader, current_state_timestamp_ms, members })
}

/// A string as the older records read it: a null (which Kafka never writes there) reads as
/// empty.
fn read_string(reader: &mut Reader<'_>) -> Result<String, RecordError> {
    Ok(reader.nullable_string(false)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_matches_kafka_bytes() {
        let key = RecordKey::Offset { group: "g".to_owned(), topic: "t".to_owned(), partition: 3 };
        let bytes = encode_key(&key);
        assert_eq!(bytes, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        assert_eq!(decode_key(&bytes), Ok(key));
    }

    #[test]
    fn group_key_round_trips() {
        let key = RecordKey::Group { group: "orders".to_owned() };
        let bytes = encode_key(&key);
        assert_eq!(&bytes[..2], &[0, 2]);
        assert_eq!(decode_key(&bytes), Ok(key));
    }

    #[test]
    fn offset_value_round_trips_as_v3_and_v1() {
        let mut value = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".to_owned(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: None,
        };
        let bytes = encode_offset_value(&value);
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(decode_offset_value(&bytes), Ok(value.clone()));
        value.expire_timestamp_ms = Some(1_700_000_100_000);
        value.leader_epoch = -1;
        let bytes = encode_offset_value(&value);
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(decode_offset_value(&bytes), Ok(value));
    }

    #[test]
    fn group_value_round_trips() {
        let value = GroupValue {
            protocol_type: "consumer".to_owned(),
            generation_id: 5,
            protocol_name: Some("range".to_owned()),
            leader: Some("m-1".to_owned()),
            current_state_timestamp_ms: 1_700_000_000_000,
            members: vec![MemberValue {
                member_id: "m-1".to_owned(),
                group_instance_id: Some("static-1".to_owned()),
                client_id: "client".to_owned(),
                client_host: "/127.0.0.1".to_owned(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assign"),
            }],
        };
        let bytes = encode_group_value(&value);
        assert_eq!(decode_group_value(&bytes), Ok(value));
    }

    #[test]
    fn empty_group_value_has_null_protocol_and_leader() {
        let value = GroupValue {
            protocol_type: "consumer".to_owned(),
            generation_id: 2,
            protocol_name: None,
            leader: None,
            current_state_timestamp_ms: 1,
            members: Vec::new(),
        };
        let bytes = encode_group_value(&value);
        assert_eq!(decode_group_value(&bytes), Ok(value));
    }

    #[test]
    fn truncated_and_unknown_versions_are_errors_not_panics() {
        let bytes = encode_key(&RecordKey::Group { group: "orders".to_owned() });
        for cut in 0..bytes.len() {
            assert!(matches!(decode_key(&bytes[..cut]), Err(RecordError::Truncated { .. })));
        }
        assert!(matches!(decode_key(&[0, 9]), Err(RecordError::UnknownVersion { version: 9, .. })));
        assert!(matches!(
            decode_offset_value(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(RecordError::UnknownVersion { .. })
        ));
    }
}
