//! Client security settings (TLS and SASL) for every connection `sluicectl` opens, in the form
//! Kafka's own tools take them: a `--command-config` properties file with Kafka's client
//! property names, or flags (and their `SLUICECTL_*` variables) that override the file's keys.
//!
//! Settings read (Kafka's names; librdkafka's where Kafka's Java client has none for PEM):
//! - `security.protocol`: PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL;
//! - `ssl.ca.location`, or `ssl.truststore.location` with a PEM trust store: the CAs that sign
//!   the brokers' certificates (required for TLS: there is no system trust store here);
//! - `ssl.certificate.location` and `ssl.key.location` (PEM), or `ssl.keystore.location` with
//!   `ssl.keystore.type=PEM` (key and chain in one file): the client certificate for mutual TLS;
//! - `ssl.endpoint.identification.algorithm`: `https` (default) verifies that the certificate
//!   names the host connected to; empty skips that check but still verifies the chain;
//! - `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with the `username` and `password`
//!   of `sasl.jaas.config` (Kafka's PlainLoginModule and ScramLoginModule) or `sasl.username`
//!   and `sasl.password`.
//!
//! TLS is rustls with the ring provider, TLS 1.2 and 1.3, as the broker's listeners. SASL runs
//! on each new connection after ApiVersions: SaslHandshake v1, then SaslAuthenticate carrying
//! PLAIN's message or SCRAM's two (the broker crate's SCRAM client, which also checks the
//! server's final signature). No message here prints a password. Main thread builds the
//! settings; connections on any thread share them read-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sluice_broker::{ScramClient, ScramMechanism};
use sluice_client::{Authenticate, ClientError, Connection, ConnectionConfig};

use crate::properties;
use crate::session::describe_error;

/// Security flags, global to every command. Each overrides the key of `--command-config` named
/// in its help. Their variables are `SLUICECTL_*`, not `SLUICE_*`: the broker's `SLUICE_SSL_CA`
/// and friends name the server's own files, and a shell that starts a broker must not hand
/// them to the tool.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SecurityArgs {
    /// Kafka client properties file with the security settings, as Kafka's tools'
    /// --command-config: security.protocol, ssl.ca.location (or a PEM ssl.truststore.location),
    /// ssl.certificate.location and ssl.key.location, ssl.endpoint.identification.algorithm,
    /// sasl.mechanism and sasl.jaas.config (PlainLoginModule or ScramLoginModule).
    #[arg(long, global = true, env = "SLUICECTL_COMMAND_CONFIG", value_name = "FILE")]
    command_config: Option<PathBuf>,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (security.protocol).
    #[arg(long, global = true, env = "SLUICECTL_SECURITY_PROTOCOL", value_name = "PROTOCOL")]
    security_protocol: Option<String>,
    /// PEM file of the CAs that sign the brokers' certificates (ssl.ca.location).
    #[arg(long, global = true, env = "SLUICECTL_SSL_CA", value_name = "FILE")]
    ssl_ca: Option<PathBuf>,
    /// PEM certificate chain presented to brokers that ask for one (ssl.certificate.location).
    #[arg(long, global = true, env = "SLUICECTL_SSL_CERTIFICATE", value_name = "FILE")]
    ssl_certificate: Option<PathBuf>,
    /// PEM private key of --ssl-certificate, unencrypted (ssl.key.location).
    #[arg(long, global = true, env = "SLUICECTL_SSL_KEY", value_name = "FILE")]
    ssl_key: Option<PathBuf>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl.mechanism).
    #[arg(long, global = true, env = "SLUICECTL_SASL_MECHANISM", value_name = "MECHANISM")]
    sasl_mechanism: Option<String>,
    /// SASL user name (sasl.username; the file's sasl.jaas.config also gives one).
    #[arg(long, global = true, env = "SLUICECTL_SASL_USERNAME", value_name = "NAME")]
    sasl_username: Option<String>,
    /// SASL password (sasl.password). Prefer the variable or the file: other local users can
    /// read a command line.
    #[arg(long, global = true, env = "SLUICECTL_SASL_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    sasl_password: Option<String>,
}

impl SecurityArgs {
    /// The file's properties with the flags' values over them.
    fn properties(&self) -> Result<BTreeMap<String, String>> {
        let mut properties = match &self.command_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --command-config {}", path.display()))?;
                properties::parse(&text)
            }
            None => BTreeMap::new(),
        };
        let path = |path: &Option<PathBuf>| path.as_ref().map(|path| path.display().to_string());
        let flags = [
            ("security.protocol", self.security_protocol.clone()),
            ("ssl.ca.location", path(&self.ssl_ca)),
            ("ssl.certificate.location", path(&self.ssl_certificate)),
            ("ssl.key.location", path(&self.ssl_key)),
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
            ("sasl.password", self.sasl_password.clone()),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                properties.insert(key.to_owned(), value);
            }
        }
        Ok(properties)
    }

    /// Puts TLS and SASL, as the settings ask, into `config`.
    ///
    /// # Errors
    /// An unknown protocol or mechanism, a missing or unreadable file, missing credentials.
    pub(crate) fn apply(&self, config: &mut ConnectionConfig) -> Result<()> {
        let properties = self.properties()?;
        let get = |key: &str| properties.get(key).map(String::as_str).filter(|value| !value.trim().is_empty());
        let protocol = get("security.protocol").unwrap_or("PLAINTEXT").trim().to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => bail!("security.protocol {other} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        };
        if tls {
            // Read unfiltered: Kafka's empty value means "do not check the host name".
            let endpoint_identification = properties.get("ssl.endpoint.identification.algorithm").map(String::as_str);
            config.tls = Some(tls_config(&get, endpoint_identification)?);
        }
        if sasl {
            config.authenticator = Some(Arc::new(SaslLogin::from_properties(&get)?));
        }
        Ok(())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let read = || -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
        CertificateDer::pem_file_iter(path)?.collect()
    };
    let chain = read().with_context(|| format!("{setting} {}: not a readable PEM file", path.display()))?;
    if chain.is_empty() {
        bail!("{setting} {} holds no PEM certificate (sluicectl reads PEM files only)", path.display());
    }
    Ok(chain)
}

/// The rustls client configuration of the settings (module docs).
fn tls_config<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    endpoint_identification: Option<&str>,
) -> Result<Arc<ClientConfig>> {
    if get("ssl.key.password").is_some() {
        bail!("ssl.key.password is set: sluicectl reads unencrypted PEM keys only");
    }
    for store in ["ssl.truststore", "ssl.keystore"] {
        if let Some(kind) = get(&format!("{store}.type")).filter(|kind| !kind.eq_ignore_ascii_case("PEM")) {
            bail!("{store}.type {kind} is not supported: sluicectl reads PEM files only");
        }
    }
    let (ca_setting, ca) = match (get("ssl.ca.location"), get("ssl.truststore.location")) {
        (Some(ca), _) => ("ssl.ca.location", ca),
        (None, Some(ca)) => ("ssl.truststore.location", ca),
        (None, None) => bail!("TLS needs the brokers' CA: set ssl.ca.location (a PEM file) or --ssl-ca"),
    };
    let mut roots = RootCertStore::empty();
    for certificate in certificates(Path::new(ca), ca_setting)? {
        roots.add(certificate).with_context(|| format!("{ca_setting} {ca}: not a usable CA certificate"))?;
    }
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .with_context(|| format!("{ca_setting} {ca}"))?;
    let verify_host = match endpoint_identification.map(str::trim) {
        None => true,
        Some("") => false,
        Some(algorithm) if algorithm.eq_ignore_ascii_case("https") => true,
        Some(other) => bail!("ssl.endpoint.identification.algorithm {other} is not https or empty"),
    };
    // Kafka's empty value: verify the chain but not that it names the host.
    let verifier: Arc<dyn ServerCertVerifier> =
        if verify_host { webpki } else { Arc::new(ChainOnlyVerifier { webpki }) };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let (certificate, key) = match (get("ssl.certificate.location"), get("ssl.key.location")) {
        (Some(certificate), Some(key)) => {
            (Some(("ssl.certificate.location", certificate)), Some(("ssl.key.location", key)))
        }
        (Some(_), None) | (None, Some(_)) => {
            bail!("mutual TLS needs both ssl.certificate.location and ssl.key.location")
        }
        (None, None) => match get("ssl.keystore.location") {
            Some(keystore) => (Some(("ssl.keystore.location", keystore)), Some(("ssl.keystore.location", keystore))),
            None => (None, None),
        },
    };
    let config = match (certificate, key) {
        (Some((certificate_setting, certificate)), Some((key_setting, key))) => {
            let chain = certificates(Path::new(certificate), certificate_setting)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("{key_setting} {key}: no readable unencrypted PEM private key"))?;
            builder.with_client_auth_cert(chain, key).context("the client certificate and its key do not match")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Verifies the broker's chain against the CAs without requiring it to name the host
/// (`ssl.endpoint.identification.algorithm=`), as Kafka's clients then do.
#[derive(Debug)]
struct ChainOnlyVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A SASL mechanism this tool authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(ScramMechanism::Sha256) => "SCRAM-SHA-256",
            Self::Scram(ScramMechanism::Sha512) => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials, run on each new connection ([`Authenticate`]).
struct SaslLogin {
    mechanism: Mechanism,
    username: String,
    password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SaslLogin {
    fn from_properties<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Self> {
        let mechanism = match get("sasl.mechanism").map(|name| name.trim().to_ascii_uppercase()).as_deref() {
            Some("PLAIN") => Mechanism::Plain,
            Some("SCRAM-SHA-256") => Mechanism::Scram(ScramMechanism::Sha256),
            Some("SCRAM-SHA-512") => Mechanism::Scram(ScramMechanism::Sha512),
            Some(other) => bail!("sasl.mechanism {other} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            None => bail!("SASL needs sasl.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"),
        };
        let jaas = get("sasl.jaas.config").map(properties::jaas_options).transpose()?.unwrap_or_default();
        let option = |key: &str, jaas_key: &str| {
            get(key).map(str::to_owned).or_else(|| jaas.get(jaas_key).filter(|value| !value.is_empty()).cloned())
        };
        let Some(username) = option("sasl.username", "username") else {
            bail!("SASL needs a user name: username=\"...\" in sasl.jaas.config, or --sasl-username")
        };
        let Some(password) = option("sasl.password", "password") else {
            bail!("SASL needs a password: password=\"...\" in sasl.jaas.config, or SLUICECTL_SASL_PASSWORD")
        };
        Ok(Self { mechanism, username, password })
    }

    fn refused(connection: &Connection, code: i16, message: Option<&StrBytes>) -> ClientError {
        let reason = match code.err() {
            Some(error) => describe_error(error, message.map(StrBytes::as_str)),
            None => "the exchange did not complete".to_owned(),
        };
        ClientError::Authentication { peer: connection.peer().to_owned(), reason }
    }

    /// One SaslAuthenticate; a refusal is an error.
    fn step(connection: &mut Connection, auth_bytes: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(auth_bytes.into());
        let answer = connection.send(&request)?;
        if answer.error_code != 0 {
            return Err(Self::refused(connection, answer.error_code, answer.error_message.as_ref()));
        }
        Ok(answer.auth_bytes)
    }
}

impl Authenticate for SaslLogin {
    fn authenticate(&self, connection: &mut Connection) -> Result<(), ClientError> {
        let name = self.mechanism.name();
        let handshake =
            connection.send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name)))?;
        if handshake.error_code != 0 {
            let mut enabled: Vec<&str> = handshake.mechanisms.iter().map(StrBytes::as_str).collect();
            if enabled.is_empty() {
                enabled.push("none: not a SASL listener");
            }
            let reason = format!(
                "SaslHandshake for {name} refused ({}); the listener enables [{}]",
                handshake.error_code.err().map_or_else(|| handshake.error_code.to_string(), |error| error.to_string()),
                enabled.join(", ")
            );
            return Err(ClientError::Authentication { peer: connection.peer().to_owned(), reason });
        }
        match self.mechanism {
            Mechanism::Plain => {
                Self::step(connection, format!("\0{}\0{}", self.username, self.password).into_bytes())?;
            }
            Mechanism::Scram(scram) => {
                let (mut client, first) = ScramClient::start(scram, &self.username, &self.password);
                let server_first = Self::step(connection, first)?;
                let bad_server = |connection: &Connection| ClientError::Authentication {
                    peer: connection.peer().to_owned(),
                    reason: format!("the broker's {name} answer is invalid (it does not hold this user's credential)"),
                };
                let Some(last) = client.answer(&server_first) else { return Err(bad_server(connection)) };
                let server_final = Self::step(connection, last)?;
                if !client.verify(&server_final) {
                    return Err(bad_server(connection));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(entries: &[(&str, &str)]) -> Result<SaslLogin> {
        let properties: BTreeMap<String, String> =
            entries.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        SaslLogin::from_properties(&|key: &str| properties.get(key).map(String::as_str))
    }

    #[test]
    fn credentials_come_from_the_jaas_config_or_the_direct_keys() {
        let jaas =
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"s3cret\";";
        let from_jaas = login(&[("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.jaas.config", jaas)]).expect("valid");
        assert_eq!(from_jaas.mechanism, Mechanism::Scram(ScramMechanism::Sha512));
        assert_eq!((from_jaas.username.as_str(), from_jaas.password.as_str()), ("admin", "s3cret"));
        let direct = login(&[("sasl.mechanism", "plain"), ("sasl.jaas.config", jaas), ("sasl.password", "other")])
            .expect("valid");
        assert_eq!((direct.mechanism, direct.password.as_str()), (Mechanism::Plain, "other"));
        assert!(!format!("{direct:?}").contains("other"), "Debug hides the password");
    }

    #[test]
    fn missing_or_unknown_sasl_settings_are_refused_without_the_password() {
        assert!(login(&[("sasl.username", "u"), ("sasl.password", "p")]).is_err(), "no mechanism");
        let gssapi = login(&[("sasl.mechanism", "GSSAPI"), ("sasl.username", "u"), ("sasl.password", "pw1")]);
        assert!(gssapi.is_err_and(|error| !error.to_string().contains("pw1")));
        assert!(login(&[("sasl.mechanism", "PLAIN"), ("sasl.password", "p")]).is_err(), "no user name");
    }

    #[test]
    fn tls_needs_a_pem_ca_and_both_halves_of_a_client_certificate() {
        let properties: BTreeMap<String, String> = BTreeMap::new();
        let error = tls_config(&|key: &str| properties.get(key).map(String::as_str), None).expect_err("no CA");
        assert!(error.to_string().contains("ssl.ca.location"), "{error}");
        let jks = [("ssl.truststore.location", "/x.jks"), ("ssl.truststore.type", "JKS")];
        let properties: BTreeMap<String, String> =
            jks.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let error = tls_config(&|key: &str| properties.get(key).map(String::as_str), None).expect_err("JKS");
        assert!(error.to_string().contains("PEM"), "{error}");
    }
}
