//! Listening sockets: every listener of the broker (`--listeners`, or the single `--listen`)
//! bound once per shard, all sockets of one listener on the same address with SO_REUSEPORT so
//! the kernel spreads its incoming connections over the shards. Each shard runs an accept loop
//! per listener and serves the connections it accepts, each with a session naming the listener
//! and its security protocol; a TLS listener's connections get the shard's current TLS
//! configuration (reloaded when its files change, see `security::tls`).
//!
//! Binding happens on the starting thread (so a port in use is reported before anything runs);
//! the std listeners then move to their shard threads and become compio listeners there.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{Either, select};
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock;
use crate::context::ShardContext;
use crate::net::connection;
use crate::security::SecurityProtocol;
use crate::security::listeners::{Listener, ListenerSet};
use crate::security::tls::{ClientAuth, LoadedServer, ServerTls, TlsSettings, load_server};

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;
/// How long a port still held by a dead process is waited for at startup.
const PROBE_RETRY_MS_MAX: u64 = 5_000;
/// Pause between binding attempts.
const PROBE_RETRY_INTERVAL_MS: u64 = 50;

/// Every listener bound on every shard.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address each listener is bound to (the real port when 0 was asked for), in the
    /// listener set's order.
    pub(crate) addresses: Vec<SocketAddr>,
    /// By shard: the shard's socket of each listener, in the listener set's order.
    pub(crate) shards: Vec<Vec<TcpListener>>,
}

/// Binds each listener of `set` `count` times (once per shard).
///
/// # Errors
/// The address of the listener that could not be bound, and why.
pub(crate) fn bind_listeners(set: &ListenerSet, count: u16) -> Result<Bound, (SocketAddr, io::Error)> {
    let mut addresses = Vec::with_capacity(set.listeners.len());
    let mut shards: Vec<Vec<TcpListener>> = (0..count).map(|_| Vec::with_capacity(set.listeners.len())).collect();
    for listener in &set.listeners {
        let sockets = bind_all(listener.address, count).map_err(|error| (listener.address, error))?;
        let bound = sockets[0].local_addr().map_err(|error| (listener.address, error))?;
        addresses.push(bound);
        for (shard, socket) in shards.iter_mut().zip(sockets) {
            shard.push(socket);
        }
    }
    Ok(Bound { addresses, shards })
}

/// What one shard serves: its socket of each listener, and the TLS configuration loaded at
/// startup when a listener needs one. Built on the starting thread, moved to the shard.
#[derive(Debug)]
pub(crate) struct ShardListeners {
    /// The shard's sockets, one per listener, in `listeners` order.
    pub(crate) sockets: Vec<TcpListener>,
    /// The listeners.
    pub(crate) listeners: Vec<Listener>,
    /// The TLS listeners' configuration as loaded at startup.
    pub(crate) tls: Option<LoadedServer>,
}

/// Runs one accept loop per listener on this shard until shutdown.
///
/// SASL_SSL listeners never ask for a client certificate: `--ssl-client-auth` applies to SSL
/// listeners only, as Kafka's broker-wide `ssl.client.auth` has since KIP-684 (a SASL client is
/// authenticated by SASL, and Kafka's clients send no certificate there).
pub(crate) async fn serve(serving: ShardListeners, shard: Rc<ShardContext>) {
    let settings = shard.config().tls.clone();
    let sasl_settings = TlsSettings { client_auth: ClientAuth::None, ..settings.clone() };
    let sasl_tls = match &serving.tls {
        Some(_) if sasl_settings != settings => match load_server(&sasl_settings) {
            Ok(loaded) => Some(Rc::new(ServerTls::new(sasl_settings, loaded))),
            Err(error) => {
                tracing::error!(%error, "cannot load the TLS configuration of the SASL_SSL listeners");
                None
            }
        },
        _ => None,
    };
    let tls = serving.tls.map(|loaded| Rc::new(ServerTls::new(settings, loaded)));
    let loops = serving.sockets.into_iter().zip(serving.listeners).map(|(socket, listener)| {
        let listener_tls = match listener.protocol {
            SecurityProtocol::SaslSsl => sasl_tls.clone().or_else(|| tls.clone()),
            protocol if protocol.uses_tls() => tls.clone(),
            _ => None,
        };
        let entry =
            Rc::new(Entry { name: Rc::from(listener.name.as_str()), protocol: listener.protocol, tls: listener_tls });
        accept_loop(socket, shard.clone(), entry)
    });
    futures_util::future::join_all(loops).await;
}

/// A listener as its accept loop sees it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The listener's name, given to each connection's session.
    pub(crate) name: Rc<str>,
    /// Its security protocol.
    pub(crate) protocol: SecurityProtocol,
    /// The shard's TLS configuration, for a TLS listener.
    pub(crate) tls: Option<Rc<ServerTls>>,
}

/// Binds `count` listeners to `address` with SO_REUSEPORT. Port 0 picks one free port for all.
///
/// A plain probe bind (without SO_REUSEPORT) first makes sure no other socket listens there:
/// with SO_REUSEPORT alone, a second broker of the same user would silently share the port.
///
/// # Errors
/// The address is in use or cannot be bound.
fn bind_all(address: SocketAddr, count: u16) -> io::Result<Vec<TcpListener>> {
    let bound = probe(address)?;
    (0..count).map(|_| bind_one(bound)).collect()
}

/// Binds and releases a plain socket on `address`, returning the address bound (the real port
/// when 0 was asked for).
///
/// An address still in use is retried for up to [`PROBE_RETRY_MS_MAX`]: when a process that
/// used io_uring dies (a broker killed with SIGKILL and restarted at once), the kernel tears its
/// ring down asynchronously, and the accept operations it had queued keep the old listening
/// socket open for a moment after the process is gone.
fn probe(address: SocketAddr) -> io::Result<SocketAddr> {
    let deadline = clock::startup_now() + Duration::from_millis(PROBE_RETRY_MS_MAX);
    loop {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&address.into()) {
            Ok(()) => {
                return socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("bound address is not IP"));
            }
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && clock::startup_now() < deadline => {
                clock::sleep_blocking(Duration::from_millis(PROBE_RETRY_INTERVAL_MS));
            }
            Err(error) => return Err(error),
        }
    }
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts connections of one listener on this shard until shutdown, serving each as its own
/// task.
async fn accept_loop(listener: TcpListener, shard: Rc<ShardContext>, entry: Rc<Entry>) {
    let listener = match compio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(shard = shard.shard.0, %error, "cannot register the listener");
            return;
        }
    };
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            let stop = std::pin::pin!(shard.shared.shutdown.wait(&shard.shared.engine));
            match select(accept, stop).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(((), _)) => break,
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = shard.shared.connections.try_open() else {
                    tracing::warn!(%peer, "refusing connection: max.connections reached");
                    shard.metrics().connection_refused();
                    continue;
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                let connection = connection::serve(stream, peer, shard.clone(), slot, entry.clone());
                compio::runtime::spawn(crate::crash::abort_on_panic("connection", connection)).detach();
            }
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: back off briefly
                // rather than spin.
                tracing::warn!(shard = shard.shard.0, %error, "accept failed");
                shard.shared.clock.sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(shard = shard.shard.0, "listener closed");
}
