//! Ctrl-C (SIGINT) and SIGTERM for `consume`: the first one asks the consumer to stop cleanly
//! (finish the current fetch, commit its group offsets, leave the group); a second one exits at
//! once with status 130.
//!
//! The signals are blocked in every thread (the mask is set before any thread starts, and threads
//! inherit it) and one watcher thread takes them synchronously with `sigwait`, so nothing runs in
//! signal context, as in the broker's `signals.rs`. This is the one place in the tools with
//! `unsafe`: the `libc` calls that set the mask and wait. Touched by the main thread (install,
//! `is_stopping`) and the watcher thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

/// Exit status after a second Ctrl-C: 128 + SIGINT, as shells report it.
const EXIT_STATUS_INTERRUPTED: i32 = 130;

/// Set once SIGINT or SIGTERM arrived.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal {
    stopping: Arc<AtomicBool>,
}

impl StopSignal {
    /// Blocks SIGINT and SIGTERM and starts the watcher thread. Call before any other thread exists.
    ///
    /// # Errors
    /// When the signal mask cannot be changed or the thread cannot start.
    pub(crate) fn install() -> Result<Self> {
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
            bail!("cannot block SIGINT and SIGTERM: {}", std::io::Error::from_raw_os_error(result));
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let spawned =
            std::thread::Builder::new().name("signals".to_owned()).spawn(move || watch(&SignalSet(set), &flag));
        if let Err(error) = spawned {
            bail!("cannot start the signal thread: {error}");
        }
        Ok(Self { stopping })
    }

    /// Whether a stop was asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// A signal set moved to the watcher thread (`sigset_t` is plain data).
struct SignalSet(libc::sigset_t);

fn watch(set: &SignalSet, stopping: &AtomicBool) {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set.0` was initialized by `install`; `signal` is a valid out pointer.
        let result = unsafe { libc::sigwait(&raw const set.0, &raw mut signal) };
        if result != 0 {
            // sigwait only fails for an invalid set; without it, stop on nothing.
            return;
        }
        if stopping.swap(true, Ordering::Relaxed) {
            std::process::exit(EXIT_STATUS_INTERRUPTED);
        }
    }
}
