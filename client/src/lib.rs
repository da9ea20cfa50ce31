//! A minimal blocking Kafka protocol client, shared by `produce-load` and `sluicectl`.
//!
//! It speaks the Kafka wire protocol over `std::net::TcpStream` (no async runtime) and works with
//! any Kafka-compatible broker: requests and responses are encoded by the `kafka-protocol` crate,
//! and every API is used at the highest version both the broker (as advertised in `ApiVersions`)
//! and this client support.
//!
//! Design note: what this crate owns and what it leaves to callers.
//! - [`Connection`]: framing, request header versions (flexible versions included), correlation
//!   ids, version negotiation, and pipelining (enqueue several requests, receive the responses in
//!   order), optionally split into a writer and a reader for two threads.
//! - [`requests`]: helpers for Metadata, `CreateTopics`, Produce, Fetch and `ListOffsets`.
//! - [`batch`]: a `RecordBatch` v2 builder. The uncompressed path is hand-written and allocation
//!   free in steady state, because the load generator builds over a million records per second;
//!   compressed batches use `kafka-protocol`'s codecs.
//! - [`decode`]: a zero-copy decoder for fetched batches.
//! - [`group`]: `FindCoordinator` and the consumer protocol's subscription and assignment payloads.
//!
//! Retries, partitioners, consumer groups and multi-broker routing are left to callers: this is
//! a protocol toolkit, not a full producer or consumer.
//!
//! ```no_run
//! use sluice_client::batch::{BatchBuilder, BatchOptions, NewRecord};
//! use sluice_client::requests::{produce_request, produced_partitions, NewTopic};
//! use sluice_client::{Connection, ConnectionConfig};
//! use std::time::Duration;
//!
//! let mut connection = Connection::connect("127.0.0.1:9092", &ConnectionConfig::default())?;
//! let new_topic = NewTopic { name: "events", partitions: 3, replication_factor: -1, configs: &[] };
//! let topic = connection.ensure_topic(&new_topic, Duration::from_secs(10))?;
//!
//! let mut builder = BatchBuilder::new(BatchOptions::default());
//! builder.push(&NewRecord { timestamp_ms: 1_700_000_000_000, value: Some(b"hello"), ..NewRecord::default() })?;
//! let request = produce_request(&topic.topic, -1, 30_000, [(0, builder.finish()?)]);
//! let response = connection.produce(&request)?.expect("acks=all gets a response");
//! for partition in produced_partitions(&response) {
//!     println!("partition {} offset {} error {:?}", partition.partition, partition.base_offset, partition.error);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod connection;
pub mod decode;
pub mod error;
pub mod group;
pub mod requests;
mod varint;
pub mod versions;

pub use connection::{Connection, ConnectionConfig, RequestWriter, ResponseReader, Ticket};
pub use error::{ClientError, DecodeError, EncodeError};
pub use kafka_protocol;
pub use versions::ApiVersions;
