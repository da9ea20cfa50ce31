//! One blocking TCP (or TLS over TCP, see `transport`) connection to a broker: framing, request
//! headers, correlation ids, version negotiation and pipelining.
//!
//! A request is framed as `size i32 | request header | body`; the header version follows from the
//! API and its version (flexible versions use header v2 with tagged fields), as does the response
//! header version (`ApiVersions` always answers with header v0). Kafka answers the requests of one
//! connection in the order they were sent, so pipelining is: write several requests, then read
//! their responses oldest first. Each write returns a typed [`Ticket`] that later decodes its
//! response; a response whose correlation id differs from the ticket's is an error, never
//! silently matched to another request.
//!
//! Negotiation steps on connect:
//! 1. Send `ApiVersions` at the highest version this client knows.
//! 2. If the broker answers `UNSUPPORTED_VERSION` (its body then is v0), retry once at the highest
//!    `ApiVersions` version it advertised.
//! 3. Keep its table: every later request uses the highest version both sides support.
//!
//! Threads: a [`Connection`] belongs to one thread. [`Connection::into_split`] gives a
//! [`RequestWriter`] and a [`ResponseReader`] that may live on two threads (one writes, one
//! reads), with tickets passed between them in send order.

use std::any::Any;
use std::collections::VecDeque;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::marker::PhantomData;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ProduceRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::ClientError;
use crate::transport::{ReadHalf, Transport, WriteHalf};
use crate::versions::ApiVersions;

/// Settings for one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header.
    pub client_id: String,
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Socket read and write timeout: a response slower than this fails the connection.
    pub request_timeout: Duration,
    /// Largest response frame accepted; a larger size prefix is treated as a protocol error.
    pub response_size_bytes_max: usize,
    /// Per-API version caps applied after negotiation.
    pub version_caps: Vec<(ApiKey, i16)>,
    /// TLS (Kafka's `security.protocol` SSL and SASL_SSL): the handshake runs right after the
    /// TCP connect, with the host of the address as the server name; `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Runs on every new connection once versions are negotiated, before it is handed out:
    /// SASL authentication (SaslHandshake and SaslAuthenticate) for SASL listeners.
    pub authenticator: Option<Arc<dyn Authenticate>>,
}

/// Authentication of a new connection, which [`Connection::connect`] runs once versions are
/// negotiated (SASL: Kafka's brokers take ApiVersions before SaslHandshake).
pub trait Authenticate: std::fmt::Debug + Send + Sync {
    /// Authenticates `connection`, which has negotiated versions and sent nothing else.
    ///
    /// # Errors
    /// [`ClientError::Authentication`] when the broker refuses; any error of the exchange.
    fn authenticate(&self, connection: &mut Connection) -> Result<(), ClientError>;
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "sluice-client".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            // 256 MiB: far above fetch.max.bytes defaults (50 MiB), far below memory limits.
            response_size_bytes_max: 256 * 1024 * 1024,
            version_caps: Vec::new(),
            tls: None,
            authenticator: None,
        }
    }
}

/// Proof that a request was sent: decodes its response, in send order.
#[must_use = "a sent request's response must be received before later ones"]
#[derive(Debug)]
pub struct Ticket<R> {
    correlation_id: i32,
    version: i16,
    marker: PhantomData<fn() -> R>,
}

impl<R> Ticket<R> {
    /// The request's correlation id.
    pub fn correlation_id(&self) -> i32 {
        self.correlation_id
    }

    /// The version the request was encoded with (its response is decoded with the same).
    pub fn version(&self) -> i16 {
        self.version
    }
}

fn api_of<R: Request>() -> ApiKey {
    // Every `Request` type in kafka-protocol is generated from an ApiKey variant.
    ApiKey::try_from(R::KEY).expect("kafka-protocol request types have known API keys")
}

/// Whether `request` is a Produce with acks=0, which the broker never answers.
fn expects_no_response<R: Request + 'static>(request: &R) -> bool {
    (request as &dyn Any).downcast_ref::<ProduceRequest>().is_some_and(|produce| produce.acks == 0)
}

/// The sending half: encodes and writes requests.
#[derive(Debug)]
pub struct RequestWriter {
    stream: WriteHalf,
    peer: String,
    client_id: Option<StrBytes>,
    versions: ApiVersions,
    frame: BytesMut,
    next_correlation_id: i32,
}

impl RequestWriter {
    /// The negotiated version table.
    pub fn versions(&self) -> &ApiVersions {
        &self.versions
    }

    /// Encodes `request` at the negotiated version and writes it.
    ///
    /// # Errors
    /// `NoResponseExpected` for acks=0 Produce requests, `UnsupportedVersion`, `Encode`, `Io`.
    pub fn enqueue<R: Request + 'static>(&mut self, request: &R) -> Result<Ticket<R>, ClientError> {
        if expects_no_response(request) {
            return Err(ClientError::NoResponseExpected);
        }
        let version = self.versions.version_for(api_of::<R>())?;
        let correlation_id = self.write_request(request, version)?;
        Ok(Ticket { correlation_id, version, marker: PhantomData })
    }

    /// Writes a request the broker will not answer (a Produce with acks=0).
    ///
    /// # Errors
    /// `UnsupportedVersion`, `Encode`, `Io`.
    pub fn enqueue_without_response<R: Request>(&mut self, request: &R) -> Result<(), ClientError> {
        let version = self.versions.version_for(api_of::<R>())?;
        self.write_request(request, version).map(|_| ())
    }

    fn write_request<R: Request>(&mut self, request: &R, version: i16) -> Result<i32, ClientError> {
        let api = api_of::<R>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.checked_add(1).unwrap_or(0);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(self.client_id.clone());
        self.frame.clear();
        self.frame.put_i32(0); // size, patched below
        let encoded = header
            .encode(&mut self.frame, R::header_version(version))
            .and_then(|()| request.encode(&mut self.frame, version));
        encoded.map_err(|source| ClientError::Encode { api, version, source: source.into() })?;
        let size_bytes = self.frame.len() - 4;
        let Ok(size) = i32::try_from(size_bytes) else {
            return Err(ClientError::RequestTooLarge { api, size_bytes });
        };
        self.frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&self.frame).map_err(|source| ClientError::Io { peer: self.peer.clone(), source })?;
        Ok(correlation_id)
    }
}

/// The receiving half: reads and decodes responses in send order.
#[derive(Debug)]
pub struct ResponseReader {
    stream: BufReader<ReadHalf>,
    peer: String,
    response_size_bytes_max: usize,
}

impl ResponseReader {
    /// Reads the next response, which must belong to `ticket`, and decodes it.
    ///
    /// # Errors
    /// `Io` (including a read timeout), `Closed`, `FrameSize`, `CorrelationMismatch`, `Decode`.
    #[allow(clippy::needless_pass_by_value, reason = "taking the ticket makes each response received once")]
    pub fn receive<R: Request>(&mut self, ticket: Ticket<R>) -> Result<R::Response, ClientError> {
        let Ticket { correlation_id, version, .. } = ticket;
        let mut frame = self.read_frame()?;
        decode_response::<R>(&mut frame, correlation_id, version)
    }

    fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size_bytes = usize::try_from(size).ok().filter(|size| *size <= self.response_size_bytes_max).ok_or(
            ClientError::FrameSize { size_bytes: i64::from(size), size_bytes_max: self.response_size_bytes_max },
        )?;
        let mut frame = BytesMut::zeroed(size_bytes);
        self.read_exact(&mut frame)?;
        Ok(frame.freeze())
    }

    fn read_exact(&mut self, buffer: &mut [u8]) -> Result<(), ClientError> {
        self.stream.read_exact(buffer).map_err(|source| {
            if source.kind() == ErrorKind::UnexpectedEof {
                ClientError::Closed { peer: self.peer.clone() }
            } else {
                ClientError::Io { peer: self.peer.clone(), source }
            }
        })
    }
}

fn decode_response<R: Request>(
    frame: &mut Bytes,
    correlation_id: i32,
    version: i16,
) -> Result<R::Response, ClientError> {
    let api = api_of::<R>();
    let header = ResponseHeader::decode(frame, R::Response::header_version(version))
        .map_err(|source| ClientError::Decode { api, version, source: source.into() })?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::CorrelationMismatch { expected: correlation_id, actual: header.correlation_id });
    }
    R::Response::decode(frame, version).map_err(|source| ClientError::Decode { api, version, source: source.into() })
}

/// A connection to one broker, with negotiated versions.
///
/// ```no_run
/// use sluice_client::{Connection, ConnectionConfig};
/// use kafka_protocol::messages::MetadataRequest;
///
/// let mut connection = Connection::connect("127.0.0.1:9092", &ConnectionConfig::default())?;
/// let metadata = connection.send(&MetadataRequest::default())?;
/// println!("{} brokers", metadata.brokers.len());
/// # Ok::<(), sluice_client::ClientError>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    writer: RequestWriter,
    reader: ResponseReader,
    outstanding: VecDeque<i32>,
}

impl Connection {
    /// Opens a TCP connection to `address` (`host:port`), completes the TLS handshake when
    /// `config.tls` is set, negotiates API versions, and runs `config.authenticator`.
    ///
    /// # Errors
    /// `Connect` when no resolved address accepts; `Tls` when the handshake fails; any error of
    /// the `ApiVersions` exchange or of the authenticator.
    pub fn connect(address: &str, config: &ConnectionConfig) -> Result<Self, ClientError> {
        let stream = open_stream(address, config)?;
        let transport = match &config.tls {
            None => Transport::plain(stream).map_err(|source| ClientError::Io { peer: address.to_owned(), source })?,
            Some(tls) => crate::transport::server_name(address)
                .and_then(|server_name| Transport::tls(stream, tls.clone(), server_name))
                .map_err(|source| ClientError::Tls { peer: address.to_owned(), source })?,
        };
        let (read_half, stream) = transport.into_split();
        let mut connection = Self {
            writer: RequestWriter {
                stream,
                peer: address.to_owned(),
                client_id: Some(StrBytes::from_string(config.client_id.clone())),
                versions: ApiVersions::default(),
                frame: BytesMut::with_capacity(64 * 1024),
                next_correlation_id: 0,
            },
            reader: ResponseReader {
                // 64 KiB: many pipelined small responses per read syscall.
                stream: BufReader::with_capacity(64 * 1024, read_half),
                peer: address.to_owned(),
                response_size_bytes_max: config.response_size_bytes_max,
            },
            outstanding: VecDeque::new(),
        };
        let mut versions = connection.negotiate().map_err(|error| tls_refusal(error, config))?;
        for (api, version_max) in &config.version_caps {
            versions.set_cap(*api, *version_max);
        }
        connection.writer.versions = versions;
        if let Some(authenticator) = &config.authenticator {
            authenticator.authenticate(&mut connection)?;
        }
        Ok(connection)
    }

    fn negotiate(&mut self) -> Result<ApiVersions, ClientError> {
        let mut version = ApiKey::ApiVersions.valid_versions().max;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        loop {
            let correlation_id = self.writer.write_request(&request, version)?;
            let frame = self.reader.read_frame()?;
            let mut body = frame.clone();
            let response = decode_response::<ApiVersionsRequest>(&mut body, correlation_id, version);
            let response = match response {
                Ok(response) if response.error_code == 0 => return Ok(ApiVersions::from_response(&response)),
                // The broker answers a version it does not know with a v0 body (KIP-511).
                _ => decode_response::<ApiVersionsRequest>(&mut frame.clone(), correlation_id, 0)?,
            };
            let broker_max = ApiVersions::from_response(&response)
                .broker_range(ApiKey::ApiVersions)
                .map(|range| range.max.min(version - 1));
            match (response.error_code.err(), broker_max) {
                (None, _) => return Ok(ApiVersions::from_response(&response)),
                (Some(ResponseError::UnsupportedVersion), Some(lower)) if lower >= 0 => version = lower,
                (Some(error), _) => {
                    return Err(ClientError::Broker {
                        api: ApiKey::ApiVersions,
                        resource: self.writer.peer.clone(),
                        error,
                    });
                }
            }
        }
    }

    /// The broker's address as given.
    pub fn peer(&self) -> &str {
        &self.writer.peer
    }

    /// The negotiated version table.
    pub fn versions(&self) -> &ApiVersions {
        &self.writer.versions
    }

    /// Requests sent whose responses have not been received.
    pub fn outstanding_count(&self) -> usize {
        self.outstanding.len()
    }

    /// Sends `request` and waits for its response. Earlier pipelined requests must have been
    /// received first.
    ///
    /// # Errors
    /// Those of [`Self::enqueue`] and [`Self::receive`].
    pub fn send<R: Request + 'static>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        let ticket = self.enqueue(request)?;
        self.receive(ticket)
    }

    /// Writes `request` without waiting; receive its response later with the ticket.
    ///
    /// # Errors
    /// See [`RequestWriter::enqueue`].
    pub fn enqueue<R: Request + 'static>(&mut self, request: &R) -> Result<Ticket<R>, ClientError> {
        let ticket = self.writer.enqueue(request)?;
        self.outstanding.push_back(ticket.correlation_id);
        Ok(ticket)
    }

    /// Writes a request the broker will not answer (a Produce with acks=0).
    ///
    /// # Errors
    /// See [`RequestWriter::enqueue_without_response`].
    pub fn enqueue_without_response<R: Request>(&mut self, request: &R) -> Result<(), ClientError> {
        self.writer.enqueue_without_response(request)
    }

    /// Reads the response to `ticket`, which must be the oldest outstanding request.
    ///
    /// # Errors
    /// `OutOfOrder` for any other ticket; otherwise see [`ResponseReader::receive`].
    pub fn receive<R: Request>(&mut self, ticket: Ticket<R>) -> Result<R::Response, ClientError> {
        let oldest = self.outstanding.front().copied();
        if oldest != Some(ticket.correlation_id) {
            return Err(ClientError::OutOfOrder { ticket: ticket.correlation_id, oldest });
        }
        self.outstanding.pop_front();
        self.reader.receive(ticket)
    }

    /// Splits into a writer and a reader for two threads. Tickets of requests enqueued but not
    /// yet received stay valid on the reader.
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        (self.writer, self.reader)
    }
}

/// A TLS alert on the first read (TLS 1.3 clients finish their handshake before the server has
/// checked their certificate, so a refused one shows up there) is the handshake's failure.
fn tls_refusal(error: ClientError, config: &ConnectionConfig) -> ClientError {
    match error {
        ClientError::Io { peer, source }
            if config.tls.is_some()
                && source.get_ref().is_some_and(<dyn std::error::Error + Send + Sync>::is::<rustls::Error>) =>
        {
            ClientError::Tls { peer, source }
        }
        other => other,
    }
}

fn open_stream(address: &str, config: &ConnectionConfig) -> Result<TcpStream, ClientError> {
    let connect_error = |source| ClientError::Connect { address: address.to_owned(), source };
    let mut last_error = std::io::Error::new(ErrorKind::NotFound, "address resolved to nothing");
    for socket_address in address.to_socket_addrs().map_err(connect_error)? {
        match TcpStream::connect_timeout(&socket_address, config.connect_timeout) {
            Ok(stream) => {
                let configure = stream
                    .set_nodelay(true)
                    .and_then(|()| stream.set_read_timeout(Some(config.request_timeout)))
                    .and_then(|()| stream.set_write_timeout(Some(config.request_timeout)));
                configure.map_err(connect_error)?;
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(connect_error(last_error))
}
