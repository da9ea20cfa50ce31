#![allow(
    clippy::doc_markdown,
    reason = "docs name Kafka APIs and configs (ApiVersions, SO_REUSEPORT) as Kafka writes them"
)]
//! # sluice-broker
//!
//! The Kafka wire-protocol frontend of Sluice: existing Kafka clients talk to it unchanged, and
//! it stores their data in the [`sluice_engine`] log engine.
//!
//! ## Design
//! Every engine shard thread also serves connections: each binds the broker's port with
//! SO_REUSEPORT and runs an accept loop, so a connection lives on the shard the kernel gave it.
//! A request is decoded there (with the `kafka-protocol` crate), its partition operations are
//! sent to the partitions' owning shards through the engine, and the answers are gathered and
//! encoded back on the connection's shard. Pipelined requests run concurrently but are
//! answered in request order (see `net::connection`). Connection state is `!Send` and never
//! leaves its shard.
//!
//! Module map: `config` (flags, environment, TOML), `net` (listeners, connections, framing,
//! limits), `dispatch` (API key to handler), `handlers` (one file per API), `error` (engine
//! errors to Kafka codes), `metrics` (Prometheus), `groups` (the consumer group
//! coordinator and committed offsets).
//!
//! ## Example
//! ```no_run
//! use sluice_broker::{Broker, BrokerConfig};
//!
//! let config = BrokerConfig::new("./data", "127.0.0.1:9092".parse().expect("address"));
//! let broker = Broker::start(config).expect("start");
//! println!("serving Kafka on {}", broker.local_addr());
//! broker.shutdown();
//! ```

mod clock;
pub mod config;
mod context;
mod crash;
mod dispatch;
mod error;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod handlers;
pub mod memory;
mod metadata;
mod metrics;
mod net;
mod producer_ids;
pub mod signals;
#[doc(hidden)]
pub mod testing;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::io::FaultInjector;
use sluice_engine::{Engine, EngineConfig, OpenError, ShardId};
use thiserror::Error;

pub use config::{Args, BrokerConfig, ConfigError, Limits};

use context::{ClusterIdentity, ShardContext, Shared, Shutdown};
use metrics::ShardMetrics;
use net::limits::ConnectionCounter;
use producer_ids::ProducerIdAllocator;

/// The file, in the data directory, holding the cluster id.
const CLUSTER_ID_FILE_NAME: &str = "broker-cluster-id";

/// Why the broker did not start. Its `Display` is one line naming what failed and why.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The Kafka listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics listener could not be bound.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The engine did not open.
    #[error("cannot open the data directory: {0}")]
    Engine(#[from] OpenError),
    /// A broker file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster metadata could not be loaded or brought in line.
    #[error("metadata: {reason}")]
    Metadata {
        /// What went wrong.
        reason: String,
    },
    /// A shard refused the listener task (the engine stopped while starting).
    #[error("shard {shard} is not running")]
    Shard {
        /// The shard.
        shard: u16,
    },
}

/// A running broker. Dropping it without [`Broker::shutdown`] leaves it serving until the
/// process exits.
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
}

impl Broker {
    /// Binds the listeners, opens the engine, and starts serving on every shard.
    ///
    /// # Errors
    /// [`StartError`]: invalid config, address in use, unusable data directory.
    pub fn start(config: BrokerConfig) -> Result<Self, StartError> {
        config.validate()?;
        let shard_count = config.shard_count.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |count| count.get().min(usize::from(u16::MAX)) as u16)
        });
        let listen_error = |source| StartError::Listen { address: config.listen, source };
        let listeners = net::listener::bind_all(config.listen, shard_count).map_err(listen_error)?;
        let local_addr = listeners[0].local_addr().map_err(listen_error)?;
        let metrics_listener = match config.metrics_listen {
            Some(address) => {
                Some(TcpListener::bind(address).map_err(|source| StartError::Metrics { address, source })?)
            }
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|listener| listener.local_addr().ok());
        let mut engine_config = EngineConfig::new(&config.data_dir);
        engine_config.shard_count = Some(shard_count);
        engine_config.pin_shards = config.pin_shards;
        engine_config.preallocate_bytes = config.preallocate_bytes;
        engine_config.writeback_bytes = config.writeback_bytes;
        engine_config.compaction_map_bytes = config.compaction_map_bytes;
        engine_config.retention_check_interval_ms = config.retention_check_interval_ms;
        engine_config.default_topic_config = config.default_topic_config.clone();
        let faults = faults::enabled_by_environment().then(|| Arc::new(FaultInjector::new()));
        if faults.is_some() {
            tracing::warn!("{}=1: storage fault injection is armed through the metrics listener", faults::ENV_VAR);
        }
        engine_config.faults.clone_from(&faults);
        engine_config.clock = config.clock.clone();
        // Startup runs in a fixed order: recover the logs (the engine, in parallel), load the
        // metadata, start every shard's context, bring the logs in line with the metadata and
        // load the coordinators of the partitions this broker leads, and only then accept
        // clients. Connections arriving meanwhile wait in the listen backlog.
        let engine = Engine::open(engine_config)?;
        let started = shared_state(config, engine.clone(), local_addr, faults)
            .map(Arc::new)
            .and_then(|shared| prepare_shards(&shared).map(|()| shared));
        let shared = match started {
            Ok(shared) => shared,
            Err(error) => {
                engine.shutdown();
                return Err(error);
            }
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let shard = ShardId(index as u16);
            let spawned = engine.spawn_on(shard, move || async move {
                let context = ShardContext::current().expect("every shard's context is installed before accepting");
                crash::abort_on_panic("accept loop", net::listener::accept_loop(listener, context)).await;
            });
            if !spawned {
                engine.shutdown();
                return Err(StartError::Shard { shard: shard.0 });
            }
        }
        if let Some(listener) = metrics_listener {
            let metrics_shared = shared.clone();
            let started = std::thread::Builder::new()
                .name("sluice-metrics".to_owned())
                .spawn(move || metrics::serve(&listener, &metrics_shared));
            if let Err(source) = started {
                engine.shutdown();
                return Err(StartError::Metrics { address: metrics_addr.unwrap_or(local_addr), source });
            }
        }
        let identity = &shared.identity;
        tracing::info!(%local_addr, advertised = %format!("{}:{}", identity.host, identity.port), shards = shard_count, "serving");
        Ok(Self { shared, local_addr, metrics_addr })
    }

    /// The address the Kafka listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the metrics endpoint is bound to, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting, answers the requests already read (waiting up to the configured
    /// shutdown timeout), then flushes and stops the engine. Returns whether every connection
    /// closed in time.
    pub fn shutdown(self) -> bool {
        self.shared.shutdown.trigger();
        let timeout = Duration::from_millis(self.shared.config.shutdown_timeout_ms);
        let drained = self.shared.connections.wait_all_closed(clock::startup_now() + timeout);
        if !drained {
            tracing::warn!(open = self.shared.connections.open_count(), "connections still open at shutdown timeout");
        }
        self.shared.engine.shutdown();
        tracing::info!("stopped");
        drained
    }
}

/// Steps 3 and 4 of startup: installs every shard's context (its coordinators started), then
/// has the metadata align this broker's logs and roles, which loads the coordinators of the
/// offsets partitions it leads; creates the offsets topic when the cluster has none.
fn prepare_shards(shared: &Arc<Shared>) -> Result<(), StartError> {
    let engine = &shared.engine;
    for index in 0..engine.shard_count() {
        let shard = ShardId(index);
        let (sender, receiver) = std::sync::mpsc::channel();
        let task_shared = shared.clone();
        let spawned = engine.spawn_on(shard, move || async move {
            ShardContext::install(task_shared, shard);
            let _startup_waits = sender.send(());
        });
        if !spawned || receiver.recv().is_err() {
            return Err(StartError::Shard { shard: index });
        }
    }
    let metadata = &shared.metadata;
    metadata.set_listeners(vec![Arc::new(groups::GroupLeadership::new(engine.clone()))]);
    let identity = &shared.identity;
    let registration = metadata::image::BrokerRegistration {
        node_id: identity.node_id,
        incarnation: clock::entropy(),
        host: identity.host.clone(),
        port: identity.port,
        rack: None,
        fenced: false,
    };
    let metadata_error = |error: metadata::WriteError| StartError::Metadata { reason: error.to_string() };
    sluice_engine::block_on(metadata.start(registration)).map_err(metadata_error)?;
    sluice_engine::block_on(groups::ensure_offsets_topic(shared))
        .map_err(|refusal| StartError::Metadata { reason: refusal.message })?;
    Ok(())
}

fn shared_state(
    config: BrokerConfig,
    engine: Engine,
    local_addr: SocketAddr,
    faults: Option<Arc<FaultInjector>>,
) -> Result<Shared, StartError> {
    let cluster_id = load_or_create_cluster_id(&config.data_dir)?;
    let producer_ids = ProducerIdAllocator::open(&config.data_dir)
        .map_err(|source| StartError::State { path: config.data_dir.join(producer_ids::FILE_NAME), source })?;
    let (host, port) = advertised_address(config.advertise.as_deref(), local_addr);
    let identity = ClusterIdentity { cluster_id, node_id: config.node_id, host, port };
    let shard_count = usize::from(engine.shard_count());
    let clock = config.clock.clone();
    let defaults = metadata::Defaults { partition_count: config.num_partitions, replication_factor: 1 };
    let metadata =
        metadata::Metadata::open(&config.data_dir, &identity.cluster_id, config.node_id, engine.clone(), defaults)
            .map_err(|error| StartError::Metadata { reason: error.to_string() })?;
    Ok(Shared {
        engine,
        connections: ConnectionCounter::new(config.limits.connection_count_max),
        config,
        identity,
        producer_ids,
        shutdown: Shutdown::default(),
        metrics: (0..shard_count).map(|_| ShardMetrics::new()).collect(),
        faults,
        clock,
        metadata: Arc::new(metadata),
    })
}

/// The host and port clients are told to connect to.
///
/// An explicit `HOST:PORT` (or `HOST`, keeping the bound port) wins. Otherwise the bound address
/// is used, with an unspecified IP (0.0.0.0 or ::) replaced by the address this host would use
/// to reach other hosts, or loopback when it has none.
fn advertised_address(advertise: Option<&str>, local_addr: SocketAddr) -> (String, i32) {
    let port = i32::from(local_addr.port());
    if let Some(text) = advertise {
        return match text.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
            Some((host, Ok(port))) if !host.is_empty() => (host.trim_matches(['[', ']']).to_owned(), i32::from(port)),
            _ => (text.to_owned(), port),
        };
    }
    if !local_addr.ip().is_unspecified() {
        return (local_addr.ip().to_string(), port);
    }
    (reachable_ip().unwrap_or_else(|| "127.0.0.1".to_owned()), port)
}

/// The local address of the route to a public address. Connecting a UDP socket sends nothing.
fn reachable_ip() -> Option<String> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9092").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// Reads the cluster id from the data directory, or creates one (22 URL-safe base64 characters
/// of 16 random bytes, as Kafka's ids are).
fn load_or_create_cluster_id(data_dir: &Path) -> Result<String, StartError> {
    let path = data_dir.join(CLUSTER_ID_FILE_NAME);
    let state_error = |source| StartError::State { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(state_error(error)),
    }
    let id = new_cluster_id();
    sluice_engine::io::write_atomic(&path, format!("{id}\n").as_bytes()).map_err(state_error)?;
    Ok(id)
}

fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        half.copy_from_slice(&clock::entropy().to_be_bytes());
    }
    let mut bits = u128::from_be_bytes(bytes);
    (0..22)
        .map(|_| {
            let index = (bits & 63) as usize;
            bits >>= 6;
            char::from(ALPHABET[index])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_advertise_wins_and_keeps_its_port() {
        let local: SocketAddr = "0.0.0.0:9092".parse().expect("literal");
        assert_eq!(advertised_address(Some("broker.example:19092"), local), ("broker.example".to_owned(), 19092));
        assert_eq!(advertised_address(Some("broker.example"), local), ("broker.example".to_owned(), 9092));
    }

    #[test]
    fn unspecified_listen_address_is_replaced() {
        let local: SocketAddr = "0.0.0.0:9092".parse().expect("literal");
        let (host, port) = advertised_address(None, local);
        assert_ne!(host, "0.0.0.0");
        assert_eq!(port, 9092);
        let loopback: SocketAddr = "127.0.0.1:5".parse().expect("literal");
        assert_eq!(advertised_address(None, loopback), ("127.0.0.1".to_owned(), 5));
    }

    #[test]
    fn cluster_id_persists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create_cluster_id(dir.path()).expect("create");
        assert_eq!(first.len(), 22);
        assert_eq!(load_or_create_cluster_id(dir.path()).expect("read"), first);
    }
}
