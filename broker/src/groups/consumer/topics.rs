//! The topic metadata the group logic sees: a snapshot of the cluster's topics (id, name,
//! partition count) with a version, and the metadata hash that detects changes to the topics a
//! group subscribes to.
//!
//! The integrator builds a [`TopicsImage`] from its metadata image (ideally once per metadata
//! version, shared by every group) and passes it to each operation. The version must grow
//! whenever topics change: regular expressions are re-resolved only when it differs from the
//! version they were last resolved at.
//!
//! Immutable once built; any thread may read it.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicId;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMetadata {
    /// The topic id.
    pub(crate) id: TopicId,
    /// The topic name.
    pub(crate) name: String,
    /// How many partitions it has.
    pub(crate) partition_count: i32,
}

/// The cluster's topics at one metadata version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TopicsImage {
    version: i64,
    by_name: BTreeMap<String, TopicMetadata>,
    names_by_id: BTreeMap<TopicId, String>,
}

impl TopicsImage {
    /// The image of `topics` at metadata `version`.
    ///
    /// # Panics
    /// If two topics share a name or an id, or a partition count is negative: the metadata
    /// image never holds such topics.
    pub(crate) fn new(version: i64, topics: impl IntoIterator<Item = TopicMetadata>) -> Self {
        let mut image = Self { version, by_name: BTreeMap::new(), names_by_id: BTreeMap::new() };
        for topic in topics {
            assert!(topic.partition_count >= 0, "topic {} has a negative partition count", topic.name);
            let previous_name = image.names_by_id.insert(topic.id, topic.name.clone());
            assert!(previous_name.is_none(), "topic id {} appears twice", topic.id);
            let previous = image.by_name.insert(topic.name.clone(), topic);
            assert!(previous.is_none(), "a topic name appears twice");
        }
        image
    }

    /// The metadata version the image was taken at.
    pub(crate) fn version(&self) -> i64 {
        self.version
    }

    /// The topic called `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<&TopicMetadata> {
        self.by_name.get(name)
    }

    /// The topic with id `id`.
    pub(crate) fn by_id(&self, id: TopicId) -> Option<&TopicMetadata> {
        self.names_by_id.get(&id).and_then(|name| self.by_name.get(name))
    }

    /// Every topic, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &TopicMetadata> {
        self.by_name.values()
    }

    /// The hash of the metadata of the topics named in `names` that exist: it changes when one
    /// of them is created, deleted (or recreated with a new id) or gets more partitions. An
    /// empty subscription hashes to 0, as in Kafka.
    ///
    /// Each existing topic contributes, in name order, a 64-bit FNV-1a hash of: a version byte
    /// (0), the topic id's 16 bytes, the name's length (u32, big-endian) and bytes, and the
    /// partition count (i32, big-endian); the group hash is FNV-1a over those hashes (big-endian).
    /// Kafka hashes the same fields with XXH3 (through a Java library whose string encoding would
    /// have to be reproduced); nothing outside the group compares the value, so a simpler,
    /// self-contained function is used.
    pub(crate) fn metadata_hash<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> i64 {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let mut group = Fnv1a::new();
        let mut any = false;
        for name in names {
            let Some(topic) = self.by_name.get(name) else { continue };
            let mut hasher = Fnv1a::new();
            hasher.write(&[0]);
            hasher.write(topic.id.as_bytes());
            let name_bytes = topic.name.as_bytes();
            hasher.write(&u32::try_from(name_bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            hasher.write(name_bytes);
            hasher.write(&topic.partition_count.to_be_bytes());
            group.write(&hasher.finish().to_be_bytes());
            any = true;
        }
        if any { i64::from_be_bytes(group.finish().to_be_bytes()) } else { 0 }
    }
}

/// 64-bit FNV-1a: simple, stable across platforms and releases, and good enough to detect
/// metadata changes (a collision only delays a rebalance until the next change).
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(id: u128, name: &str, partition_count: i32) -> TopicMetadata {
        TopicMetadata { id: TopicId::from_u128(id), name: name.to_owned(), partition_count }
    }

    #[test]
    fn hash_changes_when_a_subscribed_topic_grows_appears_or_is_recreated() {
        let before = TopicsImage::new(1, [topic(1, "a", 3)]);
        let grown = TopicsImage::new(2, [topic(1, "a", 4)]);
        let recreated = TopicsImage::new(3, [topic(9, "a", 3)]);
        let with_b = TopicsImage::new(4, [topic(1, "a", 3), topic(2, "b", 1)]);
        let hash = before.metadata_hash(["a", "b"]);
        assert_ne!(hash, grown.metadata_hash(["a", "b"]));
        assert_ne!(hash, recreated.metadata_hash(["a", "b"]));
        assert_ne!(hash, with_b.metadata_hash(["a", "b"]));
        assert_eq!(hash, with_b.metadata_hash(["a"]));
    }

    #[test]
    fn unsubscribed_topics_do_not_change_the_hash_and_nothing_hashes_to_zero() {
        let image = TopicsImage::new(1, [topic(1, "a", 3), topic(2, "b", 1)]);
        assert_eq!(image.metadata_hash(std::iter::empty()), 0);
        assert_eq!(image.metadata_hash(["missing"]), 0);
        assert_ne!(image.metadata_hash(["a"]), 0);
    }

    #[test]
    fn topics_are_found_by_name_and_by_id() {
        let image = TopicsImage::new(7, [topic(1, "a", 3)]);
        assert_eq!(image.version(), 7);
        assert_eq!(image.by_id(TopicId::from_u128(1)).map(|found| found.name.as_str()), Some("a"));
        assert_eq!(image.by_name("a").map(|found| found.partition_count), Some(3));
        assert!(image.by_id(TopicId::from_u128(2)).is_none());
    }
}
