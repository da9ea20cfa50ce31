//! Helpers shared by the broker's in-process integration tests: a real `Broker` on a free
//! loopback port over a temporary data directory, and raw Kafka frames built by the
//! `kafka-protocol` crate.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_broker::{Broker, BrokerConfig};

pub struct Harness {
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = BrokerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("address"));
        config.shard_count = Some(2);
        config.pin_shards = false;
        config.shutdown_timeout_ms = 5_000;
        let broker = Broker::start(config).expect("broker starts");
        Self { broker, dir }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.broker.local_addr()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        stream
    }

    pub fn stop(self) {
        assert!(self.broker.shutdown(), "every connection closed in time");
    }
}

pub fn request_frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("protocol-test")));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version)).expect("header encodes");
    request.encode(&mut body, version).expect("request encodes");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

pub fn read_response<R: Decodable>(stream: &mut TcpStream, key: ApiKey, version: i16, correlation_id: i32) -> R {
    let mut frame = read_frame(stream).expect("response frame");
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version)).expect("header");
    assert_eq!(header.correlation_id, correlation_id, "responses come back in request order");
    R::decode(&mut frame, version).expect("response decodes")
}

pub fn call<Q: Encodable, R: Decodable>(stream: &mut TcpStream, key: ApiKey, version: i16, request: &Q) -> R {
    stream.write_all(&request_frame(key, version, 1, request)).expect("write");
    read_response(stream, key, version, 1)
}

pub fn create_topic(stream: &mut TcpStream, name: &str, partitions: i32) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(1);
    let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(5_000);
    let response: CreateTopicsResponse = call(stream, ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
}

pub fn produce_request(topic: &str, partition: i32, acks: i16, values: &[&[u8]]) -> ProduceRequest {
    let batch = sluice_engine::batch::build_batch(values, 1_700_000_000_000);
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch)));
    let topic_data = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partition_data(vec![data]);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5_000).with_topic_data(vec![topic_data])
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let fetch_partition = FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
        .with_current_leader_epoch(-1);
    let fetch_topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partitions(vec![fetch_partition]);
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_topic])
}
