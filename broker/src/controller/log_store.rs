//! The metadata log's storage: openraft's `RaftLogStorage` over one append-only file, plus the
//! vote and the purge point, in the node's metadata directory.
//!
//! Layout (`<data>/metadata/`):
//! - `log`: frames `[length u32 LE][CRC32C of the payload u32 LE][payload]`, each payload one
//!   entry as JSON, in index order;
//! - `vote.json`: the last vote, written atomically;
//! - `purged.json`: the last purged log id, written atomically;
//! - `committed.json`: the last committed log id openraft reported, written atomically before
//!   the entries up to it are applied, so a restarted node applies its committed entries at once
//!   and its broker never publishes an image older than one it published before.
//!
//! Rules:
//! 1. an append is written and fdatasynced before openraft is told it is flushed, so nothing
//!    acknowledged to the quorum is lost to a crash;
//! 2. a vote is durable before `save_vote` returns;
//! 3. truncation cuts the file at the first removed frame and fsyncs;
//! 4. purging persists the purge point first, then rewrites the file with the live entries (a
//!    crash in between leaves entries at or below the point in the file; reopening skips them);
//! 5. reopening stops at the first torn or corrupt frame and cuts the file there (an append that
//!    was never acknowledged).
//!
//! Live entries are also kept in memory (the metadata log is small and snapshots purge it),
//! shared with the readers openraft clones. Touched only by the controller thread.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use compio::BufResult;
use compio::io::AsyncWriteAtExt;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};

use super::types::{Entry, LogId, TypeConfig, Vote};

const LOG_FILE: &str = "log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";
/// Frame header: length and checksum.
const FRAME_HEADER_BYTES: usize = 8;

/// Appends `payload` as one frame.
pub(crate) fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The frame at `position`: its payload and the position after it; `None` for a torn or
/// corrupt frame (or the end).
pub(crate) fn get_frame(bytes: &[u8], position: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(position..position.checked_add(FRAME_HEADER_BYTES)?)?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = position + FRAME_HEADER_BYTES;
    let payload = bytes.get(start..start.checked_add(length)?)?;
    (crc32c(payload) == checksum).then_some((payload, start + length))
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// Writes `bytes` to `dir/name` atomically, off the controller thread.
pub(crate) async fn write_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
    let path = dir.join(name);
    sluice_engine::io::on_own_thread(move || sluice_engine::io::write_atomic(&path, &bytes)).await
}

/// Reads `dir/name`, `None` when it does not exist.
pub(crate) fn read_optional(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[derive(Debug, Default)]
struct Memory {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// The log's writer, owned by openraft's core.
#[derive(Debug)]
pub(crate) struct LogStore {
    dir: PathBuf,
    file: compio::fs::File,
    file_size_bytes: u64,
    /// Index to the position of its frame, for truncation.
    positions: BTreeMap<u64, u64>,
    memory: Rc<RefCell<Memory>>,
}

/// A reader of the log, cloned by openraft into its replication and apply tasks.
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    memory: Rc<RefCell<Memory>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and reloads it (rule 5).
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let vote =
            read_optional(dir, VOTE_FILE)?.map(|bytes| serde_json::from_slice(&bytes)).transpose().map_err(invalid)?;
        let last_purged: Option<LogId> = match read_optional(dir, PURGED_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(invalid)?,
            None => None,
        };
        let committed: Option<LogId> = match read_optional(dir, COMMITTED_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(invalid)?,
            None => None,
        };
        let path = dir.join(LOG_FILE);
        let raw = read_optional(dir, LOG_FILE)?.unwrap_or_default();
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let mut position = 0usize;
        while let Some((payload, next)) = get_frame(&raw, position) {
            let entry: Entry = serde_json::from_slice(payload).map_err(invalid)?;
            let index = entry.index();
            if last_purged.as_ref().is_none_or(|purged| index > purged.index()) {
                entries.insert(index, entry);
                positions.insert(index, position as u64);
            }
            position = next;
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        if position < raw.len() {
            tracing::warn!(path = %path.display(), valid_bytes = position, file_bytes = raw.len(), "cutting a torn metadata log tail");
            file.set_len(position as u64)?;
            file.sync_all()?;
        }
        sluice_engine::io::sync_dir(dir)?;
        let memory = Memory { entries, vote, last_purged, committed };
        Ok(Self {
            dir: dir.to_path_buf(),
            file: sluice_engine::io::into_runtime_file(file),
            file_size_bytes: position as u64,
            positions,
            memory: Rc::new(RefCell::new(memory)),
        })
    }

    /// The index of the last entry known committed when the node stopped (0: none).
    pub(crate) fn committed_index(&self) -> u64 {
        self.memory.borrow().committed.as_ref().map_or(0, openraft::LogId::index)
    }

    /// Rewrites the file with the live entries only (rule 4, after a purge).
    async fn rewrite(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut positions = BTreeMap::new();
        for (index, entry) in &self.memory.borrow().entries {
            positions.insert(*index, bytes.len() as u64);
            put_frame(&mut bytes, &serde_json::to_vec(entry).map_err(invalid)?);
        }
        let size = bytes.len() as u64;
        write_atomic(&self.dir, LOG_FILE, bytes).await?;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(self.dir.join(LOG_FILE))?;
        self.file = sluice_engine::io::into_runtime_file(file);
        self.file_size_bytes = size;
        self.positions = positions;
        Ok(())
    }
}

/// A range bound as a half-open `[start, end)`.
fn half_open(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(index) => *index,
        Bound::Excluded(index) => index.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(index) => index.saturating_add(1),
        Bound::Excluded(index) => *index,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn read_entries(memory: &RefCell<Memory>, range: &impl RangeBounds<u64>) -> Vec<Entry> {
    let (start, end) = half_open(range);
    if start >= end {
        return Vec::new();
    }
    memory.borrow().entries.range(start..end).map(|(_, entry)| entry.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<R: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: R,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(read_entries(&self.memory, &range))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.memory.borrow().vote)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<R: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: R,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(read_entries(&self.memory, &range))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.memory.borrow().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let memory = self.memory.borrow();
        let last_purged_log_id = memory.last_purged;
        let last_log_id = memory.entries.values().next_back().map(RaftEntry::log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { memory: self.memory.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        write_atomic(&self.dir, VOTE_FILE, serde_json::to_vec(vote).map_err(invalid)?).await?;
        self.memory.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bytes = Vec::new();
        {
            let mut memory = self.memory.borrow_mut();
            for entry in entries {
                let index = entry.index();
                self.positions.insert(index, self.file_size_bytes + bytes.len() as u64);
                put_frame(&mut bytes, &serde_json::to_vec(&entry).map_err(invalid)?);
                memory.entries.insert(index, entry);
            }
        }
        let size = bytes.len() as u64;
        let BufResult(written, _) = self.file.write_all_at(bytes, self.file_size_bytes).await;
        let flushed = match written {
            Ok(()) => self.file.sync_data().await,
            Err(error) => Err(error),
        };
        if let Err(error) = flushed {
            callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
            return Err(error);
        }
        self.file_size_bytes += size;
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if committed.is_some() && committed != self.memory.borrow().committed {
            write_atomic(&self.dir, COMMITTED_FILE, serde_json::to_vec(&committed).map_err(invalid)?).await?;
            self.memory.borrow_mut().committed = committed;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.memory.borrow().committed)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let first_removed = last_log_id.as_ref().map_or(0, |kept| kept.index() + 1);
        let Some(position) = self.positions.range(first_removed..).next().map(|(_, position)| *position) else {
            return Ok(());
        };
        self.memory.borrow_mut().entries.split_off(&first_removed);
        self.positions.split_off(&first_removed);
        self.file.set_len(position).await?;
        self.file.sync_data().await?;
        self.file_size_bytes = position;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        write_atomic(&self.dir, PURGED_FILE, serde_json::to_vec(&Some(&log_id)).map_err(invalid)?).await?;
        {
            let mut memory = self.memory.borrow_mut();
            let kept = memory.entries.split_off(&(log_id.index() + 1));
            memory.entries = kept;
            memory.last_purged = Some(log_id);
        }
        self.rewrite().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_flipped_byte_ends_them() {
        let mut bytes = Vec::new();
        put_frame(&mut bytes, b"first");
        put_frame(&mut bytes, b"second");
        let (first, next) = get_frame(&bytes, 0).expect("first frame");
        assert_eq!(first, b"first");
        let (second, end) = get_frame(&bytes, next).expect("second frame");
        assert_eq!((second, end), (&b"second"[..], bytes.len()));
        assert!(get_frame(&bytes, end).is_none());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(get_frame(&bytes, next).is_none(), "a corrupt frame is not read");
        assert!(get_frame(&bytes[..next + 3], next).is_none(), "a torn frame is not read");
    }
}
