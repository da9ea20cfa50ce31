//! A segment's aborted-transaction index (`.txnindex`), in Kafka's layout: one 34-byte entry per
//! transaction aborted by a marker in the segment, big-endian: `i16 version (0), i64 producer id,
//! i64 first offset, i64 last offset (the marker's), i64 last stable offset`.
//!
//! The entries live in memory with the segment and are written whole (atomically, fsynced)
//! before a checkpoint whose recovery point covers them; recovery reads them for the segments it
//! trusts and rebuilds the rest from the markers it re-scans. Touched by the owning shard only
//! (and by recovery on the blocking pool before the partition exists).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes per entry.
const ENTRY_SIZE_BYTES: usize = 34;
/// The entry version Kafka writes.
const VERSION: i16 = 0;

/// An aborted transaction: its producer, its first offset, the offset of its abort marker, and
/// the last stable offset once the marker was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) last_stable_offset: i64,
}

pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", super::file_stem(base_offset)))
}

/// The file's bytes for `entries`.
pub(crate) fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_SIZE_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&VERSION.to_be_bytes());
        bytes.extend_from_slice(&entry.producer_id.to_be_bytes());
        bytes.extend_from_slice(&entry.first_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.last_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.last_stable_offset.to_be_bytes());
    }
    bytes
}

/// The entries of a file's bytes; `None` when its length or a version is wrong.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !bytes.len().is_multiple_of(ENTRY_SIZE_BYTES) {
        return None;
    }
    let long = |chunk: &[u8], at: usize| i64::from_be_bytes(chunk[at..at + 8].try_into().expect("8 bytes"));
    bytes
        .chunks_exact(ENTRY_SIZE_BYTES)
        .map(|chunk| {
            (i16::from_be_bytes([chunk[0], chunk[1]]) == VERSION).then(|| AbortedTxn {
                producer_id: long(chunk, 2),
                first_offset: long(chunk, 10),
                last_offset: long(chunk, 18),
                last_stable_offset: long(chunk, 26),
            })
        })
        .collect()
}

/// Reads the index file of the segment at `base_offset`: empty when there is none, `None` when
/// it is unreadable or malformed.
pub(crate) fn read(dir: &Path, base_offset: i64) -> Option<Vec<AbortedTxn>> {
    match std::fs::read(path(dir, base_offset)) {
        Ok(bytes) => decode(&bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_layout() {
        let entries = vec![
            AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 20, last_stable_offset: 21 },
            AbortedTxn { producer_id: -2, first_offset: 0, last_offset: 1, last_stable_offset: 0 },
        ];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 68);
        assert_eq!(&bytes[..10], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(decode(&bytes), Some(entries));
        assert_eq!(decode(&bytes[..33]), None);
        let mut wrong_version = bytes;
        wrong_version[1] = 1;
        assert_eq!(decode(&wrong_version), None);
    }
}
