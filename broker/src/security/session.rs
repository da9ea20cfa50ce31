//! One connection's security state.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

/// A listener's security protocol, Kafka's `SecurityProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS, authenticated by client certificate when one is asked for.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name for the protocol (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol with Kafka's name `name` (case-insensitive).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [Self::Plaintext, Self::Ssl, Self::SaslPlaintext, Self::SaslSsl]
            .into_iter()
            .find(|protocol| protocol.name().eq_ignore_ascii_case(name))
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub(crate) fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether the connection runs over TLS.
    pub(crate) fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// A Kafka principal: a type and a name, written `Type:name` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Principal {
    /// The principal type; `User` for every principal the broker itself creates.
    pub(crate) kind: Rc<str>,
    /// The name.
    pub(crate) name: Rc<str>,
}

impl Principal {
    /// Kafka's principal of a connection nothing has authenticated: `User:ANONYMOUS`.
    pub(crate) fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// `User:name`.
    pub(crate) fn user(name: &str) -> Self {
        Self { kind: Rc::from("User"), name: Rc::from(name) }
    }

    /// Parses `Type:name`; the name may itself contain colons.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        (!kind.is_empty()).then(|| Self { kind: Rc::from(kind), name: Rc::from(name) })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.kind, self.name)
    }
}

/// One connection's security state, shared by its reader, its writer and the handlers of its
/// requests (all on the connection's shard).
#[derive(Debug)]
pub(crate) struct Session {
    /// The name of the listener the connection came in on (`PLAINTEXT`, `SASL_SSL`, or the name
    /// given in `--listeners`).
    pub(crate) listener: Rc<str>,
    /// The listener's security protocol.
    pub(crate) protocol: SecurityProtocol,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Who the client is; `User:ANONYMOUS` until something authenticates it.
    principal: RefCell<Principal>,
    /// Where SASL authentication stands (`security::sasl`).
    pub(crate) sasl: crate::security::sasl::SaslSession,
    /// Until when the connection reads no request: a client over its quota (KIP-219).
    pub(crate) mute: crate::quota::Mute,
}

impl Session {
    /// A new connection's session, not yet authenticated.
    pub(crate) fn new(listener: Rc<str>, protocol: SecurityProtocol, peer: SocketAddr) -> Self {
        Self {
            listener,
            protocol,
            peer,
            principal: RefCell::new(Principal::anonymous()),
            sasl: crate::security::sasl::SaslSession::default(),
            mute: crate::quota::Mute::default(),
        }
    }

    /// A plaintext session, for tests (connections take theirs from their listener).
    #[cfg(test)]
    pub(crate) fn plaintext(peer: SocketAddr) -> Self {
        Self::new(Rc::from("PLAINTEXT"), SecurityProtocol::Plaintext, peer)
    }

    /// The connection's principal now.
    pub(crate) fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }

    /// Sets the principal once TLS or SASL has authenticated the client.
    pub(crate) fn set_principal(&self, principal: Principal) {
        *self.principal.borrow_mut() = principal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for protocol in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(SecurityProtocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(SecurityProtocol::from_name("sasl_ssl"), Some(SecurityProtocol::SaslSsl));
        assert_eq!(SecurityProtocol::from_name("TLS"), None);
    }

    #[test]
    fn principals_parse_and_print_as_kafka_writes_them() {
        let principal = Principal::parse("User:CN=a:b").expect("parses");
        assert_eq!(&*principal.kind, "User");
        assert_eq!(&*principal.name, "CN=a:b");
        assert_eq!(principal.to_string(), "User:CN=a:b");
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(Principal::parse("alice"), None);
        assert_eq!(Principal::parse(":alice"), None);
    }
}
