//! Producer id allocation for the idempotent producer (InitProducerId).
//!
//! Ids are unique across restarts: the broker claims ids in blocks, and persists the end of the
//! current block before handing out any id from it. A crash loses at most the rest of one block,
//! never reuses an id.
//!
//! Steps of `allocate`:
//! 1. if the claimed block is used up, write `end + BLOCK` to the file atomically (temp file,
//!    fsync, rename, fsync the directory) and extend the claim;
//! 2. hand out the next id of the claim.
//!
//! Shared by every shard thread behind a mutex: InitProducerId is rare, never on the produce path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file, in the data directory, holding the first id not yet claimed.
pub(crate) const FILE_NAME: &str = "broker-producer-ids";
/// Ids claimed per write of the file.
const BLOCK_ID_COUNT: i64 = 1000;

#[derive(Debug)]
struct Claim {
    next: i64,
    end: i64,
}

/// Allocates producer ids from persisted blocks.
#[derive(Debug)]
pub(crate) struct ProducerIdAllocator {
    path: PathBuf,
    claim: Mutex<Claim>,
}

impl ProducerIdAllocator {
    /// Reads the persisted claim end from `data_dir` (0 when absent).
    ///
    /// # Errors
    /// When the file exists but cannot be read or does not hold a non-negative integer.
    pub(crate) fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join(FILE_NAME);
        let start =
            match fs::read_to_string(&path) {
                Ok(text) => text.trim().parse::<i64>().ok().filter(|start| *start >= 0).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{} is corrupt", path.display()))
                })?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
                Err(error) => return Err(error),
            };
        Ok(Self { path, claim: Mutex::new(Claim { next: start, end: start }) })
    }

    /// Returns a producer id never returned before, by this or an earlier run.
    ///
    /// # Errors
    /// When the claim file cannot be written; no id is handed out then.
    pub(crate) fn allocate(&self) -> io::Result<i64> {
        let mut claim = self.claim.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if claim.next == claim.end {
            let end = claim.end + BLOCK_ID_COUNT;
            sluice_engine::io::write_atomic(&self.path, format!("{end}\n").as_bytes())?;
            claim.end = end;
        }
        let id = claim.next;
        claim.next += 1;
        assert!(claim.next <= claim.end, "handed out an unclaimed producer id");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ProducerIdAllocator::open(dir.path()).expect("open");
        let a = first.allocate().expect("allocate");
        let b = first.allocate().expect("allocate");
        assert_ne!(a, b);
        drop(first);
        let second = ProducerIdAllocator::open(dir.path()).expect("reopen");
        let c = second.allocate().expect("allocate");
        assert!(c > b, "an id after restart is beyond every earlier claim");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(FILE_NAME), "garbage").expect("write");
        assert!(ProducerIdAllocator::open(dir.path()).is_err());
    }
}
