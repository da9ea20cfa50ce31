//! Sending replies: bytes from memory with vectored writes, and segment file ranges with
//! `splice`, so that fetched record bytes go from the page cache to the socket without being
//! copied through user space.
//!
//! A file range is moved in two io_uring splices per step: file -> pipe (page references, no
//! copy), then pipe -> socket until the pipe is empty. The pipe is always drained before the next
//! file -> pipe splice, so the shard never waits on a pipe that only it could empty. Pipes come
//! from a per-shard pool: a connection holds one only while it sends a range, so the number of
//! pipes follows the number of concurrent sends, not the number of connections.
//!
//! While a write holds a file range the socket is corked (`TCP_CORK`), so the response header
//! written from memory and the records spliced after it leave in full segments; the cork is
//! removed when the write ends, which pushes out what remains.
//!
//! io_uring runs splices on its worker threads, and a splice into a full socket would keep its
//! worker waiting for as long as the client does not read: a slow consumer would hold a kernel
//! thread. So a pipe -> socket splice moves at most the room the socket has (its send buffer
//! less what is queued, from `SO_MEMINFO`), and when there is little room the connection waits
//! for the socket to become writable with an io_uring poll, which holds no thread.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use bytes::Bytes;
use compio::buf::BufResult;
use compio::driver::op::{Interest, PollOnce};
use compio::driver::{SharedFd, ToSharedFd};
use compio::fs::pipe::{Receiver, Sender, anonymous};
use compio::io::AsyncWriteExt;
use compio::net::TcpStream;
use sluice_engine::FileRange;

/// One piece of a reply: bytes in memory, or a byte range of a segment file.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    /// Bytes encoded in memory.
    Memory(Bytes),
    /// Bytes sent from a segment file without copying.
    File(FileRange),
}

impl Chunk {
    /// The bytes this chunk puts on the wire.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Memory(bytes) => bytes.len(),
            Self::File(range) => range.size_bytes as usize,
        }
    }
}

/// Pipe capacity asked for; the kernel's `pipe-max-size` (1 MiB by default) caps it for users
/// without CAP_SYS_RESOURCE, and a failure leaves the default (64 KiB), which only costs more
/// splices per range.
const PIPE_CAPACITY_BYTES: usize = 1 << 20;
/// Idle pipes a shard keeps; more are closed when returned.
const IDLE_PIPES_MAX: usize = 32;

/// A pipe used to move file pages to a socket.
struct Pipe {
    reader: Receiver,
    writer: Sender,
    capacity_bytes: usize,
}

impl Pipe {
    async fn open() -> io::Result<Self> {
        let (reader, writer) = anonymous().await?;
        let capacity_bytes = sluice_engine::io::resize_pipe(writer.as_fd(), PIPE_CAPACITY_BYTES)?;
        Ok(Self { reader, writer, capacity_bytes })
    }
}

/// A shard's idle pipes.
#[derive(Default)]
pub(crate) struct PipePool {
    idle: RefCell<Vec<Pipe>>,
}

impl std::fmt::Debug for PipePool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PipePool").field("idle", &self.idle.borrow().len()).finish()
    }
}

impl PipePool {
    async fn take(&self) -> io::Result<Pipe> {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(pipe) => Ok(pipe),
            None => Pipe::open().await,
        }
    }

    /// Returns an empty pipe to the pool.
    fn put(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_PIPES_MAX {
            idle.push(pipe);
        }
    }
}

/// Writes `chunks` to the socket in order. On error the connection must close: part of a reply
/// may have been sent.
pub(crate) async fn write_chunks(stream: &mut TcpStream, chunks: Vec<Chunk>, pipes: &PipePool) -> io::Result<()> {
    let corked = chunks.iter().any(|chunk| matches!(chunk, Chunk::File(_)));
    if corked {
        set_cork(stream, true);
    }
    let mut pending = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Memory(bytes) if bytes.is_empty() => {}
            Chunk::Memory(bytes) => pending.push(bytes),
            Chunk::File(range) if range.size_bytes == 0 => {}
            Chunk::File(range) => {
                write_memory(stream, std::mem::take(&mut pending)).await?;
                send_range(stream, &range, pipes).await?;
            }
        }
    }
    write_memory(stream, pending).await?;
    if corked {
        set_cork(stream, false);
    }
    Ok(())
}

async fn write_memory(stream: &mut TcpStream, pending: Vec<Bytes>) -> io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let BufResult(written, _pending) = stream.write_vectored_all(pending).await;
    written
}

/// Moves one file range to the socket through a pooled pipe.
async fn send_range(stream: &TcpStream, range: &FileRange, pipes: &PipePool) -> io::Result<()> {
    let pipe = pipes.take().await?;
    let file = SharedFd::new(Arc::clone(&range.file));
    let mut position = range.position;
    let mut left = range.size_bytes as usize;
    while left > 0 {
        let offset = i64::try_from(position).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // The pipe is empty here; on error it is dropped, never returned to the pool dirty.
        let moved =
            compio::fs::pipe::splice(&file, &pipe.writer, left.min(pipe.capacity_bytes)).offset_in(offset).await?;
        if moved == 0 {
            // The file is shorter than the range: the reply's size is already promised.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment file ended inside a fetch range"));
        }
        let mut in_pipe = moved;
        while in_pipe > 0 {
            let room = match socket_room(stream) {
                Some(room) if room < in_pipe.min(ROOM_MIN_BYTES) => {
                    wait_writable(stream).await?;
                    continue;
                }
                Some(room) => room.min(in_pipe),
                None => in_pipe,
            };
            let sent = compio::fs::pipe::splice(&pipe.reader, stream, room).await?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            in_pipe -= sent;
        }
        position += moved as u64;
        left -= moved;
    }
    pipes.put(pipe);
    Ok(())
}

/// Below this much room in the socket (or the bytes left, if fewer), wait for writability
/// rather than splice a sliver.
const ROOM_MIN_BYTES: usize = 16 * 1024;

/// Bytes the socket can queue now without blocking: its send buffer less what is queued, both
/// counted as the kernel counts them (`SO_MEMINFO`), less a margin for per-packet overhead.
/// `None` when the kernel does not say.
fn socket_room(stream: &TcpStream) -> Option<usize> {
    let meminfo = sluice_engine::io::socket_meminfo(stream.as_fd()).ok()?;
    let send_buffer = meminfo.get(libc::SK_MEMINFO_SNDBUF as usize)?;
    let queued = meminfo.get(libc::SK_MEMINFO_WMEM_QUEUED as usize)?;
    // Each packet costs its header's memory on top of the bytes: keep a quarter in hand.
    let room = send_buffer.saturating_sub(*queued) as usize;
    Some(room - room / 4)
}

/// Waits until the socket is writable (an io_uring poll: no thread waits).
async fn wait_writable(stream: &TcpStream) -> io::Result<()> {
    let poll = PollOnce::new(stream.to_shared_fd(), Interest::Writable);
    let BufResult(result, _) = compio::runtime::submit(poll).await;
    result.map(drop)
}

fn set_cork(stream: &TcpStream, cork: bool) {
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_cork(cork) {
        tracing::debug!(%error, cork, "TCP_CORK not set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compio::io::AsyncWrite as _;
    use std::io::{Read, Write};

    /// Sends memory and file chunks over a loopback connection and checks the bytes arrive in
    /// order, including a range larger than any pipe and one starting mid-page.
    #[test]
    fn memory_and_file_chunks_arrive_in_order() {
        send_and_check(std::time::Duration::ZERO);
    }

    /// A reader that waits before reading fills the socket: the sender must wait for room (in
    /// an io_uring poll) and still deliver every byte in order.
    #[test]
    fn a_slow_reader_gets_every_byte() {
        send_and_check(std::time::Duration::from_millis(300));
    }

    fn send_and_check(reader_delay: std::time::Duration) {
        let mut file = tempfile::tempfile().expect("temp file");
        let contents: Vec<u8> =
            (0..3_000_000u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        file.write_all(&contents).expect("write file");
        let file = Arc::new(file);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let ranges = [(0usize, 10usize), (4093, 2_500_000), (2_999_990, 10)];
        let mut expected = Vec::new();
        let mut chunks = Vec::new();
        for (index, (position, size)) in ranges.iter().enumerate() {
            let header = Bytes::from(format!("header-{index}"));
            expected.extend_from_slice(&header);
            expected.extend_from_slice(&contents[*position..position + size]);
            chunks.push(Chunk::Memory(header));
            chunks.push(Chunk::File(FileRange {
                file: Arc::clone(&file),
                position: *position as u64,
                size_bytes: u32::try_from(*size).expect("size"),
            }));
        }
        chunks.push(Chunk::Memory(Bytes::from_static(b"end")));
        expected.extend_from_slice(b"end");
        let reader = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            std::thread::sleep(reader_delay);
            let mut received = Vec::new();
            socket.read_to_end(&mut received).expect("read");
            received
        });
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let pipes = PipePool::default();
            write_chunks(&mut stream, chunks.clone(), &pipes).await.expect("first write");
            write_chunks(&mut stream, chunks, &pipes).await.expect("second write, pooled pipe");
            assert_eq!(pipes.idle.borrow().len(), 1, "the pipe went back to the pool");
            stream.shutdown().await.expect("shutdown");
        });
        let received = reader.join().expect("reader");
        assert_eq!(received.len(), expected.len() * 2);
        assert!(received[..expected.len()] == expected[..], "first reply differs");
        assert!(received[expected.len()..] == expected[..], "second reply differs");
    }

    #[test]
    fn a_range_past_the_end_of_its_file_is_an_error() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"short").expect("write file");
        let range = FileRange { file: Arc::new(file), position: 0, size_bytes: 100 };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let holder = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
        compio::runtime::Runtime::new().expect("runtime").block_on(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let error = write_chunks(&mut stream, vec![Chunk::File(range)], &PipePool::default())
                .await
                .expect_err("a short file cannot fill the range");
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        });
        drop(holder.join());
    }
}
