//! Fuzz target: the RecordBatch v2 parsers, record walkers and codecs never panic, and agree
//! with each other: a batch that validates reports a size within the input, its records lie
//! inside it, and inflating a records section never exceeds the limit given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch;

/// Inflation limit: small, so that a hostile input shows up as a refusal, not as memory use.
const INFLATED_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(header) = batch::validate(bytes, false) {
        assert!(header.size_bytes() <= bytes.len());
        for record in batch::records(bytes) {
            assert!(record.raw.len() <= header.size_bytes());
        }
        let _ = batch::record_timestamps(bytes).count();
        if let Ok(section) = batch::records_section(bytes, INFLATED_BYTES_MAX) {
            assert!(section.len() <= INFLATED_BYTES_MAX);
            let _ = batch::decode::RecordIter::new(&header, &section).map(|record| record.map(|r| r.headers().count())).count();
        }
    }
    let iter = batch::decode::BatchIter::without_crc_check(bytes::Bytes::copy_from_slice(bytes))
        .with_size_limit(INFLATED_BYTES_MAX);
    for fetched in iter.take(16) {
        let Ok(fetched) = fetched else { break };
        let _ = fetched.records().count();
    }
    let _ = batch::parse_header(bytes);
    let _ = batch::peek_size(bytes);
    let _ = batch::validate(bytes, true);
});
