//! Error types: one enum for talking to a broker, one for building batches, one for decoding them.
//!
//! Every variant carries the context needed to act on it (API, version, peer, position) and keeps
//! its cause as a `#[source]`. Plain data; any thread may hold them.

use std::io;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use sluice_batch::decode::DecodeError;
use thiserror::Error;

/// A boxed cause from the protocol crate, which reports its codec failures as `anyhow` errors.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a request to a broker failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address as given.
        address: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (includes read timeouts).
    #[error("i/o error on the connection to {peer}")]
    Io {
        /// The broker's address.
        peer: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed: most often a broker certificate this client does not trust, or
    /// one that does not name the host connected to.
    #[error("TLS handshake with {peer} failed")]
    Tls {
        /// The broker's address.
        peer: String,
        /// The handshake's error (a rustls error inside `InvalidData`), or a socket error.
        #[source]
        source: io::Error,
    },
    /// The broker refused the connection's authentication (SASL).
    #[error("authentication to {peer} failed: {reason}")]
    Authentication {
        /// The broker's address.
        peer: String,
        /// The broker's error and message, or why the exchange could not go on. Never a secret.
        reason: String,
    },
    /// The broker closed the connection while responses were outstanding.
    #[error("connection to {peer} closed by the broker")]
    Closed {
        /// The broker's address.
        peer: String,
    },
    /// The request could not be encoded at the negotiated version.
    #[error("cannot encode {api:?} v{version}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version used.
        version: i16,
        /// The codec's reason.
        #[source]
        source: CodecError,
    },
    /// The response could not be decoded at the version the request was sent with.
    #[error("cannot decode {api:?} v{version} response")]
    Decode {
        /// The response's API.
        api: ApiKey,
        /// The version used.
        version: i16,
        /// The codec's reason.
        #[source]
        source: CodecError,
    },
    /// The broker and this client share no version of the API.
    #[error("{api:?} is not supported: broker offers {broker:?}, client supports {client}")]
    UnsupportedVersion {
        /// The API in question.
        api: ApiKey,
        /// What the broker advertised, `None` when it does not know the API at all.
        broker: Option<VersionRange>,
        /// What this client can encode.
        client: VersionRange,
    },
    /// The encoded request does not fit the i32 size prefix.
    #[error("{api:?} request of {size_bytes} bytes is too large to frame")]
    RequestTooLarge {
        /// The request's API.
        api: ApiKey,
        /// The encoded size.
        size_bytes: usize,
    },
    /// A response frame announced a size outside `0..=max`.
    #[error("response frame of {size_bytes} bytes is outside 0..={size_bytes_max}")]
    FrameSize {
        /// The announced size.
        size_bytes: i64,
        /// The configured limit.
        size_bytes_max: usize,
    },
    /// A response carried a correlation id other than the oldest outstanding request's.
    #[error("response correlation id {actual} does not match the oldest request's {expected}")]
    CorrelationMismatch {
        /// The id of the oldest outstanding request.
        expected: i32,
        /// The id found in the response header.
        actual: i32,
    },
    /// `receive` was called with a ticket that is not the oldest outstanding request.
    #[error("ticket {ticket} received out of order: oldest outstanding request is {oldest:?}")]
    OutOfOrder {
        /// Correlation id of the ticket given.
        ticket: i32,
        /// Correlation id of the oldest outstanding request, if any.
        oldest: Option<i32>,
    },
    /// A Produce request with acks=0 gets no response; use `enqueue_without_response`.
    #[error("a produce request with acks=0 gets no response; send it with enqueue_without_response")]
    NoResponseExpected,
    /// The broker answered with a top-level or per-resource error code.
    #[error("{api:?} failed for {resource}: {error}")]
    Broker {
        /// The API that failed.
        api: ApiKey,
        /// Which topic, partition or resource the code belongs to.
        resource: String,
        /// The decoded error code.
        error: ResponseError,
    },
    /// The broker does not know the topic (or it has no partitions).
    #[error("topic {topic} not found in metadata")]
    UnknownTopic {
        /// The topic's name.
        topic: String,
    },
    /// A fetched batch could not be decoded.
    #[error("cannot decode a fetched batch")]
    Batch(#[from] DecodeError),
}

impl ClientError {
    /// The broker error code, when the broker returned one.
    pub fn response_error(&self) -> Option<&ResponseError> {
        match self {
            Self::Broker { error, .. } => Some(error),
            _ => None,
        }
    }
}
