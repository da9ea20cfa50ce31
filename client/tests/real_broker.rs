//! The client against the real `sluice` broker binary: negotiation, topic creation, pipelined
//! produce with every codec, fetch back through the decoder, and ListOffsets.
//!
//! Method: start `target/{debug,release}/sluice` (the newer one, or `$SLUICE_BIN`) on a free
//! loopback port with a temporary data directory, wait until it accepts connections, and drive it
//! with the client. When no binary has been built the tests print why and pass, so that
//! `cargo test -p sluice-client` works before the broker is built; CI builds it first.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use sluice_client::batch::{BatchBuilder, BatchOptions, Compression, NewRecord, RecordHeader};
use sluice_client::decode::BatchIter;
use sluice_client::requests::{
    EARLIEST_TIMESTAMP, FetchLimits, LATEST_TIMESTAMP, NewTopic, fetch_request, fetched_partitions, produce_request,
    produced_partitions,
};
use sluice_client::{Connection, ConnectionConfig};

/// A broker process that is killed when the test ends.
struct Broker {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn broker_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return Some(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("sluice"))
        .filter_map(|path| path.metadata().and_then(|meta| meta.modified()).ok().map(|modified| (modified, path)))
        .max()
        .map(|(_, path)| path)
}

fn start_broker() -> Option<Broker> {
    let Some(binary) = broker_binary() else {
        eprintln!("skipping: no sluice binary (run `cargo build --bin sluice` or set SLUICE_BIN)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port();
    let address = format!("127.0.0.1:{port}");
    let data = tempfile::tempdir().expect("data dir");
    let child = Command::new(&binary)
        .args(["--listen", &address, "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    let broker = Broker { child, address, _data: data };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&broker.address).is_err() {
        assert!(Instant::now() < deadline, "{} did not listen on {}", binary.display(), broker.address);
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(broker)
}

fn connect(broker: &Broker) -> Connection {
    Connection::connect(&broker.address, &ConnectionConfig::default()).expect("connects and negotiates")
}

fn batch(compression: Compression, first: usize, count: usize) -> bytes::Bytes {
    let mut builder = BatchBuilder::new(BatchOptions { compression, ..BatchOptions::default() });
    let headers = [RecordHeader { key: "codec", value: Some(b"test") }];
    for index in first..first + count {
        let value = format!("record-{index:05}");
        let key = format!("key-{index}");
        let record = NewRecord {
            timestamp_ms: 1_700_000_000_000 + index as i64,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &headers,
        };
        builder.push(&record).expect("fits");
    }
    builder.finish().expect("encodes")
}

#[test]
fn negotiates_versions_real_clients_need() {
    let Some(broker) = start_broker() else { return };
    let connection = connect(&broker);
    for api in [ApiKey::Produce, ApiKey::Fetch, ApiKey::Metadata, ApiKey::ListOffsets, ApiKey::CreateTopics] {
        let version = connection.versions().version_for(api);
        assert!(version.is_ok(), "{api:?}: {version:?}");
    }
}

#[test]
fn pipelined_produce_with_every_codec_fetches_back_in_order() {
    let Some(broker) = start_broker() else { return };
    let mut connection = connect(&broker);
    let new_topic = NewTopic { name: "client-round-trip", partitions: 2, replication_factor: -1, configs: &[] };
    let info = connection.ensure_topic(&new_topic, Duration::from_secs(10)).expect("topic ready");
    assert_eq!(info.partitions.len(), 2);

    let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
    let tickets: Vec<_> = codecs
        .iter()
        .enumerate()
        .map(|(index, codec)| {
            let request = produce_request(&info.topic, -1, 10_000, [(1, batch(*codec, index * 10, 10))]);
            connection.enqueue(&request).expect("enqueued")
        })
        .collect();
    for (index, ticket) in tickets.into_iter().enumerate() {
        let response = connection.receive(ticket).expect("produce response");
        let result = produced_partitions(&response).next().expect("one partition");
        assert_eq!(result.error, None, "codec {:?}", codecs[index]);
        assert_eq!(result.base_offset, index as i64 * 10);
    }

    let offsets = connection.list_offsets(&info.topic, &[0, 1], LATEST_TIMESTAMP).expect("latest");
    assert_eq!(offsets, [(0, 0), (1, 50)]);
    let offsets = connection.list_offsets(&info.topic, &[1], EARLIEST_TIMESTAMP).expect("earliest");
    assert_eq!(offsets, [(1, 0)]);

    let mut position = 0;
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while position < 50 && Instant::now() < deadline {
        let limits = FetchLimits { max_wait_ms: 100, ..FetchLimits::default() };
        let response = connection.fetch(&fetch_request(&info.topic, &[(1, position)], limits)).expect("fetch");
        let partition = fetched_partitions(&response).next().expect("one partition");
        assert_eq!(partition.error, None);
        for fetched in BatchIter::new(partition.records) {
            let fetched = fetched.expect("valid batch");
            for record in fetched.records() {
                let record = record.expect("valid record");
                if record.offset >= position {
                    assert_eq!(record.timestamp_ms, 1_700_000_000_000 + record.offset);
                    assert_eq!(record.headers().count(), 1);
                    values.push(String::from_utf8(record.value.expect("value").to_vec()).expect("utf8"));
                }
            }
            position = position.max(fetched.info.last_offset() + 1);
        }
    }
    let expected: Vec<String> = (0..50).map(|index| format!("record-{index:05}")).collect();
    assert_eq!(values, expected);
}
