//! Security: who is on the other end of a connection (its [`Session`]), and the parts that
//! decide it: the listener's security protocol, TLS, SASL authentication, ACL authorization
//! and client quotas.
//!
//! A session is created when a connection is accepted and lives as long as it. Its principal
//! starts as Kafka's `User:ANONYMOUS` and changes when TLS maps a client certificate or SASL
//! authenticates the client; handlers read it through `Call::session` to authorize and to
//! charge quotas.

pub(crate) mod acl;
pub(crate) mod acl_control;
pub(crate) mod authorizer;
pub(crate) mod checks;
pub(crate) mod controller_listener;
pub(crate) mod controller_sasl;
pub(crate) mod listeners;
pub(crate) mod operations;
pub(crate) mod sasl;
pub(crate) mod session;
pub(crate) mod tls;
pub(crate) mod x500;

pub(crate) use session::{Principal, SecurityProtocol, Session};
