//! Termination signals (SIGTERM, SIGINT) without a handler: they are blocked in every thread
//! (the mask is set before any thread starts, and threads inherit it), and the main thread takes
//! them synchronously with `sigwait`. Nothing runs in signal context, so shutdown is ordinary
//! code on an ordinary thread.

use std::io;

/// The blocked termination signals.
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for TerminationSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminationSignals(SIGTERM, SIGINT)")
    }
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards.
    /// Call it first in `main`, before any thread exists.
    ///
    /// # Errors
    /// When the signal mask cannot be changed.
    pub fn block() -> io::Result<Self> {
        // SAFETY: a zeroed `sigset_t` is a valid value to hand to `sigemptyset`, which
        // initializes it; the pointer is to a local that outlives the call.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed `sigset_t` for each call; SIGTERM and
        // SIGINT are valid signal numbers, so these calls cannot fail.
        unsafe {
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
            libc::sigaddset(&raw mut set, libc::SIGINT);
        }
        // SAFETY: `set` is initialized; a null old-mask pointer is allowed.
        let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(Self { set })
    }

    /// Waits until SIGTERM or SIGINT arrives and returns its name.
    ///
    /// # Errors
    /// When `sigwait` fails.
    pub fn wait(&self) -> io::Result<&'static str> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `self.set` was initialized in `block`; `signal` is a valid out pointer.
        let result = unsafe { libc::sigwait(&raw const self.set, &raw mut signal) };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(if signal == libc::SIGTERM { "SIGTERM" } else { "SIGINT" })
    }
}
