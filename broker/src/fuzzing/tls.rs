//! The TLS accept path of the SSL and SASL_SSL listeners, driven over a loopback socket with the
//! bytes a client sends: the entry point of the `fuzz_tls_accept` target.
//!
//! Method, per input:
//! 1. A client task connects to a loopback listener, writes the input, half-closes (so the
//!    server reads the input and then the end of the stream, as from a client that gave up),
//!    and reads what the server answers until the server closes.
//! 2. The server task accepts the connection and runs the listener's handshake:
//!    `ServerTls::config` (a shard's configuration, loaded from PEM files with `load_server`),
//!    then `TlsStream::accept`, under the connection's handshake timeout.
//! 3. The outcome must be an error (the input cannot complete a handshake: its Finished message
//!    would have to be keyed on the server's fresh random and key share), reached before the
//!    timeout, with nothing or a TLS record (an alert, or the server's first flight) answered.
//!    Anything else panics, as a fuzzer wants.
//!
//! Memory: the accept path reads 64 KiB at a time and rustls caps what it holds undecoded (a
//! record, or a handshake message of at most 64 KiB), so an input of any length costs a bounded
//! amount; libFuzzer's `-rss_limit_mb` and `-malloc_limit_mb` (set by `fuzz/smoke`) check it.
//!
//! Threads: a [`TlsAccept`] owns a compio runtime and must stay on the thread that made it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncReadExt as _, AsyncWrite as _, AsyncWriteExt as _};
use compio::net::{TcpListener, TcpStream};

use crate::net::tls_stream::TlsStream;
use crate::security::tls::{ClientAuth, ServerTls, TlsSettings, load_server};

/// The broker's own bound on a handshake (`net::connection`); a closed input must end far sooner.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS record content types a server's first bytes may carry: alert and handshake.
const RECORD_ALERT: u8 = 0x15;
const RECORD_HANDSHAKE: u8 = 0x16;

/// A loopback TLS listener with a fixed certificate, accepting one connection per input.
pub struct TlsAccept {
    runtime: compio::runtime::Runtime,
    listener: Rc<TcpListener>,
    address: SocketAddr,
    /// Without client authentication, and with client certificates requested (TLS 1.2 clients
    /// send theirs in clear, so garbage certificates reach the verifier).
    shards: [ServerTls; 2],
    /// When the configurations were last looked at; kept fixed so the files are read once.
    now: Instant,
    /// The PEM files the configurations were loaded from, removed on drop.
    dir: PathBuf,
}

impl TlsAccept {
    /// Writes `certificate_pem` and `key_pem` to a fresh directory under the system's temporary
    /// directory, loads them as the listeners do (the certificate is also the CA trusted for
    /// client certificates) and binds a loopback listener.
    ///
    /// # Errors
    /// The files cannot be written, rustls refuses the certificate or key, or the socket or
    /// runtime cannot be made.
    pub fn new(certificate_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        static NEXT_DIR: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-fuzz-tls-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let (certificate, key) = (dir.join("broker.pem"), dir.join("broker.key"));
        for (path, contents) in [(&certificate, certificate_pem), (&key, key_pem)] {
            std::fs::write(path, contents).map_err(|error| format!("{}: {error}", path.display()))?;
        }
        let settings = |client_auth| TlsSettings {
            certificate: Some(certificate.clone()),
            key: Some(key.clone()),
            ca: Some(certificate.clone()),
            client_auth,
        };
        let shard = |client_auth| {
            let settings = settings(client_auth);
            load_server(&settings).map(|loaded| ServerTls::new(settings, loaded)).map_err(|error| error.to_string())
        };
        let shards = [shard(ClientAuth::None)?, shard(ClientAuth::Requested)?];
        let runtime = compio::runtime::Runtime::new().map_err(|error| format!("runtime: {error}"))?;
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .map_err(|error| format!("loopback listener: {error}"))?;
        let address = listener.local_addr().map_err(|error| format!("loopback listener: {error}"))?;
        Ok(Self { runtime, listener: Rc::new(listener), address, shards, now: crate::clock::startup_now(), dir })
    }

    /// Sends `input[1..]` as a client's bytes to the listener; the low bit of `input[0]` picks
    /// whether client certificates are requested. Returns why the handshake failed.
    ///
    /// # Panics
    /// The handshake completes, hangs, or the server answers something other than a TLS record;
    /// the loopback connection itself fails.
    pub fn accept(&self, input: &[u8]) -> String {
        let Some((&selector, client_bytes)) = input.split_first() else {
            return "no input".to_owned();
        };
        let config = self.shards[usize::from(selector & 1)].config(self.now);
        let listener = self.listener.clone();
        let (address, client_bytes) = (self.address, client_bytes.to_vec());
        let (refusal, answer) = self.runtime.block_on(async move {
            let client = compio::runtime::spawn(send_and_read(address, client_bytes));
            let (stream, _) = listener.accept().await.expect("the loopback client connects");
            let accepted = compio::time::timeout(HANDSHAKE_TIMEOUT, TlsStream::accept(stream, config))
                .await
                .expect("a closed input ends the handshake before the broker's timeout");
            let refusal = match accepted {
                Ok(_) => panic!("a handshake completed with bytes that cannot know the server's keys"),
                Err(error) => error.to_string(),
            };
            let answer = client.await.expect("the client task ends").expect("the loopback client reads");
            (refusal, answer)
        });
        assert!(
            answer.first().is_none_or(|kind| [RECORD_ALERT, RECORD_HANDSHAKE].contains(kind)),
            "the server answered garbage with something other than a TLS record: {:?}",
            &answer[..answer.len().min(16)]
        );
        refusal
    }
}

impl Drop for TlsAccept {
    fn drop(&mut self) {
        // Best effort: a leftover directory of two small files harms nothing.
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

/// The client's side: connect, send, half-close, and read the answer until the server closes.
async fn send_and_read(address: SocketAddr, client_bytes: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await?;
    let BufResult(written, _) = stream.write_all(client_bytes).await;
    // The server may close before it read everything (a refused first record): a reset here is
    // part of a clean refusal.
    let shut = match written {
        Ok(()) => stream.shutdown().await,
        Err(error) => Err(error),
    };
    if let Err(error) = shut
        && !is_reset(&error)
    {
        return Err(error);
    }
    let BufResult(read, answer) = stream.read_to_end(Vec::new()).await;
    match read {
        Ok(_) => Ok(answer),
        Err(error) if is_reset(&error) => Ok(answer),
        Err(error) => Err(error),
    }
}

fn is_reset(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    /// A self-signed certificate and its key for `localhost`, made by the `openssl` command.
    fn certificate(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "1", "-subj", "/CN=localhost", "-keyout", "k.pem", "-out", "c.pem"])
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        let read = |name: &str| std::fs::read(dir.join(name)).expect("openssl wrote it");
        (read("c.pem"), read("k.pem"))
    }

    /// The first flight of a rustls client that trusts `certificate_pem`.
    fn client_hello(certificate_pem: &[u8]) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let certificate = rustls::pki_types::CertificateDer::from_pem_slice(certificate_pem).expect("PEM");
        roots.add(certificate).expect("a usable root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut hello).expect("in memory");
        }
        hello
    }

    #[test]
    fn a_client_hello_waits_for_more_and_garbage_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (certificate_pem, key_pem) = certificate(dir.path());
        let listener = TlsAccept::new(&certificate_pem, &key_pem).expect("loads");
        let hello = client_hello(&certificate_pem);
        for selector in [0u8, 1] {
            let input = [&[selector][..], &hello].concat();
            let refusal = listener.accept(&input);
            assert!(refusal.contains("end of file"), "a valid hello then the end of the stream: {refusal}");
        }
        // A Kafka ApiVersions request, as a plaintext client would send it to a TLS port.
        let plaintext = [0u8, 0, 0, 0, 0, 0, 0, 21, 0, 18, 0, 3, 0, 0, 0, 1, 0, 4, b'j', b'a', b'v', b'a'];
        let refusal = listener.accept(&plaintext);
        assert!(!refusal.contains("end of file"), "a plaintext request is refused before the end: {refusal}");
        assert_eq!(listener.accept(&[]), "no input");
    }
}
