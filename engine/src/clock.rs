//! The engine's only access to wall-clock and monotonic time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as Kafka timestamps count them.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Nanoseconds since the Unix epoch, for unique ids.
pub(crate) fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
}

/// A monotonic instant, for measuring elapsed time.
pub(crate) fn monotonic() -> Instant {
    Instant::now()
}
