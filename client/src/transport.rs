//! The byte stream under a [`crate::Connection`]: plain TCP, or TLS over TCP (rustls), split
//! into a read half and a write half that may live on two threads.
//!
//! TLS is one session state shared by both halves behind a mutex, over two handles of the same
//! socket. The halves never hold the mutex while they wait on the socket, so a reader blocked
//! for a response never stops the writer (plain TCP behaves the same way):
//! - the read half drains decrypted bytes first; when there are none it waits for ciphertext
//!   with `peek` (outside the lock), then takes the lock, reads what arrived into the session
//!   and decrypts it;
//! - the write half encrypts under the lock into a buffer of its own, then writes that buffer to
//!   the socket outside the lock. It is the only side that takes ciphertext out of the session,
//!   so records leave in sequence order; anything the read half makes the session want to send
//!   (an alert, a key update answer) goes out with the next write.
//!
//! The handshake completes in [`Transport::connect`], before the halves exist, so that a refused
//! certificate fails the connect rather than the first request.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::ClientConnection;
use rustls::pki_types::ServerName;

/// A connected stream, ready to be split.
#[derive(Debug)]
pub(crate) struct Transport {
    read: ReadHalf,
    write: WriteHalf,
}

impl Transport {
    /// A plain TCP stream.
    ///
    /// # Errors
    /// When the socket cannot be duplicated.
    pub(crate) fn plain(stream: TcpStream) -> io::Result<Self> {
        let read = stream.try_clone()?;
        Ok(Self { read: ReadHalf::Plain(read), write: WriteHalf::Plain(stream) })
    }

    /// A TLS stream over `stream`, after a completed handshake with `server_name` verified as
    /// `config` says.
    ///
    /// # Errors
    /// The handshake's failure (a rustls error inside `InvalidData`), or a socket error.
    pub(crate) fn tls(
        mut stream: TcpStream,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Self> {
        let mut session = ClientConnection::new(config, server_name).map_err(io::Error::other)?;
        while session.is_handshaking() {
            session.complete_io(&mut stream)?;
        }
        let read = stream.try_clone()?;
        let session = Arc::new(Mutex::new(session));
        Ok(Self {
            read: ReadHalf::Tls { socket: read, session: session.clone() },
            write: WriteHalf::Tls { socket: stream, session, ciphertext: Vec::new() },
        })
    }

    /// The two halves.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        (self.read, self.write)
    }
}

fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    // A thread that panicked while holding the session left it as rustls left it: every later
    // call reports the connection's state through rustls' own errors.
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reading side of a [`Transport`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Plain(TcpStream),
    Tls { socket: TcpStream, session: Arc<Mutex<ClientConnection>> },
}

impl Read for ReadHalf {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let (socket, session) = match self {
            Self::Plain(stream) => return stream.read(buffer),
            Self::Tls { socket, session } => (socket, session),
        };
        loop {
            match lock(session).reader().read(buffer) {
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                // Ok(0) after the peer's close_notify; UnexpectedEof when it just closed.
                done => return done,
            }
            // Waits outside the lock (honours the socket's read timeout).
            let available = socket.peek(&mut [0u8; 1])?;
            let mut session = lock(session);
            if available == 0 {
                session.read_tls(&mut io::empty())?;
            } else {
                session.read_tls(socket)?;
            }
            session.process_new_packets().map_err(|error| io::Error::new(ErrorKind::InvalidData, error))?;
        }
    }
}

/// The writing side of a [`Transport`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Plain(TcpStream),
    Tls { socket: TcpStream, session: Arc<Mutex<ClientConnection>>, ciphertext: Vec<u8> },
}

impl Write for WriteHalf {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let (socket, session, ciphertext) = match self {
            Self::Plain(stream) => return stream.write(buffer),
            Self::Tls { socket, session, ciphertext } => (socket, session, ciphertext),
        };
        ciphertext.clear();
        let written = {
            let mut session = lock(session);
            let written = session.writer().write(buffer)?;
            while session.wants_write() {
                session.write_tls(ciphertext)?;
            }
            written
        };
        socket.write_all(ciphertext)?;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(stream) => stream.flush(),
            Self::Tls { socket, .. } => socket.flush(),
        }
    }
}

/// The TLS server name of `address` (`host:port`, `[v6]:port`): the host, a DNS name or an IP
/// address, which the broker's certificate must name when host names are verified.
///
/// # Errors
/// `InvalidInput` when the host is neither.
pub(crate) fn server_name(address: &str) -> io::Result<ServerName<'static>> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(host.to_owned())
        .map_err(|error| io::Error::new(ErrorKind::InvalidInput, format!("TLS server name {host:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_host_of_the_address() {
        assert!(
            matches!(server_name("broker-1.example.com:9093"), Ok(ServerName::DnsName(name)) if name.as_ref() == "broker-1.example.com")
        );
        assert!(matches!(server_name("127.0.0.1:9093"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]:9093"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad host:9093").is_err());
    }
}
