//! Listening sockets: one per shard, all bound to the same address with SO_REUSEPORT so the
//! kernel spreads incoming connections over the shards. Each shard runs its own accept loop
//! and serves the connections it accepts.
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

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;
/// How long a port still held by a dead process is waited for at startup.
const PROBE_RETRY_MS_MAX: u64 = 5_000;
/// Pause between binding attempts.
const PROBE_RETRY_INTERVAL_MS: u64 = 50;

/// Binds `count` listeners to `address` with SO_REUSEPORT. Port 0 picks one free port for all.
///
/// A plain probe bind (without SO_REUSEPORT) first makes sure no other socket listens there:
/// with SO_REUSEPORT alone, a second broker of the same user would silently share the port.
///
/// # Errors
/// The address is in use or cannot be bound.
pub(crate) fn bind_all(address: SocketAddr, count: u16) -> io::Result<Vec<TcpListener>> {
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

/// Accepts connections on this shard until shutdown, serving each as its own task.
pub(crate) async fn accept_loop(listener: TcpListener, shard: Rc<ShardContext>) {
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
                let connection = connection::serve(stream, peer, shard.clone(), slot);
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
