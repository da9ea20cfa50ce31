//! Time outside the shared clock: only startup and shutdown, which run before the shards serve
//! and after they stop, on the main thread, and the entropy behind generated ids. Everything a
//! request, a timer or a coordinator reads comes from the [`sluice_engine::clock::Clock`] in the
//! broker's shared state, so tests can drive it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The current monotonic instant, for the bounded waits of startup and shutdown.
pub(crate) fn startup_now() -> Instant {
    Instant::now()
}

/// Blocks the calling thread for `duration`; only for startup, never on a shard.
pub(crate) fn sleep_blocking(duration: Duration) {
    std::thread::sleep(duration);
}

/// Bits that differ between calls and between processes, for generated ids.
pub(crate) fn entropy() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}
