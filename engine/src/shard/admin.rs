//! Topic administration and startup recovery, coordinated across shards.
//!
//! Admin calls are serialized by the engine's admin lock. Each persists the new catalog to
//! `meta.json` before touching partitions, so a crash in between leaves a catalog that recovery
//! completes: a partition in the catalog without a directory is created empty at open, and a
//! directory renamed for deletion is removed at open.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{RouteError, ShardState, Shared};
use crate::catalog::{Catalog, META_FILE_NAME, TopicInfo};
use crate::config::TopicConfig;
use crate::error::{OpenError, TopicError};
use crate::partition::Partition;
use crate::types::{TopicId, TopicPartition};

/// Suffix of partition directories awaiting removal after their topic was deleted.
const DELETED_SUFFIX: &str = "-delete";
/// Kafka's limit on topic name length.
const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Upper bound on partitions per topic, far above any real use, to bound memory per request.
const PARTITION_COUNT_MAX: i32 = 100_000;

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new random-looking topic id: splitmix64 over the clock, a counter and the name.
fn new_topic_id(name: &str) -> TopicId {
    let mut seed = crate::clock::entropy() ^ ID_COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
    for byte in name.bytes() {
        seed = seed.rotate_left(5) ^ u64::from(byte);
    }
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = seed;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next().to_be_bytes());
    id[8..].copy_from_slice(&next().to_be_bytes());
    TopicId(id)
}

/// Whether `name` is a legal Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_LENGTH_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

pub(crate) fn partition_dir(data_dir: &Path, partition: &TopicPartition) -> PathBuf {
    data_dir.join(partition.dir_name())
}

/// Removes partition directories left behind by a deletion interrupted by a crash.
pub(crate) fn remove_deleted_dirs(data_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(DELETED_SUFFIX) && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Opens every partition of the catalog on its shard, recovering its log.
pub(crate) async fn recover_all(shared: &Arc<Shared>) -> Result<(), OpenError> {
    let catalog = shared.catalog();
    for topic in catalog.topics() {
        for index in 0..topic.partition_count {
            open_partition(shared, &catalog, &topic, index).await.map_err(|error| match error {
                TopicError::Io { source, .. } => OpenError::Recovery {
                    partition: TopicPartition::new(topic.name.clone(), index),
                    source: crate::error::RecoveryError::Io {
                        path: partition_dir(&shared.config.data_dir, &TopicPartition::new(topic.name.clone(), index)),
                        source,
                    },
                },
                _ => OpenError::Shard { shard: 0, source: std::io::Error::other("engine stopped during recovery") },
            })?;
        }
    }
    Ok(())
}

/// How many partitions of one admin call are opened at once: their file-system work (two
/// directory fsyncs each for a new one) overlaps on the blocking pools.
const OPEN_CONCURRENCY: usize = 32;

/// Opens (creating if needed) partitions `indexes` of `topic`, several at once.
async fn open_partitions(shared: &Shared, topic: &TopicInfo, indexes: std::ops::Range<i32>) -> Result<(), TopicError> {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    let catalog = shared.catalog();
    futures_util::stream::iter(indexes)
        .map(|index| open_partition(shared, &catalog, topic, index))
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Opens (creating if needed) partition `index` of `topic` on its owning shard.
async fn open_partition(shared: &Shared, catalog: &Catalog, topic: &TopicInfo, index: i32) -> Result<(), TopicError> {
    let partition = TopicPartition::new(topic.name.clone(), index);
    let shard = topic.shards[index as usize];
    let dir = partition_dir(&shared.config.data_dir, &partition);
    let event = catalog.event(&partition).ok_or_else(|| TopicError::UnknownTopic { topic: topic.name.to_string() })?;
    let config = topic.config.clone();
    let faults = shared.config.faults.clone();
    let clock = shared.config.clock.clone();
    let tuning = crate::partition::Tuning {
        preallocate_bytes: shared.config.preallocate_bytes,
        writeback_bytes: shared.config.writeback_bytes,
        compaction_map_bytes: shared.config.compaction_map_bytes,
    };
    let key = partition.clone();
    let opened = shared
        .on_shard(shard, move |state: Rc<ShardState>| async move {
            let env = crate::partition::Shared { event, faults, stats: state.stats.clone(), tuning, clock };
            let log = Partition::open(key.clone(), dir, config, env).await?;
            state.partitions.borrow_mut().insert(key, log);
            Ok::<(), std::io::Error>(())
        })
        .await;
    match opened {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(TopicError::Io { topic: topic.name.to_string(), source }),
        Err(_) => Err(TopicError::ShuttingDown),
    }
}

/// Writes the catalog to `meta.json` (two fsyncs) off the caller's thread, which may be a shard.
async fn persist(shared: &Shared, catalog: &Catalog, topic: &str) -> Result<(), TopicError> {
    let path = shared.config.data_dir.join(META_FILE_NAME);
    let json = catalog.to_json();
    crate::io::on_own_thread(move || crate::io::write_atomic(&path, &json))
        .await
        .map_err(|source| TopicError::Io { topic: topic.to_owned(), source })
}

impl Shared {
    pub(crate) async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        config: TopicConfig,
    ) -> Result<TopicInfo, TopicError> {
        if !is_valid_topic_name(name) {
            return Err(TopicError::InvalidName { topic: name.to_owned() });
        }
        if !(1..=PARTITION_COUNT_MAX).contains(&partition_count) {
            return Err(TopicError::InvalidPartitions { topic: name.to_owned(), count: partition_count });
        }
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        if current.topic(name).is_some() {
            return Err(TopicError::AlreadyExists { topic: name.to_owned() });
        }
        let info = TopicInfo {
            name: Arc::from(name),
            id: new_topic_id(name),
            partition_count,
            config,
            shards: (0..partition_count).map(|index| crate::placement::place(name, index, self.shard_count)).collect(),
        };
        let next = current.with_topic(info.clone());
        persist(self, &next, name).await?;
        self.store_catalog(next);
        open_partitions(self, &info, 0..partition_count).await?;
        Ok(info)
    }

    pub(crate) async fn create_partitions(&self, name: &str, partition_count: i32) -> Result<TopicInfo, TopicError> {
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        let mut info = current.topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        if partition_count <= info.partition_count || partition_count > PARTITION_COUNT_MAX {
            return Err(TopicError::InvalidPartitions { topic: name.to_owned(), count: partition_count });
        }
        let first_new = info.partition_count;
        info.shards
            .extend((first_new..partition_count).map(|index| crate::placement::place(name, index, self.shard_count)));
        info.partition_count = partition_count;
        let next = current.with_topic(info.clone());
        persist(self, &next, name).await?;
        self.store_catalog(next);
        open_partitions(self, &info, first_new..partition_count).await?;
        Ok(info)
    }

    pub(crate) async fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, TopicError> {
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        let mut info = current.topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        info.config = config;
        let next = current.with_topic(info.clone());
        persist(self, &next, name).await?;
        self.store_catalog(next);
        for index in 0..info.partition_count {
            let key = TopicPartition::new(info.name.clone(), index);
            let config = info.config.clone();
            let applied = self.on_partition(&key, move |log| async move { log.set_config(config) }).await;
            if let Err(RouteError::ShuttingDown) = applied {
                return Err(TopicError::ShuttingDown);
            }
        }
        Ok(info)
    }

    pub(crate) async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        let info = current.topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        let next = current.without_topic(name);
        persist(self, &next, name).await?;
        self.store_catalog(next);
        for (index, shard) in info.shards.iter().enumerate() {
            let key = TopicPartition::new(info.name.clone(), index as i32);
            let dir = partition_dir(&self.config.data_dir, &key);
            let doomed = dir.with_file_name(format!("{}.{}{DELETED_SUFFIX}", key.dir_name(), info.id));
            let removed = self
                .on_shard(*shard, move |state: Rc<ShardState>| async move {
                    let log = state.partitions.borrow_mut().remove(&key);
                    if let Some(log) = log {
                        log.close(false).await;
                    }
                    // Unlinking a segment file nothing holds open frees its blocks and page
                    // cache at once: hundreds of milliseconds per GiB, so not on the shard.
                    crate::io::unblocked(move || remove_partition_dir(&dir, &doomed)).await
                })
                .await;
            match removed {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(TopicError::Io { topic: name.to_owned(), source }),
                Err(_) => return Err(TopicError::ShuttingDown),
            }
        }
        for event in current.entry(name).map(|entry| entry.events.clone()).unwrap_or_default() {
            event.notify(usize::MAX);
        }
        Ok(())
    }
}

/// Renames a partition directory out of the way (durably), then removes it.
fn remove_partition_dir(dir: &Path, doomed: &Path) -> std::io::Result<()> {
    match std::fs::rename(dir, doomed) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    }
    if let Some(parent) = dir.parent() {
        crate::io::sync_dir(parent)?;
    }
    std::fs::remove_dir_all(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(is_valid_topic_name("orders.v1_2-x"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("."));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn topic_ids_differ() {
        assert_ne!(new_topic_id("a"), new_topic_id("a"));
    }
}
