//! Listeners in Kafka's form: `--listeners PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9093`, each
//! listener a name, a security protocol and an address; `--advertised-listeners` in the same form
//! for what clients are told; `--listener-security-protocol-map NAME:PROTOCOL,...` for listeners
//! whose name is not a protocol's; `--inter-broker-listener-name` for the listener brokers use
//! to reach each other.
//!
//! Parsed and checked once at startup (from `config`), then read-only. Without `--listeners`
//! the broker keeps its single-address form: `--listen` (and `--advertise`) is the PLAINTEXT
//! listener, so every older command line and config file keeps working; the two forms together
//! are refused, since which address wins would be a guess.
//!
//! What a broker advertises is registered in the metadata with every listener's endpoint, and
//! each client is answered (Metadata, DescribeCluster, FindCoordinator, DescribeConfigs) with
//! the endpoints of the listener its own connection came in on, as Kafka does: a client on the
//! TLS port is never sent to a plaintext one. A broker without that listener is left out.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

use crate::config::{BrokerConfig, ConfigError};
use crate::context::ClusterIdentity;
use crate::security::SecurityProtocol;

/// One listener to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    /// Its name, upper case (`PLAINTEXT`, `SASL_SSL`, or a name of the protocol map).
    pub(crate) name: String,
    /// Its security protocol.
    pub(crate) protocol: SecurityProtocol,
    /// Where to bind; port 0 picks a free port.
    pub(crate) address: SocketAddr,
}

/// Every listener of the broker, what each advertises, and the inter-broker one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerSet {
    /// The listeners, in the order given; never empty.
    pub(crate) listeners: Vec<Listener>,
    /// By listener name: the advertised `HOST:PORT`, or `None` to derive it from the bound
    /// address (0.0.0.0 replaced as `--advertise`'s default does). A listener missing here is
    /// not advertised.
    pub(crate) advertised: Vec<(String, Option<String>)>,
    /// The listener other brokers connect to (replica fetchers, transaction markers).
    pub(crate) inter_broker: String,
}

impl ListenerSet {
    /// The single PLAINTEXT listener of `--listen`/`--advertise`.
    pub(crate) fn plaintext(address: SocketAddr, advertise: Option<String>) -> Self {
        let name = SecurityProtocol::Plaintext.name().to_owned();
        Self {
            listeners: vec![Listener { name: name.clone(), protocol: SecurityProtocol::Plaintext, address }],
            advertised: vec![(name.clone(), advertise)],
            inter_broker: name,
        }
    }

    /// The listener named `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|listener| listener.name == name)
    }

    /// The inter-broker listener.
    pub(crate) fn inter_broker(&self) -> &Listener {
        self.find(&self.inter_broker).expect("parse checks the inter-broker listener is one of the listeners")
    }

    /// Whether any listener runs TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.listeners.iter().any(|listener| listener.protocol.uses_tls())
    }
}

/// A broker's advertised endpoint on one listener, as registered in the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    /// The listener's name.
    pub(crate) name: String,
    /// The host clients connect to.
    pub(crate) host: String,
    /// The port clients connect to.
    pub(crate) port: i32,
}

/// The listener flags as given, before parsing; `None` when not set.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// `--listeners`.
    pub(crate) listeners: Option<String>,
    /// `--advertised-listeners`.
    pub(crate) advertised_listeners: Option<String>,
    /// `--listener-security-protocol-map`.
    pub(crate) protocol_map: Option<String>,
    /// `--inter-broker-listener-name`.
    pub(crate) inter_broker_listener_name: Option<String>,
    /// Whether `--listen` or `--advertise` was given.
    pub(crate) single_address_given: bool,
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}

/// Parses the listener flags. Returns `None` without `--listeners`: the broker then serves the
/// single PLAINTEXT listener of `--listen`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the flag: a malformed entry, an unknown protocol or listener
/// name, a name or port given twice, the two forms mixed, or advertised or inter-broker
/// listeners without `--listeners`.
pub(crate) fn parse(settings: &Settings) -> Result<Option<ListenerSet>, ConfigError> {
    let Some(text) = &settings.listeners else {
        for (given, setting) in [
            (settings.advertised_listeners.is_some(), "advertised-listeners"),
            (settings.protocol_map.is_some(), "listener-security-protocol-map"),
            (settings.inter_broker_listener_name.is_some(), "inter-broker-listener-name"),
        ] {
            if given {
                return Err(invalid(setting, "needs --listeners".to_owned()));
            }
        }
        return Ok(None);
    };
    if settings.single_address_given {
        return Err(invalid(
            "listeners",
            "cannot be combined with --listen or --advertise; give the PLAINTEXT listener in --listeners".to_owned(),
        ));
    }
    let map = match &settings.protocol_map {
        Some(text) => parse_protocol_map(text)?,
        None => Vec::new(),
    };
    let mut listeners: Vec<Listener> = Vec::new();
    for (name, host, port) in split_entries("listeners", text)? {
        let protocol = protocol_of(&map, &name)?;
        let host = if host.is_empty() { "0.0.0.0" } else { host.as_str() };
        let address = resolve(host, port)
            .ok_or_else(|| invalid("listeners", format!("{name}: cannot resolve address {host}:{port}")))?;
        if listeners.iter().any(|listener| listener.name == name) {
            return Err(invalid("listeners", format!("listener {name} is given twice")));
        }
        if port != 0 && listeners.iter().any(|listener| listener.address.port() == port) {
            return Err(invalid("listeners", format!("port {port} is used by two listeners")));
        }
        listeners.push(Listener { name, protocol, address });
    }
    if listeners.is_empty() {
        return Err(invalid("listeners", "names no listener".to_owned()));
    }
    let advertised = match &settings.advertised_listeners {
        Some(text) => parse_advertised(text, &listeners)?,
        None => listeners.iter().map(|listener| (listener.name.clone(), None)).collect(),
    };
    let inter_broker = match &settings.inter_broker_listener_name {
        Some(name) => {
            let name = name.trim().to_ascii_uppercase();
            if !listeners.iter().any(|listener| listener.name == name) {
                return Err(invalid("inter-broker-listener-name", format!("{name} is not one of the listeners")));
            }
            if !advertised.iter().any(|(advertised, _)| *advertised == name) {
                return Err(invalid("inter-broker-listener-name", format!("{name} is not advertised")));
            }
            name
        }
        None => listeners[0].name.clone(),
    };
    Ok(Some(ListenerSet { listeners, advertised, inter_broker }))
}

fn parse_advertised(text: &str, listeners: &[Listener]) -> Result<Vec<(String, Option<String>)>, ConfigError> {
    let mut advertised: Vec<(String, Option<String>)> = Vec::new();
    for (name, host, port) in split_entries("advertised-listeners", text)? {
        if !listeners.iter().any(|listener| listener.name == name) {
            return Err(invalid("advertised-listeners", format!("{name} is not one of the listeners")));
        }
        if advertised.iter().any(|(known, _)| *known == name) {
            return Err(invalid("advertised-listeners", format!("listener {name} is given twice")));
        }
        // An empty host or port 0 is filled in from the bound address at startup.
        let address = (!host.is_empty() && port != 0).then(|| format!("{host}:{port}"));
        advertised.push((name, address));
    }
    Ok(advertised)
}

/// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL` pairs.
fn parse_protocol_map(text: &str) -> Result<Vec<(String, SecurityProtocol)>, ConfigError> {
    let setting = "listener-security-protocol-map";
    let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (name, protocol) =
            entry.split_once(':').ok_or_else(|| invalid(setting, format!("{entry:?} is not NAME:PROTOCOL")))?;
        let name = listener_name(setting, name)?;
        let protocol = SecurityProtocol::from_name(protocol.trim())
            .ok_or_else(|| invalid(setting, format!("{entry:?}: unknown security protocol {:?}", protocol.trim())))?;
        if map.iter().any(|(known, _)| *known == name) {
            return Err(invalid(setting, format!("listener {name} is mapped twice")));
        }
        map.push((name, protocol));
    }
    Ok(map)
}

/// The protocol of listener `name`: from the map when one is given (as Kafka, the map then is
/// the whole truth), else the protocol the name spells.
fn protocol_of(map: &[(String, SecurityProtocol)], name: &str) -> Result<SecurityProtocol, ConfigError> {
    if map.is_empty() {
        return SecurityProtocol::from_name(name).ok_or_else(|| {
            invalid(
                "listeners",
                format!("{name} is not a security protocol; map it with --listener-security-protocol-map"),
            )
        });
    }
    map.iter().find(|(known, _)| known == name).map(|(_, protocol)| *protocol).ok_or_else(|| {
        invalid("listener-security-protocol-map", format!("has no security protocol for listener {name}"))
    })
}

/// Splits `NAME://HOST:PORT,...` into (upper-case name, host without brackets, port).
fn split_entries(setting: &'static str, text: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let malformed = || invalid(setting, format!("{entry:?} is not NAME://HOST:PORT"));
        let (name, address) = entry.split_once("://").ok_or_else(malformed)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
        let port = port.parse::<u16>().map_err(|_not_a_port| malformed())?;
        let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
        entries.push((listener_name(setting, name)?, host.to_owned(), port));
    }
    Ok(entries)
}

/// A listener name: letters, digits, `_` and `-`, upper-cased as Kafka normalises it.
fn listener_name(setting: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-') {
        return Err(invalid(setting, format!("{name:?} is not a listener name")));
    }
    Ok(name.to_ascii_uppercase())
}

fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

/// The advertised endpoints of `set`, its listeners bound at `bound` (same order): an explicit
/// advertised address wins; otherwise the bound one, with an unspecified IP replaced as
/// `--advertise`'s default does.
pub(crate) fn advertised_endpoints(set: &ListenerSet, bound: &[SocketAddr]) -> Vec<Endpoint> {
    assert_eq!(set.listeners.len(), bound.len(), "one bound address per listener");
    set.advertised
        .iter()
        .filter_map(|(name, advertise)| {
            let index = set.listeners.iter().position(|listener| listener.name == *name)?;
            let (host, port) = crate::advertised_address(advertise.as_deref(), bound[index]);
            Some(Endpoint { name: name.clone(), host, port })
        })
        .collect()
}

/// How clients and other brokers see this broker, its listeners bound at `bound`: every
/// advertised endpoint, with `host` and `port` those of the inter-broker listener.
pub(crate) fn identity(config: &BrokerConfig, bound: &[SocketAddr]) -> ClusterIdentity {
    let set = config.listener_set();
    let listeners = advertised_endpoints(&set, bound);
    let (host, port) = match listeners.iter().find(|endpoint| endpoint.name == set.inter_broker) {
        Some(endpoint) => (endpoint.host.clone(), endpoint.port),
        None => crate::advertised_address(None, bound[0]),
    };
    ClusterIdentity { node_id: config.node_id, host, port, listeners, bound: listeners_value(&set, bound) }
}

/// Kafka's `listeners` config value: `NAME://HOST:PORT,...` as bound.
pub(crate) fn listeners_value(set: &ListenerSet, bound: &[SocketAddr]) -> String {
    let entries = set.listeners.iter().zip(bound).map(|(listener, address)| format!("{}://{address}", listener.name));
    entries.collect::<Vec<_>>().join(",")
}

/// Kafka's `advertised.listeners` config value: `NAME://HOST:PORT,...`.
pub(crate) fn advertised_value(endpoints: &[Endpoint]) -> String {
    let entries = endpoints.iter().map(|endpoint| format!("{}://{}:{}", endpoint.name, endpoint.host, endpoint.port));
    entries.collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listeners: &str) -> Settings {
        Settings { listeners: Some(listeners.to_owned()), ..Settings::default() }
    }

    #[test]
    fn listeners_take_their_protocol_from_their_name() {
        let set =
            parse(&settings("PLAINTEXT://127.0.0.1:9092, sasl_ssl://127.0.0.1:9093")).expect("valid").expect("set");
        assert_eq!(set.listeners.len(), 2);
        assert_eq!(set.listeners[1].name, "SASL_SSL");
        assert_eq!(set.listeners[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(set.listeners[1].address, "127.0.0.1:9093".parse().expect("literal"));
        assert_eq!(set.inter_broker, "PLAINTEXT", "the first listener by default");
        assert!(set.uses_tls());
        assert_eq!(set.advertised, vec![("PLAINTEXT".to_owned(), None), ("SASL_SSL".to_owned(), None)]);
    }

    #[test]
    fn custom_names_need_the_protocol_map() {
        let mut given = settings("CLIENT://:9092,REPLICATION://127.0.0.1:9093");
        assert!(parse(&given).is_err(), "CLIENT is no protocol");
        given.protocol_map = Some("CLIENT:SSL,REPLICATION:PLAINTEXT".to_owned());
        given.inter_broker_listener_name = Some("replication".to_owned());
        let set = parse(&given).expect("valid").expect("set");
        assert_eq!(set.listeners[0].protocol, SecurityProtocol::Ssl);
        assert!(set.listeners[0].address.ip().is_unspecified(), "an empty host binds every interface");
        assert_eq!(set.inter_broker().name, "REPLICATION");
        given.protocol_map = Some("CLIENT:SSL".to_owned());
        assert!(parse(&given).is_err(), "REPLICATION has no protocol in the map");
    }

    #[test]
    fn advertised_listeners_name_known_listeners() {
        let mut given = settings("PLAINTEXT://0.0.0.0:9092,SSL://0.0.0.0:9093");
        given.advertised_listeners = Some("SSL://broker.example:19093,PLAINTEXT://:0".to_owned());
        let set = parse(&given).expect("valid").expect("set");
        assert_eq!(
            set.advertised,
            vec![("SSL".to_owned(), Some("broker.example:19093".to_owned())), ("PLAINTEXT".to_owned(), None)]
        );
        let bound: Vec<SocketAddr> =
            vec!["127.0.0.1:5000".parse().expect("literal"), "127.0.0.1:5001".parse().expect("literal")];
        let endpoints = advertised_endpoints(&set, &bound);
        assert_eq!(endpoints[0], Endpoint { name: "SSL".to_owned(), host: "broker.example".to_owned(), port: 19093 });
        assert_eq!(endpoints[1], Endpoint { name: "PLAINTEXT".to_owned(), host: "127.0.0.1".to_owned(), port: 5000 });
        assert_eq!(advertised_value(&endpoints), "SSL://broker.example:19093,PLAINTEXT://127.0.0.1:5000");
        assert_eq!(listeners_value(&set, &bound), "PLAINTEXT://127.0.0.1:5000,SSL://127.0.0.1:5001");
        given.advertised_listeners = Some("SASL_SSL://broker.example:9094".to_owned());
        assert!(parse(&given).is_err(), "SASL_SSL is not a listener");
    }

    #[test]
    fn malformed_or_conflicting_listeners_are_refused() {
        for text in [
            "PLAINTEXT://127.0.0.1",
            "PLAINTEXT:127.0.0.1:9092",
            "PLAINTEXT://127.0.0.1:port",
            "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093",
            "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092",
            "TLS://127.0.0.1:9092",
            "",
        ] {
            assert!(parse(&settings(text)).is_err(), "{text:?}");
        }
        let mut mixed = settings("PLAINTEXT://127.0.0.1:9092");
        mixed.single_address_given = true;
        assert!(parse(&mixed).is_err(), "--listen and --listeners together");
        let mut unknown = settings("PLAINTEXT://127.0.0.1:9092");
        unknown.inter_broker_listener_name = Some("SSL".to_owned());
        assert!(parse(&unknown).is_err(), "the inter-broker listener must be a listener");
        let orphan = Settings { advertised_listeners: Some("PLAINTEXT://a:1".to_owned()), ..Settings::default() };
        assert!(parse(&orphan).is_err(), "advertised listeners without listeners");
    }

    #[test]
    fn flags_resolve_into_the_broker_config_and_its_identity() {
        let args = crate::config::Args {
            listeners: Some("SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0".to_owned()),
            ssl_certificate: Some("broker.pem".into()),
            ssl_key: Some("broker.key".into()),
            inter_broker_listener_name: Some("plaintext".to_owned()),
            ..crate::config::Args::default()
        };
        let config = BrokerConfig::from_args(args).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:0".parse().expect("literal"), "--listen follows the first listener");
        assert_eq!(config.listener_set().inter_broker().protocol, SecurityProtocol::Plaintext);
        let bound: Vec<SocketAddr> =
            vec!["127.0.0.1:7001".parse().expect("literal"), "127.0.0.1:7002".parse().expect("literal")];
        let identity = identity(&config, &bound);
        assert_eq!((identity.host.as_str(), identity.port), ("127.0.0.1", 7002), "the inter-broker endpoint");
        assert_eq!(identity.listeners.len(), 2);
        assert_eq!(identity.bound, "SSL://127.0.0.1:7001,PLAINTEXT://127.0.0.1:7002");
        let mixed = crate::config::Args {
            listen: Some("127.0.0.1:9092".to_owned()),
            listeners: Some("PLAINTEXT://127.0.0.1:9093".to_owned()),
            ..crate::config::Args::default()
        };
        assert!(BrokerConfig::from_args(mixed).is_err(), "--listen and --listeners together");
        let no_key =
            crate::config::Args { listeners: Some("SSL://127.0.0.1:0".to_owned()), ..crate::config::Args::default() };
        assert!(BrokerConfig::from_args(no_key).is_err(), "a TLS listener without a certificate");
    }

    #[test]
    fn ipv6_hosts_come_in_brackets() {
        let set = parse(&settings("PLAINTEXT://[::1]:0")).expect("valid").expect("set");
        assert_eq!(set.listeners[0].address, "[::1]:0".parse().expect("literal"));
    }

    #[test]
    fn without_listeners_the_single_address_form_stays() {
        assert_eq!(parse(&Settings::default()).expect("valid"), None);
        let set = ListenerSet::plaintext("127.0.0.1:9092".parse().expect("literal"), Some("kafka:9092".to_owned()));
        assert_eq!(set.inter_broker().protocol, SecurityProtocol::Plaintext);
        assert_eq!(set.advertised[0].1.as_deref(), Some("kafka:9092"));
    }
}
