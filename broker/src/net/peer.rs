//! Requests to other brokers: [`exchange`] frames one request on a connection and reads its
//! response (the replica fetchers keep their connections); [`call`] does it over a fresh
//! connection, for what a coordinator sends to the leaders of other partitions
//! (WriteTxnMarkers) and a leader to a transaction coordinator (AddPartitionsToTxn
//! verification): rare calls, off the produce and fetch paths.
//!
//! Runs on the calling shard's compio runtime.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use compio::BufResult;
use compio::buf::IoBuf as _;
use compio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use compio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

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
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
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
pub(crate) async fn exchange<Request, Response>(
    stream: &mut TcpStream,
    frame: Frame,
    request: &Request,
) -> std::io::Result<Response>
where
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
