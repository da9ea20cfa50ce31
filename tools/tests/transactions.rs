//! `sluicectl transactions` against a real `sluice` broker.
//!
//! Goal: `list`, `describe` and `producers` show an open transaction as its coordinator and its
//! partition's leader see it (state Ongoing, producer id and epoch, partitions, the first offset
//! of the open transaction), and `abort` ends a hanging transaction the way
//! `kafka-transactions.sh abort` does, so that the partition's last stable offset moves past it
//! and later committed records become readable; a wrong or ambiguous choice is refused with a
//! one-line error and a non-zero exit.
//!
//! Method: each test starts its own broker (the real binary, loopback, a temporary data
//! directory) and opens transactions with a minimal transactional producer written here over
//! the raw protocol (FindCoordinator, InitProducerId, AddPartitionsToTxn v3, a transactional
//! Produce, EndTxn), then runs the `sluicectl` binary as a user would. The last stable offset
//! and the high watermark come from ListOffsets at read_committed and read_uncommitted.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
use sluice_client::group::COORDINATOR_KEY_TRANSACTION;
use sluice_client::kafka_protocol::error::ParseResponseErrorCode;
use sluice_client::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use sluice_client::kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_client::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, InitProducerIdRequest, ListOffsetsRequest, ProducerId, TopicName,
    TransactionalId,
};
use sluice_client::kafka_protocol::protocol::StrBytes;
use sluice_client::requests::{TopicRef, produce_request, produced_partitions};
use sluice_client::{ClientError, Connection, ConnectionConfig};

/// How long a coordinator may take to be ready (its internal topic is created on first use).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A transaction timeout far longer than any test, so the coordinator never aborts one itself.
const TXN_TIMEOUT_MS: i32 = 600_000;

/// A transactional producer over the raw protocol, on a single-broker cluster (where the
/// coordinator and every partition leader are the same broker).
struct TxnProducer {
    connection: Connection,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
}

/// Retries `call` while it fails with a retriable broker error (a coordinator loading, or a
/// transaction still ending), up to [`READY_TIMEOUT`].
fn retrying<T>(what: &str, mut call: impl FnMut() -> Result<T, ClientError>) -> T {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match call() {
            Ok(answer) => return answer,
            Err(ClientError::Broker { error, .. }) if error.is_retriable() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

fn broker_error(api: ApiKey, code: i16) -> Result<(), ClientError> {
    code.err().map_or(Ok(()), |error| Err(ClientError::Broker { api, resource: String::new(), error }))
}

impl TxnProducer {
    /// InitProducerId for a new transactional id.
    fn start(address: &str, transactional_id: &str) -> Self {
        // Clients speak AddPartitionsToTxn v3 and below; v4+ is for brokers.
        let config =
            ConnectionConfig { version_caps: vec![(ApiKey::AddPartitionsToTxn, 3)], ..ConnectionConfig::default() };
        let mut connection = Connection::connect(address, &config).expect("broker answers");
        retrying("FindCoordinator", || connection.find_coordinator_of(COORDINATOR_KEY_TRANSACTION, transactional_id));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(transactional_id.to_owned()))))
            .with_transaction_timeout_ms(TXN_TIMEOUT_MS)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = retrying("InitProducerId", || {
            let response = connection.send(&request)?;
            broker_error(ApiKey::InitProducerId, response.error_code).map(|()| response)
        });
        Self {
            connection,
            transactional_id: transactional_id.to_owned(),
            producer_id: response.producer_id.0,
            epoch: response.producer_epoch,
        }
    }

    fn wire_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.transactional_id.clone()))
    }

    /// Adds `topic`-`partition` to the transaction and writes one record there (the producer's
    /// first batch on that partition); returns its offset.
    fn send(&mut self, topic: &str, partition: i32, value: &str) -> i64 {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.wire_id())
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![partition]),
            ]);
        retrying("AddPartitionsToTxn", || {
            let response = self.connection.send(&request)?;
            broker_error(ApiKey::AddPartitionsToTxn, response.error_code)?;
            let mut partitions = response.results_by_topic_v3_and_below.iter().flat_map(|t| &t.results_by_partition);
            partitions.try_for_each(|p| broker_error(ApiKey::AddPartitionsToTxn, p.partition_error_code))
        });
        let options = BatchOptions {
            producer_id: self.producer_id,
            producer_epoch: self.epoch,
            base_sequence: 0,
            transactional: true,
            ..BatchOptions::default()
        };
        let mut builder = BatchBuilder::new(options);
        let record =
            NewRecord { timestamp_ms: 1_700_000_000_000, value: Some(value.as_bytes()), ..NewRecord::default() };
        builder.push(&record).expect("one record fits");
        let batch = builder.finish().expect("encodes");
        let request = produce_request(&TopicRef::from_name(topic), -1, 30_000, [(partition, batch)])
            .with_transactional_id(Some(self.wire_id()));
        let response = self.connection.send(&request).expect("Produce answered");
        let produced = produced_partitions(&response).next().expect("one partition answered");
        assert_eq!(produced.error, None, "transactional produce to {topic}-{partition}");
        produced.base_offset
    }

    /// EndTxn: commits (or aborts) the transaction at its coordinator.
    fn end(&mut self, commit: bool) {
        let request = EndTxnRequest::default()
            .with_transactional_id(self.wire_id())
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        retrying("EndTxn", || {
            let response = self.connection.send(&request)?;
            broker_error(ApiKey::EndTxn, response.error_code)
        });
    }
}

/// ListOffsets(latest) of one partition at an isolation level (1: read_committed, the last
/// stable offset; 0: the high watermark).
fn end_offset(address: &str, topic: &str, partition: i32, isolation_level: i8) -> i64 {
    let mut connection = Connection::connect(address, &ConnectionConfig::default()).expect("broker answers");
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_string(topic.to_owned()))).with_partitions(
                vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1)],
            ),
        ]);
    let response = connection.send(&request).expect("ListOffsets answered");
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "ListOffsets of {topic}-{partition}");
    answer.offset
}

/// Waits until the last stable offset of `topic`-`partition` reaches the high watermark.
fn wait_stable(address: &str, topic: &str, partition: i32) -> i64 {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let (stable, end) = (end_offset(address, topic, partition, 1), end_offset(address, topic, partition, 0));
        if stable == end {
            return stable;
        }
        assert!(Instant::now() < deadline, "{topic}-{partition} stayed unstable: LSO {stable}, HW {end}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find<'a>(rows: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    rows.as_array().expect("a JSON array").iter().find(|row| row[key] == value)
}

#[test]
fn an_open_transaction_is_listed_described_and_shown_at_its_leader() {
    let broker = broker_or_skip!();
    let topic = support::unique("txn-show");
    broker.run(&["topics", "create", &topic, "--partitions", "2"]).ok();
    let id = support::unique("txn-show-id");
    let mut producer = TxnProducer::start(&broker.address, &id);
    assert_eq!(producer.send(&topic, 1, "open"), 0);

    let listed = broker.run(&["transactions", "list", "-o", "json"]).json();
    let row = find(&listed, "transactional_id", &id).unwrap_or_else(|| panic!("{id} is listed: {listed}"));
    assert_eq!(row["state"], "Ongoing");
    assert_eq!(row["producer_id"], producer.producer_id);
    assert!(row["coordinator"].is_i64(), "{row}");
    let ongoing = broker.run(&["transactions", "list", "--state", "ongoing", "-o", "json"]).json();
    assert!(find(&ongoing, "transactional_id", &id).is_some(), "the state filter ignores case: {ongoing}");
    let committed = broker.run(&["transactions", "list", "--state", "CompleteCommit", "-o", "json"]).json();
    assert!(find(&committed, "transactional_id", &id).is_none(), "{committed}");
    let other = (producer.producer_id + 1).to_string();
    let by_other = broker.run(&["transactions", "list", "--producer-id", &other, "-o", "json"]).json();
    assert!(find(&by_other, "transactional_id", &id).is_none(), "{by_other}");
    let own = producer.producer_id.to_string();
    let by_own = broker.run(&["transactions", "list", "--producer-id", &own, "--duration-ms", "0", "-o", "json"]);
    assert!(find(&by_own.json(), "transactional_id", &id).is_some(), "{}", by_own.stdout);
    let text = broker.run(&["transactions", "list"]).ok().to_owned();
    assert!(text.starts_with("TRANSACTIONAL-ID  ") && text.contains(&id) && text.contains("Ongoing"), "{text}");

    let described = broker.run(&["transactions", "describe", &id, "-o", "json"]).json();
    let one = &described[0];
    assert_eq!(one["transactional_id"], id.as_str());
    assert_eq!(one["state"], "Ongoing");
    assert_eq!(one["producer_id"], producer.producer_id);
    assert_eq!(one["producer_epoch"], producer.epoch);
    assert_eq!(one["timeout_ms"], TXN_TIMEOUT_MS);
    assert!(one["start_time_ms"].as_i64().is_some_and(|start| start > 0), "{one}");
    assert_eq!(one["partitions"], serde_json::json!([{"topic": topic, "partition": 1}]));
    let text = broker.run(&["transactions", "describe", &id]).ok().to_owned();
    assert!(text.contains(&format!("{topic}-1")) && text.contains("Ongoing"), "{text}");

    let shown = broker.run(&["transactions", "producers", "--topic", &topic, "-o", "json"]).json();
    let rows = shown.as_array().expect("array");
    assert_eq!(rows.len(), 1, "only partition 1 has a producer: {shown}");
    assert_eq!(rows[0]["partition"], 1);
    assert_eq!(rows[0]["producer_id"], producer.producer_id);
    assert_eq!(rows[0]["producer_epoch"], producer.epoch);
    assert_eq!(rows[0]["last_sequence"], 0);
    assert_eq!(rows[0]["current_txn_start_offset"], 0);
    let partition_zero = broker.run(&["transactions", "producers", "--topic", &topic, "-p", "0", "-o", "json"]);
    assert_eq!(partition_zero.json(), serde_json::json!([]));
    let text = broker.run(&["transactions", "producers", "--topic", &topic]).ok().to_owned();
    assert!(text.starts_with("PARTITION  PRODUCER-ID") && text.contains(&own), "{text}");

    producer.end(true);
    wait_stable(&broker.address, &topic, 1);
    let shown = broker.run(&["transactions", "producers", "--topic", &topic, "-p", "1", "-o", "json"]).json();
    assert_eq!(shown[0]["current_txn_start_offset"], Value::Null, "the commit closed it: {shown}");
}

#[test]
fn abort_ends_a_hanging_transaction_and_the_last_stable_offset_moves_on() {
    let broker = broker_or_skip!();
    let topic = support::unique("txn-abort");
    broker.run(&["topics", "create", &topic, "--partitions", "1"]).ok();
    let mut hanging = TxnProducer::start(&broker.address, &support::unique("txn-hanging"));
    assert_eq!(hanging.send(&topic, 0, "hanging"), 0);
    let mut later = TxnProducer::start(&broker.address, &support::unique("txn-later"));
    assert_eq!(later.send(&topic, 0, "committed"), 1);
    later.end(true);
    // The commit marker lands at offset 2; the hanging transaction still holds the LSO at 0.
    let deadline = Instant::now() + READY_TIMEOUT;
    while end_offset(&broker.address, &topic, 0, 0) < 3 {
        assert!(Instant::now() < deadline, "the commit marker was never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(end_offset(&broker.address, &topic, 0, 1), 0, "the open transaction holds the LSO");

    let aborted = broker.run(&["transactions", "abort", "--topic", &topic, "--partition", "0", "--start-offset", "0"]);
    let report = aborted.ok();
    let expected =
        format!("Aborted the transaction of producer {} (epoch {}) on {topic}-0", hanging.producer_id, hanging.epoch);
    assert!(report.starts_with(&expected), "{report}");
    // The abort marker at offset 3 ends it: everything up to the high watermark is stable.
    assert_eq!(wait_stable(&broker.address, &topic, 0), 4);
    let shown = broker.run(&["transactions", "producers", "--topic", &topic, "-o", "json"]).json();
    assert!(shown.as_array().expect("array").iter().all(|row| row["current_txn_start_offset"].is_null()), "{shown}");

    let again = broker.run(&["transactions", "abort", "--topic", &topic, "--partition", "0", "--start-offset", "0"]);
    assert!(again.error().contains("no open transaction on"), "{}", again.stderr);
    let none = broker.run(&["transactions", "abort", "-t", &topic, "-p", "0"]);
    assert!(none.error().contains(&format!("no open transaction on {topic}-0")), "{}", none.stderr);
}

#[test]
fn abort_chooses_by_start_offset_or_producer_id_and_refuses_to_guess() {
    let broker = broker_or_skip!();
    let topic = support::unique("txn-choose");
    broker.run(&["topics", "create", &topic, "--partitions", "1"]).ok();
    let mut first = TxnProducer::start(&broker.address, &support::unique("txn-first"));
    let mut second = TxnProducer::start(&broker.address, &support::unique("txn-second"));
    assert_eq!(first.send(&topic, 0, "a"), 0);
    assert_eq!(second.send(&topic, 0, "b"), 1);

    let ambiguous = broker.run(&["transactions", "abort", "-t", &topic, "-p", "0"]);
    let line = ambiguous.error();
    assert!(line.contains("2 open transactions") && line.contains("--start-offset"), "{line}");
    let wrong = broker.run(&["transactions", "abort", "-t", &topic, "-p", "0", "--start-offset", "7"]);
    assert!(wrong.error().contains("starts at offset 7"), "{}", wrong.stderr);
    let unknown = broker.run(&["transactions", "abort", "-t", &topic, "-p", "0", "--producer-id", "123456789"]);
    assert!(unknown.error().contains("has no producer 123456789"), "{}", unknown.stderr);

    let second_id = second.producer_id.to_string();
    let report =
        broker.run(&["transactions", "abort", "-t", &topic, "-p", "0", "--producer-id", &second_id, "-o", "json"]);
    let report = report.json();
    assert_eq!(report["producer_id"], second.producer_id);
    assert_eq!(report["start_offset"], 1);
    assert_eq!(report["aborted"], true);
    // Sluice's leaders report no coordinator epoch (-1), and abort sends what was reported.
    assert_eq!(report["coordinator_epoch"], -1);
    assert_eq!(end_offset(&broker.address, &topic, 0, 1), 0, "the first transaction is still open");

    let rest = broker.run(&["transactions", "abort", "-t", &topic, "-p", "0", "-o", "json"]).json();
    assert_eq!(rest["producer_id"], first.producer_id, "the only open transaction left");
    assert_eq!(wait_stable(&broker.address, &topic, 0), 4);
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let broker = broker_or_skip!();
    let unknown = broker.run(&["transactions", "describe", "no-such-transactional-id"]);
    assert!(unknown.error().contains("unknown transactional id no-such-transactional-id"), "{}", unknown.stderr);
    let no_topic = broker.run(&["transactions", "producers", "--topic", "no-such-topic"]);
    assert!(no_topic.error().contains("unknown topic no-such-topic"), "{}", no_topic.stderr);
    let topic = support::unique("txn-errors");
    broker.run(&["topics", "create", &topic]).ok();
    let no_partition = broker.run(&["transactions", "producers", "--topic", &topic, "-p", "9"]);
    assert!(no_partition.error().contains("no partition 9"), "{}", no_partition.stderr);
    let abort = broker.run(&["transactions", "abort", "--topic", &topic, "--partition", "9"]);
    assert!(abort.error().contains("no partition 9"), "{}", abort.stderr);
    let bad_state = broker.run(&["transactions", "list", "--state", "Sleeping"]);
    assert_ne!(bad_state.status, 0);
    assert!(bad_state.stderr.contains("Ongoing"), "the valid states are named: {}", bad_state.stderr);
}

#[test]
fn help_names_every_subcommand_and_the_abort_choices() {
    let help = support::run_raw(&["transactions", "--help"], b"");
    let text = help.ok();
    for subcommand in ["list", "describe", "producers", "abort"] {
        assert!(text.lines().any(|line| line.trim_start().starts_with(subcommand)), "{subcommand}: {text}");
    }
    let abort = support::run_raw(&["transactions", "abort", "--help"], b"");
    let text = abort.ok();
    for flag in ["--topic", "--partition", "--producer-id", "--start-offset"] {
        assert!(text.contains(flag), "{flag}: {text}");
    }
    assert!(support::run_raw(&["--help"], b"").ok().contains("transactions"));
}
