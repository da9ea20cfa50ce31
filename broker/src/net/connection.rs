//! One client connection: a reader task and a writer task on the connection's shard.
//!
//! The reader reads frames, checks each size before reading its body, holds the body's bytes
//! against the connection's memory budget, and spawns the request's handler as its own task, in
//! request order (so appends reach each partition in the order the client sent them). It passes
//! the task's handle to the writer through a bounded channel: its capacity is the limit on
//! requests in flight, and a full channel stops the reader (back-pressure on the client).
//!
//! The writer awaits the handles in the same order and writes each reply, so responses go out
//! in request order whatever order the handlers finish in. A bad frame, a request that must
//! close the connection, a handler panic or a socket error ends the connection; its other
//! connections and every other client are unaffected.
//!
//! At shutdown the reader stops taking requests; the writer answers those already read, then
//! the connection closes.
//!
//! A connection of a TLS listener first completes its handshake (within
//! [`TLS_HANDSHAKE_TIMEOUT`]); the reader then reads decrypted frames and the writer encrypts
//! replies through the same `TlsStream`. A client certificate on an SSL listener sets the
//! session's principal. Plaintext connections take none of these steps.

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use futures_util::future::{Either, select};

use crate::context::ShardContext;
use crate::dispatch::{self, Reply};
use crate::net::framing::{self, FrameError, FrameReader, SIZE_PREFIX_BYTES};
use crate::net::limits::{ConnectionSlot, MemoryBudget};
use crate::net::listener::Entry;
use crate::net::send::{self, Chunk};
use crate::net::tls_stream::TlsStream;
use crate::security::tls::principal_name as tls_principal;
use crate::security::{Principal, SecurityProtocol, Session};

/// A request read and being handled.
struct InFlight {
    reply: JoinHandle<Reply>,
    api_key: i16,
    size_bytes: u64,
    started: Instant,
}

/// How long a TLS client may take to complete its handshake: a client that connects and says
/// nothing would otherwise hold a connection slot until it leaves.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection of `listener` until it closes.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shard: Rc<ShardContext>,
    slot: ConnectionSlot,
    listener: Rc<Entry>,
) {
    shard.metrics().connection_opened();
    tracing::debug!(%peer, shard = shard.shard.0, listener = %listener.name, "connection opened");
    let session = Rc::new(Session::new(listener.name.clone(), listener.protocol, peer));
    match &listener.tls {
        None => {
            let (read_half, write_half) = stream.into_split();
            let reader = FrameReader::new(read_half.clone(), shard.config().limits.request_size_bytes_max);
            run(reader, Transport::Plain(write_half), &read_half, &shard, &session).await;
        }
        Some(tls) => {
            let config = tls.config(shard.shared.clock.now());
            let handshake = compio::time::timeout(TLS_HANDSHAKE_TIMEOUT, TlsStream::accept(stream, config)).await;
            match handshake {
                Ok(Ok(tls)) => {
                    if session.protocol == SecurityProtocol::Ssl
                        && let Some(name) = tls_principal(tls.peer_certificates().as_deref())
                    {
                        session.set_principal(Principal::user(&name));
                        tracing::debug!(%peer, principal = %session.principal(), "TLS client certificate accepted");
                    }
                    let socket = tls.socket().clone();
                    let reader = FrameReader::with_tls(tls.clone(), shard.config().limits.request_size_bytes_max);
                    run(reader, Transport::Tls(tls), &socket, &shard, &session).await;
                }
                Ok(Err(error)) => tracing::info!(%peer, %error, "TLS handshake failed"),
                Err(_elapsed) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        }
    }
    shard.metrics().connection_closed();
    drop(slot);
    tracing::debug!(%peer, "connection closed");
}

/// Runs the reader here and the writer as its own task until both are done; `socket` is the
/// connection's socket, shut down at the end.
async fn run(
    reader: FrameReader,
    transport: Transport,
    socket: &TcpStream,
    shard: &Rc<ShardContext>,
    session: &Rc<Session>,
) {
    let peer = session.peer;
    let limits = shard.config().limits;
    let (sender, receiver) = async_channel::bounded(limits.in_flight_requests_max as usize);
    let budget = Rc::new(MemoryBudget::new(limits.connection_memory_bytes_max));
    let writer = compio::runtime::spawn(write_loop(transport, receiver, budget.clone(), shard.clone()));
    if let Err(error) = read_loop(reader, sender, &budget, shard, session).await {
        match error {
            FrameError::Io(_) | FrameError::Truncated => tracing::debug!(%peer, %error, "connection ended"),
            FrameError::Negative { .. } | FrameError::TooSmall { .. } | FrameError::TooLarge { .. } => {
                shard.metrics().frame_rejected();
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                // Close at once: nothing more is read, and replies still pending are dropped.
                close_socket(socket);
            }
        }
    }
    if writer.await.is_err() {
        tracing::error!(%peer, "connection writer panicked");
    }
    close_socket(socket);
}

/// Where replies are written: the socket itself, or the TLS record layer over it.
enum Transport {
    Plain(TcpStream),
    Tls(TlsStream),
}

impl Transport {
    async fn write_chunks(&mut self, chunks: Vec<Chunk>, pipes: &send::PipePool) -> std::io::Result<()> {
        match self {
            Self::Plain(stream) => send::write_chunks(stream, chunks, pipes).await,
            Self::Tls(tls) => tls.write_chunks(chunks).await,
        }
    }

    /// Ends the stream: TLS's close_notify first, then both directions of the socket.
    async fn close(&mut self) {
        match self {
            Self::Plain(stream) => close_socket(stream),
            Self::Tls(tls) => {
                tls.close().await;
                close_socket(tls.socket());
            }
        }
    }
}

/// Reads requests and starts them, until end of stream, a bad frame, or shutdown.
async fn read_loop(
    mut reader: FrameReader,
    sender: async_channel::Sender<InFlight>,
    budget: &MemoryBudget,
    shard: &Rc<ShardContext>,
    session: &Rc<Session>,
) -> Result<(), FrameError> {
    loop {
        let size = {
            let next = std::pin::pin!(reader.next_size());
            let stop = std::pin::pin!(shard.shared.shutdown.wait(&shard.shared.engine));
            match select(next, stop).await {
                Either::Left((size, _)) => size?,
                Either::Right(((), _)) => return Ok(()),
            }
        };
        let Some(size) = size else { return Ok(()) };
        crate::quota::wait_unmuted(shard, session).await;
        let size_bytes = (SIZE_PREFIX_BYTES + size) as u64;
        budget.acquire(size_bytes).await;
        let frame = reader.read_body(size).await?;
        let started = shard.shared.clock.now();
        shard.metrics().add_bytes_in(size_bytes);
        let prefix = framing::header_prefix(&frame).expect("frame_size admits no frame shorter than a header prefix");
        let reply = compio::runtime::spawn(dispatch::dispatch(shard.clone(), prefix, frame, session.clone()));
        let in_flight = InFlight { reply, api_key: prefix.api_key, size_bytes, started };
        if let Err(unsent) = sender.send(in_flight).await {
            // The writer has closed the connection; let the handler finish on its own.
            unsent.0.reply.detach();
            return Ok(());
        }
        if !crate::security::sasl::wait_turn(session).await {
            // SASL authentication failed: what was read is answered, then the connection closes.
            return Ok(());
        }
    }
}

/// Replies gathered into one vectored write stop growing past this many bytes.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Writes replies in request order until the reader is done and every reply is written, or
/// until the connection must close.
///
/// Replies of pipelined requests that are already finished when one is written go out with it
/// in a single vectored write, so a client with several requests in flight costs one send per
/// burst rather than one per request. Fetch replies carry file ranges, which go out with
/// `splice` between the memory parts (see `net::send`).
async fn write_loop(
    mut transport: Transport,
    receiver: async_channel::Receiver<InFlight>,
    budget: Rc<MemoryBudget>,
    shard: Rc<ShardContext>,
) {
    let mut next = None;
    'connection: loop {
        let mut current = match next.take() {
            Some(in_flight) => in_flight,
            None => match receiver.recv().await {
                Ok(in_flight) => in_flight,
                Err(_closed) => break,
            },
        };
        let mut chunks = Vec::new();
        let mut held_bytes = 0;
        let mut keep_open;
        loop {
            held_bytes += current.size_bytes;
            keep_open = collect_reply(&shard, current, &mut chunks).await;
            let batch_bytes: usize = chunks.iter().map(Chunk::len).sum();
            if !keep_open || batch_bytes >= WRITE_BATCH_BYTES_MAX {
                break;
            }
            match receiver.try_recv() {
                Ok(candidate) if candidate.reply.is_finished() => current = candidate,
                Ok(candidate) => {
                    next = Some(candidate);
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(error) = transport.write_chunks(chunks, &shard.pipes).await {
            tracing::debug!(%error, "write failed");
            keep_open = false;
        }
        budget.release(held_bytes);
        if !keep_open {
            break 'connection;
        }
    }
    if let Some(abandoned) = next {
        abandoned.reply.detach();
    }
    receiver.close();
    // Requests already read but not answered run to completion on their own; nobody waits.
    while let Ok(abandoned) = receiver.try_recv() {
        abandoned.reply.detach();
    }
    transport.close().await;
}

/// Waits for one reply and adds its frame to `chunks`. Returns whether the connection stays open.
async fn collect_reply(shard: &ShardContext, in_flight: InFlight, chunks: &mut Vec<Chunk>) -> bool {
    let reply = in_flight.reply.await;
    let metrics = shard.metrics();
    metrics.record_request(in_flight.api_key, shard.shared.clock.now().saturating_duration_since(in_flight.started));
    match reply {
        Ok(Reply::Frame(frame)) => {
            metrics.add_bytes_out(frame.len() as u64);
            chunks.push(Chunk::Memory(frame));
            true
        }
        Ok(Reply::Chunks(frame)) => {
            metrics.add_bytes_out(frame.iter().map(|chunk| chunk.len() as u64).sum());
            chunks.extend(frame);
            true
        }
        Ok(Reply::Silent) => true,
        Ok(Reply::Close(reason)) => {
            metrics.frame_rejected();
            tracing::warn!(api_key = in_flight.api_key, %reason, "closing connection");
            false
        }
        Err(_panic) => {
            tracing::error!(api_key = in_flight.api_key, "request handler panicked; closing connection");
            false
        }
    }
}

/// Shuts both directions of the socket so a pending read on the other half returns at once.
fn close_socket(stream: &TcpStream) {
    if let Err(error) = socket2::SockRef::from(stream).shutdown(Shutdown::Both)
        && error.kind() != std::io::ErrorKind::NotConnected
    {
        tracing::debug!(%error, "socket shutdown failed");
    }
}
