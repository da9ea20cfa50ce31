//! TLS for the SSL and SASL_SSL listeners and for inter-broker connections, with rustls (ring
//! provider; TLS 1.2 and 1.3).
//!
//! Configuration: `--ssl-certificate` (the PEM chain, the broker's certificate first) and
//! `--ssl-key` (its PEM private key), `--ssl-ca` (PEM certificates of the CAs trusted to sign
//! client certificates, and, for inter-broker TLS, the other brokers' certificates), and
//! `--ssl-client-auth none|requested|required`, Kafka's `ssl.client.auth`.
//!
//! The principal of a client that presents a certificate on an SSL listener is `User:` and the
//! certificate's subject as Java prints it (see `x500`), Kafka's default mapping.
//!
//! Reloading without a restart: each shard keeps its own [`ServerTls`], which, at most once a
//! second and only when a connection is being accepted, compares the modification times of the
//! three files with those it loaded. On a change it builds a new `ServerConfig` for the
//! connections accepted from then on; connections already open keep the configuration they
//! were accepted with. A file that does not load (half written, a key that does not match the
//! certificate) is logged as an error and the previous configuration stays. Reading the files
//! happens on the shard thread: they are small, and this happens only when they change.
//!
//! Kernel TLS (kTLS) is not used yet. After the handshake, the Linux `tls` upper-layer protocol
//! could take the record layer over (`TCP_ULP` "tls", then `TLS_TX`/`TLS_RX` with the secrets
//! rustls exports when `enable_secret_extraction` is set), so that fetches keep splicing file
//! ranges without copying them through user space. The machine this was written on offers no
//! `tls` ULP (`/proc/sys/net/ipv4/tcp_available_ulp` lists only `mptcp`), so nothing about kTLS
//! was measured; every TLS connection runs the record layer in user space (see
//! `net::tls_stream`), where a fetched file range is read into memory and encrypted.
//!
//! Threads: [`load_server`] and [`client_config`] run at startup; a [`ServerTls`] lives on its
//! shard.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::config::ConfigError;

/// How often a shard looks at the certificate files' modification times, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is asked for; a client without one is still accepted.
    Requested,
    /// A client without a certificate signed by a trusted CA is refused.
    Required,
}

impl ClientAuth {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "requested" => Some(Self::Requested),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// The TLS files and client authentication, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TlsSettings {
    /// The broker's PEM certificate chain.
    pub(crate) certificate: Option<PathBuf>,
    /// The broker's PEM private key.
    pub(crate) key: Option<PathBuf>,
    /// PEM certificates of the trusted CAs.
    pub(crate) ca: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub(crate) client_auth: ClientAuth,
}

impl TlsSettings {
    /// Builds the settings from the flags, checking that what the listeners need is there.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`]: an unknown `--ssl-client-auth`, a TLS listener without a
    /// certificate and key, client authentication or inter-broker TLS without `--ssl-ca`.
    pub(crate) fn parse(
        files: [Option<PathBuf>; 3],
        client_auth: Option<&str>,
        listeners: Option<&crate::security::listeners::ListenerSet>,
    ) -> Result<Self, ConfigError> {
        let [certificate, key, ca] = files;
        let invalid = |setting, reason: &str| ConfigError::Invalid { setting, reason: reason.to_owned() };
        let client_auth = match client_auth {
            Some(text) => ClientAuth::parse(text)
                .ok_or_else(|| invalid("ssl-client-auth", "must be none, requested or required"))?,
            None => ClientAuth::None,
        };
        let settings = Self { certificate, key, ca, client_auth };
        if settings.certificate.is_some() != settings.key.is_some() {
            return Err(invalid("ssl-certificate", "and --ssl-key go together"));
        }
        let Some(listeners) = listeners.filter(|listeners| listeners.uses_tls()) else {
            return Ok(settings);
        };
        if settings.certificate.is_none() {
            return Err(invalid("ssl-certificate", "is needed by the SSL and SASL_SSL listeners (with --ssl-key)"));
        }
        if settings.client_auth != ClientAuth::None && settings.ca.is_none() {
            return Err(invalid("ssl-ca", "is needed to verify client certificates (--ssl-client-auth)"));
        }
        if listeners.inter_broker().protocol.uses_tls() && settings.ca.is_none() {
            return Err(invalid("ssl-ca", "is needed to verify other brokers on a TLS inter-broker listener"));
        }
        Ok(settings)
    }
}

/// Why TLS files did not load.
#[derive(Debug, Error)]
#[non_exhaustive]
pub(crate) enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{path}: no certificate in the file")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A setting the configuration needs is missing.
    #[error("--{setting} is not set")]
    Missing {
        /// The flag.
        setting: &'static str,
    },
    /// rustls refused the certificate, key or trusted CAs.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (no usable CA).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The server certificate verifier could not be built (no usable CA).
    #[error("server certificate verifier: {0}")]
    ServerVerifier(rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem { path: path.to_owned(), source };
    let chain = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem { path: path.to_owned(), source })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(path)? {
        store.add(certificate)?;
    }
    Ok(Arc::new(store))
}

/// The modification times of the files a configuration was built from, in settings order.
type Stamps = [Option<SystemTime>; 3];

fn stamps(settings: &TlsSettings) -> Stamps {
    let modified = |path: Option<&PathBuf>| {
        path.and_then(|path| std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok())
    };
    [modified(settings.certificate.as_ref()), modified(settings.key.as_ref()), modified(settings.ca.as_ref())]
}

/// A server configuration and the file times it was built from.
#[derive(Debug, Clone)]
pub(crate) struct LoadedServer {
    config: Arc<ServerConfig>,
    stamps: Stamps,
}

#[cfg(test)]
impl LoadedServer {
    /// The configuration.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// Builds the listeners' TLS configuration from the files.
///
/// # Errors
/// [`TlsError`]: a missing, unreadable or invalid file, or a key that does not match.
pub(crate) fn load_server(settings: &TlsSettings) -> Result<LoadedServer, TlsError> {
    let stamps = stamps(settings);
    let certificate = settings.certificate.as_deref().ok_or(TlsError::Missing { setting: "ssl-certificate" })?;
    let key = settings.key.as_deref().ok_or(TlsError::Missing { setting: "ssl-key" })?;
    let provider = provider();
    let verifier = match (settings.client_auth, &settings.ca) {
        (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
        (_, None) => return Err(TlsError::Missing { setting: "ssl-ca" }),
        (ClientAuth::Requested, Some(ca)) => {
            WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone()).allow_unauthenticated().build()?
        }
        (ClientAuth::Required, Some(ca)) => {
            WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone()).build()?
        }
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(certificate)?, private_key(key)?)?;
    Ok(LoadedServer { config: Arc::new(config), stamps })
}

/// The TLS client configuration for connections to other brokers: their certificates are
/// verified against `--ssl-ca` (and their host name, as Kafka's default
/// `ssl.endpoint.identification.algorithm=https` does), and this broker presents its own
/// certificate, for listeners that require one.
///
/// # Errors
/// [`TlsError`]: a missing, unreadable or invalid file.
pub(crate) fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = settings.ca.as_deref().ok_or(TlsError::Missing { setting: "ssl-ca" })?;
    let provider = provider();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .build()
        .map_err(TlsError::ServerVerifier)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_webpki_verifier(verifier);
    let config = match (&settings.certificate, &settings.key) {
        (Some(certificate), Some(key)) => {
            builder.with_client_auth_cert(certificates(certificate)?, private_key(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// One shard's server configuration, reloaded when its files change.
#[derive(Debug)]
pub(crate) struct ServerTls {
    settings: TlsSettings,
    current: RefCell<LoadedServer>,
    checked: Cell<Option<Instant>>,
}

impl ServerTls {
    /// A shard's copy of the configuration loaded at startup.
    pub(crate) fn new(settings: TlsSettings, loaded: LoadedServer) -> Self {
        Self { settings, current: RefCell::new(loaded), checked: Cell::new(None) }
    }

    /// The configuration for a connection accepted at `now`: the current one, rebuilt first
    /// when a file changed since it was loaded (looked at once a second at most).
    pub(crate) fn config(&self, now: Instant) -> Arc<ServerConfig> {
        let due =
            self.checked.get().is_none_or(|checked| now.saturating_duration_since(checked) >= RELOAD_CHECK_INTERVAL);
        if due {
            self.checked.set(Some(now));
            let stamps = stamps(&self.settings);
            let changed = stamps != self.current.borrow().stamps;
            if changed {
                self.reload(stamps);
            }
        }
        self.current.borrow().config.clone()
    }

    fn reload(&self, stamps: Stamps) {
        match load_server(&self.settings) {
            Ok(loaded) => {
                tracing::info!("TLS certificate files changed: new connections use the new certificate");
                *self.current.borrow_mut() = loaded;
            }
            Err(error) => {
                // Remembered as seen, so the error is logged once per change, not every second.
                self.current.borrow_mut().stamps = stamps;
                tracing::error!(%error, "TLS certificate files changed but do not load; keeping the previous ones");
            }
        }
    }
}

/// The principal name of a TLS client: the subject of its certificate (the first of the chain
/// it presented), as Kafka's default mapping gives it; `None` without a certificate.
pub(crate) fn principal_name(peer_certificates: Option<&[CertificateDer<'static>]>) -> Option<String> {
    let certificate = peer_certificates?.first()?;
    crate::security::x500::subject_name(certificate.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::listeners::{Settings, parse};

    fn listeners(text: &str) -> crate::security::listeners::ListenerSet {
        parse(&Settings { listeners: Some(text.to_owned()), ..Settings::default() }).expect("valid").expect("set")
    }

    #[test]
    fn tls_listeners_need_a_certificate_and_key() {
        let set = listeners("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0");
        let none = [None, None, None];
        assert!(TlsSettings::parse(none.clone(), None, Some(&set)).is_err());
        let files = [Some(PathBuf::from("c.pem")), Some(PathBuf::from("k.pem")), None];
        assert!(TlsSettings::parse(files.clone(), None, Some(&set)).is_ok());
        assert!(TlsSettings::parse(files.clone(), Some("required"), Some(&set)).is_err(), "no CA to verify");
        assert!(TlsSettings::parse(files.clone(), Some("sometimes"), Some(&set)).is_err());
        let half = [Some(PathBuf::from("c.pem")), None, None];
        assert!(TlsSettings::parse(half, None, None).is_err(), "a certificate without its key");
        assert!(TlsSettings::parse(none, None, None).is_ok(), "plaintext needs nothing");
        let inter_broker_tls = listeners("SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0");
        assert!(TlsSettings::parse(files, None, Some(&inter_broker_tls)).is_err(), "no CA to verify brokers");
    }

    #[test]
    fn client_auth_parses_kafka_values() {
        assert_eq!(ClientAuth::parse("none"), Some(ClientAuth::None));
        assert_eq!(ClientAuth::parse("Requested"), Some(ClientAuth::Requested));
        assert_eq!(ClientAuth::parse("required"), Some(ClientAuth::Required));
        assert_eq!(ClientAuth::parse("yes"), None);
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let settings = TlsSettings {
            certificate: Some(PathBuf::from("/nonexistent/broker.pem")),
            key: Some(PathBuf::from("/nonexistent/broker.key")),
            ..TlsSettings::default()
        };
        let error = load_server(&settings).expect_err("no such file");
        assert!(error.to_string().contains("/nonexistent/broker.pem"), "{error}");
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let settings = TlsSettings { certificate: Some(empty.path().to_owned()), ..settings };
        assert!(matches!(load_server(&settings), Err(TlsError::NoCertificate { .. })));
    }

    /// A self-signed certificate and key for `name`, made by the `openssl` command.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (certificate, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "1", "-subj", &format!("/CN={name}"), "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        (certificate, key)
    }

    #[test]
    fn changed_files_are_reloaded_and_bad_ones_keep_the_old_configuration() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first_certificate, first_key) = self_signed(dir.path(), "first");
        let (second_certificate, second_key) = self_signed(dir.path(), "second");
        let (certificate, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
        std::fs::copy(&first_certificate, &certificate).expect("copy");
        std::fs::copy(&first_key, &key).expect("copy");
        let settings =
            TlsSettings { certificate: Some(certificate.clone()), key: Some(key.clone()), ..TlsSettings::default() };
        let shard = ServerTls::new(settings.clone(), load_server(&settings).expect("loads"));
        let start = crate::clock::startup_now();
        let first = shard.config(start);
        assert!(Arc::ptr_eq(&first, &shard.config(start)), "unchanged files: the same configuration");
        // A key that does not parse: logged, and the first configuration stays.
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").expect("write");
        let later = start + RELOAD_CHECK_INTERVAL;
        assert!(Arc::ptr_eq(&first, &shard.config(later)), "a bad key keeps the old configuration");
        std::fs::copy(&second_key, &key).expect("copy");
        std::fs::copy(&second_certificate, &certificate).expect("copy");
        let soon = later + RELOAD_CHECK_INTERVAL / 2;
        assert!(Arc::ptr_eq(&first, &shard.config(soon)), "files are looked at once a second at most");
        let reloaded = shard.config(later + RELOAD_CHECK_INTERVAL);
        assert!(!Arc::ptr_eq(&first, &reloaded), "the new files make a new configuration");
    }

    #[test]
    fn no_certificate_means_no_principal() {
        assert_eq!(principal_name(None), None);
        assert_eq!(principal_name(Some(&[])), None);
    }
}
