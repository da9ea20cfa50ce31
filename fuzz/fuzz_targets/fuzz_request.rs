//! Fuzz target: Kafka request framing and decoding never panic, and what they allocate is paid
//! for by the input.
//!
//! Method: the input is one frame body as a connection would read it (the bytes after the size
//! prefix); it goes through the dispatcher's own checks and decoders via
//! `sluice_broker::fuzzing::decode_request`, which does not catch panics. The first four bytes
//! also go through the frame size check. The broker's allocator is installed as in `sluice`, so
//! the memory a hostile frame can make it commit is what this target measures: libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` (set by `fuzz/smoke`) fail the run when one input
//! costs more. (Arrays announced far larger than the input become lazy reservations of address
//! space, never touched; see broker/src/memory.rs.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::memory::ReservingAllocator;

#[global_allocator]
static ALLOCATOR: ReservingAllocator = ReservingAllocator;

fuzz_target!(|frame: &[u8]| {
    if let Some(prefix) = frame.first_chunk::<4>() {
        if let Ok(size) = sluice_broker::fuzzing::frame_size(*prefix, 1 << 20) {
            assert!((8..=1 << 20).contains(&size));
        }
    }
    let _ = sluice_broker::fuzzing::decode_request(frame);
});
