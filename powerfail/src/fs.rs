//! The FUSE adapter: turns kernel requests into [`Volume`] calls and answers them.
//!
//! Design choices that keep the kernel's caches from hiding the model:
//! - attribute and entry timeouts are zero, so every lookup and stat reaches the volume (and
//!   fails with EIO after a power-off);
//! - no writeback cache (FUSE's default): every `write` reaches the volume before it returns, so
//!   the volume sees exactly what the application wrote, in order, and an fsync needs nothing
//!   flushed first;
//! - opens do not keep the page cache (no `FOPEN_KEEP_CACHE`), and a power-off invalidates the
//!   cached pages of every inode (see `control.rs`), so reads after it reach the volume too.
//!
//! Locks (`flock`, `fcntl`) are left to the kernel, which handles them locally when the file
//! system does not ask for them. Extended attributes, symlinks, hard links and special files are
//! refused. Threads: fuser's session thread calls every method; the volume's mutex is shared with
//! the control thread.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::volume::{Attr, Ino, Kind, MetaChange, Volume};

/// How long the kernel may cache attributes and entries: not at all (see the module doc).
const TTL: Duration = Duration::ZERO;
/// The largest write the kernel sends in one request (fewer, larger requests for big appends).
const WRITE_SIZE_BYTES_MAX: u32 = 1 << 20;
/// Block size reported by `stat` and `statfs`.
const BLOCK_SIZE_BYTES: u32 = 4096;

/// A directory listing taken at `opendir`, served by `readdir` (stable while the directory changes).
type Listing = Vec<(INodeNo, FileType, std::ffi::OsString)>;

/// The file system handed to fuser.
#[derive(Debug)]
pub struct PowerfailFs {
    volume: Arc<Mutex<Volume>>,
    listings: Mutex<HashMap<u64, Listing>>,
    next_handle: AtomicU64,
}

impl PowerfailFs {
    pub fn new(volume: Arc<Mutex<Volume>>) -> Self {
        Self { volume, listings: Mutex::new(HashMap::new()), next_handle: AtomicU64::new(1) }
    }

    fn volume(&self) -> MutexGuard<'_, Volume> {
        // A panic under the lock has already broken an invariant; the state is still the best
        // there is, and the process is exiting anyway.
        self.volume.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ino(number: INodeNo) -> Ino {
    Ino(number.0)
}

fn errno(error: &std::io::Error) -> Errno {
    error.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size_bytes,
        blocks: attr.size_bytes.div_ceil(512),
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.ctime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: BLOCK_SIZE_BYTES,
        flags: 0,
    }
}

fn time(value: TimeOrNow) -> SystemTime {
    match value {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn reply_entry(result: std::io::Result<Attr>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
        Err(error) => reply.error(errno(&error)),
    }
}

fn reply_empty(result: std::io::Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(errno(&error)),
    }
}

fn owner(req: &Request) -> (u32, u32) {
    (req.uid(), req.gid())
}

/// Permission bits of a create or mkdir: the mode less the umask.
fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem for PowerfailFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Best effort: the kernel caps it at its own limit, which is fine.
        let _nearest = config.set_max_write(WRITE_SIZE_BYTES_MAX);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(self.volume().lookup(ino(parent), name), reply);
    }

    fn forget(&self, _req: &Request, number: INodeNo, count: u64) {
        self.volume().forget(ino(number), count);
    }

    fn getattr(&self, _req: &Request, number: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.volume().attr(ino(number)) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        number: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut volume = self.volume();
        let number = ino(number);
        let result = size.map_or(Ok(()), |size| volume.set_len(number, size)).and_then(|()| {
            let change = MetaChange {
                perm: mode.map(|mode| (mode & 0o7777) as u16),
                uid,
                gid,
                atime: atime.map(time),
                mtime: mtime.map(time),
            };
            volume.set_meta(number, change)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM); // devices, FIFOs and sockets are not modelled
        }
        reply_entry(self.volume().create_file(ino(parent), name, perm(mode, umask), owner(req)), reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        reply_entry(self.volume().mkdir(ino(parent), name, perm(mode, umask), owner(req)), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.volume().unlink(ino(parent), name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.volume().rmdir(ino(parent), name), reply);
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EPERM); // not modelled
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL); // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty(self.volume().rename((ino(parent), name), (ino(new_parent), new_name), no_replace), reply);
    }

    fn link(&self, _req: &Request, _number: INodeNo, _new_parent: INodeNo, _new_name: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM); // hard links are not modelled
    }

    fn open(&self, _req: &Request, number: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.volume().open_handle(ino(number)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        number: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.volume().read(ino(number), offset, u64::from(size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        number: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.volume().write(ino(number), offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(&self, _req: &Request, number: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() is not a sync; only report a volume that lost power.
        reply_empty(self.volume().attr(ino(number)).map(|_| ()), reply);
    }

    fn release(
        &self,
        _req: &Request,
        number: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.volume().release_handle(ino(number));
        reply.ok();
    }

    fn fsync(&self, _req: &Request, number: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(self.volume().fsync(ino(number)), reply);
    }

    fn opendir(&self, _req: &Request, number: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listed = self.volume().list(ino(number));
        match listed {
            Ok((parent, entries)) => {
                let mut listing: Listing = vec![
                    (number, FileType::Directory, ".".into()),
                    (INodeNo(parent.0), FileType::Directory, "..".into()),
                ];
                listing
                    .extend(entries.into_iter().map(|entry| (INodeNo(entry.ino.0), file_type(entry.kind), entry.name)));
                let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.listings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(handle, listing);
                reply.opened(FileHandle(handle), FopenFlags::empty());
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(&self, _req: &Request, number: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if let Err(error) = self.volume().attr(ino(number)) {
            return reply.error(errno(&error));
        }
        let listings = self.listings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(listing) = listings.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (index, (child, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
            if reply.add(*child, index as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _number: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.listings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, number: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(self.volume().fsync(ino(number)), reply);
    }

    fn statfs(&self, _req: &Request, number: INodeNo, reply: ReplyStatfs) {
        if let Err(error) = self.volume().attr(ino(number)) {
            return reply.error(errno(&error));
        }
        // Space is not modelled: report 1 TiB free, far more than any test writes.
        let blocks = (1u64 << 40) / u64::from(BLOCK_SIZE_BYTES);
        reply.statfs(blocks, blocks, blocks, 1 << 30, 1 << 30, BLOCK_SIZE_BYTES, 255, BLOCK_SIZE_BYTES);
    }

    fn access(&self, _req: &Request, number: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions); only existence here.
        reply_empty(self.volume().attr(ino(number)).map(|_| ()), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut volume = self.volume();
        let created = volume.create_file(ino(parent), name, perm(mode, umask), owner(req));
        match created.and_then(|attr| volume.open_handle(attr.ino)) {
            Ok(attr) => reply.created(&TTL, &file_attr(&attr), Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        number: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP); // punching holes and the like are not modelled
        }
        let end = offset.checked_add(length).ok_or_else(|| std::io::Error::from_raw_os_error(libc::EFBIG));
        reply_empty(end.and_then(|end| self.volume().allocate(ino(number), end)), reply);
    }
}
