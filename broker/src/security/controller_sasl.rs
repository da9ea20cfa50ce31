//! SASL/PLAIN on the controller listener (SASL_PLAINTEXT or SASL_SSL), the way a KRaft
//! controller listener runs it with `sasl.mechanism.controller.protocol=PLAIN`.
//!
//! Why PLAIN and nothing else: a SCRAM credential lives in the metadata log, which the
//! controllers replicate over this very listener, so a quorum that needs SCRAM to talk could
//! never start (Kafka refuses SCRAM there for the same reason). PLAIN is checked here against a
//! static source, the PLAIN users file (`--sasl-plain-users-file`), never against the metadata.
//! A node connects as the inter-broker user (`--inter-broker-sasl-username` and its password),
//! whatever mechanism it uses on the broker listeners.
//!
//! The listener does not speak Kafka's protocol, so there is no SaslHandshake: the exchange is
//! two frames of the transport's own framing (`[length][CRC32C][JSON]`), right after the TCP
//! connect (SASL_PLAINTEXT) or the TLS handshake (SASL_SSL), before any controller message:
//! 1. the connecting node sends [`Authenticate`]: the mechanism name (`PLAIN`) and PLAIN's one
//!    message, `NUL user NUL password` (RFC 4616);
//! 2. the listener checks it with the broker's PLAIN code ([`plain::authenticate`]: Kafka's
//!    checks and messages), then admits the principal `User:<name>` as it admits an SSL peer's
//!    (a super user, or CLUSTER_ACTION on the cluster), and answers [`Outcome`]:
//!    `Authenticated`, after which the connection carries controller messages, or
//!    `Failed { message }` (Kafka's message, never the password), sent after
//!    `connection.failed.authentication.delay.ms` as on the client listeners, after which the
//!    listener closes the connection. A connecting node that is refused reports the message and
//!    connects again later, which authenticates again.
//!
//! The first frame is bounded ([`EXCHANGE_SIZE_BYTES_MAX`]) and must arrive within
//! [`EXCHANGE_TIMEOUT`], so a stranger can neither make a node allocate a large frame nor hold
//! a connection task open. No password is logged or kept: `Debug` hides it, the log lines and
//! errors name the user only.
//!
//! Threads: [`ControllerSasl`] is built on the main thread at startup and read by the
//! controller thread (both ends) and the broker's controller clients.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use compio::BufResult;
use compio::buf::{IntoInner as _, IoBuf as _};
use compio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use serde::{Deserialize, Serialize};

use super::sasl::credentials::ScramCredentials;
use super::sasl::plain;
use crate::config::sasl::SaslMechanism;
use crate::config::{BrokerConfig, ConfigError};
use crate::controller::log_store::get_frame;
use crate::controller::network::write_message;
use crate::security::Principal;

/// The largest exchange frame read: a PLAIN message is a name and a password.
pub(crate) const EXCHANGE_SIZE_BYTES_MAX: usize = 64 * 1024;
/// How long a connecting node has to send its [`Authenticate`], and to get the answer.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connecting node's first frame.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Authenticate {
    /// The mechanism's IANA name; `PLAIN` is the only one served.
    pub(crate) mechanism: String,
    /// The mechanism's message: PLAIN's `[authzid] NUL user NUL password`.
    pub(crate) auth_bytes: Vec<u8>,
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Authenticate").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

/// The listener's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Authenticated and admitted: controller messages follow.
    Authenticated,
    /// Refused; the listener closes the connection.
    Failed { message: String },
}

/// Why a connection was refused: what is logged (no secret in either field).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The user the peer claimed, when its message named one.
    pub(crate) user: Option<String>,
    /// Why, as answered (or, for a broken exchange, why nothing was answered).
    pub(crate) reason: String,
}

/// SASL on this node's controller traffic, both ends.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ControllerSasl {
    /// Who this node authenticates as.
    username: String,
    password: String,
    /// Who may connect (the PLAIN users file); `None` on a node that serves no controller
    /// listener (broker only).
    users: Option<BTreeMap<String, String>>,
    /// `connection.failed.authentication.delay.ms`.
    failed_authentication_delay: Duration,
}

impl std::fmt::Debug for ControllerSasl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ControllerSasl")
            .field("username", &self.username)
            .field("users", &self.users.as_ref().map(BTreeMap::len))
            .field("failed_authentication_delay", &self.failed_authentication_delay)
            .finish_non_exhaustive()
    }
}

impl ControllerSasl {
    /// The settings of a SASL controller listener named `listener`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`]: no inter-broker user to connect as, or, on a controller, no
    /// PLAIN users file to check peers against.
    pub(crate) fn from_config(config: &BrokerConfig, listener: &str) -> Result<Self, ConfigError> {
        let Some(credentials) = config.sasl.inter_broker.as_ref() else {
            return Err(ConfigError::Invalid {
                setting: "inter-broker-sasl-username",
                reason: format!(
                    "is needed by the SASL controller listener {listener}: nodes connect to it as that user (PLAIN)"
                ),
            });
        };
        let users = config.sasl.plain_users.clone();
        if config.process_roles.controller && users.is_none() {
            return Err(ConfigError::Invalid {
                setting: "sasl-plain-users-file",
                reason: format!(
                    "is needed by the SASL controller listener {listener}: PLAIN checks connecting nodes against it \
                     (SCRAM credentials live in the metadata the controllers replicate, so they cannot be used there)"
                ),
            });
        }
        Ok(Self {
            username: credentials.username.clone(),
            password: credentials.password.clone(),
            users,
            failed_authentication_delay: Duration::from_millis(config.sasl.failed_authentication_delay_ms),
        })
    }

    /// The connecting side: authenticates on `stream`, just connected (and through TLS for
    /// SASL_SSL).
    ///
    /// # Errors
    /// The connection failed, the answer was garbled, or the listener refused (the error says
    /// why; it names the user, never the password). The stream must then be dropped.
    pub(crate) async fn authenticate<S: AsyncRead + AsyncWrite>(&self, stream: &mut S) -> io::Result<()> {
        let request = Authenticate {
            mechanism: SaslMechanism::Plain.name().to_owned(),
            auth_bytes: format!("\0{}\0{}", self.username, self.password).into_bytes(),
        };
        let exchange = async {
            write_message(stream, &request).await?;
            read_small(stream).await
        };
        let answer: Outcome = match compio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(answer) => answer?,
            Err(_elapsed) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "controller listener: no SASL answer in time"));
            }
        };
        match answer {
            Outcome::Authenticated => Ok(()),
            Outcome::Failed { message } => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("controller listener refused SASL/PLAIN as {}: {message}", self.username),
            )),
        }
    }

    /// The listener's side: runs the exchange on `stream`, just accepted (and through TLS for
    /// SASL_SSL); `admits` is the principal check. Returns the admitted principal.
    ///
    /// # Errors
    /// [`Refusal`] (to log): the peer was answered `Failed` after the delay, or the exchange
    /// broke. The stream must then be closed.
    pub(crate) async fn accept<S: AsyncRead + AsyncWrite>(
        &self,
        stream: &mut S,
        admits: impl FnOnce(&Principal) -> bool,
    ) -> Result<Principal, Refusal> {
        let broken = |reason: String| Refusal { user: None, reason };
        let request: Authenticate = match compio::time::timeout(EXCHANGE_TIMEOUT, read_small(stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err(error)) => return Err(broken(format!("no SASL exchange: {error}"))),
            Err(_elapsed) => return Err(broken("no SASL exchange in time".to_owned())),
        };
        let decided = self.verify(&request).and_then(|principal| {
            if admits(&principal) {
                return Ok(principal);
            }
            Err(Refusal {
                user: Some(principal.name.to_string()),
                reason: format!(
                    "principal {principal} is not authorized on the controller listener (CLUSTER_ACTION on the \
                     cluster; make it a super user)"
                ),
            })
        });
        let answer = match &decided {
            Ok(_) => Outcome::Authenticated,
            Err(refusal) => {
                compio::time::sleep(self.failed_authentication_delay).await;
                Outcome::Failed { message: refusal.reason.clone() }
            }
        };
        if let Err(error) = write_message(stream, &answer).await {
            return Err(broken(format!("the SASL answer could not be sent: {error}")));
        }
        decided
    }

    /// Checks `request` against the PLAIN users file: the principal, or why not.
    fn verify(&self, request: &Authenticate) -> Result<Principal, Refusal> {
        let user = plain::parse(&request.auth_bytes).ok().map(|message| message.user.to_owned());
        let mechanism = &request.mechanism;
        if mechanism != SaslMechanism::Plain.name() {
            let reason = format!("Unsupported SASL mechanism {mechanism:?}; the controller listener enables PLAIN");
            return Err(Refusal { user, reason });
        }
        let Some(users) = &self.users else {
            // A broker-only node serves no controller listener; refuse rather than admit.
            return Err(Refusal { user, reason: "this node checks no controller credentials".to_owned() });
        };
        match plain::authenticate(&request.auth_bytes, Some(users), &ScramCredentials::default()) {
            Ok(name) => Ok(Principal::user(&name)),
            Err(failure) => Err(Refusal { user, reason: failure.0.to_owned() }),
        }
    }
}

/// Reads one exchange frame, at most [`EXCHANGE_SIZE_BYTES_MAX`] long.
async fn read_small<T: serde::de::DeserializeOwned>(stream: &mut impl AsyncRead) -> io::Result<T> {
    let BufResult(read, header) = stream.read_exact([0u8; 8]).await;
    read?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length > EXCHANGE_SIZE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "SASL frame too large"));
    }
    let BufResult(read, body) = stream.read_exact(Vec::with_capacity(length).slice(..length)).await;
    read?;
    let mut frame = header.to_vec();
    frame.extend_from_slice(&body.into_inner());
    let (payload, _) =
        get_frame(&frame, 0).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "corrupt SASL frame"))?;
    // Only the kind of error: serde's message may quote the frame, which may hold a password.
    serde_json::from_slice(payload).map_err(|error| {
        io::Error::new(io::ErrorKind::InvalidData, format!("malformed SASL frame ({:?})", error.classify()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(users: &[(&str, &str)]) -> ControllerSasl {
        ControllerSasl {
            username: "node".to_owned(),
            password: "node-secret".to_owned(),
            users: Some(users.iter().map(|(name, password)| ((*name).to_owned(), (*password).to_owned())).collect()),
            failed_authentication_delay: Duration::ZERO,
        }
    }

    fn plain(user: &str, password: &str) -> Authenticate {
        Authenticate { mechanism: "PLAIN".to_owned(), auth_bytes: format!("\0{user}\0{password}").into_bytes() }
    }

    #[test]
    fn a_listed_user_with_its_password_is_its_principal() {
        let server = sasl(&[("node", "node-secret")]);
        assert_eq!(server.verify(&plain("node", "node-secret")), Ok(Principal::user("node")));
    }

    #[test]
    fn a_wrong_password_an_unknown_user_and_another_mechanism_are_refused_without_the_password() {
        let server = sasl(&[("node", "node-secret")]);
        let refusal = server.verify(&plain("node", "guessed-pw")).expect_err("wrong password");
        assert_eq!(refusal.user.as_deref(), Some("node"));
        assert_eq!(refusal.reason, "Authentication failed: Invalid username or password");
        assert!(!format!("{refusal:?}").contains("guessed-pw"));
        assert!(server.verify(&plain("stranger", "node-secret")).is_err());
        let scram = Authenticate { mechanism: "SCRAM-SHA-512".to_owned(), ..plain("node", "node-secret") };
        assert!(server.verify(&scram).expect_err("not PLAIN").reason.contains("PLAIN"));
        let garbled = Authenticate { mechanism: "PLAIN".to_owned(), auth_bytes: b"node-secret".to_vec() };
        assert_eq!(server.verify(&garbled).expect_err("one token").user, None);
    }

    #[test]
    fn a_node_without_a_users_file_admits_nobody() {
        let server = ControllerSasl { users: None, ..sasl(&[]) };
        assert!(server.verify(&plain("node", "node-secret")).is_err());
    }

    #[test]
    fn a_malformed_frame_is_refused_without_quoting_it() {
        let mut frame = Vec::new();
        crate::controller::log_store::put_frame(&mut frame, br#"{"mechanism":"PLAIN","auth_bytes":"hunter2"}"#);
        let outcome = compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async move { read_small::<Authenticate>(&mut &frame[..]).await });
        let error = outcome.expect_err("auth_bytes is not a byte array").to_string();
        assert!(error.contains("malformed SASL frame") && !error.contains("hunter2"), "{error}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?} {:?}", sasl(&[("node", "node-secret")]), plain("node", "node-secret"));
        assert!(!shown.contains("node-secret"), "{shown}");
    }

    #[test]
    fn a_sasl_controller_listener_needs_the_node_user_and_on_a_controller_the_users_file() {
        use crate::config::sasl::InterBrokerSasl;
        let mut config = BrokerConfig::new("data", "127.0.0.1:9092".parse().expect("address"));
        config.process_roles.controller = true;
        let setting = |config: &BrokerConfig| match ControllerSasl::from_config(config, "CONTROLLER") {
            Err(ConfigError::Invalid { setting, .. }) => Some(setting),
            _ => None,
        };
        assert_eq!(setting(&config), Some("inter-broker-sasl-username"));
        config.sasl.inter_broker = Some(InterBrokerSasl {
            mechanism: SaslMechanism::ScramSha512,
            username: "node".to_owned(),
            password: "node-secret".to_owned(),
        });
        assert_eq!(setting(&config), Some("sasl-plain-users-file"));
        config.process_roles.controller = false;
        assert!(ControllerSasl::from_config(&config, "CONTROLLER").is_ok(), "a broker only connects");
        config.process_roles.controller = true;
        config.sasl.plain_users = Some([("node".to_owned(), "node-secret".to_owned())].into());
        let sasl = ControllerSasl::from_config(&config, "CONTROLLER").expect("valid");
        assert_eq!(sasl.verify(&plain("node", "node-secret")), Ok(Principal::user("node")));
    }

    /// Runs both ends over a loopback connection: the client's result and the server's.
    fn exchange(
        client: ControllerSasl,
        server: ControllerSasl,
        admitted: bool,
    ) -> (io::Result<()>, Result<Principal, Refusal>) {
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let listener = compio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let serving = compio::runtime::spawn(async move {
                let (mut stream, _) = listener.accept().await.expect("accept");
                server.accept(&mut stream, |_| admitted).await
            });
            let mut stream = compio::net::TcpStream::connect(address).await.expect("connect");
            let connected = client.authenticate(&mut stream).await;
            (connected, serving.await.expect("server task"))
        })
    }

    #[test]
    fn the_exchange_admits_a_listed_node_over_a_connection() {
        let (client, server) = exchange(sasl(&[]), sasl(&[("node", "node-secret")]), true);
        assert!(client.is_ok(), "{client:?}");
        assert_eq!(server, Ok(Principal::user("node")));
    }

    #[test]
    fn a_refused_node_learns_why_and_the_error_names_no_password() {
        let wrong = ControllerSasl { password: "wrong-pw".to_owned(), ..sasl(&[]) };
        let (client, server) = exchange(wrong, sasl(&[("node", "node-secret")]), true);
        let error = client.expect_err("wrong password").to_string();
        assert!(error.contains("Invalid username or password") && !error.contains("wrong-pw"), "{error}");
        assert!(matches!(server, Err(Refusal { user: Some(ref user), .. }) if user == "node"));
    }

    #[test]
    fn an_authenticated_principal_that_is_not_admitted_is_refused() {
        let (client, server) = exchange(sasl(&[]), sasl(&[("node", "node-secret")]), false);
        let error = client.expect_err("not admitted").to_string();
        assert!(error.contains("not authorized") && error.contains("User:node"), "{error}");
        assert!(server.is_err());
    }
}
