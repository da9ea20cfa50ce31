//! Partition placement: the only rule deciding which shard owns a partition.
//!
//! A topic's partitions are spread round-robin starting at a shard chosen by a stable hash of the
//! topic name, so that topics with few partitions do not all land on shard 0. The result is
//! recorded in the engine metadata at creation; a restart with a different shard count keeps
//! every recorded placement that still names an existing shard and re-places only the others.

use crate::types::ShardId;

/// FNV-1a, 64-bit: stable across runs, platforms and Rust versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard for partition `partition` of `topic` among `shard_count` shards.
///
/// # Panics
/// When `shard_count` is zero.
pub fn place(topic: &str, partition: i32, shard_count: u16) -> ShardId {
    assert!(shard_count > 0, "an engine has at least one shard");
    let start = fnv1a(topic.as_bytes()) % u64::from(shard_count);
    let index = (start + u64::from(partition.unsigned_abs())) % u64::from(shard_count);
    ShardId(index as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_in_range() {
        for partition in 0..64 {
            let shard = place("orders", partition, 3);
            assert!(shard.0 < 3);
            assert_eq!(shard, place("orders", partition, 3));
        }
    }

    #[test]
    fn consecutive_partitions_spread_over_shards() {
        let shards: std::collections::BTreeSet<_> = (0..4).map(|partition| place("t", partition, 4)).collect();
        assert_eq!(shards.len(), 4);
    }
}
