//! Producer-state snapshots, one file per offset, as Kafka keeps `<offset>.snapshot` files.
//!
//! A snapshot at offset `S` is the producer state of every batch below `S`. One is taken each
//! time a segment rolls (at the new segment's base offset) and written, atomically and fsynced,
//! by the next maintenance pass, before the checkpoint; so the checkpoint, written whenever the
//! recovery point moves, no longer rewrites the whole producer map.
//!
//! At open, recovery loads the latest readable snapshot at or below the recovery point and
//! replays the batches from it on (re-validating every segment at or past it). A snapshot is
//! valid as long as the log below its offset is unchanged, so one past the log end (a truncation
//! cut it, or a power loss kept the snapshot but not the log below it) is removed, at open and
//! when the log is truncated; one below the first segment is removed when retention or
//! DeleteRecords drops that segment.
//!
//! The file is JSON (`{"version": 1, "producers": {...}}`, see engine/FORMAT.md): Kafka's binary
//! snapshot keeps only each producer's last batch, and Sluice keeps its last five and its last
//! transactions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::producer::ProducerStates;

/// File name suffix of a snapshot.
const SUFFIX: &str = ".snapshot";

/// Version written in each file.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    producers: ProducerStates,
}

/// `<offset:020>.snapshot` in `dir`.
pub(crate) fn path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

/// The snapshot's offset if `name` names a snapshot file.
pub(crate) fn parse_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SUFFIX)?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse::<i64>().ok().filter(|offset| *offset >= 0)
}

/// Encodes `producers` as a snapshot file's bytes.
pub(crate) fn encode(producers: ProducerStates) -> Vec<u8> {
    serde_json::to_vec(&SnapshotFile { version: VERSION, producers }).expect("a snapshot holds only plain data")
}

/// The producer state in the snapshot at `offset`, or `None` when the file is missing,
/// unreadable, or of an unknown version.
pub(crate) fn read(dir: &Path, offset: i64) -> Option<ProducerStates> {
    let path = path(dir, offset);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<SnapshotFile>(&bytes) {
        Ok(file) if file.version == VERSION => Some(file.producers),
        Ok(file) => {
            tracing::warn!(path = %path.display(), version = file.version, "producer snapshot of an unknown version; ignoring it");
            None
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "unreadable producer snapshot; ignoring it");
            None
        }
    }
}

/// The latest readable snapshot at or below `at_most` among `offsets`, with its state.
pub(crate) fn latest_at_or_below(dir: &Path, offsets: &BTreeSet<i64>, at_most: i64) -> Option<(i64, ProducerStates)> {
    offsets.range(..=at_most).rev().find_map(|offset| read(dir, *offset).map(|producers| (*offset, producers)))
}

/// Removes the snapshot files at `offsets` (a missing one is already gone).
pub(crate) fn remove(dir: &Path, offsets: impl IntoIterator<Item = i64>) -> std::io::Result<()> {
    for offset in offsets {
        match std::fs::remove_file(path(dir, offset)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digit_offsets() {
        let dir = Path::new("/d");
        assert_eq!(path(dir, 1234), Path::new("/d/00000000000000001234.snapshot"));
        assert_eq!(parse_name("00000000000000001234.snapshot"), Some(1234));
        assert_eq!(parse_name("1234.snapshot"), None);
        assert_eq!(parse_name("00000000000000001234.log"), None);
    }

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(path(dir.path(), 10), encode(ProducerStates::default())).expect("write");
        std::fs::write(path(dir.path(), 20), b"{\"version\": 1, \"produc").expect("write");
        let offsets = BTreeSet::from([10, 20, 30]);
        assert_eq!(latest_at_or_below(dir.path(), &offsets, 25).map(|(offset, _)| offset), Some(10));
        assert_eq!(latest_at_or_below(dir.path(), &offsets, 5).map(|(offset, _)| offset), None);
        remove(dir.path(), [10, 30]).expect("remove");
        assert!(read(dir.path(), 10).is_none());
    }
}
