//! Broker configuration: built-in defaults, a TOML file (`--config`), `SLUICE_*` environment
//! variables and command-line flags, in increasing precedence. Resolved and validated once at
//! startup, then read-only and shared by every shard thread through an `Arc`.
//!
//! Broker settings that Kafka also has accept Kafka's names in the TOML file
//! (`num.partitions`, `auto.create.topics.enable`, `socket.request.max.bytes`, `max.connections`,
//! `node.id`, `process.roles`, `controller.quorum.voters`, ...); default topic configs always use
//! Kafka's topic config names (`retention.ms`, ...).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use sluice_engine::TopicConfig;
use thiserror::Error;

pub mod sasl;

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const REQUEST_SIZE_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;

/// Why the configuration was rejected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file does not parse.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// An address does not parse or resolve.
    #[error("{setting}: cannot resolve address {value:?}")]
    Address {
        /// The setting.
        setting: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A default topic config is unknown or invalid.
    #[error("default topic config {entry:?}: {source}")]
    TopicConfig {
        /// The rejected entry.
        entry: String,
        /// What is wrong.
        #[source]
        source: sluice_engine::ConfigError,
    },
    /// A value is out of range.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Command-line flags; each may also come from its `SLUICE_*` environment variable.
#[derive(Debug, Default, Parser)]
#[command(name = "sluice", version, about = "A Kafka-compatible broker")]
pub struct Args {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve the Kafka protocol on [default: 0.0.0.0:9092].
    #[arg(long, env = "SLUICE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address returned to clients in Metadata [default: the listen address].
    #[arg(long, env = "SLUICE_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (threads) [default: one per available core].
    #[arg(long, env = "SLUICE_SHARDS", value_name = "N")]
    pub shards: Option<u16>,
    /// Address of the Prometheus metrics endpoint [default: off].
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// This broker's node id [default: 1].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Create unknown topics when a client asks for their metadata [default: true].
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic, Kafka's `num.partitions` [default: 1].
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Default topic config with Kafka's name, e.g. `retention.ms=3600000`; repeatable.
    #[arg(long = "topic-config", env = "SLUICE_TOPIC_CONFIG", value_delimiter = ',', value_name = "NAME=VALUE")]
    pub topic_configs: Vec<String>,
    /// Largest request accepted, Kafka's `socket.request.max.bytes` [default: 104857600].
    #[arg(long, env = "SLUICE_MAX_REQUEST_SIZE_BYTES", value_name = "BYTES")]
    pub max_request_size_bytes: Option<u32>,
    /// Most client connections open at once [default: 10000].
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// Most requests one connection may have in flight [default: 32].
    #[arg(long, env = "SLUICE_MAX_IN_FLIGHT_REQUESTS", value_name = "N")]
    pub max_in_flight_requests: Option<u32>,
    /// Request bytes one connection may hold in flight [default: 134217728].
    #[arg(long, env = "SLUICE_CONNECTION_MEMORY_BYTES_MAX", value_name = "BYTES")]
    pub connection_memory_bytes_max: Option<u64>,
    /// Pin each shard thread to a core [default: true].
    #[arg(long, env = "SLUICE_PIN_SHARDS", value_name = "BOOL")]
    pub pin_shards: Option<bool>,
    /// How far ahead of acks=all appends a partition keeps its active segment written with
    /// synced zeros, so that each fsync writes data only; 0 turns it off [default: 2097152].
    #[arg(long, env = "SLUICE_PREALLOCATE_BYTES", value_name = "BYTES")]
    pub preallocate_bytes: Option<u64>,
    /// Start writeback of a partition's acks=0/1 appends every this many bytes, so dirty page
    /// cache never piles up until the kernel throttles every write; 0 leaves it to the kernel
    /// [default: 4194304].
    #[arg(long, env = "SLUICE_WRITEBACK_BYTES", value_name = "BYTES")]
    pub writeback_bytes: Option<u64>,
    /// Memory for the key map of one compaction pass; each shard runs one pass at a time, and
    /// a pass whose map fills cleans up to there and leaves the rest to the next [default:
    /// 134217728].
    #[arg(long, env = "SLUICE_COMPACTION_MAP_BYTES", value_name = "BYTES")]
    pub compaction_map_bytes: Option<u64>,
    /// How often each shard applies retention, time-based rolls and compaction, in ms, in
    /// steps of 100 ms [default: 30000].
    #[arg(long, env = "SLUICE_RETENTION_CHECK_INTERVAL_MS", value_name = "MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// What this node runs: `broker,controller`, or `broker` to follow a quorum of other nodes
    /// [default: broker,controller].
    #[arg(long, env = "SLUICE_PROCESS_ROLES", value_name = "ROLES")]
    pub process_roles: Option<String>,
    /// Address of this node's controller listener, where quorum nodes reach each other; needed
    /// with --controller-quorum-voters [default: none, for a single node].
    #[arg(long, env = "SLUICE_CONTROLLER_LISTEN", value_name = "HOST:PORT")]
    pub controller_listen: Option<String>,
    /// The controller listener's name, Kafka's `controller.listener.names`: its security protocol
    /// (PLAINTEXT, SSL with client certificates both ways, or SASL_SSL/SASL_PLAINTEXT with PLAIN
    /// against --sasl-plain-users-file, as --inter-broker-sasl-username) comes from
    /// --listener-security-protocol-map, its address from its `NAME://HOST:PORT` entry in
    /// --listeners or from --controller-listen [default: none, a PLAINTEXT controller listener].
    #[arg(long, env = "SLUICE_CONTROLLER_LISTENER_NAMES", value_name = "NAME")]
    pub controller_listener_names: Option<String>,
    /// The controller quorum, Kafka's `controller.quorum.voters`: `ID@HOST:PORT,...`
    /// [default: none, this node alone].
    #[arg(long, env = "SLUICE_CONTROLLER_QUORUM_VOTERS", value_name = "ID@HOST:PORT,...")]
    pub controller_quorum_voters: Option<String>,
    /// The cluster id this node must belong to [default: the one it joins, or a new one].
    #[arg(long, env = "SLUICE_CLUSTER_ID", value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Replication factor of auto-created topics and of CreateTopics requests that ask for the
    /// default, Kafka's `default.replication.factor` [default: 1].
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", value_name = "N")]
    pub default_replication_factor: Option<i16>,
    /// How long the controller waits for a broker's heartbeat before fencing it, Kafka's
    /// `broker.session.timeout.ms` [default: 9000].
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often a broker heartbeats to the controller, Kafka's `broker.heartbeat.interval.ms`
    /// [default: 2000].
    #[arg(long, env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// Entries of the metadata log between two snapshots of the metadata image; older entries are
    /// then dropped, and a node too far behind receives the snapshot [default: 1000].
    #[arg(long, env = "SLUICE_METADATA_SNAPSHOT_ENTRIES", value_name = "N")]
    pub metadata_snapshot_entries: Option<u64>,
    /// How long a follower may go without catching up with its leader before the leader drops
    /// it from the ISR, Kafka's `replica.lag.time.max.ms` [default: 30000].
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", value_name = "MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Whether a follower fsyncs what it fetched before its next fetch reports it to the leader,
    /// so that acks=all means fsynced on every in-sync replica; `false` counts a replica once the
    /// batch is written there, as Kafka does [default: true].
    #[arg(long, env = "SLUICE_REPLICA_FSYNC", value_name = "BOOL")]
    pub replica_fsync: Option<bool>,
    /// Listeners in Kafka's form, `NAME://HOST:PORT,...` (`PLAINTEXT://:9092,SSL://:9093`);
    /// replaces --listen [default: PLAINTEXT at the --listen address].
    #[arg(long, env = "SLUICE_LISTENERS", value_name = "NAME://HOST:PORT,...")]
    pub listeners: Option<String>,
    /// What clients are told for each listener, Kafka's `advertised.listeners` [default: the
    /// listeners, 0.0.0.0 replaced by this host's address].
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS", value_name = "NAME://HOST:PORT,...")]
    pub advertised_listeners: Option<String>,
    /// Security protocol of each listener whose name is not a protocol's, Kafka's
    /// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
    #[arg(long, env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP", value_name = "NAME:PROTOCOL,...")]
    pub listener_security_protocol_map: Option<String>,
    /// The listener other brokers connect to, Kafka's `inter.broker.listener.name` [default: the
    /// first listener].
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTENER_NAME", value_name = "NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// PEM certificate chain of the TLS listeners, this broker's certificate first.
    #[arg(long, env = "SLUICE_SSL_CERTIFICATE", value_name = "FILE")]
    pub ssl_certificate: Option<PathBuf>,
    /// PEM private key of --ssl-certificate.
    #[arg(long, env = "SLUICE_SSL_KEY", value_name = "FILE")]
    pub ssl_key: Option<PathBuf>,
    /// PEM certificates of the CAs trusted to sign client (and other brokers') certificates.
    #[arg(long, env = "SLUICE_SSL_CA", value_name = "FILE")]
    pub ssl_ca: Option<PathBuf>,
    /// Whether TLS clients must present a certificate, Kafka's `ssl.client.auth`:
    /// none, requested or required [default: none].
    #[arg(long, env = "SLUICE_SSL_CLIENT_AUTH", value_name = "none|requested|required")]
    pub ssl_client_auth: Option<String>,
    /// SASL: mechanisms, SCRAM users at start, re-authentication, inter-broker credentials.
    #[command(flatten)]
    pub sasl: sasl::SaslArgs,
    /// Authorize every request against the cluster's ACLs (`on`), or allow everything (`off`),
    /// Kafka's `authorizer.class.name` [default: off].
    #[arg(long, env = "SLUICE_AUTHORIZER", value_name = "on|off")]
    pub authorizer: Option<String>,
    /// Principals allowed everything whatever the ACLs say, `;`-separated (`User:admin;User:ops`),
    /// Kafka's `super.users`.
    #[arg(long, env = "SLUICE_SUPER_USERS", value_name = "PRINCIPALS")]
    pub super_users: Option<String>,
    /// Allow a request on a resource no ACL names, Kafka's `allow.everyone.if.no.acl.found`
    /// [default: false].
    #[arg(long, env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", value_name = "BOOL")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// Samples a client quota's rate is measured over, Kafka's `quota.window.num` [default: 11].
    #[arg(long, env = "SLUICE_QUOTA_WINDOW_NUM", value_name = "N")]
    pub quota_window_num: Option<u32>,
    /// Length of one client quota sample, Kafka's `quota.window.size.seconds` [default: 1].
    #[arg(long, env = "SLUICE_QUOTA_WINDOW_SIZE_SECONDS", value_name = "SECONDS")]
    pub quota_window_size_seconds: Option<u32>,
}

/// The TOML file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertise: Option<String>,
    #[serde(alias = "log.dirs", alias = "log.dir")]
    data_dir: Option<PathBuf>,
    shards: Option<u16>,
    metrics_listen: Option<String>,
    #[serde(alias = "node.id", alias = "broker.id")]
    node_id: Option<i32>,
    #[serde(alias = "auto.create.topics.enable")]
    auto_create_topics: Option<bool>,
    #[serde(alias = "num.partitions")]
    num_partitions: Option<i32>,
    #[serde(alias = "socket.request.max.bytes")]
    max_request_size_bytes: Option<u32>,
    #[serde(alias = "max.connections")]
    max_connections: Option<u32>,
    max_in_flight_requests: Option<u32>,
    connection_memory_bytes_max: Option<u64>,
    pin_shards: Option<bool>,
    preallocate_bytes: Option<u64>,
    writeback_bytes: Option<u64>,
    #[serde(alias = "log.cleaner.dedupe.buffer.size")]
    compaction_map_bytes: Option<u64>,
    #[serde(alias = "log.retention.check.interval.ms")]
    retention_check_interval_ms: Option<u64>,
    #[serde(alias = "process.roles")]
    process_roles: Option<String>,
    controller_listen: Option<String>,
    #[serde(alias = "controller.listener.names")]
    controller_listener_names: Option<String>,
    #[serde(alias = "controller.quorum.voters")]
    controller_quorum_voters: Option<String>,
    #[serde(alias = "cluster.id")]
    cluster_id: Option<String>,
    #[serde(alias = "default.replication.factor")]
    default_replication_factor: Option<i16>,
    #[serde(alias = "broker.session.timeout.ms")]
    broker_session_timeout_ms: Option<u64>,
    #[serde(alias = "broker.heartbeat.interval.ms")]
    broker_heartbeat_interval_ms: Option<u64>,
    #[serde(alias = "metadata.snapshot.entries")]
    metadata_snapshot_entries: Option<u64>,
    #[serde(alias = "replica.lag.time.max.ms")]
    replica_lag_time_max_ms: Option<u64>,
    #[serde(alias = "replica.fsync")]
    replica_fsync: Option<bool>,
    listeners: Option<String>,
    #[serde(alias = "advertised.listeners")]
    advertised_listeners: Option<String>,
    #[serde(alias = "listener.security.protocol.map")]
    listener_security_protocol_map: Option<String>,
    #[serde(alias = "inter.broker.listener.name")]
    inter_broker_listener_name: Option<String>,
    ssl_certificate: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
    ssl_ca: Option<PathBuf>,
    #[serde(alias = "ssl.client.auth")]
    ssl_client_auth: Option<String>,
    #[serde(alias = "sasl.enabled.mechanisms")]
    sasl_enabled_mechanisms: Option<String>,
    #[serde(default)]
    add_scram: Vec<String>,
    #[serde(alias = "connection.failed.authentication.delay.ms")]
    connection_failed_authentication_delay_ms: Option<u64>,
    #[serde(alias = "connections.max.reauth.ms")]
    connections_max_reauth_ms: Option<u64>,
    sasl_plain_users_file: Option<PathBuf>,
    #[serde(alias = "sasl.mechanism.inter.broker.protocol")]
    sasl_mechanism_inter_broker_protocol: Option<String>,
    #[serde(alias = "sasl.mechanism.controller.protocol")]
    sasl_mechanism_controller_protocol: Option<String>,
    inter_broker_sasl_username: Option<String>,
    inter_broker_sasl_password: Option<String>,
    sasl_oauthbearer_jwks_file: Option<PathBuf>,
    #[serde(alias = "sasl.oauthbearer.expected.audience")]
    sasl_oauthbearer_expected_audience: Option<String>,
    #[serde(alias = "sasl.oauthbearer.expected.issuer")]
    sasl_oauthbearer_expected_issuer: Option<String>,
    #[serde(alias = "sasl.oauthbearer.sub.claim.name")]
    sasl_oauthbearer_sub_claim_name: Option<String>,
    /// `on`/`off`, or Kafka's authorizer class name (on).
    #[serde(alias = "authorizer.class.name")]
    authorizer: Option<String>,
    #[serde(alias = "super.users")]
    super_users: Option<String>,
    #[serde(alias = "allow.everyone.if.no.acl.found")]
    allow_everyone_if_no_acl_found: Option<bool>,
    #[serde(alias = "quota.window.num")]
    quota_window_num: Option<u32>,
    #[serde(alias = "quota.window.size.seconds")]
    quota_window_size_seconds: Option<u32>,
    /// Default topic configs by Kafka name.
    #[serde(default)]
    topic_defaults: BTreeMap<String, toml::Value>,
}

/// Bounds on what clients may make the broker hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub request_size_bytes_max: u32,
    /// Most connections open at once, over all shards.
    pub connection_count_max: u32,
    /// Most requests read ahead of their responses on one connection.
    pub in_flight_requests_max: u32,
    /// Most request bytes held by one connection's in-flight requests (one request is always
    /// admitted, whatever its size, so a single large produce still makes progress).
    pub connection_memory_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_size_bytes_max: REQUEST_SIZE_BYTES_MAX_DEFAULT,
            connection_count_max: 10_000,
            in_flight_requests_max: 32,
            connection_memory_bytes_max: 128 * 1024 * 1024,
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Serves clients and holds partitions.
    pub broker: bool,
    /// Votes in the controller quorum.
    pub controller: bool,
}

impl Default for ProcessRoles {
    fn default() -> Self {
        Self { broker: true, controller: true }
    }
}

impl ProcessRoles {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut roles = Self { broker: false, controller: false };
        for role in text.split(',').map(str::trim).filter(|role| !role.is_empty()) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                other => {
                    return Err(ConfigError::Invalid {
                        setting: "process-roles",
                        reason: format!("unknown role {other:?}; the roles are broker and controller"),
                    });
                }
            }
        }
        Ok(roles)
    }
}

/// A voter of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// Its node id.
    pub node_id: i32,
    /// Its controller listener, `HOST:PORT`.
    pub address: String,
}

/// Parses Kafka's `controller.quorum.voters`: `ID@HOST:PORT` entries separated by commas.
fn parse_voters(text: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { setting: "controller-quorum-voters", reason };
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (id, address) = entry.split_once('@').ok_or_else(|| invalid(format!("{entry:?} is not ID@HOST:PORT")))?;
        let node_id = id
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid(format!("{entry:?}: the node id must be a non-negative integer")))?;
        let port_ok =
            address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(invalid(format!("{entry:?}: the address must be HOST:PORT")));
        }
        if voters.iter().any(|voter| voter.node_id == node_id) {
            return Err(invalid(format!("node {node_id} is listed twice")));
        }
        voters.push(QuorumVoter { node_id, address: address.trim().to_owned() });
    }
    Ok(voters)
}

/// ACL authorization settings (Kafka's `authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Whether requests are authorized against the ACLs; off, everything is allowed.
    pub enabled: bool,
    /// `Type:name` of each super user.
    pub super_users: Vec<String>,
    /// Whether a resource no ACL names is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
}

/// The resolved broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to serve the Kafka protocol. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// `HOST:PORT` (or `HOST`) returned in Metadata; `None` derives it from the listen address.
    pub advertise: Option<String>,
    /// The engine's data directory.
    pub data_dir: PathBuf,
    /// Shard count; `None` uses one per available core.
    pub shard_count: Option<u16>,
    /// Where to serve Prometheus metrics; `None` turns them off.
    pub metrics_listen: Option<SocketAddr>,
    /// This broker's node id.
    pub node_id: i32,
    /// Create unknown topics on Metadata requests that allow it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics requests that ask for the default.
    pub num_partitions: i32,
    /// Config of topics created without one; also what DescribeConfigs reports as defaults.
    pub default_topic_config: TopicConfig,
    /// Connection and request bounds.
    pub limits: Limits,
    /// Pin shard threads to cores.
    pub pin_shards: bool,
    /// Zero-filled space kept ahead of durable appends (`EngineConfig::preallocate_bytes`).
    pub preallocate_bytes: u64,
    /// Writeback step of non-durable appends (`EngineConfig::writeback_bytes`).
    pub writeback_bytes: u64,
    /// Key map memory of one compaction pass (`EngineConfig::compaction_map_bytes`).
    pub compaction_map_bytes: u64,
    /// Interval of retention, rolls and compaction (`EngineConfig::retention_check_interval_ms`).
    pub retention_check_interval_ms: u64,
    /// How long shutdown waits for in-flight requests before closing connections, in ms.
    pub shutdown_timeout_ms: u64,
    /// Where time comes from: the system clock, or a manual one in tests.
    pub clock: sluice_engine::clock::SharedClock,
    /// What this node runs.
    pub process_roles: ProcessRoles,
    /// This node's controller listener; `None` for a single node, which has none.
    pub controller_listen: Option<SocketAddr>,
    /// The controller listener's name and protocol (`--controller-listener-names`); `None`:
    /// PLAINTEXT.
    pub(crate) controller_listener: Option<crate::security::controller_listener::ControllerListener>,
    /// The controller quorum's voters; empty: this node alone is its one-voter quorum.
    pub quorum_voters: Vec<QuorumVoter>,
    /// The cluster id this node must belong to; `None` accepts the one it joins (or makes one).
    pub cluster_id: Option<String>,
    /// Replication factor of topics created without one.
    pub default_replication_factor: i16,
    /// Heartbeat silence after which the controller fences a broker, in ms.
    pub broker_session_timeout_ms: u64,
    /// Interval of a broker's heartbeats to the controller, in ms.
    pub broker_heartbeat_interval_ms: u64,
    /// Metadata log entries between snapshots.
    pub metadata_snapshot_entries: u64,
    /// How long a follower may lag before it leaves the ISR, in ms.
    pub replica_lag_time_max_ms: u64,
    /// Whether followers fsync fetched batches before reporting them.
    pub replica_fsync: bool,
    /// The listeners of `--listeners`; `None`: the single PLAINTEXT listener of `listen` and
    /// `advertise` (see [`BrokerConfig::listener_set`]).
    pub(crate) listeners: Option<crate::security::listeners::ListenerSet>,
    /// TLS files and client authentication of the TLS listeners.
    pub(crate) tls: crate::security::tls::TlsSettings,
    /// SASL settings.
    pub sasl: sasl::SaslConfig,
    /// ACL authorization.
    pub authorizer: AuthorizerConfig,
    /// Samples of a client quota's rate (`quota.window.num`).
    pub quota_window_num: u32,
    /// Length of one sample in seconds (`quota.window.size.seconds`).
    pub quota_window_size_seconds: u32,
}

impl BrokerConfig {
    /// Defaults, with the given data directory and listen address.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            data_dir: data_dir.into(),
            shard_count: None,
            metrics_listen: None,
            node_id: 1,
            auto_create_topics: true,
            num_partitions: 1,
            default_topic_config: TopicConfig::default(),
            limits: Limits::default(),
            pin_shards: true,
            preallocate_bytes: sluice_engine::config::PREALLOCATE_BYTES_DEFAULT,
            writeback_bytes: sluice_engine::config::WRITEBACK_BYTES_DEFAULT,
            compaction_map_bytes: sluice_engine::config::COMPACTION_MAP_BYTES_DEFAULT,
            retention_check_interval_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            clock: sluice_engine::clock::SystemClock::shared(),
            process_roles: ProcessRoles::default(),
            controller_listen: None,
            controller_listener: None,
            quorum_voters: Vec::new(),
            cluster_id: None,
            default_replication_factor: 1,
            broker_session_timeout_ms: 9_000,
            metadata_snapshot_entries: 1_000,
            replica_lag_time_max_ms: 30_000,
            replica_fsync: true,
            listeners: None,
            tls: crate::security::tls::TlsSettings::default(),
            sasl: sasl::SaslConfig::default(),
            authorizer: AuthorizerConfig::default(),
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            broker_heartbeat_interval_ms: 2_000,
        }
    }

    /// Whether this node is part of a quorum of several nodes (not a single node alone).
    pub fn clustered(&self) -> bool {
        !self.quorum_voters.is_empty()
    }

    /// The listeners to bind: those of `--listeners`, or the PLAINTEXT one of `listen`.
    pub(crate) fn listener_set(&self) -> crate::security::listeners::ListenerSet {
        self.listeners
            .clone()
            .unwrap_or_else(|| crate::security::listeners::ListenerSet::plaintext(self.listen, self.advertise.clone()))
    }

    /// Resolves flags and environment (already merged in `args`) over the TOML file over defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable file, an unresolvable address, or a bad value.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let controller = crate::security::controller_listener::parse(crate::security::controller_listener::Flags {
            names: args.controller_listener_names.as_deref().or(file.controller_listener_names.as_deref()),
            listeners: args.listeners.or(file.listeners),
            protocol_map: args
                .listener_security_protocol_map
                .as_deref()
                .or(file.listener_security_protocol_map.as_deref()),
            controller_listen: args.controller_listen.or(file.controller_listen),
        })?;
        let listener_settings = crate::security::listeners::Settings {
            listeners: controller.listeners,
            advertised_listeners: args.advertised_listeners.or(file.advertised_listeners),
            protocol_map: args.listener_security_protocol_map.or(file.listener_security_protocol_map),
            inter_broker_listener_name: args.inter_broker_listener_name.or(file.inter_broker_listener_name),
            single_address_given: [&args.listen, &file.listen, &args.advertise, &file.advertise]
                .iter()
                .any(|given| given.is_some()),
        };
        let listeners = crate::security::listeners::parse(&listener_settings)?;
        let tls_files =
            [args.ssl_certificate.or(file.ssl_certificate), args.ssl_key.or(file.ssl_key), args.ssl_ca.or(file.ssl_ca)];
        let tls_client_auth = args.ssl_client_auth.or(file.ssl_client_auth);
        let tls = crate::security::tls::TlsSettings::parse(tls_files, tls_client_auth.as_deref(), listeners.as_ref())?;
        let listen_text = args.listen.or(file.listen).unwrap_or_else(|| "0.0.0.0:9092".to_owned());
        let listen = resolve("listen", &listen_text)?;
        let metrics_listen = match args.metrics_listen.or(file.metrics_listen) {
            Some(text) => Some(resolve("metrics-listen", &text)?),
            None => None,
        };
        let mut config = Self::new(args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")), listen);
        config.advertise = args.advertise.or(file.advertise);
        if let Some(set) = &listeners {
            config.listen = set.listeners[0].address;
        }
        config.listeners = listeners;
        config.tls = tls;
        config.shard_count = args.shards.or(file.shards);
        config.metrics_listen = metrics_listen;
        config.node_id = args.node_id.or(file.node_id).unwrap_or(config.node_id);
        config.auto_create_topics = args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true);
        config.num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        config.pin_shards = args.pin_shards.or(file.pin_shards).unwrap_or(true);
        config.preallocate_bytes =
            args.preallocate_bytes.or(file.preallocate_bytes).unwrap_or(config.preallocate_bytes);
        config.writeback_bytes = args.writeback_bytes.or(file.writeback_bytes).unwrap_or(config.writeback_bytes);
        config.compaction_map_bytes =
            args.compaction_map_bytes.or(file.compaction_map_bytes).unwrap_or(config.compaction_map_bytes);
        config.retention_check_interval_ms = args
            .retention_check_interval_ms
            .or(file.retention_check_interval_ms)
            .unwrap_or(config.retention_check_interval_ms);
        if let Some(text) = args.process_roles.or(file.process_roles) {
            config.process_roles = ProcessRoles::parse(&text)?;
        }
        config.controller_listener = controller.listener;
        config.controller_listen = match controller.controller_listen {
            Some(text) => Some(resolve("controller-listen", &text)?),
            None => None,
        };
        if let Some(text) = args.controller_quorum_voters.or(file.controller_quorum_voters) {
            config.quorum_voters = parse_voters(&text)?;
        }
        config.cluster_id = args.cluster_id.or(file.cluster_id).map(|id| id.trim().to_owned());
        config.default_replication_factor = args
            .default_replication_factor
            .or(file.default_replication_factor)
            .unwrap_or(config.default_replication_factor);
        config.broker_session_timeout_ms = args
            .broker_session_timeout_ms
            .or(file.broker_session_timeout_ms)
            .unwrap_or(config.broker_session_timeout_ms);
        config.broker_heartbeat_interval_ms = args
            .broker_heartbeat_interval_ms
            .or(file.broker_heartbeat_interval_ms)
            .unwrap_or(config.broker_heartbeat_interval_ms);
        config.metadata_snapshot_entries = args
            .metadata_snapshot_entries
            .or(file.metadata_snapshot_entries)
            .unwrap_or(config.metadata_snapshot_entries);
        config.replica_lag_time_max_ms =
            args.replica_lag_time_max_ms.or(file.replica_lag_time_max_ms).unwrap_or(config.replica_lag_time_max_ms);
        config.replica_fsync = args.replica_fsync.or(file.replica_fsync).unwrap_or(config.replica_fsync);
        let sasl_file = sasl::SaslFile {
            sasl_enabled_mechanisms: file.sasl_enabled_mechanisms,
            add_scram: file.add_scram,
            connection_failed_authentication_delay_ms: file.connection_failed_authentication_delay_ms,
            connections_max_reauth_ms: file.connections_max_reauth_ms,
            sasl_plain_users_file: file.sasl_plain_users_file,
            sasl_mechanism_inter_broker_protocol: file.sasl_mechanism_inter_broker_protocol,
            sasl_mechanism_controller_protocol: file.sasl_mechanism_controller_protocol,
            inter_broker_sasl_username: file.inter_broker_sasl_username,
            inter_broker_sasl_password: file.inter_broker_sasl_password,
            sasl_oauthbearer_jwks_file: file.sasl_oauthbearer_jwks_file,
            sasl_oauthbearer_expected_audience: file.sasl_oauthbearer_expected_audience,
            sasl_oauthbearer_expected_issuer: file.sasl_oauthbearer_expected_issuer,
            sasl_oauthbearer_sub_claim_name: file.sasl_oauthbearer_sub_claim_name,
        };
        config.sasl = sasl::SaslConfig::resolve(args.sasl, sasl_file)?;
        crate::security::authorizer::configure(
            &mut config,
            args.authorizer.or(file.authorizer).as_deref(),
            args.super_users.or(file.super_users).as_deref(),
            args.allow_everyone_if_no_acl_found.or(file.allow_everyone_if_no_acl_found),
        )?;
        config.quota_window_num = args.quota_window_num.or(file.quota_window_num).unwrap_or(config.quota_window_num);
        config.quota_window_size_seconds = args
            .quota_window_size_seconds
            .or(file.quota_window_size_seconds)
            .unwrap_or(config.quota_window_size_seconds);
        let limits = &mut config.limits;
        limits.request_size_bytes_max =
            args.max_request_size_bytes.or(file.max_request_size_bytes).unwrap_or(limits.request_size_bytes_max);
        limits.connection_count_max =
            args.max_connections.or(file.max_connections).unwrap_or(limits.connection_count_max);
        limits.in_flight_requests_max =
            args.max_in_flight_requests.or(file.max_in_flight_requests).unwrap_or(limits.in_flight_requests_max);
        limits.connection_memory_bytes_max = args
            .connection_memory_bytes_max
            .or(file.connection_memory_bytes_max)
            .unwrap_or(limits.connection_memory_bytes_max);
        for (name, value) in &file.topic_defaults {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            set_topic_default(&mut config.default_topic_config, name, &text)?;
        }
        for entry in &args.topic_configs {
            let (name, value) = entry.split_once('=').ok_or_else(|| ConfigError::Invalid {
                setting: "topic-config",
                reason: format!("{entry:?} is not NAME=VALUE"),
            })?;
            set_topic_default(&mut config.default_topic_config, name.trim(), value.trim())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value once, so the broker refuses to start rather than fail later.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| Err(ConfigError::Invalid { setting, reason: reason.to_owned() });
        if self.shard_count == Some(0) {
            return invalid("shards", "must be at least 1");
        }
        if self.num_partitions < 1 {
            return invalid("num-partitions", "must be at least 1");
        }
        // A frame must at least hold a request header: api key, version, correlation id.
        if self.limits.request_size_bytes_max < 8 || self.limits.request_size_bytes_max > i32::MAX as u32 {
            return invalid("max-request-size-bytes", "must be between 8 and 2147483647");
        }
        if self.limits.connection_count_max == 0 {
            return invalid("max-connections", "must be at least 1");
        }
        if self.limits.in_flight_requests_max == 0 {
            return invalid("max-in-flight-requests", "must be at least 1");
        }
        if self.advertise.as_ref().is_some_and(|advertise| advertise.trim().is_empty()) {
            return invalid("advertise", "must not be empty");
        }
        if self.quota_window_num < 2 || self.quota_window_size_seconds < 1 {
            return invalid("quota-window-num", "needs at least 2 samples of at least 1 second");
        }
        self.validate_quorum()
    }

    fn validate_quorum(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: String| Err(ConfigError::Invalid { setting, reason });
        let roles = self.process_roles;
        if !roles.broker {
            return invalid(
                "process-roles",
                "a node without the broker role is not supported yet; use broker,controller".to_owned(),
            );
        }
        if self.metadata_snapshot_entries == 0 {
            return invalid("metadata-snapshot-entries", "must be at least 1".to_owned());
        }
        if self.default_replication_factor < 1 {
            return invalid("default-replication-factor", "must be at least 1".to_owned());
        }
        if self.broker_heartbeat_interval_ms == 0 || self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms
        {
            return invalid(
                "broker-session-timeout-ms",
                "must be longer than broker-heartbeat-interval-ms, which must be at least 1".to_owned(),
            );
        }
        if let Some(id) = &self.cluster_id
            && (id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'))
        {
            return invalid("cluster-id", format!("{id:?}: use 1 to 64 letters, digits, '-' or '_'"));
        }
        let listed = self.quorum_voters.iter().any(|voter| voter.node_id == self.node_id);
        if self.quorum_voters.is_empty() {
            if !roles.controller {
                return invalid(
                    "process-roles",
                    "a broker-only node needs --controller-quorum-voters to find its controllers".to_owned(),
                );
            }
            if self.controller_listen.is_some() {
                return invalid(
                    "controller-listen",
                    "needs --controller-quorum-voters; a single node has no controller listener".to_owned(),
                );
            }
            return Ok(());
        }
        if self.controller_listen.is_none() {
            return invalid(
                "controller-listen",
                "is needed with --controller-quorum-voters (controllers reach this node there)".to_owned(),
            );
        }
        if roles.controller && !listed {
            return invalid(
                "controller-quorum-voters",
                format!("node {} has the controller role but is not a voter", self.node_id),
            );
        }
        if !roles.controller && listed {
            return invalid(
                "process-roles",
                format!("node {} is a voter, so it needs the controller role", self.node_id),
            );
        }
        Ok(())
    }
}

fn load_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })
}

fn set_topic_default(config: &mut TopicConfig, name: &str, value: &str) -> Result<(), ConfigError> {
    config.set(name, value).map_err(|source| ConfigError::TopicConfig { entry: format!("{name}={value}"), source })
}

/// Resolves `HOST:PORT` to a socket address (the first the resolver returns).
fn resolve(setting: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    let unresolvable = || ConfigError::Address { setting, value: text.to_owned() };
    text.to_socket_addrs().map_err(|_unresolvable| unresolvable())?.next().ok_or_else(unresolvable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_gives_kafka_defaults() {
        let config = BrokerConfig::from_args(Args::default()).expect("defaults are valid");
        assert_eq!(config.listen, "0.0.0.0:9092".parse().expect("literal"));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.auto_create_topics);
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.limits.request_size_bytes_max, 100 * 1024 * 1024);
        assert_eq!(config.preallocate_bytes, sluice_engine::config::PREALLOCATE_BYTES_DEFAULT);
        assert_eq!(config.writeback_bytes, sluice_engine::config::WRITEBACK_BYTES_DEFAULT);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.toml");
        let text = "\"num.partitions\" = 3\nlisten = \"127.0.0.1:1\"\npreallocate_bytes = 0\nwriteback_bytes = 1024\n\"log.cleaner.dedupe.buffer.size\" = 4096\n\"log.retention.check.interval.ms\" = 500\n[topic_defaults]\n\"retention.ms\" = 5000\n";
        std::fs::write(&path, text).expect("write");
        let args = Args {
            config: Some(path),
            listen: Some("127.0.0.1:2".to_owned()),
            retention_check_interval_ms: Some(700),
            ..Args::default()
        };
        let config = BrokerConfig::from_args(args).expect("valid");
        assert_eq!(config.listen.port(), 2);
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.default_topic_config.retention_ms, 5000);
        assert_eq!(config.preallocate_bytes, 0, "from the file");
        assert_eq!(config.writeback_bytes, 1024, "from the file");
        assert_eq!(config.compaction_map_bytes, 4096, "from the file, under Kafka's name");
        assert_eq!(config.retention_check_interval_ms, 700, "the flag over the file");
    }

    #[test]
    fn quorum_flags_parse_in_kafka_shape() {
        let args = Args {
            node_id: Some(2),
            controller_listen: Some("127.0.0.1:9093".to_owned()),
            controller_quorum_voters: Some("1@127.0.0.1:9093, 2@127.0.0.1:9193,3@localhost:9293".to_owned()),
            ..Args::default()
        };
        let config = BrokerConfig::from_args(args).expect("valid");
        assert!(config.clustered());
        assert_eq!(config.quorum_voters.len(), 3);
        assert_eq!(config.quorum_voters[2], QuorumVoter { node_id: 3, address: "localhost:9293".to_owned() });
        assert_eq!(config.broker_session_timeout_ms, 9000);
        assert_eq!(config.metadata_snapshot_entries, 1000);
        let zero = Args { metadata_snapshot_entries: Some(0), ..Args::default() };
        assert!(BrokerConfig::from_args(zero).is_err(), "a snapshot after every 0 entries is refused");
        assert!(!BrokerConfig::from_args(Args::default()).expect("defaults").clustered());
    }

    #[test]
    fn inconsistent_quorum_flags_are_refused() {
        let voters = Some("1@127.0.0.1:9093".to_owned());
        let listen = Some("127.0.0.1:9193".to_owned());
        let cases = [
            Args { controller_quorum_voters: voters.clone(), ..Args::default() },
            Args { controller_listen: listen.clone(), ..Args::default() },
            Args {
                node_id: Some(2),
                controller_quorum_voters: voters.clone(),
                controller_listen: listen.clone(),
                ..Args::default()
            },
            Args {
                process_roles: Some("broker".to_owned()),
                controller_quorum_voters: voters.clone(),
                controller_listen: listen.clone(),
                ..Args::default()
            },
            Args { process_roles: Some("broker".to_owned()), ..Args::default() },
            Args { process_roles: Some("brokr".to_owned()), ..Args::default() },
            Args {
                controller_quorum_voters: Some("1@nohostport".to_owned()),
                controller_listen: listen.clone(),
                ..Args::default()
            },
            Args { cluster_id: Some("has space".to_owned()), ..Args::default() },
        ];
        for args in cases {
            let shown = format!("{args:?}");
            assert!(BrokerConfig::from_args(args).is_err(), "{shown}");
        }
        let broker_only = Args {
            node_id: Some(4),
            process_roles: Some("broker".to_owned()),
            controller_quorum_voters: voters,
            controller_listen: listen,
            ..Args::default()
        };
        let config = BrokerConfig::from_args(broker_only).expect("a broker-only node");
        assert!(!config.process_roles.controller);
    }

    #[test]
    fn unknown_topic_default_is_rejected() {
        let args = Args { topic_configs: vec!["no.such=1".to_owned()], ..Args::default() };
        assert!(matches!(BrokerConfig::from_args(args), Err(ConfigError::TopicConfig { .. })));
    }
}
