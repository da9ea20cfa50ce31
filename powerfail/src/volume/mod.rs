//! The volume: a directory tree whose current state lives in memory and whose durable state is
//! the backing directory, following the strict reading of Linux's fsync rules.
//!
//! Two states are kept:
//! - **current**: what the application sees. Every directory's entries (`DirBody::current`) and
//!   every file's content (its [`Unsynced`] overlay over the backing file).
//! - **durable**: what survives a power loss, always equal to what the backing directory holds
//!   (apart from the staging directory, see below). Every directory's durable entries
//!   (`DirBody::durable`) are exactly the entries of its backing directory, and a file's durable
//!   content is exactly its backing file.
//!
//! The rules (ext4 read strictly, with no auto_da_alloc and no journal ordering to help):
//! - fsync or fdatasync of a file makes its content and size durable (`fsync_file`);
//! - an entry created, renamed or removed in a directory becomes durable only when that directory
//!   is fsynced (`fsync_dir`): its backing directory is then made to hold the current entries;
//! - nothing else ever reaches the backing directory (except when the volume closes cleanly,
//!   which syncs everything, as `sync` before `umount` would).
//!
//! **Staging.** An inode can have durable bytes but no durable name (a file fsynced before its
//! directory was), or keep durable bytes after losing its last durable name while the
//! application still uses it (unlinked or renamed, and its old directory fsynced first). Its
//! backing object then lives in `<backing>/.sluice-powerfail-staging/<inode>`, hidden from the
//! mount. A power-off deletes the staging directory: what has no durable name is lost. Each
//! backing object sits at one or more *places*: the root, the staging directory, or a durable
//! entry of a directory (a file renamed across directories whose new directory alone was fsynced
//! has two durable names: a hard link in the backing directory).
//!
//! **Loading.** A directory's entries are read from its backing directory the first time it is
//! used, so a volume opened on existing data costs nothing up front.
//!
//! Every method takes `&mut self`; the FUSE adapter and the control thread share one volume behind
//! a mutex, so one operation runs at a time.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::content::Unsynced;
use crate::rng::SplitMix64;

mod durability;

/// Name of the staging directory inside the backing directory (hidden from the mount).
pub const STAGING_NAME: &str = ".sluice-powerfail-staging";

/// An inode number, as the kernel sees it. Numbers are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

/// The root directory's inode number (FUSE's).
pub const ROOT: Ino = Ino(1);

/// What an inode is. Symlinks, devices, FIFOs and sockets are not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Attributes of an inode as the application sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size_bytes: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub ino: Ino,
    pub kind: Kind,
}

/// Changes of `set_meta`; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaChange {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// What a power-off did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerOffReport {
    /// Files whose last unsynced write was torn into their backing file.
    pub torn_files: u64,
    /// Bytes of those torn writes that reached the backing files.
    pub torn_bytes_kept: u64,
    /// Unsynced bytes dropped (written, never fsynced), before tearing.
    pub unsynced_bytes_dropped: u64,
    /// Every inode number the kernel may still cache, to invalidate.
    pub inos: Vec<Ino>,
}

/// Where a backing object is (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Root,
    Staging,
    Entry { dir: Ino, name: OsString },
}

#[derive(Debug)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

#[derive(Debug)]
struct FileBody {
    content: Unsynced,
    /// The backing file, open for reading and writing, once it is needed; it follows renames.
    backing: Option<File>,
}

#[derive(Debug, Default)]
struct DirBody {
    /// Whether `current` and `durable` were read from the backing directory (or it is new).
    loaded: bool,
    current: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
enum Body {
    File(FileBody),
    Dir(DirBody),
}

#[derive(Debug)]
struct Inode {
    meta: Meta,
    body: Body,
    /// Current names (0 or 1 for a directory).
    links: u32,
    /// The directory that currently holds a directory (its `..`).
    parent: Option<Ino>,
    /// Where its backing object is; empty when it has none. A directory has at most one place.
    places: Vec<Place>,
    /// The kernel's lookup count (FUSE `forget` decrements it).
    lookups: u64,
    /// Open file handles.
    opens: u32,
}

impl Inode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    /// Whether the application may still reach it: named, or (a file) open.
    fn is_needed(&self) -> bool {
        self.links > 0 || (self.kind() == Kind::File && self.opens > 0)
    }
}

/// The file system state: see the module doc.
#[derive(Debug)]
pub struct Volume {
    backing: PathBuf,
    staging: PathBuf,
    inodes: BTreeMap<Ino, Inode>,
    next_ino: u64,
    powered_off: bool,
    rng: SplitMix64,
    /// A power-off armed to happen right after a number of writes (`arm_power_off`).
    armed: Option<ArmedPowerOff>,
    /// The outcome of an armed power-off, once it happened, until taken.
    armed_outcome: Option<io::Result<PowerOffReport>>,
}

#[derive(Debug, Clone, Copy)]
struct ArmedPowerOff {
    torn: bool,
    writes_left: u64,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn meta_from(metadata: &fs::Metadata) -> Meta {
    let time = |seconds: i64, nanos: i64| {
        let since = std::time::Duration::new(seconds.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
        SystemTime::UNIX_EPOCH + since
    };
    Meta {
        perm: (metadata.mode() & 0o7777) as u16,
        uid: metadata.uid(),
        gid: metadata.gid(),
        atime: time(metadata.atime(), metadata.atime_nsec()),
        mtime: time(metadata.mtime(), metadata.mtime_nsec()),
        ctime: time(metadata.ctime(), metadata.ctime_nsec()),
    }
}

impl Volume {
    /// Opens the volume over `backing`. A staging directory left by a process that died is
    /// deleted first (what it held had no durable name). `seed` drives torn writes.
    ///
    /// # Errors
    /// `backing` is not a directory, or the staging directory cannot be made.
    pub fn open(backing: &Path, seed: u64) -> io::Result<Self> {
        let metadata = fs::metadata(backing)?;
        if !metadata.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        let backing = backing.canonicalize()?;
        let staging = backing.join(STAGING_NAME);
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        fs::create_dir(&staging)?;
        let root = Inode {
            meta: meta_from(&metadata),
            body: Body::Dir(DirBody::default()),
            links: 1,
            parent: Some(ROOT),
            places: vec![Place::Root],
            lookups: 0,
            opens: 0,
        };
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, root);
        Ok(Self {
            backing,
            staging,
            inodes,
            next_ino: ROOT.0 + 1,
            powered_off: false,
            rng: SplitMix64::new(seed),
            armed: None,
            armed_outcome: None,
        })
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Whether `power_off` ran: every operation then fails with EIO.
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    // ------------------------------------------------------------------ lookups and attributes

    /// The entry `name` of directory `parent`; counts one kernel lookup of it.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR, or EIO after a power-off or when the backing directory cannot be read.
    pub fn lookup(&mut self, parent: Ino, name: &OsStr) -> io::Result<Attr> {
        let ino = self.child(parent, name)?.ok_or_else(|| errno(libc::ENOENT))?;
        self.inode_mut(ino)?.lookups += 1;
        self.attr(ino)
    }

    /// The kernel forgot `count` lookups of `ino`.
    pub fn forget(&mut self, ino: Ino, count: u64) {
        if self.powered_off {
            return;
        }
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(count);
        }
        self.collect(ino);
    }

    /// Attributes of `ino`.
    ///
    /// # Errors
    /// ENOENT for an unknown inode, EIO after a power-off.
    pub fn attr(&self, ino: Ino) -> io::Result<Attr> {
        let inode = self.inode(ino)?;
        let (size_bytes, nlink) = match &inode.body {
            Body::File(file) => (file.content.size_bytes(), inode.links),
            Body::Dir(_) => (4096, 2),
        };
        Ok(Attr {
            ino,
            kind: inode.kind(),
            size_bytes,
            perm: inode.meta.perm,
            nlink,
            uid: inode.meta.uid,
            gid: inode.meta.gid,
            atime: inode.meta.atime,
            mtime: inode.meta.mtime,
            ctime: inode.meta.ctime,
        })
    }

    /// Changes permissions, owner or times (metadata durability is not modelled: a backing object
    /// that exists gets the permissions at once).
    ///
    /// # Errors
    /// ENOENT, EIO.
    pub fn set_meta(&mut self, ino: Ino, change: MetaChange) -> io::Result<Attr> {
        let path = self.first_path(ino)?;
        let inode = self.inode_mut(ino)?;
        if let Some(perm) = change.perm {
            inode.meta.perm = perm & 0o7777;
            if let Some(path) = path {
                fs::set_permissions(path, fs::Permissions::from_mode(u32::from(perm & 0o7777)))?;
            }
        }
        let meta = &mut self.inode_mut(ino)?.meta;
        meta.uid = change.uid.unwrap_or(meta.uid);
        meta.gid = change.gid.unwrap_or(meta.gid);
        meta.atime = change.atime.unwrap_or(meta.atime);
        meta.mtime = change.mtime.unwrap_or(meta.mtime);
        meta.ctime = now();
        self.attr(ino)
    }

    /// The entries of directory `dir`, in name order, with its parent (for `..`).
    ///
    /// # Errors
    /// ENOTDIR, ENOENT, EIO.
    pub fn list(&mut self, dir: Ino) -> io::Result<(Ino, Vec<Entry>)> {
        self.ensure_loaded(dir)?;
        let inode = self.inode(dir)?;
        let parent = inode.parent.unwrap_or(ROOT);
        let Body::Dir(body) = &inode.body else { return Err(errno(libc::ENOTDIR)) };
        let mut entries = Vec::with_capacity(body.current.len());
        for (name, &ino) in &body.current {
            entries.push(Entry { name: name.clone(), ino, kind: self.inode(ino)?.kind() });
        }
        Ok((parent, entries))
    }

    // ------------------------------------------------------------------ namespace (current state only)

    /// Creates an empty regular file `name` in `parent`; counts one kernel lookup of it.
    ///
    /// # Errors
    /// EEXIST, ENOENT, ENOTDIR, EACCES for the staging name, EIO.
    pub fn create_file(&mut self, parent: Ino, name: &OsStr, perm: u16, owner: (u32, u32)) -> io::Result<Attr> {
        let body = Body::File(FileBody { content: Unsynced::new(0), backing: None });
        self.create(parent, name, perm, owner, body)
    }

    /// Creates an empty directory `name` in `parent`; counts one kernel lookup of it.
    ///
    /// # Errors
    /// As `create_file`.
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, perm: u16, owner: (u32, u32)) -> io::Result<Attr> {
        let body = Body::Dir(DirBody { loaded: true, ..DirBody::default() });
        self.create(parent, name, perm, owner, body)
    }

    fn create(&mut self, parent: Ino, name: &OsStr, perm: u16, owner: (u32, u32), body: Body) -> io::Result<Attr> {
        self.check_new_name(parent, name)?;
        if self.child(parent, name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        let ino = Ino(self.next_ino);
        self.next_ino += 1;
        let time = now();
        let is_dir = matches!(body, Body::Dir(_));
        let inode = Inode {
            meta: Meta { perm: perm & 0o7777, uid: owner.0, gid: owner.1, atime: time, mtime: time, ctime: time },
            body,
            links: 1,
            parent: is_dir.then_some(parent),
            places: Vec::new(),
            lookups: 1,
            opens: 0,
        };
        self.inodes.insert(ino, inode);
        self.dir_mut(parent)?.current.insert(name.to_owned(), ino);
        self.touch(parent);
        self.attr(ino)
    }

    /// Removes the file entry `name` of `parent`.
    ///
    /// # Errors
    /// ENOENT, EISDIR, ENOTDIR, EIO.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> io::Result<()> {
        let ino = self.child(parent, name)?.ok_or_else(|| errno(libc::ENOENT))?;
        if self.inode(ino)?.kind() == Kind::Dir {
            return Err(errno(libc::EISDIR));
        }
        self.dir_mut(parent)?.current.remove(name);
        self.drop_link(ino);
        self.touch(parent);
        Ok(())
    }

    /// Removes the empty directory `name` of `parent`.
    ///
    /// # Errors
    /// ENOENT, ENOTDIR, ENOTEMPTY, EIO.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> io::Result<()> {
        let ino = self.child(parent, name)?.ok_or_else(|| errno(libc::ENOENT))?;
        if !self.is_empty_dir(ino)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.dir_mut(parent)?.current.remove(name);
        self.drop_link(ino);
        self.touch(parent);
        Ok(())
    }

    /// Renames `source_parent/source_name` to `target_parent/target_name`, replacing a target
    /// unless `no_replace` (POSIX `rename` and Linux `RENAME_NOREPLACE`).
    ///
    /// # Errors
    /// ENOENT, EEXIST, EISDIR, ENOTDIR, ENOTEMPTY, EINVAL (a directory into itself), EIO.
    pub fn rename(&mut self, source: (Ino, &OsStr), target: (Ino, &OsStr), no_replace: bool) -> io::Result<()> {
        let ((source_parent, source_name), (target_parent, target_name)) = (source, target);
        let ino = self.child(source_parent, source_name)?.ok_or_else(|| errno(libc::ENOENT))?;
        self.check_new_name(target_parent, target_name)?;
        let kind = self.inode(ino)?.kind();
        if kind == Kind::Dir && self.is_within(target_parent, ino)? {
            return Err(errno(libc::EINVAL));
        }
        if let Some(replaced) = self.child(target_parent, target_name)? {
            if replaced == ino {
                return Ok(());
            }
            if no_replace {
                return Err(errno(libc::EEXIST));
            }
            match (kind, self.inode(replaced)?.kind()) {
                (Kind::File, Kind::Dir) => return Err(errno(libc::EISDIR)),
                (Kind::Dir, Kind::File) => return Err(errno(libc::ENOTDIR)),
                (Kind::Dir, Kind::Dir) if !self.is_empty_dir(replaced)? => return Err(errno(libc::ENOTEMPTY)),
                _ => {}
            }
            self.dir_mut(target_parent)?.current.remove(target_name);
            self.drop_link(replaced);
        }
        self.dir_mut(source_parent)?.current.remove(source_name);
        self.dir_mut(target_parent)?.current.insert(target_name.to_owned(), ino);
        let inode = self.inode_mut(ino)?;
        inode.meta.ctime = now();
        if kind == Kind::Dir {
            inode.parent = Some(target_parent);
        }
        self.touch(source_parent);
        self.touch(target_parent);
        Ok(())
    }

    // ------------------------------------------------------------------ file content (current state only)

    /// Counts an open handle of `ino`.
    ///
    /// # Errors
    /// ENOENT, EIO.
    pub fn open_handle(&mut self, ino: Ino) -> io::Result<Attr> {
        self.inode_mut(ino)?.opens += 1;
        self.attr(ino)
    }

    /// Drops an open handle of `ino` (its content goes once it has no name and no handle).
    pub fn release_handle(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.opens = inode.opens.saturating_sub(1);
        }
        self.close_backing_if_unused(ino);
        self.collect(ino);
    }

    /// Closes a file's backing descriptor once the application holds no handle of it, so that
    /// descriptors stay bounded by the application's (it is reopened when needed).
    fn close_backing_if_unused(&mut self, ino: Ino) {
        if let Some(Inode { opens: 0, body: Body::File(file), .. }) = self.inodes.get_mut(&ino) {
            file.backing = None;
        }
    }

    /// Reads up to `length` bytes of file `ino` at `position`, as the application wrote them.
    ///
    /// # Errors
    /// EISDIR, ENOENT, EIO.
    pub fn read(&mut self, ino: Ino, position: u64, length: u64) -> io::Result<Vec<u8>> {
        self.open_backing(ino)?;
        let file = self.file(ino)?;
        file.content.read(file.backing.as_ref(), position, length)
    }

    /// Writes `data` at `position` of file `ino` (in memory until an fsync).
    ///
    /// # Errors
    /// EISDIR, ENOENT, EFBIG past 2^62 bytes, EIO.
    pub fn write(&mut self, ino: Ino, position: u64, data: &[u8]) -> io::Result<()> {
        if position.checked_add(data.len() as u64).is_none_or(|end| end > 1 << 62) {
            return Err(errno(libc::EFBIG));
        }
        self.file_mut(ino)?.content.write(position, data);
        self.touch(ino);
        if let Some(armed) = &mut self.armed {
            armed.writes_left -= 1;
            if armed.writes_left == 0 {
                // The write reached the page cache, then the power failed: the write itself
                // succeeds, everything after it fails.
                let torn = armed.torn;
                self.armed_outcome = Some(self.power_off(torn));
            }
        }
        Ok(())
    }

    /// Sets the size of file `ino` (truncate or extend with zeros).
    ///
    /// # Errors
    /// EISDIR, ENOENT, EFBIG, EIO.
    pub fn set_len(&mut self, ino: Ino, size_bytes: u64) -> io::Result<()> {
        if size_bytes > 1 << 62 {
            return Err(errno(libc::EFBIG));
        }
        self.file_mut(ino)?.content.set_len(size_bytes);
        self.touch(ino);
        Ok(())
    }

    /// `fallocate` mode 0: makes the file at least `end_bytes` long.
    ///
    /// # Errors
    /// As `set_len`.
    pub fn allocate(&mut self, ino: Ino, end_bytes: u64) -> io::Result<()> {
        if end_bytes > self.file(ino)?.content.size_bytes() {
            self.set_len(ino, end_bytes)?;
        }
        Ok(())
    }

    /// Bytes written and not yet fsynced, over every file.
    pub fn unsynced_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| match &inode.body {
                Body::File(file) => file.content.unsynced_bytes(),
                Body::Dir(_) => 0,
            })
            .sum()
    }

    /// Number of inodes held in memory.
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    // ------------------------------------------------------------------ helpers

    fn live(&self) -> io::Result<()> {
        if self.powered_off { Err(errno(libc::EIO)) } else { Ok(()) }
    }

    fn inode(&self, ino: Ino) -> io::Result<&Inode> {
        self.live()?;
        self.inodes.get(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn inode_mut(&mut self, ino: Ino) -> io::Result<&mut Inode> {
        self.live()?;
        self.inodes.get_mut(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn file(&self, ino: Ino) -> io::Result<&FileBody> {
        match &self.inode(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(errno(libc::EISDIR)),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileBody> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(errno(libc::EISDIR)),
        }
    }

    fn dir(&self, ino: Ino) -> io::Result<&DirBody> {
        match &self.inode(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> io::Result<&mut DirBody> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    /// The current entry `name` of directory `parent`, loading the directory first.
    fn child(&mut self, parent: Ino, name: &OsStr) -> io::Result<Option<Ino>> {
        self.ensure_loaded(parent)?;
        Ok(self.dir(parent)?.current.get(name).copied())
    }

    fn check_new_name(&self, parent: Ino, name: &OsStr) -> io::Result<()> {
        if self.inode(parent)?.links == 0 {
            return Err(errno(libc::ENOENT)); // a removed directory takes no new entries
        }
        if parent == ROOT && name == STAGING_NAME {
            return Err(errno(libc::EACCES));
        }
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
            return Err(errno(libc::EINVAL));
        }
        Ok(())
    }

    fn is_empty_dir(&mut self, ino: Ino) -> io::Result<bool> {
        self.ensure_loaded(ino)?;
        Ok(self.dir(ino)?.current.is_empty())
    }

    /// Whether directory `dir` is `ancestor` or lies below it in the current tree.
    fn is_within(&self, dir: Ino, ancestor: Ino) -> io::Result<bool> {
        let mut at = dir;
        for _ in 0..=self.inodes.len() {
            if at == ancestor {
                return Ok(true);
            }
            if at == ROOT {
                return Ok(false);
            }
            at = self.inode(at)?.parent.ok_or_else(|| errno(libc::ENOENT))?;
        }
        panic!("the parents of {dir:?} form a cycle");
    }

    /// Reads directory `dir`'s backing directory into its entries, the first time it is used.
    fn ensure_loaded(&mut self, dir: Ino) -> io::Result<()> {
        if self.dir(dir)?.loaded {
            return Ok(());
        }
        let path = self.path_of(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && name == STAGING_NAME {
                continue;
            }
            let metadata = entry.path().symlink_metadata()?;
            let body = if metadata.is_file() {
                Body::File(FileBody { content: Unsynced::new(metadata.len()), backing: None })
            } else if metadata.is_dir() {
                Body::Dir(DirBody::default())
            } else {
                continue; // symlinks and special files are not modelled: not shown
            };
            let is_dir = matches!(body, Body::Dir(_));
            let ino = Ino(self.next_ino);
            self.next_ino += 1;
            let inode = Inode {
                meta: meta_from(&metadata),
                body,
                links: 1,
                parent: is_dir.then_some(dir),
                places: vec![Place::Entry { dir, name: name.clone() }],
                lookups: 0,
                opens: 0,
            };
            self.inodes.insert(ino, inode);
            found.push((name, ino));
        }
        let body = self.dir_mut(dir)?;
        for (name, ino) in found {
            body.current.insert(name.clone(), ino);
            body.durable.insert(name, ino);
        }
        body.loaded = true;
        Ok(())
    }

    /// The path of `ino`'s (first) backing object; EIO when it has none.
    fn path_of(&self, ino: Ino) -> io::Result<PathBuf> {
        self.first_path(ino)?.ok_or_else(|| errno(libc::EIO))
    }

    fn first_path(&self, ino: Ino) -> io::Result<Option<PathBuf>> {
        let mut names = Vec::new();
        let mut at = ino;
        for _ in 0..=self.inodes.len() {
            match self.inode(at)?.places.first() {
                None => return Ok(None),
                Some(Place::Root) => break,
                Some(Place::Staging) => {
                    names.push(OsString::from(at.0.to_string()));
                    let mut path = self.staging.clone();
                    path.extend(names.iter().rev());
                    return Ok(Some(path));
                }
                Some(Place::Entry { dir, name }) => {
                    names.push(name.clone());
                    at = *dir;
                }
            }
        }
        let mut path = self.backing.clone();
        path.extend(names.iter().rev());
        Ok(Some(path))
    }

    /// Opens file `ino`'s backing file if it has one and it is not open yet.
    fn open_backing(&mut self, ino: Ino) -> io::Result<()> {
        if self.file(ino)?.backing.is_some() || self.inode(ino)?.places.is_empty() {
            return Ok(());
        }
        let path = self.path_of(ino)?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        self.file_mut(ino)?.backing = Some(file);
        Ok(())
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            let time = now();
            inode.meta.mtime = time;
            inode.meta.ctime = time;
        }
    }

    fn drop_link(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.links = inode.links.saturating_sub(1);
            inode.meta.ctime = now();
        }
        self.collect(ino);
    }

    /// Frees what an inode nobody needs holds: its staged backing object, its unsynced bytes,
    /// and, once no durable entry and no kernel lookup refers to it, the inode itself.
    fn collect(&mut self, ino: Ino) {
        let Some(inode) = self.inodes.get(&ino) else { return };
        if inode.is_needed() || ino == ROOT {
            return;
        }
        if inode.places == [Place::Staging] {
            let path = self.staging.join(ino.0.to_string());
            // Best effort: a staged object that cannot be deleted is lost with staging at the
            // power-off or the unmount anyway.
            let _best_effort = self.delete_backing(ino, &path);
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.places.clear();
            }
        }
        let Some(inode) = self.inodes.get_mut(&ino) else { return };
        if inode.places.is_empty() {
            if let Body::File(file) = &mut inode.body {
                file.content = Unsynced::new(0);
                file.backing = None;
            }
            if inode.lookups == 0 {
                self.inodes.remove(&ino);
            }
        }
    }
}
