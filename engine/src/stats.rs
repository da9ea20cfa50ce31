//! Storage counters per shard: fsync count and latency histogram, bytes and batches appended.
//!
//! Each shard's counters are written only by that shard's thread (relaxed atomics on memory no
//! other thread writes, so never contended) and read by any thread through snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the fsync latency buckets, in microseconds; a last bucket holds the rest.
pub const FSYNC_LATENCY_BOUNDS_US: [u64; 13] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// One shard's live counters.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    fsync_count: AtomicU64,
    fsync_latency_us_sum: AtomicU64,
    fsync_latency_buckets: [AtomicU64; FSYNC_LATENCY_BOUNDS_US.len() + 1],
    appended_bytes: AtomicU64,
    appended_batches: AtomicU64,
}

impl ShardStats {
    pub(crate) fn record_fsync(&self, latency_us: u64) {
        self.fsync_count.fetch_add(1, Ordering::Relaxed);
        self.fsync_latency_us_sum.fetch_add(latency_us, Ordering::Relaxed);
        let bucket = FSYNC_LATENCY_BOUNDS_US.partition_point(|bound| *bound < latency_us);
        self.fsync_latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_append(&self, size_bytes: u64, batch_count: u64) {
        self.appended_bytes.fetch_add(size_bytes, Ordering::Relaxed);
        self.appended_batches.fetch_add(batch_count, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StorageStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StorageStats {
            fsync_count: load(&self.fsync_count),
            fsync_latency_us_sum: load(&self.fsync_latency_us_sum),
            fsync_latency_buckets: self.fsync_latency_buckets.iter().map(load).collect(),
            appended_bytes: load(&self.appended_bytes),
            appended_batches: load(&self.appended_batches),
        }
    }
}

/// A snapshot of one shard's storage counters since the engine opened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStats {
    /// Fsyncs completed (data fsyncs of segment files).
    pub fsync_count: u64,
    /// Sum of their latencies, in microseconds.
    pub fsync_latency_us_sum: u64,
    /// Non-cumulative counts per bucket of [`FSYNC_LATENCY_BOUNDS_US`], plus one last bucket for
    /// longer fsyncs.
    pub fsync_latency_buckets: Vec<u64>,
    /// Bytes of batches appended.
    pub appended_bytes: u64,
    /// Batches appended.
    pub appended_batches: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_latencies_land_in_their_buckets() {
        let stats = ShardStats::default();
        stats.record_fsync(40);
        stats.record_fsync(50);
        stats.record_fsync(2_000_000);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.fsync_count, 3);
        assert_eq!(snapshot.fsync_latency_buckets[0], 2);
        assert_eq!(snapshot.fsync_latency_buckets[FSYNC_LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(snapshot.fsync_latency_us_sum, 2_000_090);
    }
}
