//! Kafka framing: every request and response is a big-endian `i32` size followed by that many
//! bytes. This module validates sizes before anything is allocated, reads whole frames from a
//! socket through one reused buffer, and frames encoded responses.
//!
//! Invariants: a frame is never larger than the configured maximum and never smaller than a
//! request header's fixed part; a size that breaks either closes the connection before its body
//! is read. Used by one connection's reader task, on its shard thread.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::buf::BufResult;
use compio::buf::{IntoInner, IoBufMut};
use compio::io::{AsyncRead, AsyncReadExt};
use compio::net::TcpStream;
use kafka_protocol::messages::ResponseHeader;

use crate::net::tls_stream::TlsStream;
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use thiserror::Error;

/// Bytes of the size prefix.
pub(crate) const SIZE_PREFIX_BYTES: usize = 4;
/// Smallest request: api key (2) + api version (2) + correlation id (4).
pub(crate) const REQUEST_SIZE_BYTES_MIN: usize = 8;
/// Reads land in a buffer of this size; larger frames get one buffer of their own.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a connection's byte stream was rejected or ended.
#[derive(Debug, Error)]
pub(crate) enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {size}")]
    Negative {
        /// The size read.
        size: i32,
    },
    /// The size prefix is smaller than a request header.
    #[error("frame size {size} is smaller than a request header")]
    TooSmall {
        /// The size read.
        size: i32,
    },
    /// The size prefix is over the request size limit.
    #[error("frame size {size} exceeds socket.request.max.bytes {size_max}")]
    TooLarge {
        /// The size read.
        size: i32,
        /// The limit.
        size_max: u32,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Validates a frame's size prefix and returns the body size.
///
/// # Errors
/// [`FrameError::Negative`], [`FrameError::TooSmall`] or [`FrameError::TooLarge`].
pub(crate) fn frame_size(prefix: [u8; SIZE_PREFIX_BYTES], size_max: u32) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(FrameError::Negative { size });
    }
    if (size as usize) < REQUEST_SIZE_BYTES_MIN {
        return Err(FrameError::TooSmall { size });
    }
    if size as u32 > size_max {
        return Err(FrameError::TooLarge { size, size_max });
    }
    Ok(size as usize)
}

/// The fixed start of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderPrefix {
    /// The API key.
    pub(crate) api_key: i16,
    /// The API version.
    pub(crate) api_version: i16,
    /// The correlation id echoed in the response.
    pub(crate) correlation_id: i32,
}

/// Reads the api key, version and correlation id at the start of a request frame.
///
/// Returns `None` when the frame is shorter than [`REQUEST_SIZE_BYTES_MIN`].
pub(crate) fn header_prefix(frame: &[u8]) -> Option<HeaderPrefix> {
    let bytes = frame.get(..REQUEST_SIZE_BYTES_MIN)?;
    Some(HeaderPrefix {
        api_key: i16::from_be_bytes([bytes[0], bytes[1]]),
        api_version: i16::from_be_bytes([bytes[2], bytes[3]]),
        correlation_id: i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    })
}

/// Encodes a whole response frame: size prefix, response header, body.
///
/// # Errors
/// When the body cannot be encoded at `version` (a field the version cannot carry, or a size
/// over the wire format's limits).
pub(crate) fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> anyhow::Result<Bytes> {
    let header_version = R::header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + response.compute_size(version)?;
    let mut frame = BytesMut::with_capacity(SIZE_PREFIX_BYTES + size);
    frame.put_i32(i32::try_from(size)?);
    header.encode(&mut frame, header_version)?;
    response.encode(&mut frame, version)?;
    anyhow::ensure!(frame.len() == SIZE_PREFIX_BYTES + size, "response size disagrees with its encoding");
    Ok(frame.freeze())
}

/// Reads size-prefixed frames from one socket.
///
/// Small frames are split off a 64 KiB receive buffer without copying (one `recv` often brings
/// several pipelined requests): a request's body shares the allocation it was received into,
/// which stays alive until the last request cut from it is done, and the next receive goes to a
/// fresh buffer meanwhile. A frame larger than the buffer is read straight into a buffer of its
/// own size. Either way the body reaches the handler without a copy in user space.
///
/// Over TLS, decrypted bytes are appended to the same buffer (one copy out of rustls), and a
/// large frame grows it to the frame's size instead of being read into a buffer of its own.
pub(crate) struct FrameReader {
    source: Source,
    /// Received bytes not yet cut into frames.
    buffer: BytesMut,
    size_max: u32,
}

/// Where a frame reader's bytes come from.
enum Source {
    Plain(TcpStream),
    Tls(TlsStream),
}

impl FrameReader {
    pub(crate) fn new(stream: TcpStream, size_max: u32) -> Self {
        Self { source: Source::Plain(stream), buffer: BytesMut::with_capacity(READ_BUFFER_BYTES), size_max }
    }

    /// A reader of the decrypted bytes of a TLS connection.
    pub(crate) fn with_tls(tls: TlsStream, size_max: u32) -> Self {
        Self { source: Source::Tls(tls), buffer: BytesMut::with_capacity(READ_BUFFER_BYTES), size_max }
    }

    fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Reads more bytes into the buffer. Returns `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, FrameError> {
        if self.buffer.capacity() - self.buffer.len() < READ_BUFFER_BYTES / 4 {
            // Reuses the allocation when no frame cut from it is alive (moving the few bytes of
            // a partial frame to its start), or allocates a new one.
            self.buffer.reserve(READ_BUFFER_BYTES);
        }
        match &mut self.source {
            Source::Plain(stream) => {
                let buffer = std::mem::take(&mut self.buffer);
                let BufResult(result, buffer) = stream.append(buffer).await;
                self.buffer = buffer;
                Ok(result? > 0)
            }
            Source::Tls(tls) => Ok(tls.read_into(&mut self.buffer).await? > 0),
        }
    }

    /// Waits for the next frame's size prefix and returns the validated body size, or `None`
    /// when the peer closed the connection between frames.
    ///
    /// # Errors
    /// A bad size prefix, a socket error, or a close in the middle of the prefix.
    pub(crate) async fn next_size(&mut self) -> Result<Option<usize>, FrameError> {
        while self.buffered().len() < SIZE_PREFIX_BYTES {
            if !self.fill().await? {
                return if self.buffered().is_empty() { Ok(None) } else { Err(FrameError::Truncated) };
            }
        }
        let buffered = self.buffered();
        let prefix = [buffered[0], buffered[1], buffered[2], buffered[3]];
        frame_size(prefix, self.size_max).map(Some)
    }

    /// Reads the body of the frame whose size [`Self::next_size`] returned.
    ///
    /// # Errors
    /// A socket error, or a close before the body is complete.
    pub(crate) async fn read_body(&mut self, size: usize) -> Result<Bytes, FrameError> {
        let total = SIZE_PREFIX_BYTES + size;
        let mut stream = match &self.source {
            Source::Plain(stream) if total > READ_BUFFER_BYTES => stream.clone(),
            _ => {
                while self.buffered().len() < total {
                    if !self.fill().await? {
                        return Err(FrameError::Truncated);
                    }
                }
                self.buffer.advance(SIZE_PREFIX_BYTES);
                return Ok(self.buffer.split_to(size).freeze());
            }
        };
        let mut body = Vec::with_capacity(size);
        self.buffer.advance(SIZE_PREFIX_BYTES);
        let available = self.buffered().len().min(size);
        body.extend_from_slice(&self.buffer.split_to(available));
        while body.len() < size {
            // Read into the spare capacity, never past the frame's end: the bytes after it
            // belong to the next frame.
            let missing = size - body.len();
            let rest = compio::buf::IoBuf::slice(body.uninit(), ..missing);
            let BufResult(result, filled) = stream.read(rest).await;
            body = filled.into_inner().into_inner();
            if result? == 0 {
                return Err(FrameError::Truncated);
            }
        }
        assert_eq!(body.len(), size, "a frame body is read whole");
        Ok(Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn negative_size_is_rejected() {
        assert!(matches!(frame_size((-1i32).to_be_bytes(), 1024), Err(FrameError::Negative { size: -1 })));
    }

    #[test]
    fn size_over_the_limit_is_rejected() {
        assert!(matches!(frame_size(1025i32.to_be_bytes(), 1024), Err(FrameError::TooLarge { .. })));
        assert!(matches!(frame_size(1024i32.to_be_bytes(), 1024), Ok(1024)));
    }

    #[test]
    fn size_below_a_header_is_rejected() {
        assert!(matches!(frame_size(7i32.to_be_bytes(), 1024), Err(FrameError::TooSmall { size: 7 })));
        assert!(matches!(frame_size(0i32.to_be_bytes(), 1024), Err(FrameError::TooSmall { size: 0 })));
    }

    #[test]
    fn header_prefix_reads_key_version_and_correlation() {
        let frame = [0, 18, 0, 3, 0, 0, 1, 2, 0xff];
        let prefix = header_prefix(&frame).expect("long enough");
        assert_eq!(prefix, HeaderPrefix { api_key: 18, api_version: 3, correlation_id: 258 });
        assert!(header_prefix(&frame[..7]).is_none());
    }

    #[test]
    fn encoded_response_size_prefix_matches_its_length() {
        let response = ApiVersionsResponse::default();
        let frame = encode_response(7, 3, &response).expect("encodes");
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - SIZE_PREFIX_BYTES);
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
    }
}
