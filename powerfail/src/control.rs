//! The control socket: a Unix stream socket that takes one command per connection, as one line,
//! and answers one line that starts with `ok` or `error`.
//!
//! Commands:
//! - `power-off [--torn] [--after-writes N]`: drop every unsynced change (see
//!   [`Volume::power_off`]), invalidate the kernel's cached pages, and fail every later
//!   operation with EIO; with `--after-writes N`, right after the N-th write from now (see
//!   [`Volume::arm_power_off`]), so that the power fails in the middle of the application's
//!   work, with at least that write not fsynced;
//! - `sync`: make everything durable, as `sync(2)`;
//! - `status`: `ok powered_off=<bool> armed=<bool> inodes=<n> unsynced_bytes=<n>`;
//! - `unmount`: unmount the file system (fails with EBUSY while a process uses it).
//!
//! Threads: one control thread accepts connections and serves each on a thread of its own, so
//! that `status` answers while an armed power-off waits for its write. Each command takes the
//! volume's mutex; cache invalidations are sent after releasing it, so that a FUSE request that
//! waits for the mutex is never what the kernel waits for.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::volume::{Ino, Volume};

/// Drops the kernel's caches of these inodes (best effort).
pub type Invalidate = Box<dyn Fn(&[Ino]) + Send>;
/// Unmounts the file system.
pub type Unmount = Box<dyn FnMut() -> io::Result<()> + Send>;

/// What the control thread may do besides touching the volume.
pub struct Hooks {
    pub invalidate: Invalidate,
    pub unmount: Unmount,
}

/// The longest command line accepted.
const LINE_SIZE_BYTES_MAX: u64 = 1024;
/// How long a client may take to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until the process exits, each connection on its own thread (an armed
/// power-off waits for its write while `status` still answers). `busy` is held while `unmount`
/// runs and answers: the main thread takes it before exiting, so that the answer to the
/// `unmount` that ended the session is not cut off by the exit.
pub fn serve(listener: &UnixListener, volume: &Arc<Mutex<Volume>>, hooks: Hooks, busy: &Arc<Mutex<()>>) {
    let hooks = Arc::new(Mutex::new(hooks));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (volume, hooks, busy) = (Arc::clone(volume), Arc::clone(&hooks), Arc::clone(busy));
        let spawned = std::thread::Builder::new().name("control-client".to_owned()).spawn(move || {
            // A client that goes away early only loses its answer.
            let _client_gone = serve_one(stream, &volume, &hooks, &busy);
        });
        if let Err(error) = spawned {
            eprintln!("sluice-powerfail: cannot start a control thread: {error}");
        }
    }
}

fn serve_one(
    stream: UnixStream,
    volume: &Arc<Mutex<Volume>>,
    hooks: &Mutex<Hooks>,
    busy: &Mutex<()>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, LINE_SIZE_BYTES_MAX)).read_line(&mut line)?;
    let command = line.trim();
    let _serving = (command == "unmount").then(|| busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let answer = execute(command, volume, hooks);
    let mut stream = stream;
    writeln!(stream, "{answer}")
}

fn lock(volume: &Arc<Mutex<Volume>>) -> std::sync::MutexGuard<'_, Volume> {
    volume.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_hooks(hooks: &Mutex<Hooks>) -> std::sync::MutexGuard<'_, Hooks> {
    hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one command; returns the answer line.
pub fn execute(command: &str, volume: &Arc<Mutex<Volume>>, hooks: &Mutex<Hooks>) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["power-off", flags @ ..] => match PowerOffFlags::parse(flags) {
            Some(flags) => power_off(flags, volume, hooks),
            None => format!("error power-off takes [--torn] [--after-writes N], not {flags:?}"),
        },
        ["sync"] => match lock(volume).sync_all() {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("error sync: {error}"),
        },
        ["status"] => {
            let volume = lock(volume);
            format!(
                "ok powered_off={} armed={} inodes={} unsynced_bytes={}",
                volume.is_powered_off(),
                volume.is_armed(),
                volume.inode_count(),
                volume.unsynced_bytes()
            )
        }
        ["unmount"] => match (lock_hooks(hooks).unmount)() {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("error unmount: {error}"),
        },
        _ => {
            format!("error unknown command {command:?} (power-off [--torn] [--after-writes N], sync, status, unmount)")
        }
    }
}

/// How long `power-off --after-writes N` waits for the N-th write before it powers off anyway.
const ARMED_WAIT: Duration = Duration::from_secs(30);
/// How often it checks whether the armed power-off happened.
const ARMED_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
struct PowerOffFlags {
    torn: bool,
    after_writes: Option<u64>,
}

impl PowerOffFlags {
    fn parse(flags: &[&str]) -> Option<Self> {
        let mut parsed = Self { torn: false, after_writes: None };
        let mut words = flags.iter();
        while let Some(word) = words.next() {
            match *word {
                "--torn" => parsed.torn = true,
                "--after-writes" => parsed.after_writes = Some(words.next()?.parse().ok().filter(|count| *count > 0)?),
                _ => return None,
            }
        }
        Some(parsed)
    }
}

/// `power-off`: at once, or right after the N-th write from now (waiting up to ARMED_WAIT for
/// it, then at once: the answer says `armed_timed_out=1`).
fn power_off(flags: PowerOffFlags, volume: &Arc<Mutex<Volume>>, hooks: &Mutex<Hooks>) -> String {
    let mut timed_out = false;
    let result = match flags.after_writes {
        None => lock(volume).power_off(flags.torn),
        Some(writes) => {
            if let Err(error) = lock(volume).arm_power_off(flags.torn, writes) {
                return format!("error power-off: {error}");
            }
            let deadline = std::time::Instant::now() + ARMED_WAIT;
            loop {
                let mut guard = lock(volume);
                if let Some(outcome) = guard.take_armed_outcome() {
                    break outcome;
                }
                if std::time::Instant::now() >= deadline {
                    timed_out = true;
                    break guard.power_off(flags.torn);
                }
                drop(guard);
                std::thread::sleep(ARMED_POLL);
            }
        }
    };
    match result {
        Ok(report) => {
            (lock_hooks(hooks).invalidate)(&report.inos);
            format!(
                "ok torn_files={} torn_bytes_kept={} unsynced_bytes_dropped={} armed_timed_out={}",
                report.torn_files,
                report.torn_bytes_kept,
                report.unsynced_bytes_dropped,
                u8::from(timed_out)
            )
        }
        Err(error) => format!("error power-off: {error}"),
    }
}

/// Sends `command` to the control socket at `path` and returns the answer line.
///
/// # Errors
/// The socket cannot be reached, or it closed without answering.
pub fn send(path: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    writeln!(stream, "{command}")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the control socket closed without answering"));
    }
    Ok(answer.trim_end().to_owned())
}
