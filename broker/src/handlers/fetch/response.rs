//! The Fetch response encoder (v4-v16), written by hand so that record bytes stay in the segment
//! files: the frame is a list of chunks, the encoded fields in memory and, for each partition with
//! records, the file range the engine found, sent with `splice` by the connection.
//!
//! Layout (see Kafka's `FetchResponse.json`): response header (correlation id, plus an empty
//! tagged-field section from v12, when the message becomes flexible), throttle time, error code
//! and session id (v7+), then topics: name (up to v12) or id (v13+), and partitions: index, error
//! code, high watermark, last stable offset, log start offset (v5+), aborted transactions
//! (nullable array), preferred read replica (v11+), records (nullable bytes). Flexible versions
//! use compact lengths (unsigned varint of length + 1) and end every struct with tagged fields;
//! none is sent (no diverging epoch, leader change or snapshot on a single broker).

use bytes::{BufMut, Bytes, BytesMut};
use sluice_engine::FileRange;
use uuid::Uuid;

use crate::net::send::Chunk;

/// First version with compact lengths and tagged fields.
const FLEXIBLE_VERSION: i16 = 12;
/// "No preferred read replica": read from the leader.
const NO_READ_REPLICA: i32 = -1;

/// A whole Fetch answer.
#[derive(Debug, Default)]
pub(crate) struct FetchAnswer {
    /// Top-level error (v7+), for example an unknown fetch session.
    pub(crate) error_code: i16,
    /// Topics in request order.
    pub(crate) topics: Vec<TopicAnswer>,
    /// The brokers named as current leaders below (v16+, KIP-951).
    pub(crate) node_endpoints: Vec<crate::metadata::NodeEndpoint>,
    /// How long the client is throttled for going over its quota, in ms.
    pub(crate) throttle_time_ms: i32,
}

/// One topic's answer.
#[derive(Debug)]
pub(crate) struct TopicAnswer {
    /// The name, sent up to v12.
    pub(crate) name: String,
    /// The id, sent from v13.
    pub(crate) id: Uuid,
    /// Partitions in request order.
    pub(crate) partitions: Vec<PartitionAnswer>,
}

/// One partition's answer.
#[derive(Debug)]
pub(crate) struct PartitionAnswer {
    pub(crate) index: i32,
    pub(crate) error_code: i16,
    pub(crate) high_watermark: i64,
    pub(crate) last_stable_offset: i64,
    pub(crate) log_start_offset: i64,
    /// For a read_committed client, the aborted transactions its records overlap (producer id
    /// and first offset); `None` (null) for read_uncommitted.
    pub(crate) aborted: Option<Vec<sluice_engine::AbortedTransaction>>,
    /// The record bytes, from a segment file.
    pub(crate) records: Option<FileRange>,
    /// Leader id and epoch, for a client that asked the wrong broker (v12+ tagged field).
    pub(crate) current_leader: Option<(i32, i32)>,
    /// Epoch and end offset where a follower's log parts from this one (v12+ tagged field).
    pub(crate) diverging_epoch: Option<(i32, i64)>,
}

/// Builds a frame out of memory and file chunks.
struct ChunkWriter {
    version: i16,
    chunks: Vec<Chunk>,
    current: BytesMut,
}

impl ChunkWriter {
    fn flexible(&self) -> bool {
        self.version >= FLEXIBLE_VERSION
    }

    fn unsigned_varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.current.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.current.put_u8(value as u8);
    }

    /// An array or bytes length; `None` is null.
    fn length(&mut self, length: Option<usize>) {
        if self.flexible() {
            // Compact: 0 is null, n + 1 otherwise.
            let value = length.map_or(0, |length| u32::try_from(length).unwrap_or(u32::MAX - 1) + 1);
            self.unsigned_varint(value);
        } else {
            let value = length.map_or(-1, |length| i32::try_from(length).unwrap_or(i32::MAX));
            self.current.put_i32(value);
        }
    }

    fn string(&mut self, text: &str) {
        if self.flexible() {
            self.length(Some(text.len()));
        } else {
            self.current.put_i16(i16::try_from(text.len()).unwrap_or(i16::MAX));
        }
        self.current.put_slice(text.as_bytes());
    }

    fn nullable_string(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => self.length(None),
        }
    }

    /// One tagged field whose body `write` encodes: tag, size, body.
    fn tagged_field(&mut self, tag: u32, write: impl FnOnce(&mut BytesMut)) {
        let mut body = BytesMut::new();
        write(&mut body);
        self.unsigned_varint(tag);
        self.unsigned_varint(u32::try_from(body.len()).unwrap_or(u32::MAX));
        self.current.put_slice(&body);
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible() {
            self.unsigned_varint(0);
        }
    }

    fn file(&mut self, range: FileRange) {
        self.chunks.push(Chunk::Memory(self.current.split().freeze()));
        self.chunks.push(Chunk::File(range));
    }

    /// The chunks, the first being the frame's size prefix.
    fn finish(mut self) -> Vec<Chunk> {
        self.chunks.push(Chunk::Memory(self.current.split().freeze()));
        let size: usize = self.chunks.iter().skip(1).map(Chunk::len).sum();
        let prefix = i32::try_from(size).unwrap_or(i32::MAX);
        self.chunks[0] = Chunk::Memory(Bytes::copy_from_slice(&prefix.to_be_bytes()));
        self.chunks
    }
}

/// Encodes `answer` as the response frame to request `correlation_id`, at `version` (4-16).
pub(crate) fn encode(correlation_id: i32, version: i16, answer: FetchAnswer) -> Vec<Chunk> {
    let mut writer =
        ChunkWriter { version, chunks: vec![Chunk::Memory(Bytes::new())], current: BytesMut::with_capacity(256) };
    writer.current.put_i32(correlation_id);
    writer.no_tagged_fields();
    writer.current.put_i32(answer.throttle_time_ms);
    if version >= 7 {
        writer.current.put_i16(answer.error_code);
        writer.current.put_i32(0); // session_id: no fetch sessions
    }
    writer.length(Some(answer.topics.len()));
    for topic in answer.topics {
        if version <= FLEXIBLE_VERSION {
            writer.string(&topic.name);
        }
        if version >= 13 {
            writer.current.put_slice(topic.id.as_bytes());
        }
        writer.length(Some(topic.partitions.len()));
        for partition in topic.partitions {
            writer.current.put_i32(partition.index);
            writer.current.put_i16(partition.error_code);
            writer.current.put_i64(partition.high_watermark);
            writer.current.put_i64(partition.last_stable_offset);
            if version >= 5 {
                writer.current.put_i64(partition.log_start_offset);
            }
            writer.length(partition.aborted.as_ref().map(Vec::len));
            for aborted in partition.aborted.iter().flatten() {
                writer.current.put_i64(aborted.producer_id);
                writer.current.put_i64(aborted.first_offset.0);
                if writer.flexible() {
                    writer.unsigned_varint(0);
                }
            }
            if version >= 11 {
                writer.current.put_i32(NO_READ_REPLICA);
            }
            let records_bytes = partition.records.as_ref().map_or(0, |range| range.size_bytes as usize);
            writer.length(Some(records_bytes));
            if let Some(range) = partition.records.filter(|range| range.size_bytes > 0) {
                writer.file(range);
            }
            if writer.flexible() {
                let diverging = partition.diverging_epoch;
                let leader = partition.current_leader;
                writer.unsigned_varint(u32::from(diverging.is_some()) + u32::from(leader.is_some()));
                // Tag 0: DivergingEpoch { epoch, end_offset, no tagged fields }.
                if let Some((epoch, end_offset)) = diverging {
                    writer.tagged_field(0, |body| {
                        body.put_i32(epoch);
                        body.put_i64(end_offset);
                        body.put_u8(0);
                    });
                }
                // Tag 1: CurrentLeader { leader_id, leader_epoch, no tagged fields }.
                if let Some((leader_id, leader_epoch)) = leader {
                    writer.tagged_field(1, |body| {
                        body.put_i32(leader_id);
                        body.put_i32(leader_epoch);
                        body.put_u8(0);
                    });
                }
            }
        }
        writer.no_tagged_fields();
    }
    if version >= 16 && !answer.node_endpoints.is_empty() {
        // Tag 0: NodeEndpoints [node_id, host, port, rack, no tagged fields].
        writer.unsigned_varint(1);
        let mut inner = ChunkWriter { version, chunks: Vec::new(), current: BytesMut::new() };
        inner.length(Some(answer.node_endpoints.len()));
        for endpoint in &answer.node_endpoints {
            inner.current.put_i32(endpoint.node_id);
            inner.string(&endpoint.host);
            inner.current.put_i32(endpoint.port);
            inner.nullable_string(endpoint.rack.as_deref());
            inner.no_tagged_fields();
        }
        let body = inner.current;
        writer.tagged_field(0, |out| out.put_slice(&body));
    } else {
        writer.no_tagged_fields();
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    use proptest::prelude::*;
    use std::io::Write;
    use std::sync::Arc;

    fn materialize(chunks: &[Chunk]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for chunk in chunks {
            match chunk {
                Chunk::Memory(memory) => bytes.extend_from_slice(memory),
                Chunk::File(range) => bytes.extend(range.read_to_vec().expect("read range")),
            }
        }
        bytes
    }

    fn decode(frame: &[u8], version: i16) -> (i32, FetchResponse) {
        let mut buf = Bytes::copy_from_slice(frame);
        let size = buf.get_i32();
        assert_eq!(usize::try_from(size).expect("size"), buf.len(), "size prefix");
        let header = ResponseHeader::decode(&mut buf, FetchResponse::header_version(version)).expect("header");
        let response = FetchResponse::decode(&mut buf, version).expect("body");
        assert!(buf.is_empty(), "{} bytes left after the response", buf.len());
        (header.correlation_id, response)
    }

    /// A partition: index, error code, read_committed, and a (position, size) range.
    type PartitionShape = (i32, i16, bool, Option<(u64, u32)>);

    #[derive(Debug, Clone)]
    struct Shape {
        topics: Vec<(String, Vec<PartitionShape>)>,
    }

    fn shapes() -> impl Strategy<Value = Shape> {
        let partition = (
            0..1000i32,
            prop_oneof![Just(0i16), Just(1i16), Just(56i16)],
            any::<bool>(),
            proptest::option::of((0u64..4000, 0u32..200)),
        );
        let topic = ("[a-z._-]{1,40}", proptest::collection::vec(partition, 0..5));
        proptest::collection::vec(topic, 0..4).prop_map(|topics| Shape { topics })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every version decodes with the kafka-protocol codec to the fields and bytes encoded.
        #[test]
        fn encoded_answers_decode_with_the_reference_codec(shape in shapes(), version in 4i16..=16, correlation in any::<i32>()) {
            let mut file = tempfile::tempfile().expect("temp file");
            let contents: Vec<u8> = (0..4200u32).map(|index| (index % 251) as u8).collect();
            file.write_all(&contents).expect("write");
            let file = Arc::new(file);
            let leaders: Vec<i32> = shape.topics.iter().flat_map(|(_, partitions)| partitions)
                .filter(|(_, error_code, _, _)| *error_code != 0).map(|(index, _, _, _)| index + 1).collect();
            let node_endpoints = leaders.iter().collect::<std::collections::BTreeSet<_>>().into_iter()
                .map(|&node_id| crate::metadata::NodeEndpoint { node_id, host: format!("h{node_id}"), port: node_id + 9000, rack: (node_id % 2 == 0).then(|| "r".to_owned()) })
                .collect::<Vec<_>>();
            let answer = FetchAnswer {
                error_code: 0,
                throttle_time_ms: 0,
                node_endpoints: node_endpoints.clone(),
                topics: shape.topics.iter().enumerate().map(|(number, (name, partitions))| TopicAnswer {
                    name: name.clone(),
                    id: Uuid::from_u128(number as u128 + 1),
                    partitions: partitions.iter().map(|(index, error_code, committed, records)| PartitionAnswer {
                        index: *index,
                        error_code: *error_code,
                        high_watermark: i64::from(*index) * 3,
                        last_stable_offset: i64::from(*index) * 3,
                        log_start_offset: 7,
                        aborted: committed.then(|| vec![sluice_engine::AbortedTransaction {
                            producer_id: i64::from(*index) + 100,
                            first_offset: sluice_engine::Offset(7),
                        }]),
                        records: records.map(|(position, size_bytes)| FileRange { file: Arc::clone(&file), position, size_bytes }),
                        current_leader: (*error_code != 0).then_some((index + 1, 5)),
                        diverging_epoch: (*index % 3 == 0).then_some((*index, i64::from(*index) * 7)),
                    }).collect(),
                }).collect(),
            };
            let frame = materialize(&encode(correlation, version, answer));
            let (correlation_id, response) = decode(&frame, version);
            prop_assert_eq!(correlation_id, correlation);
            prop_assert_eq!(response.responses.len(), shape.topics.len());
            for (number, (topic, (name, partitions))) in response.responses.iter().zip(&shape.topics).enumerate() {
                if version <= 12 {
                    prop_assert_eq!(topic.topic.as_str(), name.as_str());
                } else {
                    prop_assert_eq!(topic.topic_id, Uuid::from_u128(number as u128 + 1));
                }
                prop_assert_eq!(topic.partitions.len(), partitions.len());
                for (decoded, (index, error_code, committed, records)) in topic.partitions.iter().zip(partitions) {
                    prop_assert_eq!(decoded.partition_index, *index);
                    prop_assert_eq!(decoded.error_code, *error_code);
                    prop_assert_eq!(decoded.high_watermark, i64::from(*index) * 3);
                    prop_assert_eq!(decoded.last_stable_offset, i64::from(*index) * 3);
                    if version >= 5 {
                        prop_assert_eq!(decoded.log_start_offset, 7);
                    }
                    prop_assert_eq!(decoded.aborted_transactions.as_ref().map(Vec::len), committed.then_some(1));
                    if let Some(aborted) = decoded.aborted_transactions.as_ref().and_then(|list| list.first()) {
                        prop_assert_eq!(aborted.producer_id.0, i64::from(*index) + 100);
                        prop_assert_eq!(aborted.first_offset, 7);
                    }
                    let expected = records.map_or(&[][..], |(position, size)| &contents[position as usize..(position + u64::from(size)) as usize]);
                    prop_assert_eq!(decoded.records.as_deref(), Some(expected));
                    if version >= 12 && *index % 3 == 0 {
                        prop_assert_eq!(decoded.diverging_epoch.epoch, *index);
                        prop_assert_eq!(decoded.diverging_epoch.end_offset, i64::from(*index) * 7);
                    } else {
                        prop_assert_eq!(decoded.diverging_epoch.epoch, -1);
                    }
                    if version >= 12 && *error_code != 0 {
                        prop_assert_eq!(decoded.current_leader.leader_id.0, index + 1);
                        prop_assert_eq!(decoded.current_leader.leader_epoch, 5);
                    } else {
                        prop_assert_eq!(decoded.current_leader.leader_id.0, -1);
                    }
                }
            }
            if version >= 16 {
                prop_assert_eq!(response.node_endpoints.len(), node_endpoints.len());
                for (decoded, sent) in response.node_endpoints.iter().zip(&node_endpoints) {
                    prop_assert_eq!(decoded.node_id.0, sent.node_id);
                    prop_assert_eq!(decoded.host.as_str(), sent.host.as_str());
                    prop_assert_eq!(decoded.port, sent.port);
                    prop_assert_eq!(decoded.rack.as_ref().map(kafka_protocol::protocol::StrBytes::as_str), sent.rack.as_deref());
                }
            } else {
                prop_assert!(response.node_endpoints.is_empty());
            }
        }
    }

    #[test]
    fn top_level_error_is_sent_from_v7() {
        let answer = FetchAnswer { error_code: 70, ..FetchAnswer::default() };
        let (_, response) = decode(&materialize(&encode(1, 7, answer)), 7);
        assert_eq!(response.error_code, 70);
        assert_eq!(response.session_id, 0);
    }

    #[test]
    fn record_bytes_are_file_chunks_not_copies() {
        let file = Arc::new(tempfile::tempfile().expect("temp file"));
        let range = FileRange { file, position: 0, size_bytes: 1 << 20 };
        let partition = PartitionAnswer {
            index: 0,
            error_code: 0,
            high_watermark: 1,
            last_stable_offset: 1,
            log_start_offset: 0,
            aborted: None,
            records: Some(range),
            current_leader: None,
            diverging_epoch: None,
        };
        let topic = TopicAnswer { name: "t".to_owned(), id: Uuid::nil(), partitions: vec![partition] };
        let chunks = encode(5, 16, FetchAnswer { topics: vec![topic], ..FetchAnswer::default() });
        let memory: usize = chunks.iter().filter(|chunk| matches!(chunk, Chunk::Memory(_))).map(Chunk::len).sum();
        assert!(memory < 100, "{memory} bytes in memory");
        assert!(chunks.iter().any(|chunk| matches!(chunk, Chunk::File(range) if range.size_bytes == 1 << 20)));
        let Chunk::Memory(prefix) = &chunks[0] else { panic!("the size prefix comes first") };
        let size = i32::from_be_bytes(prefix[..].try_into().expect("4 bytes"));
        assert_eq!(usize::try_from(size).expect("size") + 4, memory + (1 << 20));
    }
}
