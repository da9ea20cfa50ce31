//! Requests to other brokers: [`exchange`] frames one request on a connection and reads its
//! response (the replica fetchers keep their connections); [`call`] does it over a fresh
//! connection, for what a coordinator sends to the leaders of other partitions
//! (WriteTxnMarkers) and a leader to a transaction coordinator (AddPartitionsToTxn
//! verification): rare calls, off the produce and fetch paths.
//!
//! Connections to other brokers go to their inter-broker listener ([`Connector`]): over TLS when
//! that listener runs it (their certificates checked against `--ssl-ca`, this broker's own
//! presented), then authenticated with SASL when it runs SASL.
//!
//! Runs on the calling shard's compio runtime (or the controller thread's, for fetchers).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use compio::BufResult;
use compio::buf::{IoBuf, IoBufMut};
use compio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use compio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::config::BrokerConfig;
use crate::config::sasl::InterBrokerSasl;
use crate::net::tls_stream::TlsStream;
use crate::security::tls::TlsError;

/// Largest response frame accepted (a follower's fetch answer is the largest).
const FRAME_BYTES_MAX: usize = 64 << 20;

fn invalid(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())
}

/// Sends `request` at `version` to the broker at `address` over a new connection and returns
/// its response, within `timeout`.
///
/// # Errors
/// A connection or I/O error, a malformed response, or `TimedOut`.
pub(crate) async fn call<Request, Response>(
    address: &str,
    api_key: ApiKey,
    version: i16,
    request: &Request,
    timeout: Duration,
) -> std::io::Result<Response>
where
    Request: Encodable + HeaderVersion,
    Response: Decodable + HeaderVersion,
{
    let connector = crate::context::ShardContext::current()
        .map(|shard| shard.shared.peers.clone())
        .ok_or_else(|| std::io::Error::other("peer calls run on a shard"))?;
    let exchange = async {
        let mut stream = connector.connect(address).await?;
        let frame = Frame { api_key, version, correlation_id: 1, client_id: "sluice-broker" };
        exchange(&mut stream, frame, request).await
    };
    match compio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_elapsed) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")),
    }
}

/// How a request is framed: its API, version, correlation id and client id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) api_key: ApiKey,
    pub(crate) version: i16,
    pub(crate) correlation_id: i32,
    pub(crate) client_id: &'static str,
}

/// Writes one request on `stream` and reads its response (which must carry the same
/// correlation id).
///
/// # Errors
/// An I/O error, a response frame over the limit, or a malformed response.
pub(crate) async fn exchange<Stream, Request, Response>(
    stream: &mut Stream,
    frame: Frame,
    request: &Request,
) -> std::io::Result<Response>
where
    Stream: AsyncRead + AsyncWrite,
    Request: Encodable + HeaderVersion,
    Response: Decodable + HeaderVersion,
{
    let header = RequestHeader::default()
        .with_request_api_key(frame.api_key as i16)
        .with_request_api_version(frame.version)
        .with_correlation_id(frame.correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(frame.client_id)));
    let mut bytes = BytesMut::new();
    bytes.put_i32(0);
    header.encode(&mut bytes, Request::header_version(frame.version)).map_err(invalid)?;
    request.encode(&mut bytes, frame.version).map_err(invalid)?;
    let size = i32::try_from(bytes.len() - 4).map_err(invalid)?;
    bytes[..4].copy_from_slice(&size.to_be_bytes());
    let BufResult(written, _) = stream.write_all(bytes.to_vec()).await;
    written?;
    let BufResult(read, size) = stream.read_exact([0u8; 4]).await;
    read?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|size| *size <= FRAME_BYTES_MAX)
        .ok_or_else(|| invalid("response frame size"))?;
    let BufResult(read, body) = stream.read_exact(Vec::with_capacity(size).slice(..size)).await;
    read?;
    let mut body = Bytes::from(compio::buf::IntoInner::into_inner(body));
    let header = ResponseHeader::decode(&mut body, Response::header_version(frame.version)).map_err(invalid)?;
    if header.correlation_id != frame.correlation_id {
        return Err(invalid("correlation id mismatch"));
    }
    Response::decode(&mut body, frame.version).map_err(invalid)
}

/// How this broker connects to the others' inter-broker listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connector {
    /// The TLS client configuration, when the listener runs TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The SASL credentials, when the listener runs SASL.
    sasl: Option<InterBrokerSasl>,
}

impl Connector {
    /// The connector for `config`'s inter-broker listener.
    ///
    /// # Errors
    /// [`TlsError`]: the TLS files do not load.
    pub(crate) fn from_config(config: &BrokerConfig) -> Result<Self, TlsError> {
        let protocol = config.listener_set().inter_broker().protocol;
        let tls = if protocol.uses_tls() { Some(crate::security::tls::client_config(&config.tls)?) } else { None };
        let sasl = if protocol.uses_sasl() { config.sasl.inter_broker.clone() } else { None };
        Ok(Self { tls, sasl })
    }

    /// Connects to the broker at `address` (`HOST:PORT`, its advertised inter-broker endpoint),
    /// through the TLS handshake and SASL authentication its listener needs.
    ///
    /// # Errors
    /// A connection error, a refused handshake (the other broker's certificate is not trusted
    /// or does not name `HOST`) or refused authentication.
    pub(crate) async fn connect(&self, address: &str) -> std::io::Result<PeerStream> {
        let stream = TcpStream::connect(address).await?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let mut peer = match &self.tls {
            None => PeerStream::Plain(stream),
            Some(config) => {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_matches(['[', ']']);
                PeerStream::Tls(TlsStream::connect(stream, config.clone(), host).await?, BytesMut::new())
            }
        };
        if let Some(credentials) = &self.sasl {
            crate::security::sasl::client::authenticate(&mut peer, credentials).await.map_err(std::io::Error::other)?;
        }
        Ok(peer)
    }
}

/// A connection to another broker: plain TCP, or TLS with the decrypted bytes not yet read.
#[derive(Debug)]
pub(crate) enum PeerStream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, and the plaintext received but not yet read.
    Tls(TlsStream, BytesMut),
}

impl AsyncRead for PeerStream {
    /// Reads into `buffer` from its start: over its initialized bytes when it has some, else
    /// into its spare capacity (no unsafe length change either way).
    async fn read<B: IoBufMut>(&mut self, mut buffer: B) -> BufResult<usize, B> {
        match self {
            Self::Plain(stream) => stream.read(buffer).await,
            Self::Tls(tls, received) => {
                // An initialized buffer (a `[u8; 4]`) is overwritten from its start; an empty one
                // (spare capacity) is filled like a kernel read fills it.
                let initialized = buffer.buf_len();
                let room = if initialized > 0 { initialized } else { buffer.buf_capacity() };
                let chunk = match next_plaintext(tls, received, room).await {
                    Ok(chunk) => chunk,
                    Err(error) => return BufResult(Err(error), buffer),
                };
                if initialized > 0 {
                    buffer.as_mut_slice()[..chunk.len()].copy_from_slice(&chunk);
                } else {
                    let copied = sluice_engine::io::fill_spare(&mut buffer, &chunk);
                    assert_eq!(copied, chunk.len(), "the chunk was cut to the buffer's room");
                }
                BufResult(Ok(chunk.len()), buffer)
            }
        }
    }
}

/// Up to `room` decrypted bytes, reading the socket when none are waiting; empty at the end of
/// the stream.
async fn next_plaintext(tls: &mut TlsStream, received: &mut BytesMut, room: usize) -> std::io::Result<Bytes> {
    // Spelled out: compio's `IoBuf`, in scope here, has an `is_empty` and a `len` of its own
    // that would take the reference for `'static`.
    if BytesMut::is_empty(received) && tls.read_into(received).await? == 0 {
        return Ok(Bytes::new());
    }
    let count = BytesMut::len(received).min(room);
    Ok(received.split_to(count).freeze())
}

impl AsyncWrite for PeerStream {
    async fn write<T: IoBuf>(&mut self, buffer: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(stream) => stream.write(buffer).await,
            Self::Tls(tls, _) => {
                let written = async {
                    tls.write_plain(buffer.as_init()).await?;
                    tls.flush().await
                };
                let result = written.await.map(|()| buffer.buf_len());
                BufResult(result, buffer)
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(stream) => stream.flush().await,
            Self::Tls(tls, _) => tls.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(stream) => stream.shutdown().await,
            Self::Tls(tls, _) => {
                tls.close().await;
                tls.socket().clone().shutdown().await
            }
        }
    }
}
