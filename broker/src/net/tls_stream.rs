//! The TLS record layer in user space: a rustls connection driven over a compio socket, for
//! the connections of SSL and SASL_SSL listeners and for connections to other brokers over a
//! TLS inter-broker listener.
//!
//! A [`TlsStream`] is cloned into a connection's reader task and writer task; both share the
//! one rustls state (`Rc<RefCell<_>>`, on the connection's shard) and borrow it only between
//! awaits, never across one. Only the writer writes to the socket after the handshake: records
//! rustls queues while reading (a TLS 1.3 KeyUpdate answer) leave with the next reply, so two
//! tasks never write at once and records never interleave. The one exception is the alert the
//! reader sends on a record rustls refuses, right before the connection closes.
//!
//! Costs against plaintext: each received byte is copied once out of rustls' plaintext buffer
//! (plaintext frames are cut from the receive buffer without a copy), and a fetched file range
//! is read into memory to be encrypted instead of being spliced (see `security::tls` for the
//! kernel TLS offload this would take to avoid).

use std::cell::{Cell, RefCell};
use std::io::{self, Read as _, Write as _};
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use compio::buf::BufResult;
use compio::io::{AsyncRead as _, AsyncReadAtExt as _, AsyncWriteExt as _};
use compio::net::TcpStream;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::net::send::Chunk;

/// Ciphertext read from the socket at once.
const INCOMING_BYTES: usize = 64 * 1024;
/// Plaintext encrypted before the records are written out: bounds the memory a reply holds.
const ENCRYPT_BATCH_BYTES: usize = 256 * 1024;
/// A fetched file range is read into memory in pieces of this size.
const FILE_PIECE_BYTES: usize = 256 * 1024;

/// One TLS connection's record layer over its socket.
#[derive(Clone)]
pub(crate) struct TlsStream {
    connection: Rc<RefCell<rustls::Connection>>,
    stream: TcpStream,
    /// Plaintext decrypted before anyone asked for it (sent with the end of the handshake).
    early: Rc<RefCell<BytesMut>>,
    /// The ciphertext receive buffer, reused from one read to the next.
    incoming: Rc<Cell<Option<Vec<u8>>>>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

impl TlsStream {
    /// Runs the server side of the handshake on an accepted socket.
    ///
    /// # Errors
    /// A socket error, a close before the handshake ends, or a handshake rustls refused (an
    /// untrusted or missing client certificate, no common version or cipher suite); the alert
    /// is sent to the client first.
    pub(crate) async fn accept(stream: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let connection = rustls::ServerConnection::new(config).map_err(invalid)?;
        Self::handshake(stream, connection.into()).await
    }

    /// Runs the client side of the handshake on a connected socket, verifying that the server's
    /// certificate names `host`.
    ///
    /// # Errors
    /// As [`Self::accept`], and a host that is no valid server name.
    pub(crate) async fn connect(stream: TcpStream, config: Arc<rustls::ClientConfig>, host: &str) -> io::Result<Self> {
        let name = ServerName::try_from(host.to_owned()).map_err(invalid)?;
        let connection = rustls::ClientConnection::new(config, name).map_err(invalid)?;
        Self::handshake(stream, connection.into()).await
    }

    async fn handshake(stream: TcpStream, mut connection: rustls::Connection) -> io::Result<Self> {
        connection.set_buffer_limit(Some(ENCRYPT_BATCH_BYTES));
        let mut tls = Self {
            connection: Rc::new(RefCell::new(connection)),
            stream,
            early: Rc::default(),
            incoming: Rc::default(),
        };
        let mut early = BytesMut::new();
        loop {
            tls.flush().await?;
            if !tls.connection.borrow().is_handshaking() {
                *tls.early.borrow_mut() = early;
                return Ok(tls);
            }
            if !tls.receive(&mut early).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The certificates the peer presented, its own first.
    pub(crate) fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.connection.borrow().peer_certificates().map(<[_]>::to_vec)
    }

    /// The socket, for shutting it down.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads ciphertext once, decrypts it and appends the plaintext to `sink`. Returns `false` at
    /// end of stream. On a record rustls refuses, its alert is sent before the error returns.
    ///
    /// The plaintext is moved out after each record batch: rustls refuses to read more while it
    /// holds over 16 KiB of it, and one read can bring several 16 KiB records.
    async fn receive(&mut self, sink: &mut BytesMut) -> io::Result<bool> {
        let mut buffer = self.incoming.take().unwrap_or_else(|| Vec::with_capacity(INCOMING_BYTES));
        buffer.clear();
        let BufResult(result, buffer) = self.stream.read(buffer).await;
        let decrypted = match result {
            Ok(0) => Ok(false),
            Ok(_) => self.decrypt(&buffer, sink).map(|()| true),
            Err(error) => Err(error),
        };
        self.incoming.set(Some(buffer));
        if let Err(error) = &decrypted
            && error.kind() == io::ErrorKind::InvalidData
        {
            // Best effort: the connection closes whatever the alert's fate.
            if let Err(flush_error) = self.flush().await {
                tracing::debug!(%flush_error, "TLS alert not sent");
            }
        }
        decrypted
    }

    /// Feeds `ciphertext` to rustls, moving the plaintext of each batch of records to `sink`.
    fn decrypt(&self, mut ciphertext: &[u8], sink: &mut BytesMut) -> io::Result<()> {
        let mut connection = self.connection.borrow_mut();
        while !ciphertext.is_empty() {
            connection.read_tls(&mut ciphertext)?;
            let waiting = connection.process_new_packets().map_err(invalid)?.plaintext_bytes_to_read();
            if waiting > 0 {
                let start = sink.len();
                sink.resize(start + waiting, 0);
                connection.reader().read_exact(&mut sink[start..])?;
            }
        }
        Ok(())
    }

    /// Appends decrypted bytes to `buffer`, reading the socket when none are waiting. Returns
    /// how many were appended; 0 at the end of the stream.
    ///
    /// # Errors
    /// A socket error or a record rustls refuses.
    pub(crate) async fn read_into(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        let early = std::mem::take(&mut *self.early.borrow_mut());
        if !early.is_empty() {
            buffer.extend_from_slice(&early);
            return Ok(early.len());
        }
        loop {
            let start = buffer.len();
            if !self.receive(buffer).await? {
                return Ok(0);
            }
            if buffer.len() > start {
                return Ok(buffer.len() - start);
            }
            if self.connection.borrow_mut().process_new_packets().map_err(invalid)?.peer_has_closed() {
                return Ok(0);
            }
        }
    }

    /// Encrypts `plaintext`; the records go out once [`ENCRYPT_BATCH_BYTES`] are queued, or at
    /// the next [`Self::flush`].
    ///
    /// # Errors
    /// A socket error; part of the bytes may have been sent.
    pub(crate) async fn write_plain(&mut self, mut plaintext: &[u8]) -> io::Result<()> {
        while !plaintext.is_empty() {
            // rustls takes what fits under its buffer limit and encrypts it at once.
            let taken = self.connection.borrow_mut().writer().write(plaintext)?;
            plaintext = &plaintext[taken..];
            if !plaintext.is_empty() {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes out every record rustls has queued.
    ///
    /// # Errors
    /// A socket error.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut records = Vec::new();
            {
                let mut connection = self.connection.borrow_mut();
                while connection.wants_write() {
                    connection.write_tls(&mut records)?;
                }
            }
            if records.is_empty() {
                return Ok(());
            }
            let BufResult(written, _) = self.stream.write_all(records).await;
            written?;
        }
    }

    /// Sends a reply's chunks encrypted; a file range is read into memory first, in pieces.
    ///
    /// # Errors
    /// A socket or file error; part of the reply may have been sent.
    pub(crate) async fn write_chunks(&mut self, chunks: Vec<Chunk>) -> io::Result<()> {
        for chunk in chunks {
            match chunk {
                Chunk::Memory(bytes) => self.write_plain(&bytes).await?,
                Chunk::File(range) => {
                    let file = sluice_engine::io::into_runtime_file(range.file.try_clone()?);
                    let mut position = range.position;
                    let mut left = range.size_bytes as usize;
                    while left > 0 {
                        let piece = left.min(FILE_PIECE_BYTES);
                        let buffer = Vec::with_capacity(piece);
                        let BufResult(read, buffer) =
                            file.read_exact_at(compio::buf::IoBuf::slice(buffer, ..piece), position).await;
                        read?;
                        self.write_plain(&compio::buf::IntoInner::into_inner(buffer)).await?;
                        position += piece as u64;
                        left -= piece;
                    }
                }
            }
        }
        self.flush().await
    }

    /// Sends TLS's close_notify, so the peer sees a clean end of the stream.
    pub(crate) async fn close(&mut self) {
        self.connection.borrow_mut().send_close_notify();
        if let Err(error) = self.flush().await {
            tracing::debug!(%error, "TLS close_notify not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_instead_of_a_handshake_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let client = std::thread::spawn(move || {
            let mut socket = std::net::TcpStream::connect(address).expect("connect");
            socket.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]).expect("write");
            socket.write_all(&[0u8; 4096]).expect("write");
            let mut answer = Vec::new();
            // The broker answers with an alert and closes; a reset is as good.
            drop(socket.read_to_end(&mut answer));
            answer
        });
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let listener = compio::net::TcpListener::from_std(listener).expect("listener");
            let (stream, _) = listener.accept().await.expect("accept");
            let (config, _) = configs();
            let refused = TlsStream::accept(stream, config).await;
            assert!(refused.is_err(), "a garbage handshake must fail");
        });
        let answer = client.join().expect("client");
        assert!(answer.is_empty() || answer[0] == 0x15, "nothing, or an alert record: {answer:?}");
    }

    fn openssl(args: &[&str], dir: &std::path::Path) {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    }

    /// A CA and a server certificate it signs for `localhost`, made by the `openssl` command:
    /// the server's configuration and a client's that trusts the CA.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[&["req", "-x509"], &ec[..], &["-days", "1", "-subj", "/CN=ca", "-keyout", "ca.key", "-out", "ca.pem"]]
                .concat(),
            path,
        );
        openssl(&[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", "s.key", "-out", "s.csr"]].concat(), path);
        std::fs::write(path.join("s.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").expect("write");
        openssl(
            &["x509", "-req", "-in", "s.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
                .iter()
                .chain(&["-extfile", "s.ext", "-out", "s.pem"])
                .copied()
                .collect::<Vec<_>>(),
            path,
        );
        let settings = crate::security::tls::TlsSettings {
            certificate: Some(path.join("s.pem")),
            key: Some(path.join("s.key")),
            ca: Some(path.join("ca.pem")),
            ..crate::security::tls::TlsSettings::default()
        };
        let server = crate::security::tls::load_server(&settings).expect("loads").config();
        let client_settings = crate::security::tls::TlsSettings { ca: settings.ca.clone(), ..Default::default() };
        (server, crate::security::tls::client_config(&client_settings).expect("client config"))
    }

    /// More than rustls' 16 KiB plaintext limit per read, both ways, with a file range sent
    /// encrypted: every byte arrives in order.
    #[test]
    fn large_messages_and_file_ranges_cross_intact() {
        let (server_config, client_config) = configs();
        let contents: Vec<u8> = (0..700_000u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&contents).expect("write file");
        let range = sluice_engine::FileRange { file: Arc::new(file), position: 3, size_bytes: 600_000 };
        let expected_reply: Vec<u8> = [&b"head"[..], &contents[3..600_003]].concat();
        let request = contents[..300_000].to_vec();
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let listener = compio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            let server = compio::runtime::spawn(async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut tls = TlsStream::accept(stream, server_config).await.expect("handshake");
                let mut received = BytesMut::new();
                while received.len() < 300_000 {
                    assert!(tls.read_into(&mut received).await.expect("read") > 0, "early end");
                }
                let chunks = vec![Chunk::Memory(bytes::Bytes::from_static(b"head")), Chunk::File(range)];
                tls.write_chunks(chunks).await.expect("reply");
                received
            });
            let stream = TcpStream::connect(address).await.expect("connect");
            let mut client = TlsStream::connect(stream, client_config, "localhost").await.expect("handshake");
            client.write_plain(&request).await.expect("write");
            client.flush().await.expect("flush");
            let mut reply = BytesMut::new();
            while reply.len() < expected_reply.len() {
                assert!(client.read_into(&mut reply).await.expect("read") > 0, "early end");
            }
            assert!(reply[..] == expected_reply[..], "the reply differs");
            let received = server.await.expect("server task");
            assert!(received[..] == request[..], "the request differs");
        });
    }
}
