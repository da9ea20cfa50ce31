//! The catalog of the partition logs this engine holds: for each topic its id and config, and
//! for each partition held here its owning shard and its "new data" event.
//!
//! The catalog records where logs live, not what the cluster looks like: a broker opens and
//! removes partitions as its metadata says (a topic may have only some of its partitions here),
//! and an embedder's topic-level calls open all of a topic's partitions. An immutable snapshot is
//! swapped atomically on every change (`arc_swap`), so readers on any thread look partitions up
//! without locks; writers are serialized by the engine's admin lock. It persists as `meta.json`
//! in the data directory, written atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use event_listener::{Event, EventListener};
use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::types::{ShardId, TopicId, TopicPartition};

/// The metadata file's name inside the data directory.
pub(crate) const META_FILE_NAME: &str = "meta.json";
/// Version 2 lists the partitions held; version 1 (every partition of each topic, by index) is
/// still read.
const META_VERSION: u32 = 2;

/// A topic as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: Arc<str>,
    /// Topic id.
    pub id: TopicId,
    /// Topic config.
    pub config: TopicConfig,
    /// The partitions held here, by index, with their owning shard.
    pub partitions: BTreeMap<i32, ShardId>,
}

impl TopicInfo {
    /// Number of partitions held here (all of them for a topic created through the engine).
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// A topic plus the per-partition "new data" events readers wait on.
#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub(crate) info: TopicInfo,
    pub(crate) events: BTreeMap<i32, Arc<Event>>,
}

/// One immutable catalog snapshot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    topics: BTreeMap<Arc<str>, Arc<TopicEntry>>,
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    version: u32,
    topics: Vec<MetaTopic>,
}

#[derive(Serialize, Deserialize)]
struct MetaTopic {
    name: String,
    id: String,
    config: TopicConfig,
    /// Version 1: the shard of partition `index`, for every index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shards: Vec<u16>,
    /// Version 2: the partitions held, as (index, shard).
    #[serde(default)]
    partitions: Vec<(i32, u16)>,
}

impl Catalog {
    /// Every topic, sorted by name.
    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        self.topics.values().map(|entry| entry.info.clone()).collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.get(name).map(|entry| entry.info.clone())
    }

    pub(crate) fn topic_by_id(&self, id: TopicId) -> Option<TopicInfo> {
        self.topics.values().find(|entry| entry.info.id == id).map(|entry| entry.info.clone())
    }

    pub(crate) fn shard_of(&self, partition: &TopicPartition) -> Option<ShardId> {
        self.topics.get(&partition.topic)?.info.partitions.get(&partition.partition.0).copied()
    }

    pub(crate) fn event(&self, partition: &TopicPartition) -> Option<Arc<Event>> {
        self.topics.get(&partition.topic)?.events.get(&partition.partition.0).cloned()
    }

    pub(crate) fn listen(&self, partition: &TopicPartition) -> Option<EventListener> {
        self.event(partition).map(|event| event.listen())
    }

    /// A copy with `info` added or replaced, keeping the events of partitions it still holds.
    pub(crate) fn with_topic(&self, info: TopicInfo) -> Catalog {
        let mut topics = self.topics.clone();
        let old = topics.get(&info.name).map(|entry| entry.events.clone()).unwrap_or_default();
        let events = info
            .partitions
            .keys()
            .map(|index| (*index, old.get(index).cloned().unwrap_or_else(|| Arc::new(Event::new()))))
            .collect();
        topics.insert(info.name.clone(), Arc::new(TopicEntry { info, events }));
        Catalog { topics }
    }

    /// A copy without topic `name`.
    pub(crate) fn without_topic(&self, name: &str) -> Catalog {
        let mut topics = self.topics.clone();
        topics.remove(name);
        Catalog { topics }
    }

    /// Serializes the catalog for `meta.json`.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let meta = MetaFile {
            version: META_VERSION,
            topics: self
                .topics
                .values()
                .map(|entry| MetaTopic {
                    name: entry.info.name.to_string(),
                    id: entry.info.id.to_string(),
                    config: entry.info.config.clone(),
                    shards: Vec::new(),
                    partitions: entry.info.partitions.iter().map(|(index, shard)| (*index, shard.0)).collect(),
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&meta).expect("the catalog holds only plain data")
    }

    /// Loads `meta.json`, re-placing partitions whose recorded shard no longer exists.
    /// A missing file is an empty catalog.
    pub(crate) fn load(path: &Path, shard_count: u16) -> Result<Catalog, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::default()),
            Err(error) => return Err(error.to_string()),
        };
        let meta: MetaFile = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
        if !(1..=META_VERSION).contains(&meta.version) {
            return Err(format!("unsupported metadata version {}", meta.version));
        }
        let mut catalog = Catalog::default();
        for topic in meta.topics {
            let id = TopicId::from_hex(&topic.id).ok_or_else(|| format!("bad topic id {:?}", topic.id))?;
            let held: Vec<(i32, u16)> = if meta.version == 1 {
                topic.shards.iter().enumerate().map(|(index, shard)| (index as i32, *shard)).collect()
            } else {
                topic.partitions
            };
            let partitions = held
                .into_iter()
                .map(|(index, shard)| {
                    let shard = if shard < shard_count {
                        ShardId(shard)
                    } else {
                        crate::placement::place(&topic.name, index, shard_count)
                    };
                    (index, shard)
                })
                .collect();
            let info = TopicInfo { name: Arc::from(topic.name.as_str()), id, config: topic.config, partitions };
            catalog = catalog.with_topic(info);
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, partitions: &[(i32, u16)]) -> TopicInfo {
        TopicInfo {
            name: Arc::from(name),
            id: TopicId([7; 16]),
            config: TopicConfig::default(),
            partitions: partitions.iter().map(|(index, shard)| (*index, ShardId(*shard))).collect(),
        }
    }

    #[test]
    fn json_round_trip_keeps_topics_and_sparse_partitions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = Catalog::default().with_topic(info("a", &[(0, 0), (1, 1)])).with_topic(info("b", &[(4, 1)]));
        let path = dir.path().join(META_FILE_NAME);
        std::fs::write(&path, catalog.to_json()).expect("write");
        let loaded = Catalog::load(&path, 2).expect("load");
        assert_eq!(loaded.topics(), catalog.topics());
        assert_eq!(loaded.shard_of(&TopicPartition::new("b", 4)), Some(ShardId(1)));
        assert_eq!(loaded.shard_of(&TopicPartition::new("b", 0)), None);
    }

    #[test]
    fn version_one_files_load_as_every_partition() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(META_FILE_NAME);
        let v1 = r#"{"version":1,"topics":[{"name":"old","id":"0707070707070707070707070707070707","shards":[0,1,0],"config":CONFIG}]}"#;
        let config = serde_json::to_string(&TopicConfig::default()).expect("config");
        let id = "07".repeat(16);
        let v1 = v1.replace("0707070707070707070707070707070707", &id).replace("CONFIG", &config);
        std::fs::write(&path, v1).expect("write");
        let loaded = Catalog::load(&path, 2).expect("load");
        let topic = loaded.topic("old").expect("topic");
        assert_eq!(topic.partition_count(), 3);
        assert_eq!(topic.partitions[&1], ShardId(1));
    }

    #[test]
    fn fewer_shards_replace_missing_placements() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(META_FILE_NAME);
        std::fs::write(&path, Catalog::default().with_topic(info("a", &[(0, 0), (1, 3)])).to_json()).expect("write");
        let loaded = Catalog::load(&path, 2).expect("load");
        let topic = loaded.topic("a").expect("topic");
        assert_eq!(topic.partitions[&0], ShardId(0));
        assert!(topic.partitions[&1].0 < 2);
    }
}
