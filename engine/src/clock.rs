//! Time, passed in: the engine's and the broker's only access to wall-clock time, monotonic
//! time and timers.
//!
//! Everything that reads time (appends stamping LogAppendTime, segment rolls, retention,
//! `flush.ms`, the broker's timeouts and the group coordinator's timers) reads it from a
//! [`Clock`] handed to it, never from `std::time` directly. Production uses [`SystemClock`];
//! tests use [`ManualClock`] and advance it, so a test of a one-hour retention or a session
//! timeout runs in microseconds and the same on every machine.
//!
//! A clock is shared by every thread (`Send + Sync`); the futures its `sleep` returns belong to
//! the thread that awaits them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_listener::Event;

/// A timer future, owned by the thread that awaits it.
pub type Sleep = Pin<Box<dyn Future<Output = ()>>>;

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch, as Kafka timestamps count them.
    fn unix_ms(&self) -> i64;

    /// The current monotonic instant, for deadlines and elapsed time.
    fn now(&self) -> Instant;

    /// Completes once `duration` has passed on this clock. A [`SystemClock`] timer needs the
    /// calling thread's compio runtime (every shard has one).
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// A shared clock handle, as configs and components hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock: the system's wall clock and monotonic time, compio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A shared handle to the system clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn unix_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(compio::time::sleep(duration))
    }
}

/// Bits that differ between calls and between processes, for ids (topic ids, cluster ids):
/// not time in any sense the engine relies on, so it is not read from a [`Clock`].
pub(crate) fn entropy() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos()));
    hasher.finish()
}

/// A clock that moves only when told to: [`ManualClock::advance`] moves both its wall clock and
/// its monotonic time and wakes every timer that came due. Its timers need no runtime.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    /// The monotonic instant its time started from.
    origin: Instant,
    /// Its wall clock at the origin.
    origin_unix_ms: i64,
    /// Time advanced since the origin.
    elapsed_ns: AtomicU64,
    /// Fired on every advance; timers re-check their deadline.
    advanced: Event,
}

impl ManualInner {
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns.load(Ordering::Acquire))
    }
}

impl ManualClock {
    /// A clock standing at `unix_ms`, which only [`ManualClock::advance`] moves.
    pub fn new(unix_ms: i64) -> Self {
        let inner = ManualInner {
            origin: Instant::now(),
            origin_unix_ms: unix_ms,
            elapsed_ns: AtomicU64::new(0),
            advanced: Event::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Moves time forward by `duration` and wakes the timers that came due.
    pub fn advance(&self, duration: Duration) {
        let step = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.inner.elapsed_ns.fetch_add(step, Ordering::AcqRel);
        self.inner.advanced.notify(usize::MAX);
    }

    /// A shared handle to this clock (advancing either moves both).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> i64 {
        self.inner.origin_unix_ms.saturating_add(self.inner.elapsed().as_millis() as i64)
    }

    fn now(&self) -> Instant {
        self.inner.origin + self.inner.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let inner = self.inner.clone();
        let deadline = inner.elapsed().saturating_add(duration);
        Box::pin(async move {
            crate::notify::wait_until(&inner.advanced, || inner.elapsed() >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_time_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        let start = clock.now();
        assert_eq!(clock.unix_ms(), 1_000);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.unix_ms(), 1_250);
        assert_eq!(clock.now() - start, Duration::from_millis(250));
    }

    #[test]
    fn manual_timer_completes_when_its_deadline_passes() {
        let clock = ManualClock::new(0);
        let mut timer = clock.sleep(Duration::from_mins(1));
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        assert!(timer.as_mut().poll(&mut context).is_pending());
        clock.advance(Duration::from_secs(59));
        assert!(timer.as_mut().poll(&mut context).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(timer.as_mut().poll(&mut context).is_ready());
    }
}
