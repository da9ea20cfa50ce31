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

use std::collections::BTreeMap;

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

/// How many partitions open at once, at startup and in one admin call: their file-system work
/// (recovery scans, two directory fsyncs for a new one) overlaps on the blocking pools, and the
/// bound keeps memory and open files in check however many partitions there are.
const OPEN_CONCURRENCY: usize = 32;

/// Opens every partition of the catalog on its shard, recovering its log, several at once.
pub(crate) async fn recover_all(shared: &Arc<Shared>) -> Result<(), OpenError> {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    let catalog = shared.catalog();
    let mut pending = Vec::new();
    for topic in catalog.topics() {
        for index in topic.partitions.keys() {
            pending.push((topic.clone(), *index));
        }
    }
    futures_util::stream::iter(pending)
        .map(|(topic, index)| {
            let catalog = &catalog;
            async move {
                open_partition(shared, catalog, &topic, index).await.map_err(|error| {
                    let partition = TopicPartition::new(topic.name.clone(), index);
                    match error {
                        TopicError::Io { source, .. } => OpenError::Recovery {
                            source: crate::error::RecoveryError::Io {
                                path: partition_dir(&shared.config.data_dir, &partition),
                                source,
                            },
                            partition,
                        },
                        _ => OpenError::Shard {
                            shard: 0,
                            source: std::io::Error::other("engine stopped during recovery"),
                        },
                    }
                })
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Removes partition directories the catalog does not hold (left by a deletion that a crash
/// interrupted between writing the catalog and renaming the directory), so that a topic created
/// later under the same name starts empty.
pub(crate) fn remove_stray_dirs(data_dir: &Path, catalog: &Catalog) -> std::io::Result<()> {
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, index)) = name.rsplit_once('-') else { continue };
        let Ok(index) = index.parse::<i32>() else { continue };
        if !is_valid_topic_name(topic) || catalog.shard_of(&TopicPartition::new(topic, index)).is_some() {
            continue;
        }
        let holds_log = entry.path().join(crate::partition::CHECKPOINT_FILE_NAME).exists()
            || std::fs::read_dir(entry.path())?
                .flatten()
                .any(|file| file.file_name().to_string_lossy().ends_with(".log"));
        if holds_log {
            tracing::warn!(dir = %entry.path().display(), "removing a partition directory the catalog does not hold");
            let doomed = entry.path().with_file_name(format!("{name}.stray{DELETED_SUFFIX}"));
            remove_partition_dir(&entry.path(), &doomed)?;
        }
    }
    Ok(())
}

/// Opens (creating if needed) partitions `indexes` of `topic`, several at once.
async fn open_partitions(shared: &Shared, topic: &TopicInfo, indexes: Vec<i32>) -> Result<(), TopicError> {
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
    let shard =
        catalog.shard_of(&partition).ok_or_else(|| TopicError::UnknownTopic { topic: topic.name.to_string() })?;
    let dir = partition_dir(&shared.config.data_dir, &partition);
    let event = catalog.event(&partition).ok_or_else(|| TopicError::UnknownTopic { topic: topic.name.to_string() })?;
    let config = topic.config.clone();
    let faults = shared.config.faults.clone();
    let clock = shared.config.clock.clone();
    let tuning = crate::partition::Tuning {
        preallocate_bytes: shared.config.preallocate_bytes,
        writeback_bytes: shared.config.writeback_bytes,
        compaction_map_bytes: shared.config.compaction_map_bytes,
        producer_id_expiration_ms: shared.config.producer_id_expiration_ms,
    };
    let key = partition.clone();
    let opened = shared
        .on_shard(shard, move |state: Rc<ShardState>| async move {
            if state.partition(&key).is_some() {
                return Ok(());
            }
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
    /// Opens the partition logs `specs` asks for, creating the missing ones (empty, in their
    /// topic's directory layout) and applying the given config to those already open.
    pub(crate) async fn open_partition_logs(&self, specs: Vec<crate::PartitionSpec>) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        let mut next = Catalog::clone(&self.catalog());
        let mut touched: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
        for spec in &specs {
            let name = spec.partition.topic.clone();
            let mut info = match next.topic(&name) {
                Some(info) if info.id != spec.topic_id => {
                    return Err(TopicError::TopicIdMismatch {
                        topic: name.to_string(),
                        held: info.id,
                        given: spec.topic_id,
                    });
                }
                Some(info) => info,
                None => {
                    if !is_valid_topic_name(&name) {
                        return Err(TopicError::InvalidName { topic: name.to_string() });
                    }
                    TopicInfo {
                        name: name.clone(),
                        id: spec.topic_id,
                        config: spec.config.clone(),
                        partitions: BTreeMap::new(),
                    }
                }
            };
            info.config = spec.config.clone();
            let index = spec.partition.partition.0;
            info.partitions.entry(index).or_insert_with(|| crate::placement::place(&name, index, self.shard_count));
            touched.entry(name).or_default().push(index);
            next = next.with_topic(info);
        }
        persist(self, &next, "(partitions)").await?;
        self.store_catalog(next);
        let catalog = self.catalog();
        for (name, indexes) in touched {
            let info = catalog.topic(&name).expect("just stored");
            self.apply_config(&info).await?;
            open_partitions(self, &info, indexes).await?;
        }
        Ok(())
    }

    /// Closes and deletes the logs of `partitions` held here; a topic left with none is
    /// forgotten. Partitions not held are skipped.
    pub(crate) async fn remove_partition_logs(&self, partitions: Vec<TopicPartition>) -> Result<(), TopicError> {
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        let mut next = Catalog::clone(&current);
        let mut doomed = Vec::new();
        for partition in partitions {
            let Some(mut info) = next.topic(&partition.topic) else { continue };
            let Some(shard) = info.partitions.remove(&partition.partition.0) else { continue };
            doomed.push((partition, shard, info.id));
            next = if info.partitions.is_empty() { next.without_topic(&info.name) } else { next.with_topic(info) };
        }
        if doomed.is_empty() {
            return Ok(());
        }
        persist(self, &next, "(partitions)").await?;
        self.store_catalog(next);
        for (partition, shard, id) in doomed {
            self.remove_log(&partition, shard, id).await?;
            if let Some(event) = current.event(&partition) {
                event.notify(usize::MAX);
            }
        }
        Ok(())
    }

    /// Closes one partition on its shard and deletes its directory.
    async fn remove_log(
        &self,
        partition: &TopicPartition,
        shard: crate::types::ShardId,
        id: TopicId,
    ) -> Result<(), TopicError> {
        let dir = partition_dir(&self.config.data_dir, partition);
        let doomed = dir.with_file_name(format!("{}.{id}{DELETED_SUFFIX}", partition.dir_name()));
        let key = partition.clone();
        let removed = self
            .on_shard(shard, move |state: Rc<ShardState>| async move {
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
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(TopicError::Io { topic: partition.topic.to_string(), source }),
            Err(_) => Err(TopicError::ShuttingDown),
        }
    }

    /// Hands a topic's config to its partitions that are open.
    async fn apply_config(&self, info: &TopicInfo) -> Result<(), TopicError> {
        for index in info.partitions.keys() {
            let key = TopicPartition::new(info.name.clone(), *index);
            let config = info.config.clone();
            let applied = self.on_partition(&key, move |log| async move { log.set_config(config) }).await;
            if let Err(RouteError::ShuttingDown) = applied {
                return Err(TopicError::ShuttingDown);
            }
        }
        Ok(())
    }

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
        if self.catalog().topic(name).is_some() {
            return Err(TopicError::AlreadyExists { topic: name.to_owned() });
        }
        let id = new_topic_id(name);
        let specs = (0..partition_count)
            .map(|index| crate::PartitionSpec {
                partition: TopicPartition::new(name, index),
                topic_id: id,
                config: config.clone(),
            })
            .collect();
        self.open_partition_logs(specs).await?;
        self.catalog().topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })
    }

    pub(crate) async fn create_partitions(&self, name: &str, partition_count: i32) -> Result<TopicInfo, TopicError> {
        let info = self.catalog().topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        if partition_count <= info.partition_count() || partition_count > PARTITION_COUNT_MAX {
            return Err(TopicError::InvalidPartitions { topic: name.to_owned(), count: partition_count });
        }
        let specs = (info.partition_count()..partition_count)
            .map(|index| crate::PartitionSpec {
                partition: TopicPartition::new(name, index),
                topic_id: info.id,
                config: info.config.clone(),
            })
            .collect();
        self.open_partition_logs(specs).await?;
        self.catalog().topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })
    }

    pub(crate) async fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, TopicError> {
        let _admin = self.admin_lock.lock().await;
        let current = self.catalog();
        let mut info = current.topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        info.config = config;
        let next = current.with_topic(info.clone());
        persist(self, &next, name).await?;
        self.store_catalog(next);
        self.apply_config(&info).await?;
        Ok(info)
    }

    pub(crate) async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let info = self.catalog().topic(name).ok_or_else(|| TopicError::UnknownTopic { topic: name.to_owned() })?;
        let partitions = info.partitions.keys().map(|index| TopicPartition::new(info.name.clone(), *index)).collect();
        self.remove_partition_logs(partitions).await
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
