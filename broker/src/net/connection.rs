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

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use futures_util::future::{Either, select};

use crate::context::ShardContext;
use crate::dispatch::{self, Reply};
use crate::net::framing::{self, FrameError, FrameReader, SIZE_PREFIX_BYTES};
use crate::net::limits::{ConnectionSlot, MemoryBudget};
use crate::net::send::{self, Chunk};
use crate::security::Session;

/// A request read and being handled.
struct InFlight {
    reply: JoinHandle<Reply>,
    api_key: i16,
    size_bytes: u64,
    started: Instant,
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shard: Rc<ShardContext>, slot: ConnectionSlot) {
    let limits = shard.config().limits;
    shard.metrics().connection_opened();
    tracing::debug!(%peer, shard = shard.shard.0, "connection opened");
    let (read_half, write_half) = stream.into_split();
    let (sender, receiver) = async_channel::bounded(limits.in_flight_requests_max as usize);
    let budget = Rc::new(MemoryBudget::new(limits.connection_memory_bytes_max));
    let writer = compio::runtime::spawn(write_loop(write_half, receiver, budget.clone(), shard.clone()));
    let reader = FrameReader::new(read_half.clone(), limits.request_size_bytes_max);
    let session = Rc::new(Session::plaintext(peer));
    if let Err(error) = read_loop(reader, sender, &budget, &shard, &session).await {
        match error {
            FrameError::Io(_) | FrameError::Truncated => tracing::debug!(%peer, %error, "connection ended"),
            FrameError::Negative { .. } | FrameError::TooSmall { .. } | FrameError::TooLarge { .. } => {
                shard.metrics().frame_rejected();
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                // Close at once: nothing more is read, and replies still pending are dropped.
                close_socket(&read_half);
            }
        }
    }
    if writer.await.is_err() {
        tracing::error!(%peer, "connection writer panicked");
    }
    close_socket(&read_half);
    shard.metrics().connection_closed();
    drop(slot);
    tracing::debug!(%peer, "connection closed");
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
    mut stream: TcpStream,
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
        if let Err(error) = send::write_chunks(&mut stream, chunks, &shard.pipes).await {
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
    close_socket(&stream);
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
