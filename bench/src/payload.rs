//! Record values: slices of a pre-generated pseudo-random pool, optionally stamped for
//! end-to-end latency, and the run's monotonic clock.
//!
//! The pool holds random letters and digits (as kafka-producer-perf-test does), so compression
//! ratios resemble text rather than zeros. A value is a window into the pool at a moving start,
//! so producing one costs no allocation. Each producer thread owns its `Payload`; the `Clock` is
//! `Copy` and shared by all threads.

use std::time::Instant;

use crate::args::STAMP_SIZE_BYTES;

/// Pool size: 64 KiB of distinct windows, so consecutive values differ.
const POOL_SIZE_BYTES: usize = 64 * 1024;
/// Window step, prime so the starts cycle through the whole pool.
const STEP_BYTES: usize = 7_919;

/// Nanoseconds since the run began, from one monotonic origin all threads share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self { origin: Instant::now() }
    }

    pub(crate) fn now_ns(self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Generates record values of a fixed size.
#[derive(Debug)]
pub(crate) struct Payload {
    pool: Vec<u8>,
    record_size_bytes: usize,
    start: usize,
    run_id: Option<u32>,
    scratch: Vec<u8>,
}

impl Payload {
    /// Values of `record_size_bytes` from a pool seeded with `seed`; with `run_id`, each value
    /// starts with the end-to-end stamp.
    pub(crate) fn new(record_size_bytes: usize, seed: u64, run_id: Option<u32>) -> Self {
        assert!(run_id.is_none() || record_size_bytes >= STAMP_SIZE_BYTES, "stamp does not fit the record");
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let pool = (0..POOL_SIZE_BYTES + record_size_bytes)
            .map(|_| {
                // xorshift64*: fast, seeded, good enough for payload bytes.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let random = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                alphabet[(random >> 58) as usize % alphabet.len()]
            })
            .collect();
        Self { pool, record_size_bytes, start: 0, run_id, scratch: vec![0; record_size_bytes] }
    }

    /// The next value; stamped with `scheduled_ns` when the payload carries a run id.
    pub(crate) fn next(&mut self, scheduled_ns: u64) -> &[u8] {
        self.start = (self.start + STEP_BYTES) % POOL_SIZE_BYTES;
        let window = &self.pool[self.start..self.start + self.record_size_bytes];
        let Some(run_id) = self.run_id else { return window };
        self.scratch.copy_from_slice(window);
        self.scratch[..4].copy_from_slice(&run_id.to_be_bytes());
        self.scratch[4..STAMP_SIZE_BYTES].copy_from_slice(&scheduled_ns.to_be_bytes());
        &self.scratch
    }
}

/// Reads the stamp of a value: `Some(scheduled_ns)` when it carries `run_id`.
pub(crate) fn read_stamp(value: &[u8], run_id: u32) -> Option<u64> {
    let stamp = value.get(..STAMP_SIZE_BYTES)?;
    let (id, scheduled) = stamp.split_at(4);
    if id != run_id.to_be_bytes() {
        return None;
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(scheduled);
    Some(u64::from_be_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_record_size_and_vary() {
        let mut payload = Payload::new(100, 7, None);
        let first = payload.next(0).to_vec();
        let second = payload.next(0).to_vec();
        assert_eq!(first.len(), 100);
        assert_ne!(first, second);
    }

    #[test]
    fn stamp_round_trips_and_other_runs_are_ignored() {
        let mut payload = Payload::new(16, 7, Some(42));
        let value = payload.next(123_456_789).to_vec();
        assert_eq!(read_stamp(&value, 42), Some(123_456_789));
        assert_eq!(read_stamp(&value, 43), None);
        assert_eq!(read_stamp(&value[..8], 42), None);
    }
}
