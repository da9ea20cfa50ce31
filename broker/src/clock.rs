//! The broker's only access to time: monotonic instants for latency and deadlines, wall-clock
//! milliseconds for ids, and timers. Keeping them here lets a simulated clock replace them.
//! Any thread may call these.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The current monotonic instant.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub(crate) fn unix_time_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Waits `duration` on the calling shard's runtime.
pub(crate) async fn sleep(duration: Duration) {
    compio::time::sleep(duration).await;
}

/// Blocks the calling thread for `duration`; only for startup, never on a shard.
pub(crate) fn sleep_blocking(duration: Duration) {
    std::thread::sleep(duration);
}
