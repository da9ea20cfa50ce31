//! One request to another broker over a fresh connection: what a coordinator sends to the
//! leaders of other partitions (WriteTxnMarkers) and a leader to a transaction coordinator
//! (AddPartitionsToTxn verification). Rare calls, off the produce and fetch paths, so each
//! opens its own connection and closes it.
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

/// Largest response frame accepted.
const FRAME_BYTES_MAX: usize = 16 << 20;

fn invalid(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())
}

/// Sends `request` at `version` to the broker at `address` and returns its response, within
/// `timeout`.
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
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("sluice-broker")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, Request::header_version(version)).map_err(invalid)?;
        request.encode(&mut frame, version).map_err(invalid)?;
        let size = i32::try_from(frame.len() - 4).map_err(invalid)?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let BufResult(written, _) = stream.write_all(frame.to_vec()).await;
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
        let header = ResponseHeader::decode(&mut body, Response::header_version(version)).map_err(invalid)?;
        if header.correlation_id != 1 {
            return Err(invalid("correlation id mismatch"));
        }
        Response::decode(&mut body, version).map_err(invalid)
    };
    match compio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_elapsed) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")),
    }
}
