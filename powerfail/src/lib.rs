//! # sluice-powerfail: a file system that forgets what was not fsynced
//!
//! A FUSE file system for tests, in the spirit of Jepsen's LazyFS: a passthrough to a backing
//! directory in which every change that was not made durable stays in memory, so that a
//! "power-off" can drop it and leave in the backing directory exactly what a machine that lost
//! power would find on its disk. A test runs a program on the mount, kills it, powers the mount
//! off, unmounts it and restarts the program on what is left.
//!
//! ## Design note
//! The durable state *is* the backing directory; the volatile state is an overlay in memory
//! (see [`volume`]). The rules follow Linux ext4, read strictly:
//! - `fsync`/`fdatasync` of a file makes its content and size durable;
//! - a name created, renamed or removed in a directory becomes durable only when that directory
//!   is fsynced (no auto_da_alloc rename-replace rescue, no journal that commits more than asked);
//! - reads see what the application wrote, as from a page cache;
//! - a power-off drops everything else; `--torn` first writes a random prefix (seeded) of each
//!   file's last unsynced write, a torn write.
//!
//! Rejected alternative: a log of every unsynced operation replayed at fsync. It must re-derive
//! reads from the log and order directory operations against file ones; keeping the durable
//! state in the backing directory and the current state in memory makes both a lookup.
//!
//! ## Example
//! The model runs without FUSE, on any directory:
//! ```
//! use sluice_powerfail::volume::{Volume, ROOT};
//! use std::ffi::OsStr;
//!
//! let backing = tempfile::tempdir()?;
//! let mut volume = Volume::open(backing.path(), 1)?;
//! let synced = volume.create_file(ROOT, OsStr::new("synced"), 0o644, (0, 0))?.ino;
//! volume.write(synced, 0, b"durable")?;
//! volume.fsync(synced)?;
//! volume.fsync(ROOT)?; // the name too
//! let lost = volume.create_file(ROOT, OsStr::new("lost"), 0o644, (0, 0))?.ino;
//! volume.write(lost, 0, b"never fsynced")?;
//! volume.power_off(false)?;
//! assert_eq!(std::fs::read(backing.path().join("synced"))?, b"durable");
//! assert!(!backing.path().join("lost").exists());
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod content;
pub mod control;
pub mod fs;
pub mod rng;
pub mod volume;
