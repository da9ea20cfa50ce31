//! The leader-epoch cache of one partition: for each leader epoch, the first offset written in
//! it, as Kafka keeps it in `leader-epoch-checkpoint`.
//!
//! It answers OffsetForLeaderEpoch ("where does epoch E end on this replica?"), which followers
//! use to find where their log diverged from a new leader's and truncate there.
//!
//! Invariants: epochs and start offsets both strictly increase along the entries; no entry starts
//! at or past the log end once the log is truncated. Entries are assigned as batches are appended
//! (a batch with a newer epoch than the last entry adds one) and replayed by recovery from the
//! batches it re-scans, so the file need only be written with the partition checkpoint: after a
//! crash, recovery drops entries past the recovered log end and re-assigns the epochs of the
//! batches after the recovery point.
//!
//! File format (Kafka's, text): a version line `0`, a count line, then one `epoch offset` line per
//! entry. Owned by its partition, so touched only on its shard.

use std::fmt::Write as _;

/// The file name inside the partition directory.
pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
/// Kafka's "no epoch" and "no offset" answers.
pub(crate) const UNDEFINED_EPOCH: i32 = -1;
pub(crate) const UNDEFINED_OFFSET: i64 = -1;
const FORMAT_VERSION: &str = "0";

/// One entry: `epoch` started at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

/// The cache: entries in increasing epoch and offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The newest epoch, if any batch carried one.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Notes that a batch of `epoch` starts at `start_offset`. Returns whether the cache changed.
    ///
    /// A newer epoch adds an entry. An entry that the new one contradicts (an epoch at or above
    /// it, or a start offset at or past it) is removed first, as Kafka does: such entries belong
    /// to a log suffix that was truncated away.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && last.start_offset <= start_offset
        {
            return false;
        }
        self.entries.retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        assert!(self.is_ordered(), "leader epochs and their start offsets increase");
        true
    }

    /// Removes entries starting at or past `offset` (the log was truncated to end there).
    pub(crate) fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < offset);
        self.entries.len() != before
    }

    /// Forgets entries wholly below a new log start: the last entry starting at or below it is
    /// kept, moved to start there.
    pub(crate) fn truncate_from_start(&mut self, offset: i64) -> bool {
        let covering = self.entries.partition_point(|entry| entry.start_offset <= offset);
        if covering == 0 {
            return false;
        }
        let keep_from = covering - 1;
        let moved = self.entries[keep_from].start_offset != offset;
        self.entries.drain(..keep_from);
        self.entries[0].start_offset = offset;
        moved || keep_from > 0
    }

    /// Kafka's answer to "where does `requested` end here", given the log end offset: the epoch
    /// found (the largest at or below the one asked for) and the first offset of the next
    /// epoch, or the log end for the latest epoch; `(-1, -1)` when this replica knows nothing
    /// at or above it.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().find(|entry| entry.epoch > requested);
        let Some(higher) = higher else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        let floor = self.entries.iter().rev().find(|entry| entry.epoch <= requested);
        match floor {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    fn is_ordered(&self) -> bool {
        self.entries.windows(2).all(|pair| pair[0].epoch < pair[1].epoch && pair[0].start_offset < pair[1].start_offset)
    }

    /// The file's contents.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = format!("{FORMAT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            let _infallible = writeln!(text, "{} {}", entry.epoch, entry.start_offset);
        }
        text.into_bytes()
    }

    /// Parses the file; `None` when it is not a well-formed, ordered checkpoint (recovery then
    /// rebuilds the cache from the log).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FORMAT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let mut fields = lines.next()?.split_whitespace();
            let epoch = fields.next()?.parse().ok()?;
            let start_offset = fields.next()?.parse().ok()?;
            if fields.next().is_some() || epoch < 0 || start_offset < 0 {
                return None;
            }
            entries.push(EpochEntry { epoch, start_offset });
        }
        let cache = Self { entries };
        cache.is_ordered().then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, offset) in entries {
            cache.assign(*epoch, *offset);
        }
        cache
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let cache = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(cache.end_offset_for(5, 30), (5, 30), "latest epoch ends at the log end");
        assert_eq!(cache.end_offset_for(3, 30), (3, 20));
        assert_eq!(cache.end_offset_for(4, 30), (3, 20), "an unknown epoch between two known ones");
        assert_eq!(cache.end_offset_for(0, 30), (0, 0), "below the first epoch");
        assert_eq!(cache.end_offset_for(6, 30), (-1, -1), "above every epoch");
        assert_eq!(cache.end_offset_for(-1, 30), (-1, -1));
    }

    #[test]
    fn same_epoch_adds_nothing_and_a_contradiction_replaces_the_suffix() {
        let mut cache = cache(&[(1, 0), (2, 10)]);
        assert!(!cache.assign(2, 15));
        assert!(cache.assign(3, 8));
        assert_eq!(
            cache.entries(),
            &[EpochEntry { epoch: 1, start_offset: 0 }, EpochEntry { epoch: 3, start_offset: 8 }]
        );
    }

    #[test]
    fn truncation_from_either_end() {
        let mut cache = cache(&[(1, 0), (2, 10), (4, 20)]);
        assert!(cache.truncate_from_end(20));
        assert_eq!(cache.latest_epoch(), Some(2));
        assert!(cache.truncate_from_start(12));
        assert_eq!(cache.entries(), &[EpochEntry { epoch: 2, start_offset: 12 }]);
    }

    #[test]
    fn file_round_trips_and_rejects_garbage() {
        let cache = cache(&[(0, 0), (7, 100)]);
        assert_eq!(String::from_utf8(cache.encode()).expect("text"), "0\n2\n0 0\n7 100\n");
        assert_eq!(LeaderEpochCache::decode(&cache.encode()), Some(cache));
        assert_eq!(LeaderEpochCache::decode(b"0\n2\n5 10\n3 20\n"), None, "unordered");
        assert_eq!(LeaderEpochCache::decode(b"1\n0\n"), None, "unknown version");
        assert_eq!(LeaderEpochCache::decode(b"0\n3\n1 1\n"), None, "short");
    }

    proptest::proptest! {
        #[test]
        fn stays_ordered_under_any_operations(ops in proptest::collection::vec((0u8..3, 0i32..20, 0i64..200), 0..60)) {
            let mut cache = LeaderEpochCache::default();
            for (op, epoch, offset) in ops {
                match op {
                    0 => { cache.assign(epoch, offset); }
                    1 => { cache.truncate_from_end(offset); }
                    _ => { cache.truncate_from_start(offset); }
                }
                proptest::prop_assert!(cache.is_ordered());
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = LeaderEpochCache::decode(&bytes);
        }
    }
}
