//! A tiny in-process Kafka broker for tests of the client's protocol handling.
//!
//! It speaks just enough (ApiVersions, Metadata, CreateTopics, Produce, Fetch, ListOffsets) to
//! exercise framing, header versions, version negotiation (it can refuse ApiVersions above a
//! version, answering with a v0 body as Kafka does) and pipelining. Batches are validated with
//! the engine's CRC check and stored in memory with patched base offsets. One thread per
//! connection; state behind one mutex, which is fine for a test fixture.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, decode_request_header_from_buffer};

/// Options of the mock.
#[derive(Debug, Clone, Copy)]
pub struct MockOptions {
    /// Highest ApiVersions version accepted; above it the mock answers UNSUPPORTED_VERSION.
    pub api_versions_max: i16,
    /// Highest Produce version advertised.
    pub produce_max: i16,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self { api_versions_max: 4, produce_max: 11 }
    }
}

#[derive(Default)]
struct Partition {
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, (uuid::Uuid, Vec<Partition>)>,
    requests_by_api: BTreeMap<i16, u64>,
}

/// A running mock broker.
pub struct MockBroker {
    pub address: String,
    state: Arc<Mutex<State>>,
}

impl MockBroker {
    /// Binds a loopback port and serves connections on background threads.
    pub fn start(options: MockOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().expect("local address").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let port = listener.local_addr().expect("local address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state, options, port));
            }
        });
        Self { address, state }
    }

    /// How many requests of `api` arrived.
    pub fn request_count(&self, api: ApiKey) -> u64 {
        self.state.lock().expect("lock").requests_by_api.get(&(api as i16)).copied().unwrap_or(0)
    }

    /// Records stored in a partition.
    pub fn log_end_offset(&self, topic: &str, partition: usize) -> i64 {
        let state = self.state.lock().expect("lock");
        state.topics.get(topic).map_or(0, |(_, partitions)| partitions[partition].next_offset)
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, options: MockOptions, port: u16) {
    stream.set_nodelay(true).expect("nodelay");
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let mut frame = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut frame).expect("request header");
        let Some(response) = handle(&header, &mut frame, state, options, port) else { continue };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

fn respond<R: Encodable + HeaderVersion>(correlation_id: i32, version: i16, body: &R) -> Bytes {
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buffer, R::header_version(version))
        .expect("response header");
    body.encode(&mut buffer, version).expect("response body");
    let size = (buffer.len() - 4) as i32;
    buffer[..4].copy_from_slice(&size.to_be_bytes());
    buffer.freeze()
}

fn handle(
    header: &RequestHeader,
    frame: &mut Bytes,
    state: &Mutex<State>,
    options: MockOptions,
    port: u16,
) -> Option<Bytes> {
    let version = header.request_api_version;
    let id = header.correlation_id;
    *state.lock().expect("lock").requests_by_api.entry(header.request_api_key).or_insert(0) += 1;
    let api = ApiKey::try_from(header.request_api_key).expect("known api");
    match api {
        ApiKey::ApiVersions => Some(api_versions(id, version, options)),
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(frame, version).expect("metadata");
            Some(respond(id, version, &metadata(&request, state, port)))
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(frame, version).expect("create topics");
            Some(respond(id, version, &create_topics(&request, state)))
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(frame, version).expect("produce");
            let response = produce(&request, state);
            (request.acks != 0).then(|| respond(id, version, &response))
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(frame, version).expect("fetch");
            Some(respond(id, version, &fetch(&request, state)))
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(frame, version).expect("list offsets");
            Some(respond(id, version, &list_offsets(&request, state)))
        }
        other => panic!("mock broker does not serve {other:?}"),
    }
}

fn api_versions(id: i32, version: i16, options: MockOptions) -> Bytes {
    let range = |api: ApiKey, max: i16| {
        let valid = api.valid_versions();
        ApiVersion::default().with_api_key(api as i16).with_min_version(valid.min).with_max_version(valid.max.min(max))
    };
    if version > options.api_versions_max {
        // KIP-511: an unknown ApiVersions version is answered with a v0 body.
        let body = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![range(ApiKey::ApiVersions, options.api_versions_max)]);
        return respond(id, 0, &body);
    }
    let body = ApiVersionsResponse::default().with_api_keys(vec![
        range(ApiKey::ApiVersions, options.api_versions_max),
        range(ApiKey::Metadata, 12),
        range(ApiKey::CreateTopics, 7),
        range(ApiKey::Produce, options.produce_max),
        range(ApiKey::Fetch, 16),
        range(ApiKey::ListOffsets, 8),
    ]);
    respond(id, version, &body)
}

fn metadata(request: &MetadataRequest, state: &Mutex<State>, port: u16) -> MetadataResponse {
    let state = state.lock().expect("lock");
    let names: Vec<String> = match &request.topics {
        Some(topics) => topics.iter().filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string())).collect(),
        None => state.topics.keys().cloned().collect(),
    };
    let topics = names
        .into_iter()
        .map(|name| {
            let found = state.topics.get(&name);
            let partitions = found.map_or(0, |(_, partitions)| partitions.len());
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name))))
                .with_error_code(if found.is_some() { 0 } else { 3 })
                .with_topic_id(found.map_or(uuid::Uuid::nil(), |(id, _)| *id))
                .with_partitions(
                    (0..partitions)
                        .map(|index| {
                            MetadataResponsePartition::default()
                                .with_partition_index(index as i32)
                                .with_leader_id(BrokerId(0))
                        })
                        .collect(),
                )
        })
        .collect();
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(i32::from(port));
    MetadataResponse::default().with_brokers(vec![broker]).with_controller_id(BrokerId(0)).with_topics(topics)
}

fn create_topics(request: &CreateTopicsRequest, state: &Mutex<State>) -> CreateTopicsResponse {
    let mut state = state.lock().expect("lock");
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let exists = state.topics.contains_key(&name);
            if !exists {
                let partitions = (0..topic.num_partitions).map(|_| Partition::default()).collect();
                let id = uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + state.topics.len() as u128);
                state.topics.insert(name, (id, partitions));
            }
            CreatableTopicResult::default().with_name(topic.name.clone()).with_error_code(if exists { 36 } else { 0 })
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn produce(request: &ProduceRequest, state: &Mutex<State>) -> ProduceResponse {
    let mut state = state.lock().expect("lock");
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partition_responses = topic
                .partition_data
                .iter()
                .map(|data| {
                    let partition = &mut state.topics.get_mut(&name).expect("topic exists").1[data.index as usize];
                    let mut batch = data.records.clone().expect("records").to_vec();
                    let header = sluice_engine::batch::validate(&batch, true).expect("client sends valid batches");
                    let base_offset = partition.next_offset;
                    sluice_engine::batch::patch_base_offset(&mut batch, base_offset);
                    partition.next_offset += i64::from(header.record_count);
                    partition.batches.push((base_offset, Bytes::from(batch)));
                    PartitionProduceResponse::default().with_index(data.index).with_base_offset(base_offset)
                })
                .collect();
            TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn fetch(request: &FetchRequest, state: &Mutex<State>) -> FetchResponse {
    let state = state.lock().expect("lock");
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let (name, (id, partitions)) = state
                .topics
                .iter()
                .find(|(name, (id, _))| name.as_str() == topic.topic.0.as_str() || *id == topic.topic_id)
                .expect("topic exists");
            let partition_data = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let partition = &partitions[wanted.partition as usize];
                    let mut records = BytesMut::new();
                    for (base_offset, batch) in &partition.batches {
                        let header = sluice_engine::batch::parse_header(batch).expect("stored batches are valid");
                        if base_offset + i64::from(header.last_offset_delta) >= wanted.fetch_offset {
                            records.extend_from_slice(batch);
                        }
                    }
                    PartitionData::default()
                        .with_partition_index(wanted.partition)
                        .with_high_watermark(partition.next_offset)
                        .with_records(Some(records.freeze()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name.clone())))
                .with_topic_id(*id)
                .with_partitions(partition_data)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}

fn list_offsets(request: &ListOffsetsRequest, state: &Mutex<State>) -> ListOffsetsResponse {
    let state = state.lock().expect("lock");
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = &state.topics.get(topic.name.0.as_str()).expect("topic exists").1;
            let results = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let offset = if wanted.timestamp == -2 {
                        0
                    } else {
                        partitions[wanted.partition_index as usize].next_offset
                    };
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index)
                        .with_offset(offset)
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(results)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
