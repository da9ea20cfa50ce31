//! Storage I/O: opening segment files for the io_uring runtime, durable metadata writes,
//! blocking work off the shard threads, the data-directory lock, and the fault injector used by
//! tests.
//!
//! Every `unsafe` block of the engine lives here. Functions are called on shard threads (file
//! I/O), on the blocking pools the shards hand slow file-system work to, or on the opening
//! thread (lock, metadata).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Faults to inject into storage I/O, for tests. Shared by every shard of an engine; the hot path
/// reads one relaxed atomic when no fault is armed.
#[derive(Debug, Default)]
pub struct FaultInjector {
    armed: AtomicBool,
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    panic_appends: AtomicBool,
    writes_until_failure: AtomicU64,
    topic: Mutex<Option<String>>,
}

/// The kind of storage operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Writes to segment files.
    Write,
    /// `fdatasync` of segment files.
    Sync,
    /// Appends: an armed fault panics inside the append (a stand-in for a broken invariant),
    /// to test what a panic in partition work does.
    Panic,
}

impl FaultInjector {
    /// An injector with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every operation of `kind` fail, on the partitions of `topic` (all when `None`).
    pub fn fail(&self, kind: FaultKind, topic: Option<&str>) {
        *self.topic.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = topic.map(str::to_owned);
        match kind {
            FaultKind::Write => self.fail_writes.store(true, Ordering::SeqCst),
            FaultKind::Sync => self.fail_syncs.store(true, Ordering::SeqCst),
            FaultKind::Panic => self.panic_appends.store(true, Ordering::SeqCst),
        }
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Lets `count` more writes succeed, then fails the rest (on any topic).
    pub fn fail_writes_after(&self, count: u64) {
        self.writes_until_failure.store(count + 1, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        self.fail_writes.store(false, Ordering::SeqCst);
        self.fail_syncs.store(false, Ordering::SeqCst);
        self.panic_appends.store(false, Ordering::SeqCst);
        self.writes_until_failure.store(0, Ordering::SeqCst);
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Returns the injected error for an operation of `kind` on `topic`, if one is armed.
    pub(crate) fn check(&self, kind: FaultKind, topic: &str) -> io::Result<()> {
        if !self.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if kind == FaultKind::Write {
            let countdown = self.writes_until_failure.load(Ordering::SeqCst);
            if countdown == 1 {
                return Err(io::Error::other("injected write failure"));
            }
            if countdown > 1 {
                self.writes_until_failure.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let armed = match kind {
            FaultKind::Write => self.fail_writes.load(Ordering::SeqCst),
            FaultKind::Sync => self.fail_syncs.load(Ordering::SeqCst),
            FaultKind::Panic => self.panic_appends.load(Ordering::SeqCst),
        };
        let topic_matches = self
            .topic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_deref()
            .is_none_or(|only| only == topic);
        if armed && topic_matches {
            return Err(io::Error::other(match kind {
                FaultKind::Write => "injected write failure",
                FaultKind::Sync => "injected fsync failure",
                FaultKind::Panic => "injected panic",
            }));
        }
        Ok(())
    }
}

/// Copies as much of `bytes` as fits into the uninitialized part of `buffer` (after its
/// initialized prefix) and marks it initialized; returns how many bytes were copied.
///
/// For readers that produce bytes in user space (a TLS record layer) and must fill a compio
/// buffer the way a kernel read does: a fixed-size slice of spare capacity cannot be extended
/// through its safe methods, which refuse to reserve.
pub fn fill_spare<B: compio::buf::IoBufMut>(buffer: &mut B, bytes: &[u8]) -> usize {
    let initialized = buffer.buf_len();
    let spare = &mut buffer.as_uninit()[initialized..];
    let count = bytes.len().min(spare.len());
    for (slot, byte) in spare.iter_mut().zip(&bytes[..count]) {
        slot.write(*byte);
    }
    // SAFETY: the `count` bytes right after the initialized prefix were written just above, and
    // `count` is within the buffer's capacity.
    unsafe { compio::buf::SetLen::set_len(buffer, initialized + count) };
    count
}

/// Converts a std file into one driven by the calling thread's compio runtime.
pub fn into_runtime_file(file: fs::File) -> compio::fs::File {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is open and owned by nobody else;
    // the compio file takes ownership and closes it on drop.
    unsafe { compio::fs::File::from_raw_fd(fd) }
}

/// Opens `path` for reading and writing, creating it when `create` is set.
pub(crate) fn open_rw(path: &Path, create: bool) -> io::Result<compio::fs::File> {
    let file = fs::OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
    Ok(into_runtime_file(file))
}

/// Starts writeback of the dirty pages of `file` in `offset..offset + len` and returns without
/// waiting for it (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`: no durability, no metadata,
/// and no writeback error consumed, so a later fsync still reports one).
pub(crate) fn start_writeback(file: &fs::File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: plain syscall on a descriptor the borrowed `file` keeps open; no memory is passed.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The CPUs the thread that opened the engine may run on, captured before the shards pin
/// themselves. Threads of a shard's blocking pool inherit that shard's single core; blocking work
/// moves back to this set so that it does not compete with its shard for one core.
static UNPINNED_CPUS: OnceLock<Option<libc::cpu_set_t>> = OnceLock::new();

/// Records the calling thread's CPU affinity as the set blocking work runs on. Call before
/// pinning anything; the first call in the process wins.
pub(crate) fn remember_unpinned_cpus() {
    UNPINNED_CPUS.get_or_init(|| {
        // SAFETY: an all-zero `cpu_set_t` is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`.
        let result = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
        (result == 0).then_some(set)
    });
}

/// Runs `work` on the runtime's blocking pool, on any CPU of [`remember_unpinned_cpus`]'s set
/// (best effort: where the affinity cannot be changed, it runs where the pool thread may).
pub(crate) fn spawn_unpinned<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> compio::runtime::JoinHandle<T> {
    compio::runtime::spawn_blocking(move || {
        unpin_current_thread();
        work()
    })
}

/// Moves the calling thread to [`remember_unpinned_cpus`]'s set (best effort).
fn unpin_current_thread() {
    if let Some(Some(set)) = UNPINNED_CPUS.get() {
        // SAFETY: `set` is a valid `cpu_set_t` read by the kernel, not written.
        let _best_effort = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    }
}

/// Runs blocking work on a thread of its own, on the engine's unpinned CPUs, and waits for it
/// without blocking the caller's thread. Unlike [`unblocked`] it needs no runtime: admin calls
/// come from shard threads and from embedders' own threads alike.
///
/// # Errors
/// `work`'s error, or an error when the thread cannot start or panics.
pub async fn on_own_thread<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let (sender, receiver) = futures_channel::oneshot::channel();
    std::thread::Builder::new().name("sluice-admin-io".to_owned()).spawn(move || {
        unpin_current_thread();
        let _caller_gone = sender.send(work());
    })?;
    receiver.await.unwrap_or_else(|_| Err(io::Error::other("blocking file-system thread panicked")))
}

/// How long [`free_in_background`] waits for other readers of a file to let go.
const FREE_WAIT: Duration = Duration::from_secs(30);
/// How often it checks.
const FREE_POLL: Duration = Duration::from_millis(20);

/// Frees the blocks and cached pages of an unlinked file on the blocking pool. That work runs
/// at the last close of the file, or at a truncation, and takes hundreds of milliseconds for a
/// 1 GiB segment (about 300 ms on the development machine): it must not stall a shard. So once
/// no other reader holds `file` (a zero-copy send in flight; waited for up to 30 s), the file is
/// truncated to nothing here, and whichever descriptor closes last afterwards closes an empty
/// file. Where readers hold on longer, the file is left to them.
pub(crate) fn free_in_background(file: Arc<fs::File>) {
    spawn_unpinned(move || {
        let deadline = Instant::now() + FREE_WAIT;
        let mut file = file;
        loop {
            match Arc::try_unwrap(file) {
                Ok(owned) => {
                    // Best effort: a failure leaves the work to the last close.
                    let _best_effort = owned.set_len(0);
                    return;
                }
                Err(shared) if Instant::now() >= deadline => return drop(shared),
                Err(shared) => {
                    file = shared;
                    std::thread::sleep(FREE_POLL);
                }
            }
        }
    })
    .detach();
}

/// Runs blocking file-system work (`work`) on the blocking pool and waits for it without
/// blocking the calling shard.
pub(crate) async fn unblocked<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    spawn_unpinned(work).await.unwrap_or_else(|_| Err(io::Error::other("blocking file-system task panicked")))
}

/// Fsyncs a directory so that entries created, renamed or removed in it survive a crash.
///
/// # Errors
/// Opening or fsyncing the directory failed.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// The directory of `path` and the temp file an atomic write of `path` goes through.
fn temp_beside(path: &Path) -> io::Result<(&Path, std::path::PathBuf)> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut temp_name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?.to_owned();
    temp_name.push(".tmp");
    Ok((dir, dir.join(temp_name)))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
///
/// # Errors
/// Any error of the file system calls; `path` then holds its old contents (or nothing).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let (dir, temp_path) = temp_beside(path)?;
    let mut file = fs::File::create(&temp_path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp_path, path)?;
    sync_dir(dir)
}

/// [`write_atomic`] through the calling thread's io_uring runtime, so that neither the fsyncs
/// nor the rename block the thread. Callers must not run two for the same `path` at once (they
/// share the temp file).
pub(crate) async fn write_atomic_async(path: &Path, bytes: Vec<u8>) -> io::Result<()> {
    use compio::io::AsyncWriteAtExt as _;
    let (dir, temp_path) = temp_beside(path)?;
    let mut file = into_runtime_file(fs::File::create(&temp_path)?);
    if !bytes.is_empty() {
        file.write_all_at(bytes, 0).await.0?;
    }
    file.sync_all().await?;
    drop(file);
    compio::fs::rename(&temp_path, path).await?;
    sync_dir_async(dir).await
}

/// [`sync_dir`] through the calling thread's io_uring runtime.
pub(crate) async fn sync_dir_async(path: &Path) -> io::Result<()> {
    into_runtime_file(fs::File::open(path)?).sync_all().await
}

/// An exclusive advisory lock on the data directory, held while the engine runs.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: fs::File,
}

/// Takes the data directory's lock; `Ok(None)` when another process holds it.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<Option<DirLock>> {
    let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(".lock"))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the whole call.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(Some(DirLock { _file: file }));
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(error)
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`) and returns the capacity the pipe has
/// afterwards, which stays as it was when the kernel refuses the size (for example above
/// `/proc/sys/fs/pipe-max-size` without CAP_SYS_RESOURCE). Used to size the pipes that carry
/// [`FileRange`](crate::FileRange)s to sockets with `splice`.
///
/// # Errors
/// When `pipe` is not a pipe.
pub fn resize_pipe(pipe: std::os::fd::BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of this process; the
    // descriptor is borrowed, so it stays open for the call. Its failure is not an error here.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
    // SAFETY: as above; F_GETPIPE_SZ takes no argument.
    let capacity = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(capacity).map_err(|_| io::Error::last_os_error())
}

/// Counters `SO_MEMINFO` reports (`SK_MEMINFO_VARS` in linux/sock_diag.h; the kernel writes no
/// more than the buffer given).
pub const SK_MEMINFO_VARS: usize = 9;

/// The socket's memory counters (`SO_MEMINFO`, indexed by `libc::SK_MEMINFO_*`): send buffer
/// size, bytes queued for sending, and so on. Used to size sends from pipes so that they never
/// wait for a slow reader.
///
/// # Errors
/// When `socket` is not a socket.
pub fn socket_meminfo(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<[u32; SK_MEMINFO_VARS]> {
    let mut meminfo = [0u32; SK_MEMINFO_VARS];
    let mut length = libc::socklen_t::try_from(std::mem::size_of_val(&meminfo)).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: the kernel writes at most `length` bytes into `meminfo`, which is that long, and
    // stores the length it wrote in `length`; the descriptor is borrowed for the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            meminfo.as_mut_ptr().cast(),
            &raw mut length,
        )
    };
    if result == 0 { Ok(meminfo) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_resized_and_other_descriptors_refused() {
        use std::os::fd::AsFd as _;
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let capacity = resize_pipe(reader.as_fd(), 256 * 1024).expect("a pipe");
        assert!(capacity >= 4096, "capacity {capacity}");
        let file = tempfile::tempfile().expect("temp file");
        assert!(resize_pipe(file.as_fd(), 65536).is_err(), "a regular file is not a pipe");
    }

    #[test]
    fn writeback_starts_on_files_and_is_refused_elsewhere() {
        use std::io::Write as _;
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&vec![7u8; 1 << 20]).expect("dirty a MiB");
        start_writeback(&file, 0, 1 << 20).expect("writeback of a file's range starts");
        start_writeback(&file, 4096, 0).expect("a zero length means to the end of the file");
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let pipe = fs::File::from(std::os::fd::OwnedFd::from(reader));
        assert!(start_writeback(&pipe, 0, 4096).is_err(), "a pipe has no pages to write back");
        assert!(start_writeback(&file, u64::MAX, 1).is_err(), "offsets beyond i64 are refused");
    }

    #[test]
    fn socket_meminfo_reports_a_send_buffer() {
        use std::os::fd::AsFd as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let socket = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let meminfo = socket_meminfo(socket.as_fd()).expect("a socket");
        assert!(meminfo[libc::SK_MEMINFO_SNDBUF as usize] > 0, "{meminfo:?}");
        let file = tempfile::tempfile().expect("temp file");
        assert!(socket_meminfo(file.as_fd()).is_err(), "a regular file is not a socket");
    }

    #[test]
    fn countdown_fails_after_n_writes() {
        let faults = FaultInjector::new();
        faults.fail_writes_after(2);
        assert!(faults.check(FaultKind::Write, "t").is_ok());
        assert!(faults.check(FaultKind::Write, "t").is_ok());
        assert!(faults.check(FaultKind::Write, "t").is_err());
        faults.clear();
        assert!(faults.check(FaultKind::Write, "t").is_ok());
    }

    #[test]
    fn topic_filter_limits_faults() {
        let faults = FaultInjector::new();
        faults.fail(FaultKind::Sync, Some("bad"));
        assert!(faults.check(FaultKind::Sync, "bad").is_err());
        assert!(faults.check(FaultKind::Sync, "good").is_ok());
        assert!(faults.check(FaultKind::Write, "bad").is_ok());
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = lock_dir(dir.path()).expect("lock");
        assert!(first.is_some());
        // flock locks are per open file description, so a second open in-process conflicts too.
        assert!(lock_dir(dir.path()).expect("lock attempt").is_none());
    }
}
