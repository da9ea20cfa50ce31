//! Fuzz target: recovery of arbitrary segment and index bytes never panics, what it keeps is a
//! prefix of the file made of valid batches with growing offsets, and a tail is reported as
//! zero-filled exactly when every byte of it is zero.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::inspect;

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("00000000000000000000.log");
    std::fs::write(&log, bytes).expect("write input");
    let report = inspect::scan_log(&log).expect("scan never fails on readable files");
    assert!(report.valid_size_bytes <= report.file_size_bytes);
    let tail = &bytes[report.valid_size_bytes as usize..];
    assert_eq!(report.zero_tail, !tail.is_empty() && tail.iter().all(|byte| *byte == 0), "zero tail reported exactly");
    let mut previous_last = -1i64;
    for (_, header) in &report.batches {
        assert!(header.base_offset > previous_last);
        previous_last = header.last_offset();
    }
    for extension in ["index", "timeindex"] {
        let path = log.with_extension(extension);
        std::fs::write(&path, bytes).expect("write input");
        let _ = inspect::read_index(&path, report.file_size_bytes).expect("readable");
    }
});
