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

/// Binds `count` listeners to `address` with SO_REUSEPORT. Port 0 picks one free port for all.
///
/// A plain probe bind (without SO_REUSEPORT) first makes sure no other socket listens there:
/// with SO_REUSEPORT alone, a second broker of the same user would silently share the port.
///
/// # Errors
/// The address is in use or cannot be bound.
pub(crate) fn bind_all(address: SocketAddr, count: u16) -> io::Result<Vec<TcpListener>> {
    let probe = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&address.into())?;
    let bound = probe.local_addr()?.as_socket().ok_or_else(|| io::Error::other("bound address is not IP"))?;
    drop(probe);
    (0..count).map(|_| bind_one(bound)).collect()
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
            let stop = std::pin::pin!(shard.shared.shutdown.wait());
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
                compio::runtime::spawn(connection::serve(stream, peer, shard.clone(), slot)).detach();
            }
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: back off briefly
                // rather than spin.
                tracing::warn!(shard = shard.shard.0, %error, "accept failed");
                clock::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(shard = shard.shard.0, "listener closed");
}
