//! `sluice-powerfail`: mount a file system that forgets what was not fsynced, and tell it to lose
//! power. See the crate docs (src/lib.rs) and README.md.
//!
//! ```text
//! sluice-powerfail mount BACKING_DIR MOUNTPOINT [--control SOCKET] [--seed N]
//! sluice-powerfail ctl SOCKET power-off [--torn] [--after-writes N] | sync | status | unmount
//! ```
//!
//! `mount` stays in the foreground until the file system is unmounted (`umount MOUNTPOINT`, the
//! `unmount` control command, or SIGINT/SIGTERM, which detach it lazily). A clean unmount that
//! follows no power-off syncs everything first, as `sync` before `umount` would.
//!
//! Threads: the main thread runs fuser's session loop; one thread serves the control socket; one
//! waits for SIGINT and SIGTERM with `sigwait` (blocked in every thread before any starts, so
//! nothing runs in signal context). `unsafe` is confined to the `libc` calls of `signals`.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use fuser::{Config, INodeNo, MountOption, Session};
use sluice_powerfail::control::{self, Hooks};
use sluice_powerfail::fs::PowerfailFs;
use sluice_powerfail::volume::Volume;

#[derive(Debug, Parser)]
#[command(name = "sluice-powerfail", version, about = "A FUSE file system for tests that forgets what was not fsynced")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount BACKING_DIR at MOUNTPOINT, in the foreground, until it is unmounted.
    Mount {
        /// Directory holding the durable state (and nothing else, after a power-off).
        backing_dir: PathBuf,
        /// Where to mount.
        mountpoint: PathBuf,
        /// Path of the control socket to create (power-off, sync, status, unmount).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Seed of the torn-write choices.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Send one command to the control socket of a mounted instance and print its answer.
    Ctl {
        /// The control socket.
        control: PathBuf,
        /// power-off [--torn] [--after-writes N] | sync | status | unmount
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// How long `ctl` waits for an answer (a power-off of a large volume writes torn prefixes).
const CTL_TIMEOUT: Duration = Duration::from_mins(2);

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Mount { backing_dir, mountpoint, control, seed } => mount(&backing_dir, &mountpoint, control, seed),
        Command::Ctl { control, command } => {
            let answer = control::send(&control, &command.join(" "), CTL_TIMEOUT)
                .with_context(|| format!("control socket {}", control.display()))?;
            println!("{answer}");
            if !answer.starts_with("ok") {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn mount(backing_dir: &Path, mountpoint: &Path, control_path: Option<PathBuf>, seed: u64) -> Result<()> {
    let stop = signals::block()?;
    let mountpoint = mountpoint.canonicalize().with_context(|| format!("mountpoint {}", mountpoint.display()))?;
    let volume =
        Volume::open(backing_dir, seed).with_context(|| format!("backing directory {}", backing_dir.display()))?;
    if mountpoint.starts_with(volume.backing()) {
        bail!("the mountpoint {} lies inside the backing directory", mountpoint.display());
    }
    let volume = Arc::new(Mutex::new(volume));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("sluice-powerfail".to_owned()),
        MountOption::Subtype("sluice-powerfail".to_owned()),
        MountOption::DefaultPermissions,
    ];
    let session = Session::new(PowerfailFs::new(Arc::clone(&volume)), &mountpoint, &config).with_context(|| {
        format!(
            "cannot mount at {}: mounting needs root (CAP_SYS_ADMIN) and /dev/fuse, or fusermount3 (Debian's \
             fuse3) on PATH",
            mountpoint.display()
        )
    })?;

    let notifier = session.notifier();
    let busy = Arc::new(Mutex::new(()));
    let control_path = match control_path {
        Some(path) => {
            let path = std::path::absolute(&path)?;
            let _stale = std::fs::remove_file(&path); // a socket left by a process that died
            let listener = UnixListener::bind(&path).with_context(|| format!("control socket {}", path.display()))?;
            let (volume, unmount_at, busy) = (Arc::clone(&volume), mountpoint.clone(), Arc::clone(&busy));
            let hooks = Hooks {
                invalidate: Box::new(move |inos| {
                    for ino in inos {
                        // Best effort: ENOENT for an inode the kernel does not hold is normal.
                        let _not_cached = notifier.inval_inode(INodeNo(ino.0), 0, 0);
                    }
                }),
                unmount: Box::new(move || signals::unmount(&unmount_at, false)),
            };
            std::thread::Builder::new()
                .name("control".to_owned())
                .spawn(move || control::serve(&listener, &volume, hooks, &busy))?;
            Some(path)
        }
        None => None,
    };
    let watched = mountpoint.clone();
    std::thread::Builder::new().name("signals".to_owned()).spawn(move || {
        stop.wait();
        if let Err(error) = signals::unmount(&watched, true) {
            eprintln!("sluice-powerfail: cannot detach {}: {error}", watched.display());
        }
    })?;
    eprintln!("sluice-powerfail: {} mounted at {}", backing_dir.display(), mountpoint.display());

    let ran = match session.run() {
        // The kernel answers ECONNABORTED instead of ENODEV to a read that races with the end
        // of the connection at unmount: the session is over all the same.
        Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
        ran => ran,
    };
    // Let a control command in progress (the `unmount` that ended the session) answer, and
    // start no other.
    let _quiet = busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let closed = volume.lock().unwrap_or_else(std::sync::PoisonError::into_inner).close();
    if let Some(path) = control_path {
        let _already_gone = std::fs::remove_file(path);
    }
    ran.context("FUSE session")?;
    closed.context("syncing at unmount")?;
    Ok(())
}

mod signals {
    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::Path;

    use anyhow::{Result, bail};

    /// SIGINT and SIGTERM, blocked in every thread and taken by `wait`.
    pub(super) struct StopSignals {
        set: libc::sigset_t,
    }

    /// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts after. Call
    /// before any other thread exists.
    pub(super) fn block() -> Result<StopSignals> {
        // SAFETY: a zeroed `sigset_t` is a valid value to hand to `sigemptyset`, which
        // initializes it; the pointer is to a local that outlives the calls.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed `sigset_t` for each call; SIGINT and
        // SIGTERM are valid signal numbers, so these calls cannot fail.
        unsafe {
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGINT);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
        }
        // SAFETY: `set` is initialized; a null old-mask pointer is allowed.
        let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if result != 0 {
            bail!("cannot block SIGINT and SIGTERM: {}", io::Error::from_raw_os_error(result));
        }
        Ok(StopSignals { set })
    }

    impl StopSignals {
        /// Waits for SIGINT or SIGTERM.
        pub(super) fn wait(&self) {
            let mut signal = 0;
            // SAFETY: `self.set` is an initialized signal set and `signal` a valid out-pointer;
            // sigwait only fails for an invalid set, which this is not.
            let _signal_taken = unsafe { libc::sigwait(&raw const self.set, &raw mut signal) };
        }
    }

    /// Unmounts `mountpoint`; `lazy` detaches it even while it is busy (MNT_DETACH).
    pub(super) fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
        let path = CString::new(mountpoint.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: `path` is a NUL-terminated string that outlives the call; umount2 reads it only.
        let result = unsafe { libc::umount2(path.as_ptr(), flags) };
        if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
}
