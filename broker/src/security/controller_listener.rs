//! The controller listener's security: the Raft traffic between quorum nodes, and the
//! registrations, heartbeats and forwarded requests brokers send the active controller, over
//! plaintext TCP (the default), TLS with client certificates on both ends, or SASL/PLAIN over
//! plaintext or TLS (SASL_PLAINTEXT, SASL_SSL).
//!
//! Configured the way Kafka configures a KRaft controller listener:
//! `--controller-listener-names CONTROLLER` (Kafka's `controller.listener.names`) names the
//! listener, `--listener-security-protocol-map CONTROLLER:SSL` gives its protocol (or the name
//! is a protocol's own, `SSL`), and its address is the `CONTROLLER://HOST:PORT` entry of
//! `--listeners` (taken out of the Kafka listeners: clients are never sent there) or
//! `--controller-listen`. The TLS files are the broker's (`--ssl-certificate`, `--ssl-key`,
//! `--ssl-ca`), reloaded as the Kafka listeners' are.
//!
//! Why TLS always requires a client certificate here, whatever `--ssl-client-auth` says: every
//! peer of this listener is another node, which presents its own certificate, and that
//! certificate is the only thing that tells a quorum member from a stranger. A peer is then
//! admitted once per connection, right after the handshake: with the authorizer off, any
//! certificate the CA signed; with it on, only a principal Kafka would let call the controller
//! APIs (CLUSTER_ACTION on the cluster): a super user, or one an ACL of the controller's
//! current image allows. Super users are the dependable choice, as in Kafka: a node that has
//! not yet replicated the ACLs knows only them. A refused peer's connection is closed, so it can
//! neither vote, nor replicate the log, nor register as a broker.
//!
//! With SASL_PLAINTEXT or SASL_SSL the principal is the one SASL/PLAIN authenticates instead,
//! `User:<name>`, checked against the PLAIN users file and admitted by the same rule
//! (`security::controller_sasl` has the exchange and why PLAIN only). SASL_SSL asks for no
//! client certificate, as Kafka's SASL_SSL listeners do: the server still presents its own.
//!
//! Built on the main thread at startup ([`ControllerTransport`], shared with the controller
//! thread); the [`Acceptor`] lives on the controller thread only.

use std::net::SocketAddr;
use std::sync::Arc;

use compio::net::TcpStream;

use crate::config::{AuthorizerConfig, BrokerConfig, ConfigError};
use crate::metadata::MetadataImage;
use crate::net::peer::PeerStream;
use crate::net::tls_stream::TlsStream;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{self, Resource, Subject};
use crate::security::controller_sasl::ControllerSasl;
use crate::security::tls::{ClientAuth, LoadedServer, ServerTls, TlsSettings};
use crate::security::{Principal, SecurityProtocol};

/// The controller listener as configured: its name and security protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControllerListener {
    /// The name, upper case (`CONTROLLER`).
    pub(crate) name: String,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub(crate) protocol: SecurityProtocol,
}

/// The controller listener flags, as given.
#[derive(Debug, Default)]
pub(crate) struct Flags<'a> {
    /// `--controller-listener-names`.
    pub(crate) names: Option<&'a str>,
    /// `--listeners`, the controller's entry among them.
    pub(crate) listeners: Option<String>,
    /// `--listener-security-protocol-map`.
    pub(crate) protocol_map: Option<&'a str>,
    /// `--controller-listen`.
    pub(crate) controller_listen: Option<String>,
}

/// What [`parse`] makes of the flags.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The named controller listener; `None`: plaintext, as before the flag existed.
    pub(crate) listener: Option<ControllerListener>,
    /// `--listeners` without the controller's entry (`None` when it named nothing else).
    pub(crate) listeners: Option<String>,
    /// The controller listener's address: `--controller-listen`, or its `--listeners` entry.
    pub(crate) controller_listen: Option<String>,
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}

/// Resolves the controller listener's name, protocol and address, and takes its entry out of
/// `--listeners`.
///
/// # Errors
/// [`ConfigError::Invalid`]: more than one name, a name without a protocol, or the address
/// given both in `--listeners` and `--controller-listen`.
pub(crate) fn parse(flags: Flags<'_>) -> Result<Parsed, ConfigError> {
    let setting = "controller-listener-names";
    let Some(names) = flags.names else {
        return Ok(Parsed { listener: None, listeners: flags.listeners, controller_listen: flags.controller_listen });
    };
    let names: Vec<String> =
        names.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_ascii_uppercase).collect();
    let [name] = &names[..] else {
        return Err(invalid(setting, format!("must name one listener, not {}", names.len())));
    };
    let mapped = flags.protocol_map.into_iter().flat_map(|map| map.split(',')).find_map(|entry| {
        let (listener, protocol) = entry.split_once(':')?;
        listener.trim().eq_ignore_ascii_case(name).then(|| protocol.trim().to_owned())
    });
    let protocol = match &mapped {
        Some(protocol) => SecurityProtocol::from_name(protocol).ok_or_else(|| {
            invalid("listener-security-protocol-map", format!("unknown security protocol {protocol:?}"))
        })?,
        None => SecurityProtocol::from_name(name).ok_or_else(|| {
            invalid(setting, format!("{name} has no security protocol; map it with --listener-security-protocol-map"))
        })?,
    };
    let (listeners, entry) = match flags.listeners {
        Some(text) => take_entry(&text, name),
        None => (None, None),
    };
    let controller_listen = match (entry, flags.controller_listen) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "controller-listen",
                format!("cannot be combined with a {name}:// entry in --listeners; give the address once"),
            ));
        }
        (entry, given) => entry.or(given),
    };
    let listener = ControllerListener { name: name.clone(), protocol };
    Ok(Parsed { listener: Some(listener), listeners, controller_listen })
}

/// Splits `--listeners` into the entries other than `name`'s and `name`'s `HOST:PORT`.
fn take_entry(text: &str, name: &str) -> (Option<String>, Option<String>) {
    let mut address = None;
    let mut rest = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        match entry.split_once("://") {
            Some((listener, host_port)) if listener.trim().eq_ignore_ascii_case(name) => {
                address = Some(host_port.trim().to_owned());
            }
            _ => rest.push(entry),
        }
    }
    ((!rest.is_empty()).then(|| rest.join(",")), address)
}

/// How this node's controller traffic is secured, both ends; shared by the main and the
/// controller thread.
#[derive(Debug, Default)]
pub(crate) struct ControllerTransport {
    /// `None`: plaintext.
    tls: Option<TransportTls>,
    /// SASL/PLAIN on each connection (SASL_PLAINTEXT, SASL_SSL); `None`: none.
    sasl: Option<ControllerSasl>,
    /// Who may call this node's controller listener.
    authorizer: AuthorizerConfig,
}

#[derive(Debug)]
struct TransportTls {
    /// The broker's TLS files, client certificates required.
    settings: TlsSettings,
    /// The server configuration loaded at startup (client certificates required for SSL, not
    /// asked for with SASL_SSL).
    server: LoadedServer,
    /// The client configuration: this node's certificate, the CA it trusts.
    client: Arc<rustls::ClientConfig>,
}

impl ControllerTransport {
    /// The transport `config` asks for; loads the TLS files for an SSL or SASL_SSL controller
    /// listener, and the SASL settings for a SASL one.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`]: TLS without a certificate, key or CA, or files that do not load;
    /// SASL without the inter-broker user, or, on a controller, without the PLAIN users file.
    pub(crate) fn from_config(config: &BrokerConfig) -> Result<Self, ConfigError> {
        let authorizer = config.authorizer.clone();
        let sasl = match config.controller_listener.as_ref().filter(|listener| listener.protocol.uses_sasl()) {
            Some(listener) => Some(ControllerSasl::from_config(config, &listener.name)?),
            None => None,
        };
        let Some(listener) = config.controller_listener.as_ref().filter(|listener| listener.protocol.uses_tls()) else {
            return Ok(Self { tls: None, sasl, authorizer });
        };
        let missing = |setting: &'static str| {
            invalid(
                setting,
                format!("is needed by the {} controller listener ({})", listener.name, listener.protocol.name()),
            )
        };
        if config.tls.certificate.is_none() {
            return Err(missing("ssl-certificate"));
        }
        if config.tls.ca.is_none() {
            return Err(missing("ssl-ca"));
        }
        // SASL_SSL authenticates with SASL, and asks for no client certificate, as Kafka's does.
        let client_auth = if listener.protocol.uses_sasl() { ClientAuth::None } else { ClientAuth::Required };
        let settings = TlsSettings { client_auth, ..config.tls.clone() };
        let unloadable = |error: crate::security::tls::TlsError| invalid("ssl-certificate", error.to_string());
        let server = crate::security::tls::load_server(&settings).map_err(unloadable)?;
        let client = crate::security::tls::client_config(&settings).map_err(unloadable)?;
        Ok(Self { tls: Some(TransportTls { settings, server, client }), sasl, authorizer })
    }

    /// Connects to the controller listener at `address` (`HOST:PORT`), through the TLS
    /// handshake when it runs TLS (its certificate must be signed by `--ssl-ca` and name
    /// `HOST`), then through the SASL exchange when it runs SASL.
    ///
    /// # Errors
    /// A connection error, a refused handshake or a refused authentication.
    pub(crate) async fn connect(&self, address: &str) -> std::io::Result<PeerStream> {
        // Boxed: a TLS handshake's future is large, and every controller call would carry it.
        Box::pin(self.open(address)).await
    }

    async fn open(&self, address: &str) -> std::io::Result<PeerStream> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => PeerStream::Plain(stream),
            Some(tls) => {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_matches(['[', ']']);
                let stream = TlsStream::connect(stream, tls.client.clone(), host).await?;
                PeerStream::Tls(stream, bytes::BytesMut::new())
            }
        };
        if let Some(sasl) = &self.sasl {
            sasl.authenticate(&mut stream).await?;
        }
        Ok(stream)
    }

    /// The server end, for the controller thread.
    pub(crate) fn acceptor(self: &Arc<Self>) -> Acceptor {
        let tls = self.tls.as_ref().map(|tls| ServerTls::new(tls.settings.clone(), tls.server.clone()));
        Acceptor { transport: Arc::clone(self), tls }
    }

    /// Whether `principal`, connecting from `peer`, may call the controller listener, against
    /// the ACLs of `image` (see the module docs).
    fn admits(&self, principal: &Principal, peer: SocketAddr, image: &MetadataImage) -> bool {
        if !self.authorizer.enabled {
            return true;
        }
        let settings = authorizer::Settings {
            super_users: &self.authorizer.super_users,
            allow_everyone_if_no_acl_found: self.authorizer.allow_everyone_if_no_acl_found,
        };
        let subject = Subject { principal, host: peer.ip() };
        authorizer::decide(image.acls.index(), settings, subject, AclOperation::ClusterAction, Resource::Cluster)
    }
}

/// How long an accepted connection has for its TLS handshake and SASL exchange together, as
/// the client listeners give a TLS handshake.
const ADMISSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The controller listener's server end: the TLS handshake and the principal check of each
/// accepted connection. Lives on the controller thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    transport: Arc<ControllerTransport>,
    /// The server configuration, reloaded when the files change; `None`: plaintext.
    tls: Option<ServerTls>,
}

impl Acceptor {
    /// Secures an accepted connection from `peer` (TLS, SASL) and admits its principal against
    /// `image`; `None` (logged, the socket dropped) for a failed handshake or authentication, or
    /// a principal not admitted, or when the whole admission takes longer than
    /// [`ADMISSION_TIMEOUT`] (a peer that sends half a handshake, or a dead one, must not hold a
    /// task and a socket, nor the listener's shutdown, which waits for its connections).
    /// `now` is when it was accepted (the certificate files are looked at once a second).
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        now: std::time::Instant,
        image: impl FnOnce() -> Arc<MetadataImage>,
    ) -> Option<PeerStream> {
        match compio::time::timeout(ADMISSION_TIMEOUT, self.secure(stream, peer, now, image)).await {
            Ok(admitted) => admitted,
            Err(_elapsed) => {
                tracing::warn!(%peer, "controller listener: handshake not done in time; connection closed");
                None
            }
        }
    }

    async fn secure(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        now: std::time::Instant,
        image: impl FnOnce() -> Arc<MetadataImage>,
    ) -> Option<PeerStream> {
        let Some(tls) = &self.tls else {
            if self.transport.sasl.is_some() {
                return self.authenticate(PeerStream::Plain(stream), peer, image).await;
            }
            return self.admit(PeerStream::Plain(stream), &Principal::anonymous(), peer, &image());
        };
        let stream = match TlsStream::accept(stream, tls.config(now)).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "controller listener: TLS handshake failed; connection closed");
                return None;
            }
        };
        if self.transport.sasl.is_some() {
            return self.authenticate(PeerStream::Tls(stream, bytes::BytesMut::new()), peer, image).await;
        }
        let certificates = stream.peer_certificates();
        let Some(name) = crate::security::tls::principal_name(certificates.as_deref()) else {
            tracing::warn!(%peer, "controller listener: the peer's certificate has no usable subject; connection closed");
            return None;
        };
        self.admit(PeerStream::Tls(stream, bytes::BytesMut::new()), &Principal::user(&name), peer, &image())
    }

    /// Runs the SASL exchange on `stream`; the authenticated principal goes through the same
    /// admission as a certificate's.
    async fn authenticate(
        &self,
        mut stream: PeerStream,
        peer: SocketAddr,
        image: impl FnOnce() -> Arc<MetadataImage>,
    ) -> Option<PeerStream> {
        let sasl = self.transport.sasl.as_ref()?;
        let admits = |principal: &Principal| self.transport.admits(principal, peer, &image());
        match sasl.accept(&mut stream, admits).await {
            Ok(_principal) => Some(stream),
            Err(refusal) => {
                let user = refusal.user.as_deref().unwrap_or("-");
                tracing::warn!(
                    %peer,
                    user,
                    reason = %refusal.reason,
                    "controller listener: SASL/PLAIN refused; connection closed"
                );
                if let Err(error) = compio::io::AsyncWrite::shutdown(&mut stream).await {
                    tracing::debug!(%error, "controller listener: close failed");
                }
                None
            }
        }
    }

    fn admit(
        &self,
        stream: PeerStream,
        principal: &Principal,
        peer: SocketAddr,
        image: &MetadataImage,
    ) -> Option<PeerStream> {
        if self.transport.admits(principal, peer, image) {
            return Some(stream);
        }
        tracing::warn!(
            %peer,
            %principal,
            "controller listener: principal not authorized (CLUSTER_ACTION on the cluster; make it a super user); \
             connection closed"
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(names: &'a str, listeners: &str, map: &'a str) -> Flags<'a> {
        Flags {
            names: Some(names),
            listeners: Some(listeners.to_owned()),
            protocol_map: Some(map),
            controller_listen: None,
        }
    }

    #[test]
    fn kafka_form_takes_the_controller_entry_out_of_the_listeners() {
        let parsed = parse(flags(
            "CONTROLLER",
            "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        ))
        .expect("valid");
        let expected = ControllerListener { name: "CONTROLLER".to_owned(), protocol: SecurityProtocol::Ssl };
        assert_eq!(parsed.listener, Some(expected));
        assert_eq!(parsed.listeners.as_deref(), Some("SASL_SSL://127.0.0.1:9092"));
        assert_eq!(parsed.controller_listen.as_deref(), Some("127.0.0.1:9093"));
    }

    #[test]
    fn without_a_name_everything_stays_as_given() {
        let given = Flags {
            listeners: Some("PLAINTEXT://:9092".to_owned()),
            controller_listen: Some("127.0.0.1:9093".to_owned()),
            ..Flags::default()
        };
        let parsed = parse(given).expect("valid");
        assert_eq!(parsed.listener, None);
        assert_eq!(parsed.listeners.as_deref(), Some("PLAINTEXT://:9092"));
        assert_eq!(parsed.controller_listen.as_deref(), Some("127.0.0.1:9093"));
    }

    #[test]
    fn a_protocol_name_needs_no_map_and_controller_listen_gives_the_address() {
        let given = Flags { names: Some("ssl"), controller_listen: Some("h:1".to_owned()), ..Flags::default() };
        let parsed = parse(given).expect("valid");
        assert_eq!(parsed.listener.map(|listener| listener.protocol), Some(SecurityProtocol::Ssl));
        assert_eq!(parsed.controller_listen.as_deref(), Some("h:1"));
    }

    fn transport(enabled: bool) -> ControllerTransport {
        let authorizer = AuthorizerConfig {
            enabled,
            super_users: vec!["User:CN=node".to_owned()],
            allow_everyone_if_no_acl_found: false,
        };
        ControllerTransport { tls: None, sasl: None, authorizer }
    }

    #[test]
    fn with_the_authorizer_on_only_super_users_and_cluster_action_grants_are_admitted() {
        use crate::security::acl::{AclBinding, PatternType, PermissionType, ResourceType};
        let peer: SocketAddr = "10.0.0.7:5000".parse().expect("address");
        let mut image = MetadataImage::default();
        let (node, operator, stranger) =
            (Principal::user("CN=node"), Principal::user("CN=operator"), Principal::user("CN=stranger"));
        assert!(transport(false).admits(&stranger, peer, &image), "authorizer off: a trusted certificate is enough");
        let on = transport(true);
        assert!(on.admits(&node, peer, &image));
        assert!(!on.admits(&operator, peer, &image));
        image.acls.insert(
            1,
            &AclBinding {
                resource_type: ResourceType::Cluster,
                resource_name: "kafka-cluster".to_owned(),
                pattern_type: PatternType::Literal,
                principal: "User:CN=operator".to_owned(),
                host: "*".to_owned(),
                operation: AclOperation::ClusterAction,
                permission: PermissionType::Allow,
            },
        );
        assert!(on.admits(&operator, peer, &image), "CLUSTER_ACTION on the cluster admits");
        assert!(!on.admits(&stranger, peer, &image));
    }

    #[test]
    fn unmapped_names_two_names_and_two_addresses_are_refused() {
        let sasl = parse(flags("CONTROLLER", "CONTROLLER://h:1", "CONTROLLER:SASL_SSL")).expect("SASL_SSL is valid");
        assert_eq!(sasl.listener.map(|listener| listener.protocol), Some(SecurityProtocol::SaslSsl));
        assert!(parse(flags("CONTROLLER", "CONTROLLER://h:1", "CLIENT:SSL")).is_err());
        assert!(parse(flags("A,B", "A://h:1", "A:SSL,B:SSL")).is_err());
        let twice = Flags { controller_listen: Some("h:2".to_owned()), ..flags("C", "C://h:1", "C:SSL") };
        assert!(parse(twice).is_err());
    }
}
