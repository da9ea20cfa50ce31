//! Fuzz target: the RecordBatch v2 parser and record walkers never panic, and agree with each
//! other: a batch that validates reports a size within the input, and its records lie inside it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(header) = batch::validate(bytes, false) {
        assert!(header.size_bytes() <= bytes.len());
        for record in batch::records(bytes) {
            assert!(record.raw.len() <= header.size_bytes());
        }
        let _ = batch::record_timestamps(bytes).count();
    }
    let _ = batch::parse_header(bytes);
    let _ = batch::peek_size(bytes);
    let _ = batch::validate(bytes, true);
});
