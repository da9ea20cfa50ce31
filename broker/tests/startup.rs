//! Goal: from the first moment the broker's port accepts a connection, every request it answers
//! is answered as by a broker that is fully up: existing topics are never UNKNOWN_TOPIC_OR_PARTITION
//! and only retriable errors (if any) appear, because startup recovers the logs, loads the
//! metadata and the group coordinators, and only then accepts clients.
//!
//! Method: a broker is filled (a 32-partition topic with records, committed group offsets) and
//! stopped. Client threads then hammer its port with Metadata, Produce, Fetch, FindCoordinator
//! and OffsetFetch in a loop, connecting over and over, while the broker restarts on the same
//! data directory and port; every answer's error codes are checked.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{call, create_topic, fetch_request, produce_request};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, MetadataRequest, MetadataResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::{Broker, BrokerConfig};

const TOPIC: &str = "hammered";
const PARTITIONS: i32 = 32;
/// Errors a client retries on its own; anything else seen during startup is a failure.
const RETRIABLE: &[i16] = &[5, 6, 14, 15, 16];
/// How long each client keeps hammering once it got its first answer.
const HAMMER_FOR: Duration = Duration::from_secs(3);

fn config(dir: &std::path::Path, listen: SocketAddr) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir, listen);
    config.shard_count = Some(2);
    config.pin_shards = false;
    config.shutdown_timeout_ms = 5_000;
    config
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One round of requests on `stream`; returns every error code seen.
fn round(stream: &mut TcpStream, round: i32) -> Vec<(&'static str, i16)> {
    let mut seen = Vec::new();
    let topic = MetadataRequestTopic::default().with_name(Some(TopicName(name(TOPIC))));
    let metadata: MetadataResponse =
        call(stream, ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![topic])));
    seen.push(("metadata", metadata.topics[0].error_code));
    seen.extend(metadata.topics[0].partitions.iter().map(|partition| ("metadata partition", partition.error_code)));
    let partition = round % PARTITIONS;
    let produced: ProduceResponse = call(stream, ApiKey::Produce, 9, &produce_request(TOPIC, partition, -1, &[b"x"]));
    seen.push(("produce", produced.responses[0].partition_responses[0].error_code));
    let fetched: FetchResponse = call(stream, ApiKey::Fetch, 12, &fetch_request(TOPIC, partition, 0, 0));
    seen.push(("fetch", fetched.responses[0].partitions[0].error_code));
    let find = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![name("startup-group")]);
    let found: FindCoordinatorResponse = call(stream, ApiKey::FindCoordinator, 4, &find);
    seen.push(("find coordinator", found.coordinators[0].error_code));
    let group = OffsetFetchRequestGroup::default().with_group_id(GroupId(name("startup-group"))).with_topics(None);
    let offsets: OffsetFetchResponse =
        call(stream, ApiKey::OffsetFetch, 8, &OffsetFetchRequest::default().with_groups(vec![group]));
    seen.push(("offset fetch", offsets.groups[0].error_code));
    seen
}

/// Connects over and over until the broker answers, then hammers it for [`HAMMER_FOR`].
fn hammer(address: SocketAddr, stop: &AtomicBool) -> Vec<(&'static str, i16)> {
    let mut seen = Vec::new();
    let mut answered_at: Option<Instant> = None;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) && answered_at.is_none_or(|at| at.elapsed() < HAMMER_FOR) {
        let Ok(mut stream) = TcpStream::connect(address) else {
            thread::sleep(Duration::from_millis(2));
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        seen.extend(round(&mut stream, count));
        answered_at.get_or_insert_with(Instant::now);
        count += 1;
    }
    seen
}

#[test]
fn clients_arriving_during_startup_see_a_broker_that_is_fully_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Broker::start(config(dir.path(), "127.0.0.1:0".parse().expect("address"))).expect("first start");
    let address = first.local_addr();
    {
        let mut stream = TcpStream::connect(address).expect("connect");
        create_topic(&mut stream, TOPIC, PARTITIONS);
        for partition in 0..PARTITIONS {
            let _: ProduceResponse =
                call(&mut stream, ApiKey::Produce, 9, &produce_request(TOPIC, partition, -1, &[b"before"]));
        }
    }
    assert!(first.shutdown());

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || hammer(address, &stop))
        })
        .collect();
    let started = Broker::start(config(dir.path(), address));
    if started.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    let broker = started.expect("restart on the same port");
    let mut answers = 0;
    for client in clients {
        let seen = client.join().expect("client thread");
        answers += seen.len();
        for (what, error) in seen {
            assert!(error == 0 || RETRIABLE.contains(&error), "{what} answered error {error} during startup");
        }
    }
    assert!(answers > 0, "the clients got answers");
    assert!(broker.shutdown());
}
