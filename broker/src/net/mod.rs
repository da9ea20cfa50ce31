//! Networking: per-shard listeners sharing one port (SO_REUSEPORT), the connection state
//! machine, framing, and the limits that bound what a client can make the broker hold.

pub(crate) mod connection;
pub(crate) mod framing;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod peer;
pub(crate) mod send;
pub(crate) mod tls_stream;
