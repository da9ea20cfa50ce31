//! Goal: check the broker end to end at the wire level, in process: a real `Broker` on a free
//! loopback port over a temporary data directory, spoken to with raw Kafka frames built by the
//! `kafka-protocol` crate (no Kafka client library in between).
//!
//! Method: each test starts its own broker (two shards, unpinned), opens plain blocking TCP
//! connections, writes size-prefixed requests and reads size-prefixed responses, then shuts the
//! broker down cleanly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{Harness, call, create_topic, fetch_request, produce_request, read_response, request_frame};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, MetadataRequest, MetadataResponse, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::memory::ReservingAllocator;

/// As in the binary, so that hostile array counts cannot abort the test process.
#[global_allocator]
static ALLOCATOR: ReservingAllocator = ReservingAllocator;

#[test]
fn api_versions_advertises_produce_and_fetch_and_falls_back_for_unknown_versions() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    for version in [0, 3] {
        let response: ApiVersionsResponse =
            call(&mut stream, ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0);
        let produce = response.api_keys.iter().find(|api| api.api_key == ApiKey::Produce as i16).expect("produce");
        assert_eq!((produce.min_version, produce.max_version), (0, 12));
        assert!(response.api_keys.iter().any(|api| api.api_key == ApiKey::Fetch as i16 && api.max_version == 16));
        if version >= 3 {
            // Kafka 4.x's default transaction protocol (KIP-890 part 2), as a finalized feature.
            let feature =
                response.finalized_features.iter().find(|feature| feature.name.as_str() == "transaction.version");
            assert_eq!(feature.map(|feature| feature.max_version_level), Some(2));
            assert!(response.finalized_features_epoch >= 0, "clients ignore features at epoch -1");
        }
    }
    // A newer client's version: answered as v0 with UNSUPPORTED_VERSION and the supported list.
    stream.write_all(&request_frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default())[..]).expect("write");
    let _: ApiVersionsResponse = read_response(&mut stream, ApiKey::ApiVersions, 3, 7);
    let mut frame = request_frame(ApiKey::ApiVersions, 3, 8, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&9i16.to_be_bytes());
    stream.write_all(&frame).expect("write");
    let fallback: ApiVersionsResponse = read_response(&mut stream, ApiKey::ApiVersions, 0, 8);
    assert_eq!(fallback.error_code, 35);
    assert!(!fallback.api_keys.is_empty());
    harness.stop();
}

#[test]
fn produced_batches_are_fetched_back_at_their_offsets() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "orders", 2);
    let metadata: MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("orders")))),
        ])),
    );
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    assert_eq!(metadata.brokers[0].port, i32::from(harness.broker.local_addr().port()));
    for (index, acks) in [(0i64, -1i16), (2, 1)] {
        let produced: ProduceResponse =
            call(&mut stream, ApiKey::Produce, 9, &produce_request("orders", 1, acks, &[b"first", b"second"]));
        let partition = &produced.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.base_offset, index);
    }
    let fetched: FetchResponse = call(&mut stream, ApiKey::Fetch, 12, &fetch_request("orders", 1, 0, 0));
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 4);
    let records = partition.records.clone().expect("records");
    let first = sluice_engine::batch::validate(&records, true).expect("first batch is intact");
    assert_eq!(first.base_offset, 0);
    let second = sluice_engine::batch::validate(&records[first.size_bytes()..], true).expect("second batch");
    assert_eq!(second.base_offset, 2);
    harness.stop();
}

#[test]
fn produce_to_unknown_topic_is_unknown_topic_or_partition() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    let produced: ProduceResponse = call(&mut stream, ApiKey::Produce, 9, &produce_request("missing", 0, 1, &[b"x"]));
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 3);
    harness.stop();
}

#[test]
fn fetch_long_poll_is_woken_by_new_data() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "events", 1);
    let mut waiting = harness.connect();
    waiting.write_all(&request_frame(ApiKey::Fetch, 12, 3, &fetch_request("events", 0, 0, 8_000))).expect("write");
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let _: ProduceResponse = call(&mut stream, ApiKey::Produce, 9, &produce_request("events", 0, 1, &[b"wake"]));
    let fetched: FetchResponse = read_response(&mut waiting, ApiKey::Fetch, 12, 3);
    assert!(started.elapsed() < Duration::from_secs(5), "the fetch returned on new data, not at max_wait");
    assert!(!fetched.responses[0].partitions[0].records.clone().unwrap_or_default().is_empty());
    harness.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order_and_acks_zero_is_silent() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "pipe", 1);
    let mut burst = Vec::new();
    burst.extend(request_frame(ApiKey::Produce, 9, 10, &produce_request("pipe", 0, 0, &[b"silent"])));
    for correlation_id in 11..15 {
        burst.extend(request_frame(ApiKey::Produce, 9, correlation_id, &produce_request("pipe", 0, -1, &[b"x"])));
    }
    burst.extend(request_frame(ApiKey::ApiVersions, 3, 15, &ApiVersionsRequest::default()));
    stream.write_all(&burst).expect("write");
    for correlation_id in 11..15 {
        let produced: ProduceResponse = read_response(&mut stream, ApiKey::Produce, 9, correlation_id);
        let partition = &produced.responses[0].partition_responses[0];
        assert_eq!(partition.base_offset, i64::from(correlation_id - 10), "appends keep request order");
    }
    let _: ApiVersionsResponse = read_response(&mut stream, ApiKey::ApiVersions, 3, 15);
    harness.stop();
}

fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("expected the broker to close the connection"),
        Err(error) => assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock, "connection left open"),
    }
}

#[test]
fn bad_frames_close_only_their_connection() {
    let harness = Harness::start();
    let mut bystander = harness.connect();
    let garbage: [&[u8]; 4] = [
        &(-5i32).to_be_bytes(),
        &(200 * 1024 * 1024i32).to_be_bytes(),
        &[0, 0, 0, 3, 1, 2, 3],
        &[0, 0, 0, 12, 0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f],
    ];
    for bytes in garbage {
        let mut stream = harness.connect();
        stream.write_all(bytes).expect("write");
        assert_closed(&mut stream);
    }
    // Truncated: a size announcing more than is sent, then the client goes away.
    let mut truncated = harness.connect();
    truncated.write_all(&[0, 0, 0, 100, 0, 18]).expect("write");
    drop(truncated);
    let response: ApiVersionsResponse = call(&mut bystander, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    harness.stop();
}

#[test]
fn huge_array_counts_close_the_connection_without_aborting() {
    let harness = Harness::start();
    // Metadata v4 (header v1): empty client id, then a topics array announcing 2^31 - 1 entries.
    let mut metadata = vec![0, 3, 0, 4, 0, 0, 0, 1, 0, 0];
    metadata.extend_from_slice(&i32::MAX.to_be_bytes());
    // Fetch v12 (flexible): a compact topics array announcing 2^32 - 2 entries.
    let mut fetch = vec![0, 1, 0, 12, 0, 0, 0, 2, 0, 0, 0];
    for field in [-1i32, 0, 1, 100] {
        fetch.extend_from_slice(&field.to_be_bytes());
    }
    fetch.push(0);
    fetch.extend_from_slice(&0i32.to_be_bytes());
    fetch.extend_from_slice(&(-1i32).to_be_bytes());
    fetch.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    for body in [metadata, fetch] {
        let mut stream = harness.connect();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        stream.write_all(&frame).expect("write");
        assert_closed(&mut stream);
    }
    let mut stream = harness.connect();
    let response: ApiVersionsResponse = call(&mut stream, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    harness.stop();
}

#[test]
fn frames_larger_than_the_read_buffer_arrive_whole() {
    let harness = Harness::start();
    let mut stream = harness.connect();
    create_topic(&mut stream, "large", 1);
    let value = vec![7u8; 900_000];
    let mut burst = request_frame(ApiKey::Produce, 9, 21, &produce_request("large", 0, 1, &[&value]));
    burst.extend(request_frame(ApiKey::Produce, 9, 22, &produce_request("large", 0, 1, &[&value[..70_000]])));
    stream.write_all(&burst).expect("write");
    for (correlation_id, offset) in [(21, 0), (22, 1)] {
        let produced: ProduceResponse = read_response(&mut stream, ApiKey::Produce, 9, correlation_id);
        assert_eq!(produced.responses[0].partition_responses[0].base_offset, offset);
    }
    let fetched: FetchResponse = call(&mut stream, ApiKey::Fetch, 12, &fetch_request("large", 0, 0, 0));
    let records = fetched.responses[0].partitions[0].records.clone().expect("records");
    assert!(records.len() > 900_000);
    harness.stop();
}
