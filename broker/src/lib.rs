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
mod controller;
mod crash;
mod dispatch;
mod dynamic_config;
mod error;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod handlers;
mod leadership;
pub mod memory;
mod metadata;
mod metrics;
mod net;
mod producer_ids;
mod quota;
mod record_codec;
mod replication;
mod security;
pub mod signals;
#[doc(hidden)]
pub mod testing;
mod transactions;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::io::FaultInjector;
use sluice_engine::{Engine, EngineConfig, OpenError, ShardId};
use thiserror::Error;

pub use config::{Args, BrokerConfig, ConfigError, Limits, ProcessRoles, QuorumVoter};
/// The client's side of SASL/SCRAM, for tools that authenticate to a broker (`sluicectl`).
#[doc(hidden)]
pub use security::sasl::scram::{ScramClient, ScramMechanism};

use context::{ShardContext, Shared, Shutdown};
use metrics::ShardMetrics;
use net::limits::ConnectionCounter;
use producer_ids::ProducerIds;

/// The file, in the data directory, recording the id of the cluster it belongs to.
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
    /// The controller listener could not be bound.
    #[error("cannot listen for controllers on {address}: {source}")]
    ControllerListen {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The node cannot join the cluster (another cluster's data directory, no quorum).
    #[error("cluster: {reason}")]
    Cluster {
        /// What went wrong.
        reason: String,
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
        let listener_set = config.listener_set();
        let bound = net::listener::bind_listeners(&listener_set, shard_count)
            .map_err(|(address, source)| StartError::Listen { address, source })?;
        let local_addr = bound.addresses[0];
        let tls_error = |error: security::tls::TlsError| {
            StartError::Config(ConfigError::Invalid { setting: "ssl-certificate", reason: error.to_string() })
        };
        let server_tls = if listener_set.uses_tls() {
            Some(security::tls::load_server(&config.tls).map_err(tls_error)?)
        } else {
            None
        };
        let peers = net::peer::Connector::from_config(&config).map_err(|error| {
            StartError::Config(ConfigError::Invalid { setting: "ssl-ca", reason: error.to_string() })
        })?;
        let metrics_listener = match config.metrics_listen {
            Some(address) => {
                Some(TcpListener::bind(address).map_err(|source| StartError::Metrics { address, source })?)
            }
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|listener| listener.local_addr().ok());
        let controller_listener = match config.controller_listen {
            Some(address) => {
                Some(TcpListener::bind(address).map_err(|source| StartError::ControllerListen { address, source })?)
            }
            None => None,
        };
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
        // Startup runs in a fixed order: recover the logs (the engine, in parallel), start
        // every shard's context, start the controller thread (which replays the metadata log),
        // join the cluster and register, catch up with the metadata log (bringing the logs in
        // line with it and loading the coordinators of the partitions this broker leads), and
        // only then accept clients. Connections arriving meanwhile wait in the listen backlog.
        let engine = Engine::open(engine_config)?;
        let shared = Arc::new(shared_state(config, engine.clone(), &bound.addresses, faults, peers));
        if let Err(error) = prepare_shards(&shared, controller_listener) {
            if let Some(controller) = shared.metadata.controller() {
                controller.stop(false);
            }
            engine.shutdown();
            return Err(error);
        }
        for (index, sockets) in bound.shards.into_iter().enumerate() {
            let shard = ShardId(index as u16);
            let listeners = listener_set.listeners.clone();
            let serving = net::listener::ShardListeners { sockets, listeners, tls: server_tls.clone() };
            let spawned = engine.spawn_on(shard, move || async move {
                let context = ShardContext::current().expect("every shard's context is installed before accepting");
                crash::abort_on_panic("accept loop", net::listener::serve(serving, context)).await;
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
        let clustered = self.shared.config.clustered();
        let controller = self.shared.metadata.controller();
        if clustered && let Some(controller) = controller {
            // Controlled shutdown, while still serving: the controller moves what this broker
            // leads to other in-sync replicas, and once this broker's image shows it, clients
            // asking here are told the new leaders (KIP-951) instead of finding a closed port.
            controller.stop(true);
        }
        self.shared.shutdown.trigger(&self.shared.engine);
        if !clustered && let Some(controller) = controller {
            controller.stop(false);
        }
        // Fetchers end; acks=all appends still waiting for followers answer NOT_LEADER_OR_FOLLOWER.
        self.shared.metadata.replication().stop();
        let timeout = Duration::from_millis(self.shared.config.shutdown_timeout_ms);
        let drained = self.shared.connections.wait_all_closed(clock::startup_now() + timeout);
        if !drained {
            tracing::warn!(open = self.shared.connections.open_count(), "connections still open at shutdown timeout");
        }
        self.shared.engine.shutdown();
        if clustered && let Err(error) = mark_clean_shutdown(&self.shared.config.data_dir) {
            tracing::warn!(%error, "could not write the clean-shutdown mark");
        }
        tracing::info!("stopped");
        drained
    }
}

/// The file a clustered broker writes once it has stopped cleanly, every log flushed. Found (and
/// removed) at the next start, it tells the controller that this broker lost nothing; without
/// it (a crash, a power loss) the broker leaves the eligible leader replicas it was in, as
/// Kafka's controller does (KIP-966), since records it had not flushed may be gone.
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

fn mark_clean_shutdown(data_dir: &std::path::Path) -> std::io::Result<()> {
    let path = data_dir.join(CLEAN_SHUTDOWN_FILE);
    let file = std::fs::File::create(&path)?;
    file.sync_all()?;
    sluice_engine::io::sync_dir(data_dir)
}

/// Whether the last stop was clean; removes the mark durably first, so that a crash of this run
/// is not taken for a clean stop at the next start.
fn take_clean_shutdown_mark(data_dir: &std::path::Path) -> std::io::Result<bool> {
    let path = data_dir.join(CLEAN_SHUTDOWN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            sluice_engine::io::sync_dir(data_dir)?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Steps 2 to 4 of startup: installs every shard's context (its coordinators started), starts
/// the controller thread, joins the cluster (checking its id) and registers this broker, which
/// returns once this broker has caught up with the metadata log (a node of a cluster publishes
/// nothing before: see `controller`'s module docs); a single node creates the offsets topic
/// when it has none (a cluster creates it at the first FindCoordinator, once its brokers have
/// registered, so that its partitions spread over them).
fn prepare_shards(shared: &Arc<Shared>, controller_listener: Option<TcpListener>) -> Result<(), StartError> {
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
    metadata.set_listeners(vec![
        Arc::new(groups::leadership(engine.clone())),
        Arc::new(transactions::leadership(engine.clone())),
    ]);
    let config = &shared.config;
    let identity = &shared.identity;
    let controller_address = match &controller_listener {
        Some(listener) => {
            let bound = listener.local_addr().map_err(|source| StartError::ControllerListen {
                address: config.controller_listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
            let (host, port) = advertised_address(None, bound);
            format!("{host}:{port}")
        }
        None => String::new(),
    };
    let setup = controller::Setup {
        node_id: identity.node_id,
        data_dir: config.data_dir.clone(),
        voters: config.quorum_voters.iter().map(|voter| (voter.node_id, voter.address.clone())).collect(),
        voter: config.process_roles.controller,
        listener: controller_listener,
        address: controller_address,
        session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
        heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
        snapshot_entries: config.metadata_snapshot_entries,
        clock: config.clock.clone(),
        transport: Arc::new(security::controller_listener::ControllerTransport::from_config(config)?),
    };
    let handle =
        controller::Handle::start(setup, metadata.clone()).map_err(|reason| StartError::Metadata { reason })?;
    metadata.set_controller(handle);
    join_cluster(shared)?;
    let clean_restart = take_clean_shutdown_mark(&config.data_dir)
        .map_err(|error| StartError::Cluster { reason: format!("cannot clear the clean-shutdown mark: {error}") })?;
    let registration = metadata::image::BrokerRegistration {
        node_id: identity.node_id,
        incarnation: clock::entropy(),
        host: identity.host.clone(),
        port: identity.port,
        rack: None,
        // A node of a cluster leads nothing until it has caught up with the metadata log; the
        // controller thread unfences it then. A single node is the whole cluster.
        fenced: config.clustered(),
        clean_restart,
        listeners: identity.listeners.clone(),
    };
    let controller = metadata.controller().expect("set above");
    match sluice_engine::block_on(controller.register(registration)) {
        controller::wire::ControllerAnswer::Done { .. } => {}
        answer => {
            return Err(StartError::Cluster { reason: format!("registration with the controller failed: {answer:?}") });
        }
    }
    security::sasl::bootstrap::add_scram_users(metadata, &config.sasl.add_scram)
        .map_err(|reason| StartError::Metadata { reason })?;
    if !config.clustered() {
        sluice_engine::block_on(groups::ensure_offsets_topic(shared))
            .map_err(|refusal| StartError::Metadata { reason: refusal.message })?;
    }
    Ok(())
}

/// Settles the cluster id: the metadata log's, or, for a new log, the one this node brings (its
/// `--cluster-id`, the id its data directory recorded, or a new one), written with what an
/// older single-broker data directory held. Refuses a data directory or a `--cluster-id` of
/// another cluster.
fn join_cluster(shared: &Shared) -> Result<(), StartError> {
    let config = &shared.config;
    let recorded = read_cluster_id(&config.data_dir)?;
    if let (Some(pinned), Some(recorded)) = (&config.cluster_id, &recorded)
        && pinned != recorded
    {
        return Err(StartError::Cluster {
            reason: format!(
                "the data directory {} belongs to cluster {recorded}, not {pinned} (--cluster-id)",
                config.data_dir.display()
            ),
        });
    }
    let proposed = config.cluster_id.clone().or_else(|| recorded.clone()).unwrap_or_else(new_cluster_id);
    let adopt = if config.clustered() {
        Vec::new()
    } else {
        metadata::store::adopt(&config.data_dir, config.node_id, &shared.engine)
            .map_err(|error| StartError::Metadata { reason: error.to_string() })?
    };
    let adopted =
        adopt.iter().filter(|record| matches!(record, metadata::records::MetadataRecord::CreateTopic { .. })).count();
    let request = controller::wire::ControllerRequest::InitCluster { cluster_id: proposed.clone(), adopt };
    let controller = shared.metadata.controller().expect("the controller runs");
    let (cluster_id, created) = match sluice_engine::block_on(controller.call(request)) {
        controller::wire::ControllerAnswer::Done {
            outcome: controller::wire::Outcome::Cluster { cluster_id, created },
            ..
        } => (cluster_id, created),
        answer => return Err(StartError::Cluster { reason: format!("no controller quorum answered: {answer:?}") }),
    };
    if let Some(pinned) = &config.cluster_id
        && *pinned != cluster_id
    {
        return Err(StartError::Cluster {
            reason: format!("the controller quorum runs cluster {cluster_id}, not {pinned} (--cluster-id)"),
        });
    }
    if let Some(recorded) = &recorded
        && *recorded != cluster_id
    {
        return Err(StartError::Cluster {
            reason: format!(
                "the data directory {} belongs to cluster {recorded}, but the controller quorum runs cluster {cluster_id}",
                config.data_dir.display()
            ),
        });
    }
    if recorded.is_none() {
        let path = config.data_dir.join(CLUSTER_ID_FILE_NAME);
        sluice_engine::io::write_atomic(&path, format!("{cluster_id}\n").as_bytes())
            .map_err(|source| StartError::State { path, source })?;
    }
    if created && !config.clustered() {
        if adopted > 0 {
            tracing::info!(topics = adopted, "metadata: the metadata log took over the topics of the data directory");
        }
        metadata::store::remove_adopted(&config.data_dir);
    }
    tracing::info!(%cluster_id, node_id = config.node_id, "joined the cluster");
    Ok(())
}

fn shared_state(
    config: BrokerConfig,
    engine: Engine,
    bound: &[SocketAddr],
    faults: Option<Arc<FaultInjector>>,
    peers: net::peer::Connector,
) -> Shared {
    let identity = security::listeners::identity(&config, bound);
    let shard_count = usize::from(engine.shard_count());
    let clock = config.clock.clone();
    let defaults = metadata::Defaults {
        partition_count: config.num_partitions,
        replication_factor: config.default_replication_factor,
    };
    let replication = replication::Replication::new(
        config.node_id,
        Duration::from_millis(config.replica_lag_time_max_ms),
        config.replica_fsync,
        clock.clone(),
    );
    let metadata = Arc::new(metadata::Metadata::new(config.node_id, engine.clone(), defaults, replication));
    metadata.replication().set_metadata(&metadata);
    metadata.replication().set_connector(peers.clone());
    let shards = engine.shard_count();
    let quotas = quota::Quotas::new(quota::rate::WindowConfig::of(&config), clock.now());
    Shared {
        engine,
        connections: ConnectionCounter::new(config.limits.connection_count_max),
        config,
        identity,
        producer_ids: ProducerIds::default(),
        shutdown: Shutdown::new(shards),
        metrics: (0..shard_count).map(|_| ShardMetrics::new()).collect(),
        faults,
        clock,
        metadata,
        quotas,
        peers,
    }
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

/// The cluster id the data directory recorded, if any.
fn read_cluster_id(data_dir: &Path) -> Result<Option<String>, StartError> {
    let path = data_dir.join(CLUSTER_ID_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::State { path, source }),
    }
}

/// A new cluster id: 22 URL-safe base64 characters of 16 random bytes, as Kafka's ids are.
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
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
        assert_ne!(id, new_cluster_id());
    }
}
