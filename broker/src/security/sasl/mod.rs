//! SASL authentication of a connection, as Kafka's `SaslServerAuthenticator` does it.
//!
//! A connection on a SASL listener goes through these states (Kafka's names in brackets):
//! 1. *initial* [HANDSHAKE_OR_VERSIONS_REQUEST]: ApiVersions (once) or SaslHandshake;
//! 2. *after ApiVersions* [HANDSHAKE_REQUEST]: SaslHandshake only;
//! 3. *authenticating* [AUTHENTICATE]: SaslAuthenticate only, carrying the mechanism's messages
//!    (one for PLAIN and OAUTHBEARER, two for SCRAM);
//! 4. *complete*: everything; the principal is `User:<name>`. With `connections.max.reauth.ms`
//!    the session expires: SaslHandshake then starts re-authentication (KIP-368, back to step
//!    3, same mechanism and same principal required), and any other request closes the
//!    connection;
//! 5. *failed*: the connection closes once the failure is answered.
//!
//! Any other request before step 4 closes the connection unanswered, as Kafka does (before the
//! handshake it is an "unexpected request during SASL handshake"; during step 3 Kafka answers
//! it with ILLEGAL_SASL_STATE first, which no client waits for). A failed authentication is
//! answered SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms`, then
//! the connection closes; an unsupported mechanism is answered UNSUPPORTED_SASL_MECHANISM with
//! the enabled list, delayed and closed alike. On a listener without SASL, SaslHandshake and
//! SaslAuthenticate are answered ILLEGAL_SASL_STATE (Kafka's `KafkaApis`).
//!
//! **Ordering.** The connection reads and starts requests pipelined. While a connection is not
//! authenticated, and for every SaslHandshake and SaslAuthenticate, [`guard`] makes the reader
//! wait ([`wait_turn`]) until the request's answer is decided before it reads the next one, so
//! a request never runs under a principal or state decided after it was read, and nothing
//! pipelined behind a failed authentication is ever read.
//!
//! Threads: a session's SASL state lives on the connection's shard and is touched by its reader
//! and by the handlers of its requests there. No secret (password, proof, token, key) is ever
//! logged or kept once checked: exchanges keep only what the next step needs.

pub(crate) mod bootstrap;
pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod oauthbearer;
pub(crate) mod plain;
pub(crate) mod scram;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::config::sasl::SaslMechanism;
use crate::context::ShardContext;
use crate::dispatch::Reply;
use crate::security::{Principal, Session};
use scram::{ScramFailure, ScramMechanism, ScramServer};

/// `len` random bytes from the operating system, URL-safe base64 (no `,` or `=`): SCRAM nonces
/// and salts.
///
/// # Panics
/// When the operating system has no randomness to give, which no broker can work without.
pub(crate) fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Kafka's minimum time between two re-authentications of one connection.
const REAUTH_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// One connection's SASL state (module docs).
#[derive(Debug, Default)]
pub(crate) struct SaslSession {
    state: RefCell<State>,
    /// Set by [`guard`] for a request the reader must wait on; taken by [`wait_turn`].
    turn: RefCell<Option<futures_channel::oneshot::Receiver<()>>>,
    /// When the session expires (`connections.max.reauth.ms`); `None`: never.
    expires_at: Cell<Option<Instant>>,
    /// When the last re-authentication started.
    reauth_started_at: Cell<Option<Instant>>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Initial,
    AfterApiVersions,
    Authenticating {
        mechanism: SaslMechanism,
        exchange: Exchange,
        /// The principal of the session being re-authenticated.
        reauthenticating: Option<Principal>,
    },
    /// Re-authentication asked for another mechanism: the next SaslAuthenticate fails.
    BadReauthMechanism(String),
    Complete {
        mechanism: SaslMechanism,
    },
    Failed,
}

#[derive(Debug)]
enum Exchange {
    Plain,
    Scram(ScramMechanism, ScramServer),
    /// `challenged`: the RFC 7628 error was sent; the client's `\x01` ends the exchange.
    OAuthBearer {
        challenged: bool,
    },
}

impl Exchange {
    fn new(mechanism: SaslMechanism) -> Self {
        match mechanism {
            SaslMechanism::Plain => Self::Plain,
            SaslMechanism::ScramSha256 => Self::Scram(ScramMechanism::Sha256, ScramServer::First),
            SaslMechanism::ScramSha512 => Self::Scram(ScramMechanism::Sha512, ScramServer::First),
            SaslMechanism::OAuthBearer => Self::OAuthBearer { challenged: false },
        }
    }
}

impl SaslSession {
    fn is_failed(&self) -> bool {
        matches!(*self.state.borrow(), State::Failed)
    }

    fn fail(&self) {
        *self.state.borrow_mut() = State::Failed;
    }
}

/// Whether `key` may run now; on a SASL listener, moves past ApiVersions. `Err` is why the
/// connection closes instead.
fn admit(session: &Session, key: ApiKey, now: Instant) -> Result<(), String> {
    if !session.protocol.uses_sasl() {
        return Ok(());
    }
    let sasl = &session.sasl;
    let mut state = sasl.state.borrow_mut();
    let refusal = match (&*state, key) {
        (State::Initial, ApiKey::ApiVersions) => {
            *state = State::AfterApiVersions;
            return Ok(());
        }
        (State::Initial | State::AfterApiVersions | State::Complete { .. }, ApiKey::SaslHandshake)
        | (
            State::Authenticating { .. } | State::BadReauthMechanism(_),
            ApiKey::SaslAuthenticate | ApiKey::SaslHandshake,
        ) => {
            return Ok(());
        }
        (State::Complete { .. }, _) => {
            if sasl.expires_at.get().is_none_or(|expires_at| now <= expires_at) {
                return Ok(());
            }
            format!("{key:?} after the SASL session expired; the client did not re-authenticate in time")
        }
        (State::Initial | State::AfterApiVersions, _) => format!("unexpected {key:?} during SASL handshake"),
        (State::Authenticating { .. } | State::BadReauthMechanism(_), _) => {
            format!("unexpected {key:?} during SASL authentication")
        }
        (State::Failed, _) => "request after a failed SASL authentication".to_owned(),
    };
    *state = State::Failed;
    Err(refusal)
}

/// Runs `reply` (the handling of a request of `key`) under the session's SASL rules: refused
/// requests close the connection; requests that decide or depend on authentication hold the
/// reader until they are answered (module docs, "Ordering"). Called by dispatch for every
/// request.
pub(crate) fn guard(
    shard: &ShardContext,
    session: &Session,
    key: ApiKey,
    reply: LocalBoxFuture<'static, Reply>,
) -> LocalBoxFuture<'static, Reply> {
    if !session.protocol.uses_sasl() {
        return reply;
    }
    let unauthenticated = !matches!(*session.sasl.state.borrow(), State::Complete { .. });
    if let Err(reason) = admit(session, key, shard.shared.clock.now()) {
        drop(reply);
        return Box::pin(std::future::ready(Reply::Close(reason)));
    }
    if !unauthenticated && !matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        return reply;
    }
    let (decided, turn) = futures_channel::oneshot::channel();
    *session.sasl.turn.borrow_mut() = Some(turn);
    Box::pin(async move {
        let answer = reply.await;
        // The reader may be gone (shutdown); nobody then waits for the turn.
        let _reader_gone = decided.send(());
        answer
    })
}

/// The reader's side of the ordering rule: waits until the request just started has been
/// answered when it decides authentication. Returns whether the connection reads on (false once
/// authentication failed: the writer answers what was read, then closes).
pub(crate) async fn wait_turn(session: &Session) -> bool {
    let turn = session.sasl.turn.borrow_mut().take();
    if let Some(turn) = turn {
        // A dropped sender means the handler did not finish (it panicked): stop reading.
        if turn.await.is_err() {
            return false;
        }
    }
    !session.sasl.is_failed()
}

/// SaslHandshake's answer: the error and the enabled mechanisms.
pub(crate) struct HandshakeAnswer {
    pub(crate) error: Option<ResponseError>,
    pub(crate) mechanisms: Vec<&'static str>,
}

/// Decides a SaslHandshake for `mechanism` (its delay, when it fails, included).
pub(crate) async fn handshake(shard: &ShardContext, session: &Session, mechanism: &str) -> HandshakeAnswer {
    let config = &shard.config().sasl;
    let enabled: Vec<&'static str> = config.enabled_mechanisms.iter().map(|mechanism| mechanism.name()).collect();
    if !session.protocol.uses_sasl() {
        return HandshakeAnswer { error: Some(ResponseError::IllegalSaslState), mechanisms: Vec::new() };
    }
    let now = shard.shared.clock.now();
    let requested =
        SaslMechanism::from_name(mechanism).filter(|mechanism| config.enabled_mechanisms.contains(mechanism));
    let sasl = &session.sasl;
    let decision = {
        let mut state = sasl.state.borrow_mut();
        match (&*state, requested) {
            (State::Initial | State::AfterApiVersions, Some(requested)) => {
                *state = State::Authenticating {
                    mechanism: requested,
                    exchange: Exchange::new(requested),
                    reauthenticating: None,
                };
                Ok(())
            }
            (State::Complete { mechanism: previous }, requested) => {
                let reauth_allowed = sasl.expires_at.get().is_some()
                    && sasl
                        .reauth_started_at
                        .get()
                        .is_none_or(|started| now.saturating_duration_since(started) >= REAUTH_INTERVAL_MIN);
                if !reauth_allowed {
                    // Not a re-authentication: Kafka's KafkaApis answers and keeps the connection.
                    return HandshakeAnswer { error: Some(ResponseError::IllegalSaslState), mechanisms: Vec::new() };
                }
                sasl.reauth_started_at.set(Some(now));
                match requested {
                    Some(requested) if requested == *previous => {
                        *state = State::Authenticating {
                            mechanism: requested,
                            exchange: Exchange::new(requested),
                            reauthenticating: Some(session.principal()),
                        };
                        Ok(())
                    }
                    Some(requested) => {
                        *state = State::BadReauthMechanism(format!(
                            "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                            requested.name(),
                            previous.name()
                        ));
                        Ok(())
                    }
                    None => Err(ResponseError::UnsupportedSaslMechanism),
                }
            }
            (State::Initial | State::AfterApiVersions, None) => Err(ResponseError::UnsupportedSaslMechanism),
            (State::Authenticating { .. } | State::BadReauthMechanism(_) | State::Failed, _) => {
                Err(ResponseError::IllegalSaslState)
            }
        }
    };
    match decision {
        Ok(()) => HandshakeAnswer { error: None, mechanisms: enabled },
        Err(error) => {
            sasl.fail();
            delay_failure(shard).await;
            let mechanisms = if error == ResponseError::UnsupportedSaslMechanism { enabled } else { Vec::new() };
            HandshakeAnswer { error: Some(error), mechanisms }
        }
    }
}

/// SaslAuthenticate's answer.
pub(crate) struct AuthenticateAnswer {
    pub(crate) error: Option<(ResponseError, String)>,
    pub(crate) auth_bytes: Vec<u8>,
    pub(crate) session_lifetime_ms: i64,
}

/// Kafka's answer for a failure whose details stay on the broker.
fn invalid_credentials(mechanism: SaslMechanism, reauthenticating: bool) -> String {
    let during = if reauthenticating { "re-authentication" } else { "authentication" };
    format!("Authentication failed during {during} due to invalid credentials with SASL mechanism {}", mechanism.name())
}

/// Decides one SaslAuthenticate carrying `auth_bytes` (its delay, when it fails, included).
pub(crate) async fn authenticate(shard: &ShardContext, session: &Session, auth_bytes: &[u8]) -> AuthenticateAnswer {
    if !session.protocol.uses_sasl() || matches!(*session.sasl.state.borrow(), State::Complete { .. }) {
        return AuthenticateAnswer {
            error: Some((
                ResponseError::IllegalSaslState,
                "SaslAuthenticate request received after successful authentication".to_owned(),
            )),
            auth_bytes: Vec::new(),
            session_lifetime_ms: 0,
        };
    }
    let step = step(shard, session, auth_bytes);
    match step {
        Ok(Step::Continue(bytes)) => AuthenticateAnswer { error: None, auth_bytes: bytes, session_lifetime_ms: 0 },
        Ok(Step::Done { bytes, user, mechanism, reauthenticating, expires_unix_ms }) => {
            let principal = Principal::user(&user);
            if let Some(previous) = reauthenticating
                && previous != principal
            {
                let message = format!(
                    "Cannot change principals during re-authentication from {}.{}: {}.{}",
                    previous.kind, previous.name, principal.kind, principal.name
                );
                return fail(shard, session, message).await;
            }
            let lifetime_ms = session_lifetime_ms(shard, expires_unix_ms);
            let now = shard.shared.clock.now();
            session.sasl.expires_at.set((lifetime_ms > 0).then(|| now + Duration::from_millis(lifetime_ms)));
            tracing::debug!(peer = %session.peer, %principal, mechanism = mechanism.name(), "SASL authentication complete");
            session.set_principal(principal);
            *session.sasl.state.borrow_mut() = State::Complete { mechanism };
            AuthenticateAnswer { error: None, auth_bytes: bytes, session_lifetime_ms: lifetime_ms as i64 }
        }
        Err(message) => fail(shard, session, message).await,
    }
}

/// Kafka's session lifetime: `connections.max.reauth.ms`, cut to the credential's own expiry
/// (an OAUTHBEARER token's `exp`); 0 when neither applies.
fn session_lifetime_ms(shard: &ShardContext, expires_unix_ms: Option<i64>) -> u64 {
    let max_reauth_ms = shard.config().sasl.max_reauth_ms;
    let Some(expires_unix_ms) = expires_unix_ms else { return max_reauth_ms };
    // At least 1 ms: an expiry in the past still bounds the session.
    let left_ms = u64::try_from(expires_unix_ms.saturating_sub(shard.shared.clock.unix_ms())).unwrap_or(0).max(1);
    if max_reauth_ms == 0 { left_ms } else { left_ms.min(max_reauth_ms) }
}

async fn fail(shard: &ShardContext, session: &Session, message: String) -> AuthenticateAnswer {
    tracing::info!(peer = %session.peer, "SASL authentication failed");
    session.sasl.fail();
    delay_failure(shard).await;
    AuthenticateAnswer {
        error: Some((ResponseError::SaslAuthenticationFailed, message)),
        auth_bytes: Vec::new(),
        session_lifetime_ms: 0,
    }
}

/// `connection.failed.authentication.delay.ms`: slows down password guessing.
async fn delay_failure(shard: &ShardContext) {
    let delay_ms = shard.config().sasl.failed_authentication_delay_ms;
    if delay_ms > 0 {
        shard.shared.clock.sleep(Duration::from_millis(delay_ms)).await;
    }
}

enum Step {
    Continue(Vec<u8>),
    Done {
        bytes: Vec<u8>,
        user: String,
        mechanism: SaslMechanism,
        reauthenticating: Option<Principal>,
        /// When the credential itself expires (an OAUTHBEARER token), Unix ms.
        expires_unix_ms: Option<i64>,
    },
}

/// One step of the mechanism's exchange; `Err` is the message for the client.
fn step(shard: &ShardContext, session: &Session, auth_bytes: &[u8]) -> Result<Step, String> {
    let mut state = session.sasl.state.borrow_mut();
    let (mechanism, exchange, reauthenticating) = match &mut *state {
        State::Authenticating { mechanism, exchange, reauthenticating } => (*mechanism, exchange, reauthenticating),
        State::BadReauthMechanism(message) => return Err(message.clone()),
        _ => return Err("SaslAuthenticate before SaslHandshake".to_owned()),
    };
    let is_reauth = reauthenticating.is_some();
    let done = |bytes, user| Step::Done {
        bytes,
        user,
        mechanism,
        reauthenticating: reauthenticating.clone(),
        expires_unix_ms: None,
    };
    match exchange {
        Exchange::Plain => {
            let image = shard.image();
            let users = shard.config().sasl.plain_users.as_ref();
            plain::authenticate(auth_bytes, users, &image.scram)
                .map(|user| done(Vec::new(), user))
                .map_err(|failure| failure.0.to_owned())
        }
        Exchange::Scram(scram_mechanism, server) => {
            let scram_mechanism = *scram_mechanism;
            let outcome = match server {
                ScramServer::First => {
                    let image = shard.image();
                    server.first(auth_bytes, |user| image.scram.get(user, scram_mechanism).cloned()).map(Step::Continue)
                }
                ScramServer::Final(_) => {
                    server.finish(scram_mechanism, auth_bytes).map(|(bytes, user)| done(bytes, user))
                }
            };
            outcome.map_err(|failure| match failure {
                ScramFailure::InvalidCredentials => invalid_credentials(mechanism, is_reauth),
                ScramFailure::Message(message) => message.to_owned(),
            })
        }
        Exchange::OAuthBearer { challenged } => {
            if *challenged {
                // The client's answer to the challenge (`\x01`, or anything): the exchange fails.
                return Err(oauthbearer::INVALID_TOKEN.to_owned());
            }
            let Some(config) = shard.config().sasl.oauthbearer.as_ref() else {
                return Err(invalid_credentials(mechanism, is_reauth));
            };
            let response = oauthbearer::parse_initial_response(auth_bytes)
                .ok_or_else(|| invalid_credentials(mechanism, is_reauth))?;
            match oauthbearer::validate(config, response.token, shard.shared.clock.unix_ms()) {
                Ok(valid) if !response.authzid.is_empty() && response.authzid != valid.principal => Err(format!(
                    "Authentication failed: Client requested an authorization id ({}) that is different from the token's principal name ({})",
                    response.authzid, valid.principal
                )),
                Ok(valid) => Ok(Step::Done {
                    bytes: Vec::new(),
                    user: valid.principal,
                    mechanism,
                    reauthenticating: reauthenticating.clone(),
                    expires_unix_ms: Some(valid.expires_unix_ms),
                }),
                Err(reason) => {
                    tracing::debug!(peer = %session.peer, %reason, "OAUTHBEARER token refused");
                    *challenged = true;
                    Ok(Step::Continue(oauthbearer::INVALID_TOKEN.as_bytes().to_vec()))
                }
            }
        }
    }
}

/// Runs every SASL parser and the SCRAM server over untrusted bytes, for the fuzz target: the
/// first byte picks the message (SCRAM client-first, client-final, a whole SCRAM exchange whose
/// two messages are split at the first newline, or PLAIN), the rest is the message. Nothing may
/// panic, whatever the bytes.
pub(crate) fn exercise_parsers(input: &[u8]) {
    let Some((selector, message)) = input.split_first() else { return };
    match selector % 4 {
        0 => drop(scram::parse_client_first(message)),
        1 => drop(scram::parse_client_final(message)),
        2 => {
            let mechanism = if selector & 4 == 0 { ScramMechanism::Sha256 } else { ScramMechanism::Sha512 };
            // Cheap to derive (no PBKDF2): the salted password is given.
            let credential = mechanism.credential(b"salt".to_vec(), b"salted password", 4096);
            let (first, last) = match message.iter().position(|byte| *byte == b'\n') {
                Some(split) => (&message[..split], &message[split + 1..]),
                None => (message, &b""[..]),
            };
            let mut server = ScramServer::First;
            if server.first(first, |_| Some(credential.clone())).is_ok() {
                assert!(server.finish(mechanism, last).is_err(), "no proof of the made-up password passes");
            }
        }
        _ => {
            let users = std::collections::BTreeMap::from([("user".to_owned(), "password".to_owned())]);
            drop(plain::authenticate(message, Some(&users), &credentials::ScramCredentials::default()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_entry_point_takes_well_formed_and_garbled_messages() {
        let inputs: [&[u8]; 7] = [
            b"",
            b"\x00n,,n=user,r=abc",
            b"\x01c=biws,r=abc,p=AAAA",
            b"\x02n,,n=user,r=abc\nc=biws,r=abc,p=AAAA",
            b"\x06n,,n=user,r=abc\n",
            b"\x03\x00user\x00password",
            b"\x02\xff\xfe\n\x00",
        ];
        for input in inputs {
            exercise_parsers(input);
        }
    }

    fn sasl_session() -> Session {
        Session::new(
            std::rc::Rc::from("SASL_PLAINTEXT"),
            crate::security::SecurityProtocol::SaslPlaintext,
            ([127, 0, 0, 1], 1).into(),
        )
    }

    #[test]
    fn only_api_versions_and_the_handshake_come_before_authentication() {
        let now = Instant::now();
        let session = sasl_session();
        assert!(admit(&session, ApiKey::ApiVersions, now).is_ok());
        assert!(admit(&session, ApiKey::ApiVersions, now).is_err(), "ApiVersions once");
        assert!(session.sasl.is_failed());
        let session = sasl_session();
        assert!(admit(&session, ApiKey::Metadata, now).is_err());
        let session = sasl_session();
        assert!(admit(&session, ApiKey::SaslHandshake, now).is_ok());
        *session.sasl.state.borrow_mut() = State::Complete { mechanism: SaslMechanism::Plain };
        assert!(admit(&session, ApiKey::Metadata, now).is_ok());
        session.sasl.expires_at.set(Some(now));
        assert!(admit(&session, ApiKey::SaslHandshake, now + Duration::from_secs(1)).is_ok(), "re-authentication");
        assert!(admit(&session, ApiKey::Metadata, now + Duration::from_secs(1)).is_err(), "expired");
        let plaintext = Session::plaintext(([127, 0, 0, 1], 1).into());
        assert!(admit(&plaintext, ApiKey::Metadata, now).is_ok(), "no SASL on a plaintext listener");
    }
}
