//! Protocol behaviour of the client against an in-process mock broker: version negotiation
//! (including the UNSUPPORTED_VERSION fallback), pipelined requests answered in order, acks=0,
//! and a produce/fetch round trip through the batch builder and decoder.
//!
//! Method: start `support::mock_broker` on a loopback port, drive the client, and check both
//! what the client reports and what the mock stored.

mod support;

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest};
use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
use sluice_client::decode::BatchIter;
use sluice_client::requests::{
    FetchLimits, LATEST_TIMESTAMP, NewTopic, fetch_request, fetched_partitions, produce_request, produced_partitions,
};
use sluice_client::{ClientError, Connection, ConnectionConfig};
use support::mock_broker::{MockBroker, MockOptions};

fn batch_of(count: usize) -> bytes::Bytes {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for index in 0..count {
        let value = format!("value-{index}");
        builder
            .push(&NewRecord { timestamp_ms: 1_000, value: Some(value.as_bytes()), ..NewRecord::default() })
            .expect("fits");
    }
    builder.finish().expect("encodes")
}

fn topic(connection: &mut Connection, name: &str, partitions: i32) -> sluice_client::requests::TopicInfo {
    let new_topic = NewTopic { name, partitions, replication_factor: -1, configs: &[] };
    connection.ensure_topic(&new_topic, Duration::from_secs(5)).expect("topic ready")
}

#[test]
fn negotiation_picks_the_highest_common_versions() {
    let broker = MockBroker::start(MockOptions { produce_max: 9, ..MockOptions::default() });
    let connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    assert_eq!(connection.versions().version_for(ApiKey::Produce).expect("produce"), 9);
    assert_eq!(connection.versions().version_for(ApiKey::ApiVersions).expect("api versions"), 4);
    assert!(matches!(
        connection.versions().version_for(ApiKey::JoinGroup),
        Err(ClientError::UnsupportedVersion { broker: None, .. })
    ));
}

#[test]
fn unsupported_api_versions_version_falls_back_to_the_brokers_max() {
    let broker = MockBroker::start(MockOptions { api_versions_max: 2, ..MockOptions::default() });
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    assert_eq!(broker.request_count(ApiKey::ApiVersions), 2);
    assert_eq!(connection.versions().version_for(ApiKey::ApiVersions).expect("api versions"), 2);
    connection.send(&MetadataRequest::default()).expect("later requests work");
}

#[test]
fn pipelined_produce_requests_are_answered_in_order() {
    let broker = MockBroker::start(MockOptions::default());
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    let info = topic(&mut connection, "pipelined", 1);
    let tickets: Vec<_> = (0..10)
        .map(|_| connection.enqueue(&produce_request(&info.topic, -1, 5_000, [(0, batch_of(3))])).expect("enqueued"))
        .collect();
    assert_eq!(connection.outstanding_count(), 10);
    for (index, ticket) in tickets.into_iter().enumerate() {
        let response = connection.receive(ticket).expect("response");
        let result = produced_partitions(&response).next().expect("one partition");
        assert_eq!(result.base_offset, index as i64 * 3);
        assert_eq!(result.error, None);
    }
    assert_eq!(broker.log_end_offset("pipelined", 0), 30);
}

#[test]
fn receiving_out_of_order_is_refused() {
    let broker = MockBroker::start(MockOptions::default());
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    let first = connection.enqueue(&MetadataRequest::default()).expect("enqueued");
    let second = connection.enqueue(&MetadataRequest::default()).expect("enqueued");
    assert!(matches!(connection.receive(second), Err(ClientError::OutOfOrder { .. })));
    connection.receive(first).expect("the oldest is still receivable");
}

#[test]
fn acks_zero_gets_no_response_and_generic_enqueue_refuses_it() {
    let broker = MockBroker::start(MockOptions::default());
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    let info = topic(&mut connection, "fire-and-forget", 1);
    let request = produce_request(&info.topic, 0, 5_000, [(0, batch_of(2))]);
    assert!(matches!(connection.enqueue(&request), Err(ClientError::NoResponseExpected)));
    assert!(connection.produce(&request).expect("written").is_none());
    // A request behind it is answered normally, so nothing was left unread.
    let offsets = connection.list_offsets(&info.topic, &[0], LATEST_TIMESTAMP).expect("offsets");
    assert_eq!(offsets, [(0, 2)]);
}

#[test]
fn produced_records_fetch_back_through_the_decoder() {
    let broker = MockBroker::start(MockOptions::default());
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    let info = topic(&mut connection, "round-trip", 2);
    assert!(info.topic.id != uuid::Uuid::nil(), "metadata v10+ reports topic ids");
    for _ in 0..2 {
        let request = produce_request(&info.topic, -1, 5_000, [(1, batch_of(4))]);
        connection.produce(&request).expect("produced").expect("acks=all answers");
    }
    let request = fetch_request(&info.topic, &[(1, 5)], FetchLimits::default());
    let response = connection.fetch(&request).expect("fetched");
    let partition = fetched_partitions(&response).next().expect("one partition");
    let mut offsets = Vec::new();
    for batch in BatchIter::new(partition.records) {
        for record in batch.expect("valid batch").records() {
            let record = record.expect("valid record");
            offsets.push((record.offset, String::from_utf8(record.value.expect("value").to_vec()).expect("utf8")));
        }
    }
    // The batch holding offset 5 starts at 4: the caller skips what precedes its position.
    assert_eq!(offsets.first(), Some(&(4, "value-0".to_owned())));
    assert_eq!(offsets.last(), Some(&(7, "value-3".to_owned())));
    assert_eq!(partition.high_watermark, 8);
}

#[test]
fn split_halves_pipeline_across_threads() {
    let broker = MockBroker::start(MockOptions::default());
    let mut connection = Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects");
    let info = topic(&mut connection, "split", 1);
    let (mut writer, mut reader) = connection.into_split();
    let (tickets_tx, tickets_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        let mut offsets = Vec::new();
        while let Ok(ticket) = tickets_rx.recv() {
            let response = reader.receive(ticket).expect("response");
            offsets.extend(produced_partitions(&response).map(|result| result.base_offset));
        }
        offsets
    });
    for _ in 0..50 {
        let ticket = writer.enqueue(&produce_request(&info.topic, 1, 5_000, [(0, batch_of(1))])).expect("sent");
        tickets_tx.send(ticket).expect("receiver alive");
    }
    drop(tickets_tx);
    let offsets = receiver.join().expect("receiver finished");
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
}
