//! Entry points for the cargo-fuzz targets in `fuzz/`: not part of the broker's API.
//!
//! They run the same code over untrusted bytes that a connection runs, without sockets or
//! shards, so a fuzzer can drive it in-process. Any thread may call them.
//! The exception is [`TlsAccept`]: the TLS handshake runs over a loopback socket on a compio
//! runtime of its own, so it stays on the thread that made it.

use bytes::Bytes;

mod tls;

pub use tls::TlsAccept;

/// Decodes one request frame (the bytes after the size prefix) as the dispatcher does: checks
/// the API key and version, decodes the request header, then the body with the API's decoder.
/// Returns the API key on success.
///
/// # Errors
/// A description of why the dispatcher would close the connection.
pub fn decode_request(frame: &[u8]) -> Result<i16, String> {
    crate::dispatch::decode_request(Bytes::copy_from_slice(frame)).map(|key| key as i16)
}

/// Validates a frame's size prefix against `size_max` as a connection does; returns the body size.
///
/// # Errors
/// A description of why the connection would be closed.
pub fn frame_size(prefix: [u8; 4], size_max: u32) -> Result<usize, String> {
    crate::net::framing::frame_size(prefix, size_max).map_err(|error| error.to_string())
}

/// Runs the SASL message parsers and the SCRAM server's exchange over untrusted bytes (see
/// `security::sasl::exercise_parsers`); panics on a broken invariant, as a fuzzer wants.
pub fn sasl_messages(input: &[u8]) {
    crate::security::sasl::exercise_parsers(input);
}
