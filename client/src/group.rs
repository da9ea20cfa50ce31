//! Consumer-group helpers: finding a group's (or a transactional id's) coordinator, and the
//! "consumer" protocol's embedded subscription and assignment payloads.
//!
//! `JoinGroup` metadata and `SyncGroup` assignments are opaque bytes to the broker; members of a
//! group with protocol type "consumer" fill them with `ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`, each prefixed by its i16 version. A payload written at a newer
//! version than `kafka-protocol` knows is decoded at the newest known one: later versions only
//! append fields, so the known prefix reads the same (as Kafka's own `ConsumerProtocol` does).
//! An empty assignment (a member that got nothing) is an empty byte string.
//! Plain functions; the thread that owns the connection calls them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use crate::connection::Connection;
use crate::error::ClientError;
use crate::requests::BrokerInfo;

/// `FindCoordinator` key type of a consumer group.
pub const COORDINATOR_KEY_GROUP: i8 = 0;
/// `FindCoordinator` key type of a transactional id.
pub const COORDINATOR_KEY_TRANSACTION: i8 = 1;

/// Version the subscription and assignment payloads are written with. Version 0 carries all a
/// range or round-robin assignor needs, and every consumer-protocol implementation reads it.
const PAYLOAD_VERSION: i16 = 0;

/// Encodes a subscription to `topics` for `JoinGroup` metadata.
///
/// # Errors
/// `Encode` when the codec refuses a field (a topic name longer than an i16 length).
pub fn encode_subscription(topics: &[&str]) -> Result<Bytes, ClientError> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| StrBytes::from_string((*topic).to_owned())).collect());
    encode_payload(&subscription, ApiKey::JoinGroup)
}

/// Decodes a member's `JoinGroup` metadata.
///
/// # Errors
/// `Decode` when the bytes are not a consumer-protocol subscription.
pub fn decode_subscription(metadata: &[u8]) -> Result<ConsumerProtocolSubscription, ClientError> {
    decode_payload(metadata, ApiKey::JoinGroup)
}

/// Encodes an assignment of `(topic, partitions)` pairs for `SyncGroup`.
///
/// # Errors
/// `Encode` when the codec refuses a field.
pub fn encode_assignment(assignment: &[(String, Vec<i32>)]) -> Result<Bytes, ClientError> {
    let assigned = assignment
        .iter()
        .map(|(topic, partitions)| {
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(partitions.clone())
        })
        .collect();
    encode_payload(&ConsumerProtocolAssignment::default().with_assigned_partitions(assigned), ApiKey::SyncGroup)
}

/// Decodes a `SyncGroup` (or `DescribeGroups`) assignment into `(topic, partitions)` pairs;
/// empty bytes are an empty assignment.
///
/// # Errors
/// `Decode` when the bytes are not a consumer-protocol assignment.
pub fn decode_assignment(assignment: &[u8]) -> Result<Vec<(String, Vec<i32>)>, ClientError> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let decoded: ConsumerProtocolAssignment = decode_payload(assignment, ApiKey::SyncGroup)?;
    Ok(decoded.assigned_partitions.into_iter().map(|topic| (topic.topic.0.to_string(), topic.partitions)).collect())
}

fn encode_payload<M: Encodable>(message: &M, api: ApiKey) -> Result<Bytes, ClientError> {
    let mut bytes = BytesMut::new();
    bytes.put_i16(PAYLOAD_VERSION);
    message.encode(&mut bytes, PAYLOAD_VERSION).map_err(|source| ClientError::Encode {
        api,
        version: PAYLOAD_VERSION,
        source: source.into(),
    })?;
    Ok(bytes.freeze())
}

fn decode_payload<M: Decodable + Message>(payload: &[u8], api: ApiKey) -> Result<M, ClientError> {
    let mut bytes = Bytes::copy_from_slice(payload);
    if bytes.len() < 2 {
        let source = format!("consumer-protocol payload of {} bytes has no version", bytes.len()).into();
        return Err(ClientError::Decode { api, version: -1, source });
    }
    let written = bytes.get_i16();
    let version = written.min(M::VERSIONS.max);
    if version < 0 {
        let source = format!("consumer-protocol payload has negative version {written}").into();
        return Err(ClientError::Decode { api, version: written, source });
    }
    M::decode(&mut bytes, version).map_err(|source| ClientError::Decode { api, version, source: source.into() })
}

impl Connection {
    /// The broker coordinating consumer group `group`.
    ///
    /// # Errors
    /// `Broker` with the coordinator error (`COORDINATOR_NOT_AVAILABLE` while the broker is still
    /// loading groups: the caller may retry), connection errors.
    pub fn find_coordinator(&mut self, group: &str) -> Result<BrokerInfo, ClientError> {
        self.find_coordinator_of(COORDINATOR_KEY_GROUP, group)
    }

    /// The broker coordinating `key` of `key_type` ([`COORDINATOR_KEY_GROUP`] for a consumer
    /// group, [`COORDINATOR_KEY_TRANSACTION`] for a transactional id).
    ///
    /// # Errors
    /// `Broker` with the coordinator error (`COORDINATOR_NOT_AVAILABLE` while the broker is still
    /// creating or loading the coordinator's internal topic: the caller may retry), connection
    /// errors.
    pub fn find_coordinator_of(&mut self, key_type: i8, key: &str) -> Result<BrokerInfo, ClientError> {
        let version = self.versions().version_for(ApiKey::FindCoordinator)?;
        let wire_key = StrBytes::from_string(key.to_owned());
        let mut request = FindCoordinatorRequest::default().with_key_type(key_type);
        // v4 batches keys in `coordinator_keys`; older versions have a single `key`.
        request = if version >= 4 { request.with_coordinator_keys(vec![wire_key]) } else { request.with_key(wire_key) };
        let response = self.send(&request)?;
        let broker_error =
            |error| ClientError::Broker { api: ApiKey::FindCoordinator, resource: key.to_owned(), error };
        if version >= 4 {
            let Some(coordinator) = response.coordinators.iter().find(|entry| entry.key.as_str() == key) else {
                let source = format!("no coordinator entry for key {key}").into();
                return Err(ClientError::Decode { api: ApiKey::FindCoordinator, version, source });
            };
            if let Some(error) = coordinator.error_code.err() {
                return Err(broker_error(error));
            }
            return Ok(BrokerInfo {
                node_id: coordinator.node_id.0,
                host: coordinator.host.to_string(),
                port: coordinator.port,
            });
        }
        if let Some(error) = response.error_code.err() {
            return Err(broker_error(error));
        }
        Ok(BrokerInfo { node_id: response.node_id.0, host: response.host.to_string(), port: response.port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trips() {
        let bytes = encode_subscription(&["orders", "payments"]).expect("encodes");
        assert_eq!(&bytes[..2], &[0, 0], "version prefix");
        let decoded = decode_subscription(&bytes).expect("decodes");
        let topics: Vec<&str> = decoded.topics.iter().map(StrBytes::as_str).collect();
        assert_eq!(topics, ["orders", "payments"]);
    }

    #[test]
    fn subscription_v0_bytes_are_as_kafka_writes_them() {
        // version 0 | topics: count 1, "t" | user data: null (i32 -1)
        let bytes = encode_subscription(&["t"]).expect("encodes");
        assert_eq!(&bytes[..], &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn assignment_round_trips_and_empty_is_nothing() {
        let assignment = vec![("orders".to_owned(), vec![0, 2]), ("payments".to_owned(), vec![1])];
        let bytes = encode_assignment(&assignment).expect("encodes");
        assert_eq!(decode_assignment(&bytes).expect("decodes"), assignment);
        assert!(decode_assignment(&[]).expect("empty decodes").is_empty());
    }

    #[test]
    fn newer_payload_versions_decode_their_known_prefix() {
        // A v3 subscription as a newer client writes it: topics, user data, owned partitions,
        // generation id, rack id, then bytes of a version this crate does not know.
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("events")])
            .with_generation_id(7);
        let mut bytes = BytesMut::new();
        bytes.put_i16(9);
        subscription.encode(&mut bytes, 3).expect("v3 encodes");
        bytes.put_slice(b"future fields");
        let decoded = decode_subscription(&bytes).expect("decodes at v3");
        assert_eq!(decoded.topics, [StrBytes::from_static_str("events")]);
        assert_eq!(decoded.generation_id, 7);
    }

    #[test]
    fn truncated_payload_is_an_error() {
        assert!(matches!(decode_subscription(&[0]), Err(ClientError::Decode { .. })));
        assert!(matches!(decode_assignment(&[0, 0, 0, 0, 0, 5]), Err(ClientError::Decode { .. })));
    }
}
