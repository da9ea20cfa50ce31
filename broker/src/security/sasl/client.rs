//! The client side of SASL, for this broker's own connections to other brokers' SASL listeners
//! (the replica fetchers): `--sasl-mechanism-inter-broker-protocol` (PLAIN, SCRAM-SHA-256 or
//! SCRAM-SHA-512) with `--inter-broker-sasl-username` and `--inter-broker-sasl-password`.
//!
//! [`authenticate`] runs over a stream that is already connected (and, for SASL_SSL, already
//! through its TLS handshake), before any other request:
//! 1. SaslHandshake v1 naming the mechanism (no ApiVersions first: every Sluice and Kafka broker
//!    serves these versions);
//! 2. SaslAuthenticate v2 with the mechanism's messages: PLAIN's one message, or SCRAM's
//!    client-first and client-final, checking the server's signature at the end, so that a
//!    server that does not hold the credential is refused too.
//!
//! On success the stream is authenticated and the caller sends its requests with correlation
//! ids of its own (this function uses 1 to 3). A session lifetime (KIP-368) in the answer is
//! returned; a caller that keeps its connection longer reconnects, which re-authenticates.

use bytes::{BufMut, Bytes, BytesMut};
use compio::BufResult;
use compio::buf::IoBuf as _;
use compio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::scram::{ScramClient, ScramMechanism};
use crate::config::sasl::{InterBrokerSasl, SaslMechanism};

/// Largest SASL answer accepted: SCRAM and PLAIN answers are a few hundred bytes.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Why authentication to another broker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SaslClientError {
    /// The connection failed or an answer did not decode.
    #[error("SASL exchange: {0}")]
    Io(#[from] std::io::Error),
    /// The other broker refused, with Kafka's error code and message.
    #[error("SASL authentication refused (error {code}): {message}")]
    Refused { code: i16, message: String },
    /// The other broker's SCRAM answers were malformed or its signature was wrong.
    #[error("the other broker's SCRAM answer is invalid")]
    BadServer,
    /// The mechanism is not one a broker authenticates with.
    #[error("{0} is not an inter-broker SASL mechanism")]
    Unsupported(&'static str),
}

/// Authenticates on `stream` with `credentials` (module docs); returns the session lifetime the
/// server gave, in ms (0: none).
///
/// # Errors
/// [`SaslClientError`]; the stream must then be closed.
pub(crate) async fn authenticate<S>(stream: &mut S, credentials: &InterBrokerSasl) -> Result<i64, SaslClientError>
where
    S: AsyncRead + AsyncWrite,
{
    let mechanism = credentials.mechanism;
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let answer: SaslHandshakeResponse = exchange(stream, ApiKey::SaslHandshake, 1, 1, &handshake).await?;
    if answer.error_code != 0 {
        let enabled: Vec<&str> = answer.mechanisms.iter().map(StrBytes::as_str).collect();
        let message = format!("mechanism {} not enabled there (enabled: {})", mechanism.name(), enabled.join(","));
        return Err(SaslClientError::Refused { code: answer.error_code, message });
    }
    match mechanism {
        SaslMechanism::Plain => {
            let message = format!("\0{}\0{}", credentials.username, credentials.password);
            let answer = step(stream, 2, message.into_bytes()).await?;
            Ok(answer.session_lifetime_ms)
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let scram =
                if mechanism == SaslMechanism::ScramSha256 { ScramMechanism::Sha256 } else { ScramMechanism::Sha512 };
            let (mut client, first) = ScramClient::start(scram, &credentials.username, &credentials.password);
            let server_first = step(stream, 2, first).await?;
            let last = client.answer(&server_first.auth_bytes).ok_or(SaslClientError::BadServer)?;
            let server_final = step(stream, 3, last).await?;
            if !client.verify(&server_final.auth_bytes) {
                return Err(SaslClientError::BadServer);
            }
            Ok(server_final.session_lifetime_ms)
        }
        SaslMechanism::OAuthBearer => Err(SaslClientError::Unsupported(mechanism.name())),
    }
}

/// One SaslAuthenticate v2 carrying `auth_bytes`; a refusal is an error.
async fn step<S>(
    stream: &mut S,
    correlation_id: i32,
    auth_bytes: Vec<u8>,
) -> Result<SaslAuthenticateResponse, SaslClientError>
where
    S: AsyncRead + AsyncWrite,
{
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(auth_bytes));
    let answer: SaslAuthenticateResponse =
        exchange(stream, ApiKey::SaslAuthenticate, 2, correlation_id, &request).await?;
    if answer.error_code != 0 {
        let message = answer.error_message.as_ref().map_or_else(String::new, ToString::to_string);
        return Err(SaslClientError::Refused { code: answer.error_code, message });
    }
    Ok(answer)
}

fn invalid(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())
}

/// Writes one request and reads its answer.
async fn exchange<S, Request, Response>(
    stream: &mut S,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Request,
) -> std::io::Result<Response>
where
    S: AsyncRead + AsyncWrite,
    Request: Encodable + HeaderVersion,
    Response: Decodable + HeaderVersion,
{
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-broker")));
    let mut bytes = BytesMut::new();
    bytes.put_i32(0);
    header.encode(&mut bytes, Request::header_version(version)).map_err(invalid)?;
    request.encode(&mut bytes, version).map_err(invalid)?;
    let size = i32::try_from(bytes.len() - 4).map_err(invalid)?;
    bytes[..4].copy_from_slice(&size.to_be_bytes());
    let BufResult(written, _) = stream.write_all(bytes.to_vec()).await;
    written?;
    stream.flush().await?;
    let BufResult(read, size) = stream.read_exact([0u8; 4]).await;
    read?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|size| *size <= ANSWER_BYTES_MAX)
        .ok_or_else(|| invalid("answer frame size"))?;
    let BufResult(read, body) = stream.read_exact(Vec::with_capacity(size).slice(..size)).await;
    read?;
    let mut body = Bytes::from(compio::buf::IntoInner::into_inner(body));
    let header = ResponseHeader::decode(&mut body, Response::header_version(version)).map_err(invalid)?;
    if header.correlation_id != correlation_id {
        return Err(invalid("correlation id mismatch"));
    }
    Response::decode(&mut body, version).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sasl::SaslArgs;
    use crate::{Args, Broker, BrokerConfig};

    /// A broker with one SASL_PLAINTEXT listener and the user `broker` (SCRAM-SHA-256 and -512).
    fn sasl_broker(dir: &std::path::Path) -> Broker {
        let args = Args {
            data_dir: Some(dir.to_path_buf()),
            listeners: Some("SASL_PLAINTEXT://127.0.0.1:0".to_owned()),
            shards: Some(1),
            pin_shards: Some(false),
            sasl: SaslArgs {
                add_scram: vec![
                    "SCRAM-SHA-256=[name=broker,password=inter-secret]".to_owned(),
                    "SCRAM-SHA-512=[name=broker,password=inter-secret]".to_owned(),
                ],
                ..SaslArgs::default()
            },
            ..Args::default()
        };
        Broker::start(BrokerConfig::from_args(args).expect("valid config")).expect("starts")
    }

    fn login(address: std::net::SocketAddr, mechanism: SaslMechanism, password: &str) -> Result<i64, SaslClientError> {
        let credentials = InterBrokerSasl { mechanism, username: "broker".to_owned(), password: password.to_owned() };
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let mut stream = compio::net::TcpStream::connect(address).await.expect("connect");
            authenticate(&mut stream, &credentials).await
        })
    }

    #[test]
    fn authenticates_to_a_sasl_listener_with_each_mechanism_and_is_refused_with_a_wrong_password() {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = sasl_broker(dir.path());
        let address = broker.local_addr();
        for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            assert_eq!(login(address, mechanism, "inter-secret").expect("authenticates"), 0, "{mechanism:?}");
            let refused = login(address, mechanism, "wrong");
            assert!(matches!(refused, Err(SaslClientError::Refused { code: 58, .. })), "{mechanism:?}: {refused:?}");
        }
        broker.shutdown();
    }
}
