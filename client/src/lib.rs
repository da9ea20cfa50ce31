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
//!   order), optionally split into a writer and a reader for two threads; over plain TCP or
//!   TLS (rustls, `ConnectionConfig::tls`), with an [`Authenticate`] step (SASL) that the
//!   caller supplies run on every new connection.
//! - [`requests`]: helpers for Metadata, `CreateTopics`, Produce, Fetch and `ListOffsets`.
//! - [`batch`] and [`decode`]: the `RecordBatch` v2 builder and the decoder for fetched batches,
//!   re-exported from the `sluice-batch` crate that the broker and engine use too.
//! - [`group`]: `FindCoordinator` (of groups and transactional ids) and the consumer protocol's
//!   subscription and assignment payloads.
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

pub mod connection;
pub mod error;
pub mod group;
pub mod requests;
mod transport;
pub mod versions;

pub use connection::{Authenticate, Connection, ConnectionConfig, RequestWriter, ResponseReader, Ticket};
pub use error::ClientError;
pub use kafka_protocol;
pub use sluice_batch::builder as batch;
pub use sluice_batch::builder::EncodeError;
pub use sluice_batch::decode;
pub use sluice_batch::decode::DecodeError;
pub use versions::ApiVersions;
